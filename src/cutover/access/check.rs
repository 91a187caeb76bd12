//! What `switchyard check` and the cutover (before its lock) say about the legacy tables'
//! grants and row-level security, per the plan's disposition: `refuse` is an error naming the
//! table, the roles or policies, and the setting or SQL that fixes it; `warn` a warning;
//! `carry` and `cutover_sql` a note saying what the cutover will do or prove. None of this
//! stops a backfill: it is about the swap, not the copy.

use crate::pg::connect::connect;
use crate::pg::conninfo::ConnInfo;
use crate::plan::{Disposition, Plan};
use crate::source::preflight::Finding;

use super::carry::missing_roles;
use super::{fed_tables, read, Access, LegacyAccess};

/// What `check` reports about grants and policies.
#[derive(Debug, Default)]
pub struct AccessCheck {
    pub findings: Vec<Finding>,
    /// What the cutover will carry or prove: not problems.
    pub notes: Vec<String>,
}

/// Findings split by what they do to the cutover.
#[derive(Debug, Default)]
pub(super) struct Findings {
    pub errors: Vec<Finding>,
    pub warnings: Vec<Finding>,
    pub notes: Vec<String>,
}

/// Reads the source's legacy tables and reports their grants and row-level security; with two
/// servers, also the grantees that do not exist on the target (their grants cannot follow).
pub async fn check(
    plan: &Plan,
    source: &ConnInfo,
    target: &ConnInfo,
) -> anyhow::Result<AccessCheck> {
    let client = connect(source, "switchyard check").await?;
    let access = read(plan, &client).await?;
    let f = findings(plan, &access);
    let mut out = AccessCheck {
        findings: f.errors.into_iter().chain(f.warnings).collect(),
        notes: f.notes,
    };
    let grantees: Vec<String> = access
        .tables
        .iter()
        .flat_map(|t| t.grants.iter().map(|g| g.grantee.clone()))
        .collect();
    let carried = matches!(
        plan.cutover.dependents.grants,
        Disposition::Carry | Disposition::CutoverSql
    );
    // In one database every role exists: the query finds none.
    if carried && !grantees.is_empty() {
        let target_client = connect(target, "switchyard check").await?;
        for role in missing_roles(&target_client, grantees).await? {
            out.findings.push(Finding::warning(
                "target",
                format!("role {role} holds privileges on a legacy table but does not exist on the target: its grants cannot be made on the new tables"),
                format!("CREATE ROLE {role} on the target before the cutover (the cutover reports the GRANT statements it could not run)"),
            ));
        }
    }
    Ok(out)
}

/// The findings and notes for every legacy table, per the plan's dispositions.
pub(super) fn findings(plan: &Plan, access: &Access) -> Findings {
    let mut out = Findings::default();
    let path = plan.path.display();
    for t in &access.tables {
        let subject = format!("source.{}", t.table);
        let fed = fed_list(plan, t);
        if !t.grants.is_empty() {
            let problem = format!(
                "{} grants privileges to roles other than its owner {} ({}); the swap renames the table and its grants go with it, so after the cutover these roles get \"permission denied\" on what takes the name and on the tables it feeds ({fed})",
                t.table, t.owner, t.describe_grants()
            );
            match plan.cutover.dependents.grants {
                Disposition::Refuse => out.errors.push(Finding::error(subject.clone(), problem, format!(
                    "set grants = \"carry\" under [cutover.dependents] in {path} (switchyard grants the same on what takes the name and on {fed}, under the lock), or \"cutover_sql\" (the plan's cutover SQL grants them and the cutover proves it), or \"warn\"; or REVOKE them on {}",
                    t.table
                ))),
                Disposition::Warn => out.warnings.push(Finding::warning(subject.clone(), problem,
                    "grants = \"warn\": the cutover leaves them on the renamed table and lists what the roles lack; set grants = \"carry\" to have them granted on the new objects")),
                Disposition::Carry => out.notes.push(format!(
                    "grants on {} ({}): carried by the cutover to what takes its name and to {fed} (grants = \"carry\")",
                    t.table, t.describe_grants()
                )),
                Disposition::CutoverSql => out.notes.push(format!(
                    "grants on {} ({}): the cutover SQL grants them; the cutover proves each on what takes the name and on {fed} before committing (grants = \"cutover_sql\")",
                    t.table, t.describe_grants()
                )),
            }
        }
        if t.has_row_security() {
            let problem = format!(
                "{} has {}; the policies stay with the renamed table: the new tables ({fed}) have none, and a compatibility view that is not security_invoker reads with its owner's rights, so every role that may read it sees every row",
                t.table, t.describe_row_security()
            );
            match plan.cutover.dependents.policies {
                Disposition::Refuse | Disposition::Carry => out.errors.push(Finding::error(subject, problem, format!(
                    "write the equivalent policies on {fed} in the plan's cutover SQL (ALTER TABLE ... ENABLE ROW LEVEL SECURITY; CREATE POLICY ...: switchyard cannot translate a USING clause over {}'s columns to the new ones), create the view that takes its name WITH (security_invoker = true), and set policies = \"cutover_sql\" under [cutover.dependents] in {path}: the cutover proves both before committing. Or policies = \"warn\" to leave them",
                    t.table
                ))),
                Disposition::Warn => out.warnings.push(Finding::warning(subject, problem,
                    "policies = \"warn\": the cutover leaves them on the renamed table and lists what the new tables lack; write the equivalent policies in the cutover SQL and set policies = \"cutover_sql\" to have them proved")),
                Disposition::CutoverSql => out.notes.push(format!(
                    "row-level security of {} ({}): the cutover SQL writes the equivalent on {fed}; the cutover proves RLS and a policy on each, and security_invoker on a view taking the name, before committing (policies = \"cutover_sql\")",
                    t.table, t.describe_row_security()
                )),
            }
        }
    }
    if plan.cutover.dependents.grants == Disposition::Carry {
        out.errors.extend(widenings(plan, access));
    }
    out
}

/// A carried grant that would show a role rows it cannot read today: a new table fed by two
/// legacy tables (the seed's `projects`, by `company_projects` and `company_services`) holds
/// the rows of both, so SELECT, UPDATE or DELETE granted there because of one legacy table
/// reaches the other's rows too. Refused: only the plan's author can say what the role should
/// see (grant it on the other legacy table too, or write narrower grants and policies in the
/// cutover SQL with `grants = "cutover_sql"`).
fn widenings(plan: &Plan, access: &Access) -> Vec<Finding> {
    let holds = |t: &LegacyAccess, grantee: &str, privilege: &str| {
        t.grants.iter().any(|g| {
            g.column.is_none()
                && g.privilege == privilege
                && (g.grantee == grantee || g.grantee == "PUBLIC")
        })
    };
    let mut found = Vec::new();
    for t in &access.tables {
        for g in t.grants.iter().filter(|g| {
            g.column.is_none() && matches!(g.privilege.as_str(), "SELECT" | "UPDATE" | "DELETE")
        }) {
            for fed in fed_tables(plan, &t.table) {
                for other in access.tables.iter().filter(|o| {
                    o.table != t.table
                        && fed_tables(plan, &o.table).contains(&fed)
                        && !holds(o, &g.grantee, &g.privilege)
                }) {
                    found.push(Finding::error(
                        format!("source.{}", t.table),
                        format!(
                            "grants = \"carry\" would grant {} on {fed} to {} because of its grant on {}, but {fed} also holds the rows of {}, on which {} has no {}: the role would reach rows it cannot reach today",
                            g.privilege, g.grantee, t.table, other.table, g.grantee, g.privilege
                        ),
                        format!(
                            "GRANT {} ON {} TO the role as well, if it should reach those rows; otherwise grant what it should have in the plan's cutover SQL (with row-level security on {fed} to narrow it) and set grants = \"cutover_sql\"",
                            g.privilege, other.table
                        ),
                    ));
                }
            }
        }
    }
    found
}

fn fed_list(plan: &Plan, t: &LegacyAccess) -> String {
    fed_tables(plan, &t.table)
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cutover::access::{Grant, Policy};
    use crate::source::preflight::Severity;

    fn access(plan: &Plan) -> Access {
        Access {
            tables: vec![LegacyAccess {
                table: plan.sources[0].table.clone(),
                oid: 1,
                owner: "owner".into(),
                row_security: true,
                force_row_security: false,
                grants: vec![Grant {
                    column: None,
                    grantee: "app".into(),
                    privilege: "SELECT".into(),
                    grantable: false,
                }],
                policies: vec![Policy {
                    name: "tenant".into(),
                    command: "ALL".into(),
                    permissive: true,
                    roles: vec!["PUBLIC".into()],
                    using: Some("(company_id = 1)".into()),
                    with_check: None,
                }],
            }],
        }
    }

    fn plan_with(grants: Disposition, policies: Disposition) -> Plan {
        let mut plan = Plan::load(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/transforms/legacy_to_projects/plan.toml"
        )))
        .unwrap();
        plan.cutover.dependents.grants = grants;
        plan.cutover.dependents.policies = policies;
        plan
    }

    #[test]
    fn refused_grants_and_policies_are_errors_naming_the_table_the_roles_and_the_setting() {
        let plan = plan_with(Disposition::Refuse, Disposition::Refuse);
        let f = findings(&plan, &access(&plan));
        assert_eq!(f.errors.len(), 2);
        assert!(f.errors.iter().all(
            |e| e.severity == Severity::Error && e.subject == "source.public.company_projects"
        ));
        assert!(f.errors[0].problem.contains("(app: SELECT)"));
        assert!(f.errors[0].fix.contains("set grants = \"carry\""));
        assert!(f.errors[1]
            .problem
            .contains("policies tenant (ALL TO PUBLIC USING ((company_id = 1)))"));
        assert!(f.errors[1].fix.contains("WITH (security_invoker = true)"));
        assert!(f.errors[1].fix.contains("policies = \"cutover_sql\""));
    }

    #[test]
    fn carrying_a_grant_onto_a_table_another_legacy_table_feeds_is_refused() {
        let plan = plan_with(Disposition::Carry, Disposition::CutoverSql);
        let mut a = access(&plan);
        let mut services = a.tables[0].clone();
        services.table = plan.sources[1].table.clone();
        services.grants.clear();
        a.tables.push(services);
        let f = findings(&plan, &a);
        let widened: Vec<&Finding> = f
            .errors
            .iter()
            .filter(|e| {
                e.problem
                    .contains("would grant SELECT on public.projects to app")
            })
            .collect();
        assert_eq!(widened.len(), 1, "{:?}", f.errors);
        assert!(widened[0]
            .problem
            .contains("also holds the rows of public.company_services"));
        assert!(widened[0]
            .fix
            .contains("GRANT SELECT ON public.company_services"));
        // The same grant on both legacy tables widens nothing.
        a.tables[1].grants = a.tables[0].grants.clone();
        assert!(findings(&plan, &a).errors.is_empty());
    }

    #[test]
    fn carried_and_proved_kinds_are_notes() {
        let plan = plan_with(Disposition::Carry, Disposition::CutoverSql);
        let f = findings(&plan, &access(&plan));
        assert!(f.errors.is_empty() && f.warnings.is_empty());
        assert_eq!(f.notes.len(), 2);
        assert!(f.notes[0].contains("carried by the cutover"));
        assert!(f.notes[1].contains("the cutover proves RLS and a policy on each"));
    }
}
