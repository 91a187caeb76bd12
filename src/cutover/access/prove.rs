//! The proofs run under the lock after the plan's cutover SQL, before the commit:
//! - `grants = "cutover_sql"`: every grantee of a legacy table holds the same privileges on
//!   what takes its name and on the tables it feeds (`has_table_privilege`,
//!   `has_column_privilege`, `has_sequence_privilege`:
//!   <https://www.postgresql.org/docs/15/functions-info.html#FUNCTIONS-INFO-ACCESS-TABLE>);
//! - `policies = "cutover_sql"`: every table fed by a legacy table with row-level security has
//!   it enabled (and forced where the legacy table forced it) with at least one policy, and a
//!   view that takes such a legacy name is `security_invoker` (PostgreSQL 15, `reloptions`):
//!   otherwise it reads with its owner's rights and no policy of the tables it reads applies
//!   (<https://www.postgresql.org/docs/15/sql-createview.html>).

use tokio_postgres::Client;

use super::carry::{missing_roles, new_side_grantees};
use super::swapped::{Relation, Swapped};
use super::wanted::{Side, Want};
use super::{db, AccessError, LegacyAccess};

/// Which wanted privileges are held (`holds ...`) and which are not (each with its fix).
pub(super) async fn privileges(
    wants: &[Want],
    named: &Client,
    new: &Client,
) -> Result<(Vec<String>, Vec<String>), AccessError> {
    let absent = missing_roles(new, new_side_grantees(wants))
        .await
        .map_err(db("looking up the grantees' roles"))?;
    let mut held = Vec::new();
    let mut gaps = Vec::new();
    for w in wants {
        if w.side == Side::New && absent.contains(&w.grantee) {
            gaps.push(format!(
                "role {} does not exist where the new tables are, so it lacks {} ({}): create it there and grant it in the cutover SQL",
                w.grantee,
                w.privilege_on(),
                w.why
            ));
            continue;
        }
        let client = match w.side {
            Side::Named => named,
            Side::New => new,
        };
        let role = if w.grantee == "PUBLIC" {
            "public"
        } else {
            &w.grantee
        };
        let privilege = if w.grantable {
            format!("{} WITH GRANT OPTION", w.privilege)
        } else {
            w.privilege.clone()
        };
        let row = match (&w.column, w.sequence) {
            (_, true) => {
                client
                    .query_one(
                        "SELECT has_sequence_privilege($1::name, $2::text, $3::text)",
                        &[&role, &w.object, &privilege],
                    )
                    .await
            }
            (Some(column), false) => {
                client
                    .query_one(
                        "SELECT has_column_privilege($1::name, $2::text, $3::text, $4::text)",
                        &[&role, &w.object, column, &privilege],
                    )
                    .await
            }
            (None, false) => {
                client
                    .query_one(
                        "SELECT has_table_privilege($1::name, $2::text, $3::text)",
                        &[&role, &w.object, &privilege],
                    )
                    .await
            }
        }
        .map_err(db("checking the grantees' privileges on the new objects"))?;
        if row.get::<_, bool>(0) {
            held.push(format!("holds {}", w.describe()));
        } else {
            gaps.push(format!(
                "{} lacks {} ({}): add `{};` to the cutover SQL, or set grants = \"carry\" in [cutover.dependents]",
                w.grantee,
                w.privilege_on(),
                w.why,
                w.grant_sql()
            ));
        }
    }
    Ok((held, gaps))
}

/// What holds and what does not of a legacy table's row-level security after the swap.
pub(super) fn row_security(legacy: &LegacyAccess, swapped: &Swapped) -> (Vec<String>, Vec<String>) {
    let mut held = Vec::new();
    let mut gaps = Vec::new();
    if !legacy.row_security {
        held.push(format!(
            "row-level security is disabled on {}: its policies ({}) stay with the renamed table and filter nothing",
            legacy.table,
            legacy.policies.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ")
        ));
        return (held, gaps);
    }
    let what = legacy.describe_row_security();
    let mut tables: Vec<(&Relation, String)> = swapped
        .fed
        .iter()
        .filter_map(|(_, r)| r.as_ref())
        .map(|r| (r, format!("fed by {}", legacy.table)))
        .collect();
    for (t, r) in &swapped.fed {
        if r.is_none() {
            gaps.push(format!(
                "{t} (fed by {}) was not found where the new tables are: its row-level security cannot be proved",
                legacy.table
            ));
        }
    }
    if let Some(named) = &swapped.named {
        if named.is_view() {
            if named.security_invoker {
                held.push(format!(
                    "view {} (takes the name of {}) is security_invoker: the policies of the tables it reads apply to its readers",
                    named.name, legacy.table
                ));
            } else {
                gaps.push(format!(
                    "view {0} takes the name of {1}, which has {what}, but runs with its owner's rights: whoever may read it sees every row, past the policies of the tables it reads. Create it WITH (security_invoker = true) in the cutover SQL (or add `ALTER VIEW {0} SET (security_invoker = true);`)",
                    named.name, legacy.table
                ));
            }
        } else if !tables.iter().any(|(r, _)| r.oid == named.oid) {
            tables.push((named, format!("takes the name of {}", legacy.table)));
        }
    }
    for (r, why) in tables {
        let fix = format!(
            "switchyard cannot translate {}'s USING clauses to the new columns: write the equivalent in the cutover SQL",
            legacy.table
        );
        if !r.row_security {
            gaps.push(format!(
                "{} ({why}, which has {what}) does not have row-level security enabled: add `ALTER TABLE {} ENABLE ROW LEVEL SECURITY;` and its policies (CREATE POLICY ... ON {}) to the cutover SQL; {fix}",
                r.name, r.name, r.name
            ));
        } else if r.policy_count == 0 {
            gaps.push(format!(
                "{} ({why}, which has {what}) has row-level security enabled but no policy, so only its owner sees a row: add its policies (CREATE POLICY ... ON {}) to the cutover SQL; {fix}",
                r.name, r.name
            ));
        } else if legacy.force_row_security && !r.force_row_security {
            gaps.push(format!(
                "{} ({why}) does not force row-level security as {} did, so its owner reads past the policies: add `ALTER TABLE {} FORCE ROW LEVEL SECURITY;` to the cutover SQL",
                r.name, legacy.table, r.name
            ));
        } else {
            held.push(format!(
                "{} ({why}) has row-level security enabled with {} polic{}",
                r.name,
                r.policy_count,
                if r.policy_count == 1 { "y" } else { "ies" }
            ));
        }
    }
    (held, gaps)
}
