//! Writes made to the new tables since the cutover, which a rollback leaves behind (nothing
//! copies them back to the legacy tables). The cutover records a boundary under the lock,
//! after the fence was applied: every row written since carries an `xmin` at or after it.
//!
//! ```text
//!  cutover (under the lock)   boundary = next xid on the target (pg_snapshot_xmax), and
//!                             n_tup_ins/upd/del of every output and lookup table
//!  rollback                   per table: rows whose xmin is at or after the boundary
//!                             (inserted or updated since), and n_tup_del's growth (deleted
//!                             since, approximate)
//! ```
//!
//! xids are 32 bits and wrap around, so rows are compared by `age()`, which counts back from
//! the current xid and gives frozen rows the largest age
//! (<https://www.postgresql.org/docs/current/routine-vacuuming.html#VACUUM-FOR-WRAPAROUND>).
//! A row frozen since (after vacuum_freeze_min_age transactions) no longer counts; past 2^31
//! transactions nothing can be told apart, and the count is reported as unknown. Deletes leave
//! no row to look at: the cumulative statistics are the only witness, reported with a delay and
//! reset by `pg_stat_reset()`, hence approximate
//! (<https://www.postgresql.org/docs/current/monitoring-stats.html>).

use serde::{Deserialize, Serialize};
use tokio_postgres::GenericClient;

use crate::pg::ident::TableName;

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
    pub n_tup_ins: i64,
    pub n_tup_upd: i64,
    pub n_tup_del: i64,
}

/// What was written to one table since the cutover.
#[derive(Debug, Clone)]
pub struct WrittenSince {
    pub table: TableName,
    /// Rows inserted or updated since; `None` when it cannot be told (wraparound).
    pub written: Option<i64>,
    /// Rows deleted since, from the statistics; `None` when they were reset.
    pub deleted: Option<i64>,
}

impl WrittenSince {
    /// Whether a rollback would leave writes behind (or cannot tell).
    pub fn any(&self) -> bool {
        self.written != Some(0) || self.deleted != Some(0)
    }
}

impl std::fmt::Display for WrittenSince {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.written {
            Some(n) => write!(f, "{}: {n} rows inserted or updated", self.table)?,
            None => write!(
                f,
                "{}: rows inserted or updated cannot be counted (more than 2^31 transactions since the cutover)",
                self.table
            )?,
        }
        match self.deleted {
            Some(n) => write!(f, ", about {n} deleted (from the statistics, approximate)"),
            None => write!(f, ", deletes unknown (the statistics were reset)"),
        }
    }
}

/// The largest xid distance `age()` can tell apart.
const AGE_HORIZON: u64 = (1 << 31) - 1;

async fn next_xid(client: &impl GenericClient) -> Result<u64, tokio_postgres::Error> {
    let text: String = client
        .query_one(
            "SELECT pg_snapshot_xmax(pg_current_snapshot())::text",
            &[],
        )
        .await?
        .get(0);
    Ok(text.parse().expect("an xid8 prints as an unsigned integer"))
}

async fn stats(
    client: &impl GenericClient,
    table: &TableName,
) -> Result<(i64, i64, i64), tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT coalesce(sum(n_tup_ins), 0)::int8, coalesce(sum(n_tup_upd), 0)::int8,
                    coalesce(sum(n_tup_del), 0)::int8
               FROM pg_stat_all_tables WHERE relid = to_regclass($1)",
            &[&table.quoted()],
        )
        .await?;
    Ok((row.get(0), row.get(1), row.get(2)))
}

/// Takes the boundary on the target; `tables` are the output and lookup tables.
pub async fn take(
    client: &impl GenericClient,
    tables: &[TableName],
) -> Result<WritesBoundary, tokio_postgres::Error> {
    let next_xid = next_xid(client).await?;
    let mut recorded = Vec::new();
    for t in tables {
        let (n_tup_ins, n_tup_upd, n_tup_del) = stats(client, t).await?;
        recorded.push(TableStats {
            schema: t.schema.clone(),
            name: t.name.clone(),
            n_tup_ins,
            n_tup_upd,
            n_tup_del,
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
        let written = if comparable {
            let n: i64 = client
                .query_one(
                    &format!(
                        "SELECT count(*) FROM {} WHERE age(xmin) <= age($1::text::xid)",
                        table.quoted()
                    ),
                    &[&xid32],
                )
                .await?
                .get(0);
            Some(n)
        } else {
            None
        };
        let (_, _, n_tup_del) = stats(client, &table).await?;
        let deleted = (n_tup_del >= t.n_tup_del).then_some(n_tup_del - t.n_tup_del);
        counted.push(WrittenSince {
            table,
            written,
            deleted,
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
