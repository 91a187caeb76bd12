//! What the application's roles need after the swap, derived from a legacy table's grants and
//! what the catalog holds once the plan's cutover SQL ran: the same privileges on what now
//! takes the legacy name and on every table the legacy table feeds, plus what those need to be
//! usable (SELECT on lookup tables, SELECT on what a `security_invoker` view reads, USAGE on
//! the sequences of the fed tables' defaults for INSERT). Identity columns need no USAGE:
//! <https://www.postgresql.org/docs/15/sql-grant.html>.

use crate::pg::ident::{quote_ident, TableName};
use crate::plan::Plan;
use crate::transform::expr::Expr;
use crate::transform::program::SourcePlan;

use super::swapped::Swapped;
use super::LegacyAccess;

/// Where a privilege goes: what takes the legacy name, or the new tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Named,
    New,
}

/// One privilege a role should hold after the swap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Want {
    pub side: Side,
    /// regclass text of the table, view or sequence.
    pub object: String,
    pub sequence: bool,
    pub column: Option<String>,
    pub privilege: String,
    /// A role name or `PUBLIC`.
    pub grantee: String,
    pub grantable: bool,
    /// Why: "takes the name of ...", "fed by ...".
    pub why: String,
}

impl Want {
    /// `GRANT SELECT (name) ON TABLE projects TO "app" WITH GRANT OPTION`.
    pub fn grant_sql(&self) -> String {
        format!(
            "GRANT {}{} ON {} {} TO {}{}",
            self.privilege,
            self.column
                .as_deref()
                .map(|c| format!(" ({})", quote_ident(c)))
                .unwrap_or_default(),
            if self.sequence { "SEQUENCE" } else { "TABLE" },
            self.object,
            grantee_sql(&self.grantee),
            if self.grantable {
                " WITH GRANT OPTION"
            } else {
                ""
            }
        )
    }

    /// `SELECT (name) on projects`.
    pub fn privilege_on(&self) -> String {
        format!(
            "{}{} on {}{}",
            self.privilege,
            self.column
                .as_deref()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default(),
            self.object,
            if self.grantable {
                " with grant option"
            } else {
                ""
            },
        )
    }

    /// `SELECT (name) on projects to app (fed by public.company_projects)`.
    pub fn describe(&self) -> String {
        format!("{} to {} ({})", self.privilege_on(), self.grantee, self.why)
    }
}

/// `PUBLIC` is a keyword, anything else a role name.
pub(super) fn grantee_sql(grantee: &str) -> String {
    if grantee == "PUBLIC" {
        "PUBLIC".to_owned()
    } else {
        quote_ident(grantee)
    }
}

const READ_OR_WRITE: [&str; 4] = ["SELECT", "INSERT", "UPDATE", "DELETE"];

/// Every privilege the legacy table's grantees should hold after the swap, each once.
/// Column grants go to the same column of what takes the name, and to the fed tables' columns
/// that copy that source column unchanged; a column grant that maps to no fed column is left
/// out here and reported by [`unmapped_columns`].
pub(super) fn privileges(plan: &Plan, legacy: &LegacyAccess, swapped: &Swapped) -> Vec<Want> {
    let mut wants: Vec<Want> = Vec::new();
    let mut add = |w: Want| match wants.iter_mut().find(|x| {
        x.object == w.object
            && x.column == w.column
            && x.privilege == w.privilege
            && x.grantee == w.grantee
    }) {
        Some(x) => x.grantable |= w.grantable,
        None => wants.push(w),
    };
    let sources: Vec<&SourcePlan> = plan
        .sources
        .iter()
        .filter(|s| s.table == legacy.table)
        .collect();
    let takes_name = format!("takes the name of {}", legacy.table);
    let fed_by = format!("fed by {}", legacy.table);
    for g in &legacy.grants {
        let want =
            |side: Side, object: &str, column: Option<String>, privilege: &str, why: &str| Want {
                side,
                object: object.to_owned(),
                sequence: false,
                column,
                privilege: privilege.to_owned(),
                grantee: g.grantee.clone(),
                grantable: g.grantable,
                why: why.to_owned(),
            };
        if let Some(named) = &swapped.named {
            match &g.column {
                None => add(want(
                    Side::Named,
                    &named.name,
                    None,
                    &g.privilege,
                    &takes_name,
                )),
                Some(c) if named.columns.contains(c) => add(want(
                    Side::Named,
                    &named.name,
                    Some(c.clone()),
                    &g.privilege,
                    &takes_name,
                )),
                Some(_) => {}
            }
        }
        for (table, rel) in &swapped.fed {
            let Some(rel) = rel else { continue };
            match &g.column {
                None => add(want(Side::New, &rel.name, None, &g.privilege, &fed_by)),
                Some(c) => {
                    for column in copied_columns(&sources, table, c) {
                        add(want(
                            Side::New,
                            &rel.name,
                            Some(column),
                            &g.privilege,
                            &fed_by,
                        ));
                    }
                }
            }
            if g.column.is_none() && g.privilege == "INSERT" {
                for s in &rel.sequences {
                    let mut w = want(
                        Side::New,
                        s,
                        None,
                        "USAGE",
                        &format!("a default of {} draws from it", rel.name),
                    );
                    w.sequence = true;
                    add(w);
                }
            }
        }
        if g.column.is_none() && READ_OR_WRITE.contains(&g.privilege.as_str()) {
            for l in &swapped.lookups {
                add(want(
                    Side::New,
                    &l.name,
                    None,
                    "SELECT",
                    &format!("a lookup of {}'s rows", legacy.table),
                ));
            }
        }
        if g.column.is_none() && g.privilege == "SELECT" {
            if let Some(named) = swapped
                .named
                .as_ref()
                .filter(|n| n.is_view() && n.security_invoker)
            {
                let why = format!("read by the security_invoker view {}", named.name);
                for read in &named.reads {
                    add(want(Side::Named, read, None, "SELECT", &why));
                }
            }
        }
    }
    wants
}

/// Column grants of the legacy table that reach no column of the fed tables (the column is
/// transformed, not copied): the operator's to grant.
pub(super) fn unmapped_columns(
    plan: &Plan,
    legacy: &LegacyAccess,
    swapped: &Swapped,
) -> Vec<String> {
    let sources: Vec<&SourcePlan> = plan
        .sources
        .iter()
        .filter(|s| s.table == legacy.table)
        .collect();
    legacy
        .grants
        .iter()
        .filter_map(|g| {
            let c = g.column.as_ref()?;
            let reached = swapped
                .fed
                .iter()
                .any(|(t, _)| !copied_columns(&sources, t, c).is_empty());
            (!reached).then(|| {
                format!(
                    "{} ({c}) on {} to {}: the column is transformed, not copied, into the new tables; grant what it became yourself",
                    g.privilege, legacy.table, g.grantee
                )
            })
        })
        .collect()
}

/// The columns of `table` whose expression is the source column `column` itself.
fn copied_columns(sources: &[&SourcePlan], table: &TableName, column: &str) -> Vec<String> {
    let mut out = Vec::new();
    for s in sources {
        for o in s.outputs.iter().filter(|o| &o.table == table) {
            for (name, e) in o.columns.iter().zip(&o.exprs) {
                if matches!(e, Expr::Column(i) if s.columns.get(*i).map(String::as_str) == Some(column))
                    && !out.contains(name)
                {
                    out.push(name.clone());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cutover::access::fed_tables;
    use crate::cutover::access::swapped::Relation;
    use crate::cutover::access::Grant;
    use crate::plan::seed_plan;

    fn relation(name: &str, relkind: &str) -> Relation {
        Relation {
            oid: 1,
            name: name.to_owned(),
            relkind: relkind.to_owned(),
            row_security: false,
            force_row_security: false,
            policy_count: 0,
            security_invoker: true,
            columns: vec!["id".into(), "title".into()],
            reads: vec!["tasks".into(), "projects".into(), "task_statuses".into()],
            sequences: vec!["tasks_no_seq".into()],
        }
    }

    fn grant(column: Option<&str>, privilege: &str) -> Grant {
        Grant {
            column: column.map(str::to_owned),
            grantee: "app".into(),
            privilege: privilege.into(),
            grantable: false,
        }
    }

    fn wanted(grants: Vec<Grant>) -> Vec<String> {
        let plan = seed_plan();
        let table = plan.sources[2].table.clone();
        let legacy = LegacyAccess {
            table: table.clone(),
            oid: 2,
            owner: "owner".into(),
            row_security: false,
            force_row_security: false,
            grants,
            policies: Vec::new(),
        };
        let swapped = Swapped {
            named: Some(relation("vortex_items", "v")),
            name_free: false,
            fed: fed_tables(&plan, &table)
                .into_iter()
                .map(|t| (t.clone(), Some(relation(&t.name, "r"))))
                .collect(),
            lookups: vec![relation("task_statuses", "r")],
        };
        privileges(&plan, &legacy, &swapped)
            .iter()
            .map(Want::grant_sql)
            .collect()
    }

    #[test]
    fn select_reaches_the_view_the_fed_tables_the_lookups_and_what_the_view_reads() {
        assert_eq!(
            wanted(vec![grant(None, "SELECT")]),
            [
                "GRANT SELECT ON TABLE vortex_items TO \"app\"",
                "GRANT SELECT ON TABLE tasks TO \"app\"",
                "GRANT SELECT ON TABLE sub_tasks TO \"app\"",
                "GRANT SELECT ON TABLE task_statuses TO \"app\"",
                "GRANT SELECT ON TABLE projects TO \"app\"",
            ]
        );
    }

    #[test]
    fn insert_brings_usage_on_the_defaults_sequences() {
        let sql = wanted(vec![grant(None, "INSERT")]);
        assert!(sql.contains(&"GRANT USAGE ON SEQUENCE tasks_no_seq TO \"app\"".to_owned()));
        assert!(sql.contains(&"GRANT INSERT ON TABLE tasks TO \"app\"".to_owned()));
    }

    #[test]
    fn column_grants_follow_columns_copied_unchanged() {
        // `title = "title"` in both outputs; the view has a `title` column too.
        assert_eq!(
            wanted(vec![grant(Some("title"), "SELECT")]),
            [
                "GRANT SELECT (\"title\") ON TABLE vortex_items TO \"app\"",
                "GRANT SELECT (\"title\") ON TABLE tasks TO \"app\"",
                "GRANT SELECT (\"title\") ON TABLE sub_tasks TO \"app\"",
            ]
        );
    }
}
