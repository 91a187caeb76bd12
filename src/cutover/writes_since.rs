//! Writes made to the new tables since the cutover, which a rollback leaves behind (nothing
//! copies them back to the legacy tables). The cutover records a boundary under the lock,
//! after the fence was applied and before anyone else could write to the new tables: every
//! row version written since carries an `xmin` at or after it.
//!
//! ```text
//!  cutover (under the lock)   boundary = next xid on the target (pg_snapshot_xmax); per
//!                             output and lookup table: its row count (exact: nothing else
//!                             writes there yet) and n_tup_del
//!  rollback                   per table:
//!                             written = rows whose xmin is at or after the boundary
//!                                       (inserted or updated since)
//!                             changed = rows at the cutover - rows older than the boundary
//!                                       (rows of the cutover updated or deleted since)
//!                             deleted = growth of n_tup_del (approximate, for the operator)
//! ```
//!
//! `written` and `changed` decide (both exact); the statistics only split `changed` into
//! updates and deletes for the message: they are reported with a delay of up to seconds and
//! reset by `pg_stat_reset()` (<https://www.postgresql.org/docs/current/monitoring-stats.html>).
//!
//! xids are 32 bits and wrap around, so rows are compared by `age()`, which counts back from
//! the current xid and gives frozen rows the largest age
//! (<https://www.postgresql.org/docs/current/routine-vacuuming.html#VACUUM-FOR-WRAPAROUND>).
//! A row written since and frozen since (after vacuum_freeze_min_age transactions) passes for
//! an old one; past 2^31 transactions nothing can be told apart, and the counts are reported
//! as unknown.

use serde::{Deserialize, Serialize};
use tokio_postgres::GenericClient;

use crate::pg::ident::TableName;

use super::counts::CountResult;

/// Where the target stood under the cutover's lock, kept in the cutover report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WritesBoundary {
    /// The first xid (64-bit, with epoch) not yet assigned when the boundary was taken.
    pub next_xid: u64,
    pub tables: Vec<TableStats>,
}

/// A table's cumulative statistics at the boundary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableStats {
    pub schema: String,
    pub name: String,
    /// Rows in the table at the boundary.
    pub rows: i64,
    pub n_tup_del: i64,
}

/// What was written to one table since the cutover.
#[derive(Debug, Clone)]
pub struct WrittenSince {
    pub table: TableName,
    /// Rows inserted or updated since; `None` when it cannot be told (wraparound).
    pub written: Option<i64>,
    /// Rows there at the cutover and updated or deleted since; `None` when it cannot be told
    /// (wraparound, or rows written since were frozen).
    pub changed: Option<i64>,
    /// Rows deleted since, from the statistics (approximate); `None` when they were reset.
    pub deleted: Option<i64>,
}

impl WrittenSince {
    /// Whether a rollback would leave writes behind (or cannot tell).
    pub fn any(&self) -> bool {
        self.written != Some(0) || self.changed != Some(0)
    }
}

impl std::fmt::Display for WrittenSince {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (Some(written), Some(changed)) = (self.written, self.changed) else {
            return write!(
                f,
                "{}: cannot be counted (more than 2^31 transactions since the cutover, or rows frozen since)",
                self.table
            );
        };
        write!(
            f,
            "{}: {written} rows inserted or updated since the cutover, {changed} rows of the cutover updated or deleted since",
            self.table
        )?;
        match self.deleted {
            Some(n) => write!(f, " (about {n} deleted, from the statistics)"),
            None => Ok(()),
        }
    }
}

/// The largest xid distance `age()` can tell apart.
const AGE_HORIZON: u64 = (1 << 31) - 1;

async fn next_xid(client: &impl GenericClient) -> Result<u64, tokio_postgres::Error> {
    let text: String = client
        .query_one("SELECT pg_snapshot_xmax(pg_current_snapshot())::text", &[])
        .await?
        .get(0);
    Ok(text.parse().expect("an xid8 prints as an unsigned integer"))
}

async fn deleted(
    client: &impl GenericClient,
    table: &TableName,
) -> Result<i64, tokio_postgres::Error> {
    Ok(client
        .query_one(
            "SELECT coalesce(sum(n_tup_del), 0)::int8 FROM pg_stat_all_tables
              WHERE relid = to_regclass($1)",
            &[&table.quoted()],
        )
        .await?
        .get(0))
}

/// Takes the boundary on the target, under the lock; `tables` are the output and lookup
/// tables, `counted` the row counts the cutover already took of some (by display name).
pub async fn take(
    client: &impl GenericClient,
    tables: &[TableName],
    counted: &[CountResult],
) -> Result<WritesBoundary, tokio_postgres::Error> {
    let next_xid = next_xid(client).await?;
    let mut recorded = Vec::new();
    for t in tables {
        let name = t.to_string();
        let rows = match counted.iter().find(|c| c.table == name) {
            Some(c) => c.actual,
            None => client
                .query_one(&format!("SELECT count(*) FROM {}", t.quoted()), &[])
                .await?
                .get(0),
        };
        recorded.push(TableStats {
            schema: t.schema.clone(),
            name: t.name.clone(),
            rows,
            n_tup_del: deleted(client, t).await?,
        });
    }
    Ok(WritesBoundary {
        next_xid,
        tables: recorded,
    })
}

/// Counts, per table of the boundary, what was written since.
pub async fn count(
    client: &impl GenericClient,
    boundary: &WritesBoundary,
) -> Result<Vec<WrittenSince>, tokio_postgres::Error> {
    let now = next_xid(client).await?;
    let comparable = now.saturating_sub(boundary.next_xid) < AGE_HORIZON;
    // The 32-bit xid of the boundary; the special xids below 3 are never assigned to rows.
    let xid32 = (boundary.next_xid % (1 << 32)).max(3).to_string();
    let mut counted = Vec::new();
    for t in &boundary.tables {
        let table = TableName {
            schema: t.schema.clone(),
            name: t.name.clone(),
        };
        let (written, changed) = if comparable {
            let row = client
                .query_one(
                    &format!(
                        "SELECT count(*) FILTER (WHERE age(xmin) <= age($1::text::xid)),
                                count(*) FILTER (WHERE age(xmin) > age($1::text::xid))
                           FROM {}",
                        table.quoted()
                    ),
                    &[&xid32],
                )
                .await?;
            let (written, older): (i64, i64) = (row.get(0), row.get(1));
            // More old rows than at the cutover: rows written since were frozen.
            (Some(written), (older <= t.rows).then_some(t.rows - older))
        } else {
            (None, None)
        };
        let n_tup_del = deleted(client, &table).await?;
        counted.push(WrittenSince {
            table,
            written,
            changed,
            deleted: (n_tup_del >= t.n_tup_del).then_some(n_tup_del - t.n_tup_del),
        });
    }
    Ok(counted)
}

/// The tables the new application writes: every output and lookup table, once each.
pub fn tables_of(plan: &crate::plan::Plan) -> Vec<TableName> {
    let mut tables: Vec<TableName> = plan
        .sources
        .iter()
        .flat_map(|s| s.outputs.iter().map(|o| o.table.clone()))
        .chain(plan.lookups.iter().map(|l| l.table.clone()))
        .collect();
    tables.sort();
    tables.dedup();
    tables
}
