//! Sequences the new tables draw from, moved past the highest value any column drawing from
//! them holds, so that the application's first insert after the cutover cannot collide with a
//! copied row. Which sequences: [`inventory`] (identity, serial, any `nextval` default, shared
//! or in another schema). A sequence only moves forward, and only when it must; `setval` is
//! not transactional, so an aborted cutover leaves a sequence further on, which is harmless.
//! Defaults the cutover cannot place are listed in the report, never skipped silently.

mod default_text;
mod inventory;

use serde::Serialize;
use tokio_postgres::GenericClient;

use crate::pg::ident::{quote_ident, TableName};
use crate::plan::Plan;
use crate::source::preflight::Finding;
pub use inventory::{inventory, Drawer, Inventory, Unplaced};

/// What became of one sequence.
#[derive(Debug, Clone, Serialize)]
pub struct SequenceSet {
    pub sequence: String,
    /// Every `table.column` drawing from it, output table or not.
    pub columns: Vec<String>,
    /// The next value will be past this.
    pub value: i64,
    /// Whether it had to move (`setval` ran, unless a dry run); false: it was already past
    /// every column.
    pub moved: bool,
}

/// The tables whose sequences the cutover sets: the outputs and the lookup tables.
pub fn tables_of(plan: &Plan) -> Vec<TableName> {
    let mut tables: Vec<TableName> = plan.output_tables().into_iter().cloned().collect();
    tables.extend(plan.lookups.iter().map(|l| l.table.clone()));
    tables
}

/// The largest value a column holds, as numeric text. A non-numeric column (`'INV-' ||
/// nextval('s')`) counts the largest number written in its text: at least the sequence value
/// it was made from, whatever the prefix, suffix or padding.
fn column_max_sql(d: &Drawer) -> String {
    let col = quote_ident(&d.column);
    if d.numeric {
        format!("SELECT ceil(max({col})::numeric)::text FROM {}", d.table)
    } else {
        format!(
            "SELECT max((SELECT max(m[1]::numeric) FROM regexp_matches({col}::text, '[0-9]+', 'g') m))::text
               FROM {}",
            d.table
        )
    }
}

/// Sets every sequence of `inventory` past the largest value of the columns drawing from it
/// (only `apply`ing when asked: a dry run reads and reports). Returns what was set and the
/// sequences that could not be placed.
pub async fn sync(
    client: &impl GenericClient,
    inventory: &Inventory,
    apply: bool,
) -> Result<(Vec<SequenceSet>, Vec<Unplaced>), tokio_postgres::Error> {
    let mut set = Vec::new();
    let mut unplaced = Vec::new();
    for (sequence, drawers) in &inventory.sequences {
        let mut needed: Option<String> = None;
        for d in drawers {
            let max: Option<String> = client.query_one(&column_max_sql(d), &[]).await?.get(0);
            needed = match (needed, max) {
                (Some(a), Some(b)) => Some(
                    client
                        .query_one(
                            "SELECT greatest($1::text::numeric, $2::text::numeric)::text",
                            &[&a, &b],
                        )
                        .await?
                        .get(0),
                ),
                (a, b) => a.or(b),
            };
        }
        let columns: Vec<String> = drawers
            .iter()
            .map(|d| format!("{}.{}", d.table, d.column))
            .collect();
        // `sequence` is regclass text, already quoted where needed.
        let row = client
            .query_one(
                &format!(
                    "SELECT s.last_value, s.is_called, q.seqincrement, q.seqmax,
                            $2::text::numeric > q.seqmax, least($2::text::numeric, q.seqmax)::int8
                       FROM {sequence} s, pg_sequence q WHERE q.seqrelid = $1::text::regclass"
                ),
                &[&sequence, &needed.as_deref().unwrap_or("0")],
            )
            .await?;
        let (last, called, increment, max): (i64, bool, i64, i64) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        let (over, wanted): (bool, i64) = (row.get(4), row.get(5));
        let unplace = |reason: String| Unplaced {
            column: columns.join(", "),
            default: format!("sequence {sequence}"),
            reason,
        };
        if increment < 0 {
            unplaced.push(unplace(
                "the sequence counts down: set it past the columns' smallest value yourself"
                    .to_owned(),
            ));
            continue;
        }
        if over {
            unplaced.push(unplace(format!(
                "the columns hold {}, past the sequence's maximum {max}",
                needed.unwrap_or_default()
            )));
            continue;
        }
        let current = if called { last } else { last - 1 };
        if needed.is_none() || wanted <= current {
            set.push(SequenceSet {
                sequence: sequence.clone(),
                columns,
                value: current.max(wanted),
                moved: false,
            });
            continue;
        }
        let value = if apply {
            // `greatest` again: a session outside the lock may have drawn meanwhile.
            client
                .query_one(
                    &format!(
                        "SELECT setval($1::text::regclass,
                                greatest($2::int8, (SELECT last_value FROM {sequence})))"
                    ),
                    &[&sequence, &wanted],
                )
                .await?
                .get(0)
        } else {
            wanted
        };
        set.push(SequenceSet {
            sequence: sequence.clone(),
            columns,
            value,
            moved: true,
        });
    }
    Ok((set, unplaced))
}

/// For `check`: each default whose sequence the cutover will not be able to set, with the fix.
pub async fn check(
    client: &impl GenericClient,
    plan: &Plan,
) -> Result<Vec<Finding>, tokio_postgres::Error> {
    let found = inventory(client, &tables_of(plan)).await?;
    Ok(found
        .unplaced
        .into_iter()
        .map(|u| {
            Finding::warning(
                format!("target.{}", u.column),
                format!(
                    "DEFAULT {}: {}; the cutover sets every other sequence and lists this one as not set",
                    u.default, u.reason
                ),
                "after the cutover and before writes resume, setval() the sequence past the column's largest value, or make the default call nextval('<sequence>') directly",
            )
        })
        .collect())
}
