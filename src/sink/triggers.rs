//! What the target's own triggers and rules will do to the rows switchyard writes, told by
//! `check` for every output and lookup table.
//!
//! Both paths write as `session_replication_role = replica` ([`super::replication_role`]), so
//! a trigger fires on both or on neither:
//!
//! ```text
//! ENABLE (ordinary, the default)  neither path     a column it fills keeps its default
//! ENABLE ALWAYS / ENABLE REPLICA  both paths       BEFORE INSERT OR UPDATE row triggers agree
//! DISABLE                         neither path     (not reported)
//! rules, ordinary                 neither path     (COPY applies no rules)
//! rules, ALWAYS / REPLICA         refused          COPY ignores them, the follow would not
//! ```
//! What still differs by nature is said per trigger: the backfill only inserts (UPDATE and
//! DELETE triggers fire in the follow alone), statement triggers fire per switchyard statement,
//! a group writes only the last version of each row, and a trigger the after-backfill SQL
//! creates was not there for the copy.

use std::collections::HashSet;

use tokio_postgres::GenericClient;

use crate::pg::ident::{quote_ident, TableName};
use crate::plan::Plan;
use crate::source::preflight::Finding;
use crate::transform::program::WriteMode;

// pg_trigger.tgtype bits (src/include/catalog/pg_trigger.h).
const ROW: i16 = 1 << 0;
const BEFORE: i16 = 1 << 1;
const INSERT: i16 = 1 << 2;
const DELETE: i16 = 1 << 3;
const UPDATE: i16 = 1 << 4;
const TRUNCATE: i16 = 1 << 5;
const INSTEAD: i16 = 1 << 6;

/// A user trigger or rule on a table switchyard writes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Hook {
    table: TableName,
    name: String,
    /// `tgenabled` / `ev_enabled`: O ordinary, A always, R replica, D disabled.
    enabled: char,
    /// `Some(tgtype)` for a trigger, `None` for a rule.
    trigger: Option<i16>,
    constraint: bool,
    /// Whether switchyard updates the table's rows (an upsert output).
    updated: bool,
}

/// Reads every non-internal trigger and every rule of the plan's output and lookup tables.
pub async fn read(
    client: &impl GenericClient,
    plan: &Plan,
) -> Result<Vec<Hook>, tokio_postgres::Error> {
    // (table, whether switchyard updates its rows: upsert outputs only; lookup and
    // insert-if-absent rows are written once).
    let mut tables: Vec<(&TableName, bool)> = plan
        .sources
        .iter()
        .flat_map(|s| &s.outputs)
        .map(|o| (&o.table, o.mode == WriteMode::Upsert))
        .chain(plan.lookups.iter().map(|l| (&l.table, false)))
        .collect();
    tables.sort_by(|a, b| a.0.cmp(b.0).then(b.1.cmp(&a.1)));
    tables.dedup_by(|a, b| a.0 == b.0);
    let mut hooks = Vec::new();
    for (table, updated) in tables {
        let rows = client
            .query(
                "SELECT tgname::text, tgenabled::text, tgtype, tgconstraint <> 0
                   FROM pg_trigger WHERE tgrelid = to_regclass($1) AND NOT tgisinternal
                    AND tgname::text NOT LIKE 'switchyard\\_tally\\_%'
                 UNION ALL
                 SELECT rulename::text, ev_enabled::text, NULL, false
                   FROM pg_rewrite WHERE ev_class = to_regclass($1) AND rulename <> '_RETURN'
                 ORDER BY 1",
                &[&table.quoted()],
            )
            .await?;
        for r in rows {
            let hook = Hook {
                table: table.clone(),
                name: r.get(0),
                enabled: r.get::<_, String>(1).chars().next().unwrap_or('O'),
                trigger: r.get(2),
                constraint: r.get(3),
                updated,
            };
            if !hooks.contains(&hook) {
                hooks.push(hook);
            }
        }
    }
    Ok(hooks)
}

/// Whether a BEFORE INSERT row trigger on `table` fires for switchyard's rows.
pub fn fills_inserts(hooks: &[Hook], table: &TableName) -> bool {
    hooks.iter().any(|h| {
        &h.table == table
            && matches!(h.enabled, 'A' | 'R')
            && h.trigger
                .is_some_and(|t| t & (ROW | BEFORE | INSERT) == ROW | BEFORE | INSERT)
    })
}

/// One finding per trigger or rule that fires or is skipped; `copied_with` holds the hooks
/// that existed for the copy (before the after-backfill SQL), when that is known.
pub fn report(hooks: &[Hook], copied_with: Option<&[Hook]>, found: &mut Vec<Finding>) {
    let before: Option<HashSet<(&TableName, &str)>> =
        copied_with.map(|h| h.iter().map(|h| (&h.table, h.name.as_str())).collect());
    for hook in hooks.iter().filter(|h| h.enabled != 'D') {
        let later = before
            .as_ref()
            .is_some_and(|b| !b.contains(&(&hook.table, hook.name.as_str())));
        if let Some(finding) = finding(hook, later) {
            found.push(finding);
        }
    }
}

fn finding(hook: &Hook, created_after_copy: bool) -> Option<Finding> {
    let table = hook.table.quoted();
    let name = quote_ident(&hook.name);
    let replica = if hook.enabled == 'O' {
        None
    } else {
        Some(if hook.enabled == 'A' {
            "ALWAYS"
        } else {
            "REPLICA"
        })
    };
    let Some(tgtype) = hook.trigger else {
        let subject = format!("target.{}: rule {}", hook.table, hook.name);
        return Some(match replica {
            None => Finding::warning(
                subject,
                "an ordinary rule: it applies to neither the backfill's nor the follow's rows (COPY applies no rules; both write as session_replication_role = replica, like native logical replication)",
                "nothing if migrated rows need no rewriting; otherwise replace it by a trigger and mark it ENABLE ALWAYS",
            ),
            Some(how) => Finding::error(
                subject,
                format!("an ENABLE {how} rule: the backfill's COPY never applies rules, the follow's statements would, so the two paths would write different rows (and INSERT ... ON CONFLICT refuses a table with INSERT or UPDATE rules)"),
                format!("ALTER TABLE {table} ENABLE RULE {name}; (then it applies to neither path), or replace it by a trigger marked ENABLE ALWAYS"),
            ),
        });
    };
    let kind = describe(tgtype, hook.constraint);
    let subject = format!("target.{}: trigger {}", hook.table, hook.name);
    let Some(how) = replica else {
        let lost = if tgtype & (ROW | BEFORE) == ROW | BEFORE {
            "a value it sets in NEW keeps the column's default for every migrated row"
        } else {
            "what it does (an audit row, a counter) does not happen for migrated rows"
        };
        return Some(Finding::warning(
            subject,
            format!("{kind}, ordinary (ENABLE): it fires for neither the backfill nor the follow, which write as session_replication_role = replica like native logical replication; {lost}"),
            format!("if migrated rows need it: ALTER TABLE {table} ENABLE ALWAYS TRIGGER {name};"),
        ));
    };
    let mut notes = vec![format!(
        "{kind}, ENABLE {how}: it fires for the backfill's and the follow's rows alike"
    )];
    let events = tgtype & (INSERT | UPDATE | DELETE | TRUNCATE);
    let mut fix = "nothing if that is intended".to_owned();
    if created_after_copy {
        notes.push("but the after-backfill SQL creates it, so the copied rows never met it".into());
        fix = "create it in the before-backfill SQL".into();
    }
    if tgtype & ROW != 0 && events & INSERT == 0 && events & UPDATE != 0 {
        notes.push(
            "the backfill only inserts, so only rows the follow updates get what it sets".into(),
        );
        fix = format!("add INSERT to its events (CREATE OR REPLACE TRIGGER {name} BEFORE INSERT OR UPDATE ...)");
    } else if tgtype & (ROW | BEFORE) == ROW | BEFORE
        && events & UPDATE == 0
        && events & INSERT != 0
    {
        notes.push("a row the follow updates keeps what it set at the row's insert".into());
        fix = format!("add UPDATE to its events (CREATE OR REPLACE TRIGGER {name} BEFORE INSERT OR UPDATE ...)");
    }
    if events & DELETE != 0 {
        notes.push("DELETE fires in the follow only (the backfill never deletes)".into());
    }
    if events & TRUNCATE != 0 {
        notes.push("TRUNCATE never fires (switchyard never truncates the table)".into());
    }
    if tgtype & ROW == 0 {
        notes.push("a statement trigger fires once per switchyard statement (a chunk's COPY, a group's merge or delete), not once per source statement".into());
    } else if tgtype & BEFORE == 0 {
        notes.push("the follow writes only the last version of each row of a group, so versions in between are not seen".into());
    }
    Some(Finding::warning(subject, notes.join("; "), fix))
}

/// `BEFORE INSERT OR UPDATE FOR EACH ROW`, as CREATE TRIGGER spells it.
fn describe(tgtype: i16, constraint: bool) -> String {
    let timing = if tgtype & INSTEAD != 0 {
        "INSTEAD OF"
    } else if tgtype & BEFORE != 0 {
        "BEFORE"
    } else {
        "AFTER"
    };
    let events: Vec<&str> = [
        (INSERT, "INSERT"),
        (UPDATE, "UPDATE"),
        (DELETE, "DELETE"),
        (TRUNCATE, "TRUNCATE"),
    ]
    .iter()
    .filter(|(bit, _)| tgtype & bit != 0)
    .map(|(_, name)| *name)
    .collect();
    let level = if tgtype & ROW != 0 {
        "ROW"
    } else {
        "STATEMENT"
    };
    let constraint = if constraint {
        "constraint trigger, "
    } else {
        ""
    };
    format!(
        "{constraint}{timing} {} FOR EACH {level}",
        events.join(" OR ")
    )
}
