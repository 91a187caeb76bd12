//! Counts taken before the lock and carried forward to the fence, so that nothing under the
//! lock reads in proportion to a table's size.
//!
//! ```text
//!  source   temporary slot, consistent point L, exported snapshot S
//!           expected(L): the count queries, in S (one session per source table, kept open)
//!           changed keys K: the slot's stream from L to the fence ([`super::changed_keys`])
//!           expected(F) = expected(L) - rows under K in S + rows under K now
//!  target   triggers tally every statement's rows ([`super::tally`])
//!           rows(F) = count(*) at the baseline + the tally's growth since
//! ```
//! Under the lock this costs one index lookup per changed key and one small read of the tally.
//! Whatever cannot be carried forward (no baseline, no key, a TRUNCATE, no trigger) is counted
//! by a scan under the lock, and the report's step says so.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

use crate::error::Chain;
use crate::pg::connect::connect;
use crate::pg::conninfo::ConnInfo;
use crate::pg::ident::{quote_literal, TableName};
use crate::source::fence::Fence;
use crate::source::replication::ReplicationConnection;
use crate::source::wal_stream::WalStream;

use super::changed_keys::{ChangedKeys, KeyColumns, TableKeys};
use super::counts::CountPlan;
use super::tally;

/// How long the temporary slot may take to become consistent (it waits for the transactions
/// running when it is created). Past it, the source is counted by a scan under the lock.
pub const SLOT_TIMEOUT: Duration = Duration::from_secs(10);

/// Both sides' baselines, taken before the lock.
pub struct Baselines {
    /// `None` when the source could not get one: it is scanned under the lock.
    pub source: Option<SourceBaseline>,
    /// The tables the tally carries, with their baselines (the others are scanned).
    pub target: BTreeMap<String, tally::Baseline>,
    /// Every output and lookup table.
    pub tables: Vec<TableName>,
}

/// The source's counts at the temporary slot's consistent point, and what carries them on.
pub struct SourceBaseline {
    /// In a transaction that imported the slot's snapshot and exports it again as `snapshot`,
    /// holding it for the cutover's duration, and no lock: it reads no table. (A session that
    /// read the tables would hold their ACCESS SHARE locks against the swap.)
    _holder: Client,
    snapshot: String,
    /// One session per count query; each reads in `snapshot` and commits at once.
    snapshots: Vec<Client>,
    keys: Vec<KeyColumns>,
    /// Per count query, its counts at the snapshot.
    counted: Vec<BTreeMap<String, i64>>,
    reader: ChangedKeys,
}

/// How the counts at the fence were had, for the report.
#[derive(Debug, Default)]
pub struct Carried {
    /// Keys looked up, over all source tables.
    pub keys: usize,
    /// Tables counted by a scan under the lock, with why.
    pub scanned: Vec<(String, String)>,
}

impl Carried {
    /// What the step read, for the report and `--dry-run`.
    pub fn describe(&self) -> String {
        if self.scanned.is_empty() {
            return format!(
                "changed rows: {} keys looked up, no table scanned",
                self.keys
            );
        }
        let scanned: Vec<String> = self
            .scanned
            .iter()
            .map(|(t, why)| format!("{t} ({why})"))
            .collect();
        format!(
            "TABLE SIZE: scanned {}; {} keys looked up",
            scanned.join(", "),
            self.keys
        )
    }
}

/// Takes the source's baseline: a temporary slot, its snapshot imported by one session per
/// count query, the counts in it, and the reader of the keys changed since.
pub async fn source(
    info: &ConnInfo,
    catalog: &Client,
    counts: &CountPlan,
    slot: &str,
    publication: &str,
    migration: &str,
) -> Result<SourceBaseline, String> {
    let keys = key_columns(catalog, counts)
        .await
        .map_err(|e| format!("reading the source tables' keys: {}", Chain::new(&e)))?;
    let mut connection = ReplicationConnection::connect(info)
        .await
        .map_err(|e| Chain::new(&e).to_string())?;
    let created = tokio::time::timeout(
        SLOT_TIMEOUT,
        connection.create_temporary_slot_exporting_snapshot(slot),
    )
    .await
    .map_err(|_| {
        format!("a temporary slot did not become consistent within {SLOT_TIMEOUT:?} (a long transaction is open on the source)")
    })?
    .map_err(|e| format!("creating a temporary slot: {}", Chain::new(&e)))?;
    let holder = connect(info, "switchyard cutover snapshot")
        .await
        .map_err(|e| Chain::new(&e).to_string())?;
    let exported: String = async {
        holder
            .batch_execute(&format!(
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT {}",
                quote_literal(&created.snapshot_name)
            ))
            .await?;
        holder
            .query_one("SELECT pg_export_snapshot()", &[])
            .await
            .map(|r| r.get(0))
    }
    .await
    .map_err(|e| format!("holding the slot's snapshot: {}", Chain::new(&e)))?;
    let mut snapshots = Vec::new();
    for _ in &counts.source_queries {
        snapshots.push(
            connect(info, "switchyard cutover")
                .await
                .map_err(|e| Chain::new(&e).to_string())?,
        );
    }
    let stream = WalStream::start_on(connection, slot, publication, created.consistent_point)
        .await
        .map_err(|e| format!("streaming the temporary slot: {}", Chain::new(&e)))?;
    let reader = ChangedKeys::start(stream, keys.clone(), migration.to_owned());
    let counted = futures_util::future::try_join_all(
        counts.source_queries.iter().zip(&snapshots).map(|(q, s)| {
            let exported = &exported;
            async move {
                let row = in_snapshot(s, exported, &q.scan_sql(), &[]).await?;
                let mut counted = BTreeMap::new();
                q.add(&row, 1, &mut counted);
                Ok::<_, tokio_postgres::Error>(counted)
            }
        }),
    )
    .await
    .map_err(|e| format!("counting the source in the snapshot: {}", Chain::new(&e)))?;
    Ok(SourceBaseline {
        _holder: holder,
        snapshot: exported,
        snapshots,
        keys,
        counted,
        reader,
    })
}

impl SourceBaseline {
    /// The expected rows per output at `fence` (the source can no longer change): the
    /// baseline, minus the changed keys' rows in the snapshot, plus their rows now (read on
    /// `now`, one session per count query). A table the keys do not cover is scanned on `now`.
    pub async fn at_fence(
        &self,
        counts: &CountPlan,
        now: &[Client],
        fence: &Fence,
        limit: Duration,
    ) -> Result<(BTreeMap<String, i64>, Carried), tokio_postgres::Error> {
        let tables = match self.reader.through(fence, limit).await {
            Ok(tables) => tables,
            Err(why) => counts
                .source_queries
                .iter()
                .map(|_| TableKeys {
                    unreadable: Some(why.clone()),
                    ..TableKeys::default()
                })
                .collect(),
        };
        let per_table = counts.source_queries.iter().enumerate().map(|(i, q)| {
            let (table, snapshot, now) = (&tables[i], &self.snapshots[i], &now[i]);
            let (key, baseline) = (&self.keys[i].columns, &self.counted[i]);
            let exported = &self.snapshot;
            async move {
                let mut expected = BTreeMap::new();
                if table.unreadable.is_some() {
                    let row = now.query_one(q.scan_sql().as_str(), &[]).await?;
                    q.add(&row, 1, &mut expected);
                    return Ok::<_, tokio_postgres::Error>(expected);
                }
                for (t, n) in baseline {
                    expected.insert(t.clone(), *n);
                }
                if table.keys.is_empty() {
                    return Ok(expected);
                }
                let mut columns: Vec<Vec<&str>> = vec![Vec::new(); key.len()];
                for k in &table.keys {
                    for (column, value) in columns.iter_mut().zip(k) {
                        column.push(value.as_str());
                    }
                }
                let params: Vec<&(dyn ToSql + Sync)> =
                    columns.iter().map(|c| c as &(dyn ToSql + Sync)).collect();
                let sql = q.lookup_sql(key);
                let (then, later) = tokio::try_join!(
                    in_snapshot(snapshot, exported, &sql, &params),
                    now.query_one(sql.as_str(), &params)
                )?;
                q.add(&then, -1, &mut expected);
                q.add(&later, 1, &mut expected);
                Ok(expected)
            }
        });
        let counted = futures_util::future::try_join_all(per_table).await?;
        let mut expected = BTreeMap::new();
        let mut carried = Carried::default();
        for (i, table_counts) in counted.into_iter().enumerate() {
            for (t, n) in table_counts {
                *expected.entry(t).or_insert(0) += n;
            }
            match &tables[i].unreadable {
                Some(why) => carried
                    .scanned
                    .push((counts.source_queries[i].table.to_string(), why.clone())),
                None => carried.keys += tables[i].keys.len(),
            }
        }
        Ok((expected, carried))
    }
}

/// Runs `sql` in a transaction of its own that imported `snapshot`, and commits it (so no
/// lock outlives the query).
async fn in_snapshot(
    client: &Client,
    snapshot: &str,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<tokio_postgres::Row, tokio_postgres::Error> {
    client
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT {}",
            quote_literal(snapshot)
        ))
        .await?;
    let row = client.query_one(sql, params).await;
    client.batch_execute("COMMIT").await?;
    row
}

/// Each count query's table's replica identity key (the primary key, or the index REPLICA
/// IDENTITY USING INDEX names): the columns the WAL identifies its rows by. Empty for FULL or
/// NOTHING, or no key at all.
async fn key_columns(
    client: &Client,
    counts: &CountPlan,
) -> Result<Vec<KeyColumns>, tokio_postgres::Error> {
    let mut all = Vec::new();
    for q in &counts.source_queries {
        let rows = client
            .query(
                "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod)
                   FROM pg_class c
                   JOIN pg_index i ON i.indrelid = c.oid
                    AND CASE c.relreplident WHEN 'd' THEN i.indisprimary
                                            WHEN 'i' THEN i.indisreplident ELSE false END
                   JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n) ON true
                   JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
                  WHERE c.oid = to_regclass($1)
                  ORDER BY k.n",
                &[&q.table.quoted()],
            )
            .await?;
        all.push(KeyColumns {
            table: q.table.clone(),
            columns: rows.iter().map(|r| (r.get(0), r.get(1))).collect(),
        });
    }
    Ok(all)
}

/// A temporary slot's name: unique per cutover process and attempt, as slot names allow
/// (lower-case letters, digits, underscores; at most 63 bytes).
pub fn temporary_slot_name() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "{}{}",
        temporary_slot_prefix(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// What every temporary slot of this process's name starts with.
pub fn temporary_slot_prefix() -> String {
    format!("switchyard_cutover_{}_", std::process::id())
}

/// Rows per table at the fence on the target: the baseline carried forward by the tally, or a
/// scan (on `sessions`, one per table) for a table without triggers or truncated since.
pub async fn target_at_fence(
    tally_session: &Client,
    sessions: &[Client],
    migration: &str,
    tables: &[TableName],
    baseline: &BTreeMap<String, tally::Baseline>,
    carried: &mut Carried,
) -> Result<BTreeMap<String, i64>, tokio_postgres::Error> {
    let sums = tally::sums(tally_session, migration).await?;
    let mut rows = BTreeMap::new();
    let mut scan = Vec::new();
    for table in tables {
        let name = table.to_string();
        match (baseline.get(&name), sums.get(&name)) {
            (Some(base), None) => {
                rows.insert(name, base.rows);
            }
            (Some(base), Some(Some(sum))) => {
                rows.insert(name, base.rows + sum - base.tally);
            }
            (Some(_), Some(None)) => scan.push((table, "truncated during the cutover")),
            (None, _) => scan.push((table, "no tally triggers")),
        }
    }
    let scanned = futures_util::future::try_join_all(scan.iter().zip(sessions).map(
        |((table, _), s)| async move {
            s.query_one(&format!("SELECT count(*) FROM {}", table.quoted()), &[])
                .await
                .map(|r| r.get::<_, i64>(0))
        },
    ))
    .await?;
    for ((table, why), n) in scan.into_iter().zip(scanned) {
        rows.insert(table.to_string(), n);
        carried
            .scanned
            .push((format!("target {table}"), why.to_owned()));
    }
    Ok(rows)
}
