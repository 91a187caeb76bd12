//! The tool's own state, kept in the target in schema `switchyard` (never in a local file, so
//! that `status` and `watch` work from any machine and a restart finds everything).
//!
//! ```text
//! switchyard.migrations    one row per plan: status, plan checksum, slot, LSNs, timestamps
//! switchyard.chunks        the backfill's chunk list; a chunk turns `done` in the same target
//!                          transaction that writes its rows, so a chunk lands exactly once
//! switchyard.source_relations  the source tables' OIDs the backfill copied, which the
//!                          consumer follows by identity
//! switchyard.dead_letters  rows a transform rejected or the target refused, with key and reason
//! ```

use std::fmt;
use std::str::FromStr;

use tokio_postgres::{Client, GenericClient};

use crate::pg::lsn::Lsn;

/// Creates the tables in schema `switchyard`; idempotent, run by every command that writes
/// state (after [`ensure_schema`] made the schema itself when it was missing).
pub const SCHEMA_SQL: &str = r#"
CREATE TABLE IF NOT EXISTS switchyard.migrations (
    name            text PRIMARY KEY,
    plan_checksum   text NOT NULL,
    status          text NOT NULL,
    slot_name       text NOT NULL,
    publication     text NOT NULL,
    snapshot_lsn    pg_lsn,
    consistent_lsn  pg_lsn,
    applied_lsn     pg_lsn,
    message         text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    backfill_started_at  timestamptz,
    backfill_finished_at timestamptz
);
-- The WAL consumer's progress, written with each applied group (applied_*) and on a timer
-- (heartbeat_at, received_lsn, pending_since), for `status` and `watch`.
ALTER TABLE switchyard.migrations
    ADD COLUMN IF NOT EXISTS applied_commit_at timestamptz,
    ADD COLUMN IF NOT EXISTS changes_applied bigint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS heartbeat_at timestamptz,
    ADD COLUMN IF NOT EXISTS received_lsn pg_lsn,
    ADD COLUMN IF NOT EXISTS pending_since timestamptz;
-- The last fence the consumer applied (see `crate::source::fence`), written in the target
-- transaction that applied everything before it; `cutover` and `verify` wait on it.
ALTER TABLE switchyard.migrations
    ADD COLUMN IF NOT EXISTS fence_id text,
    ADD COLUMN IF NOT EXISTS fence_lsn pg_lsn,
    ADD COLUMN IF NOT EXISTS cutover_at timestamptz,
    ADD COLUMN IF NOT EXISTS cutover_report jsonb;
CREATE TABLE IF NOT EXISTS switchyard.chunks (
    migration     text NOT NULL REFERENCES switchyard.migrations (name) ON DELETE CASCADE,
    source_table  text NOT NULL,
    chunk_no      int NOT NULL,
    first_block   bigint NOT NULL,
    end_block     bigint,
    status        text NOT NULL DEFAULT 'pending',
    row_count     bigint,
    rejected_count bigint,
    finished_at   timestamptz,
    PRIMARY KEY (migration, source_table, chunk_no)
);
-- The source tables' OIDs under the backfill's snapshot: the consumer follows these tables,
-- whatever they are called later (see `crate::source::identity`).
CREATE TABLE IF NOT EXISTS switchyard.source_relations (
    migration     text NOT NULL REFERENCES switchyard.migrations (name) ON DELETE CASCADE,
    source_table  text NOT NULL,
    relid         oid NOT NULL,
    PRIMARY KEY (migration, source_table)
);
-- Its row in the publication (`pg_publication_rel.oid`), NULL when the publication holds it
-- otherwise: another row later means it left the publication and came back.
ALTER TABLE switchyard.source_relations ADD COLUMN IF NOT EXISTS publication_rel oid;
CREATE TABLE IF NOT EXISTS switchyard.dead_letters (
    id            bigserial PRIMARY KEY,
    migration     text NOT NULL,
    phase         text NOT NULL,
    source_table  text NOT NULL,
    output_table  text,
    source_key    jsonb NOT NULL,
    row_data      jsonb,
    reason        text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
"#;

/// Where a migration stands. Each variant says who sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationStatus {
    /// `backfill` recorded the migration; publication and slot may not exist yet.
    Created,
    /// `backfill` created the slot and is copying chunks (or was interrupted doing so:
    /// `backfill --resume` goes on).
    Backfilling,
    /// `backfill` copied every chunk and ran the after-backfill SQL; the slot waits for the
    /// WAL consumer.
    Backfilled,
    /// The WAL consumer is applying changes (or reconnecting after a lost connection).
    Following,
    /// The WAL consumer stopped on something a person must handle (DDL, TRUNCATE, a lost slot,
    /// a source table renamed, replaced or unpublished); `message` says what and what to do.
    /// Set by `follow` when it ends in such an error; `follow` starts again from here.
    Stopped,
    /// `cutover` swapped the tables.
    CutOver,
    /// `abort` dropped the slot and publication.
    Aborted,
    /// `rollback` swapped the legacy tables back after a cutover.
    RolledBack,
}

impl MigrationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MigrationStatus::Created => "created",
            MigrationStatus::Backfilling => "backfilling",
            MigrationStatus::Backfilled => "backfilled",
            MigrationStatus::Following => "following",
            MigrationStatus::Stopped => "stopped",
            MigrationStatus::CutOver => "cut_over",
            MigrationStatus::Aborted => "aborted",
            MigrationStatus::RolledBack => "rolled_back",
        }
    }
}

impl fmt::Display for MigrationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MigrationStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "created" => MigrationStatus::Created,
            "backfilling" => MigrationStatus::Backfilling,
            "backfilled" => MigrationStatus::Backfilled,
            "following" => MigrationStatus::Following,
            "stopped" => MigrationStatus::Stopped,
            "cut_over" => MigrationStatus::CutOver,
            "aborted" => MigrationStatus::Aborted,
            "rolled_back" => MigrationStatus::RolledBack,
            other => return Err(format!("unknown migration status {other:?}")),
        })
    }
}

/// A migration's row.
#[derive(Debug, Clone)]
pub struct Migration {
    pub name: String,
    pub plan_checksum: String,
    pub status: MigrationStatus,
    pub slot_name: String,
    pub publication: String,
    /// The slot's consistent point: the backfill's snapshot, where the stream starts.
    pub snapshot_lsn: Option<Lsn>,
    /// The target equals the source once the applied LSN passes this point (later than
    /// `snapshot_lsn` when a resumed backfill copied chunks under a newer snapshot).
    pub consistent_lsn: Option<Lsn>,
    pub applied_lsn: Option<Lsn>,
    pub message: Option<String>,
}

/// One chunk of a source table: a range of heap blocks, copied in one target transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub source_table: String,
    pub chunk_no: i32,
    pub first_block: i64,
    /// `None` for a table's last chunk, open-ended so rows in pages added later are included.
    pub end_block: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
#[error("switchyard state in the target: {context}")]
pub struct CheckpointError {
    context: &'static str,
    #[source]
    source: tokio_postgres::Error,
}

impl CheckpointError {
    /// The underlying error, to tell a lost connection from a refusal.
    pub fn postgres(&self) -> &tokio_postgres::Error {
        &self.source
    }
}

fn ctx(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> CheckpointError {
    move |source| CheckpointError { context, source }
}

/// Creates schema `switchyard` only when it is missing: `CREATE SCHEMA IF NOT EXISTS` checks
/// the database's CREATE privilege before it looks whether the schema exists, so a role that
/// may not create schemas could not use one a DBA created for it (least privilege).
pub async fn ensure_schema(client: &Client) -> Result<(), CheckpointError> {
    let missing: bool = client
        .query_one("SELECT to_regnamespace('switchyard') IS NULL", &[])
        .await
        .map_err(ctx("looking for schema switchyard"))?
        .get(0);
    if missing {
        client
            .batch_execute("CREATE SCHEMA IF NOT EXISTS switchyard")
            .await
            .map_err(ctx("creating schema switchyard"))?;
    }
    client
        .batch_execute(SCHEMA_SQL)
        .await
        .map_err(ctx("creating schema switchyard"))
}

/// The migration's row, if `switchyard.migrations` exists and has it.
pub async fn load(client: &Client, name: &str) -> Result<Option<Migration>, CheckpointError> {
    let exists = client
        .query_one(
            "SELECT to_regclass('switchyard.migrations') IS NOT NULL",
            &[],
        )
        .await
        .map_err(ctx("looking for switchyard.migrations"))?;
    if !exists.get::<_, bool>(0) {
        return Ok(None);
    }
    let row = client
        .query_opt(
            "SELECT name, plan_checksum, status, slot_name, publication, snapshot_lsn::text,
                    consistent_lsn::text, applied_lsn::text, message
               FROM switchyard.migrations WHERE name = $1",
            &[&name],
        )
        .await
        .map_err(ctx("reading the migration"))?;
    Ok(row.map(|r| {
        let lsn = |i: usize| r.get::<_, Option<String>>(i).and_then(|s| s.parse().ok());
        Migration {
            name: r.get(0),
            plan_checksum: r.get(1),
            status: r
                .get::<_, String>(2)
                .parse()
                .unwrap_or(MigrationStatus::Created),
            slot_name: r.get(3),
            publication: r.get(4),
            snapshot_lsn: lsn(5),
            consistent_lsn: lsn(6),
            applied_lsn: lsn(7),
            message: r.get(8),
        }
    }))
}

/// Records a new migration, replacing an aborted one of the same name (and its chunks).
pub async fn create(client: &Client, m: &Migration) -> Result<(), CheckpointError> {
    client
        .execute(
            "INSERT INTO switchyard.migrations (name, plan_checksum, status, slot_name, publication)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (name) DO UPDATE SET plan_checksum = EXCLUDED.plan_checksum,
                 status = EXCLUDED.status, snapshot_lsn = NULL, consistent_lsn = NULL,
                 applied_lsn = NULL, message = NULL, created_at = now(), updated_at = now(),
                 backfill_started_at = NULL, backfill_finished_at = NULL",
            &[&m.name, &m.plan_checksum, &m.status.as_str(), &m.slot_name, &m.publication],
        )
        .await
        .map_err(ctx("recording the migration"))?;
    client
        .execute(
            "DELETE FROM switchyard.chunks WHERE migration = $1",
            &[&m.name],
        )
        .await
        .map_err(ctx("clearing old chunks"))?;
    client
        .execute(
            "DELETE FROM switchyard.source_relations WHERE migration = $1",
            &[&m.name],
        )
        .await
        .map_err(ctx("clearing old source relations"))?;
    Ok(())
}

/// A source table as the backfill copied it: `schema.table` as displayed, its OID, and its row
/// in the publication (`pg_publication_rel.oid`, `None` when held otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRelation {
    pub table: String,
    pub oid: u32,
    pub publication_rel: Option<u32>,
}

/// Records the source tables the backfill copies.
pub async fn record_source_relations(
    client: &Client,
    migration: &str,
    relations: &[SourceRelation],
) -> Result<(), CheckpointError> {
    let tables: Vec<&str> = relations.iter().map(|r| r.table.as_str()).collect();
    let oids: Vec<u32> = relations.iter().map(|r| r.oid).collect();
    let rels: Vec<Option<u32>> = relations.iter().map(|r| r.publication_rel).collect();
    client
        .execute(
            "INSERT INTO switchyard.source_relations (migration, source_table, relid, publication_rel)
             SELECT $1, * FROM unnest($2::text[], $3::oid[], $4::oid[])
             ON CONFLICT (migration, source_table)
             DO UPDATE SET relid = EXCLUDED.relid, publication_rel = EXCLUDED.publication_rel",
            &[&migration, &tables, &oids, &rels],
        )
        .await
        .map_err(ctx("recording the source tables' OIDs"))?;
    Ok(())
}

/// The source tables recorded by the backfill.
pub async fn source_relations(
    client: &Client,
    migration: &str,
) -> Result<Vec<SourceRelation>, CheckpointError> {
    let rows = client
        .query(
            "SELECT source_table, relid, publication_rel FROM switchyard.source_relations
              WHERE migration = $1",
            &[&migration],
        )
        .await
        .map_err(ctx("reading the source tables' OIDs"))?;
    Ok(rows
        .iter()
        .map(|r| SourceRelation {
            table: r.get(0),
            oid: r.get(1),
            publication_rel: r.get(2),
        })
        .collect())
}

pub async fn set_status(
    client: &Client,
    name: &str,
    status: MigrationStatus,
    message: Option<&str>,
) -> Result<(), CheckpointError> {
    client
        .execute(
            "UPDATE switchyard.migrations SET status = $2, message = $3, updated_at = now(),
                 backfill_started_at = CASE WHEN $2 = 'backfilling'
                     THEN coalesce(backfill_started_at, now()) ELSE backfill_started_at END,
                 backfill_finished_at = CASE WHEN $2 = 'backfilled' THEN now()
                     ELSE backfill_finished_at END
              WHERE name = $1",
            &[&name, &status.as_str(), &message],
        )
        .await
        .map_err(ctx("updating the migration status"))?;
    Ok(())
}

/// Records the slot's consistent point (first run) or the resumed snapshot's LSN.
pub async fn set_lsns(
    client: &Client,
    name: &str,
    snapshot: Option<Lsn>,
    consistent: Lsn,
) -> Result<(), CheckpointError> {
    client
        .execute(
            "UPDATE switchyard.migrations
                SET snapshot_lsn = coalesce($2::text::pg_lsn, snapshot_lsn),
                    consistent_lsn = $3::text::pg_lsn, updated_at = now()
              WHERE name = $1",
            &[
                &name,
                &snapshot.map(|l| l.to_string()),
                &consistent.to_string(),
            ],
        )
        .await
        .map_err(ctx("recording LSNs"))?;
    Ok(())
}

pub async fn insert_chunks(
    client: &Client,
    migration: &str,
    chunks: &[Chunk],
) -> Result<(), CheckpointError> {
    let tables: Vec<&str> = chunks.iter().map(|c| c.source_table.as_str()).collect();
    let nos: Vec<i32> = chunks.iter().map(|c| c.chunk_no).collect();
    let firsts: Vec<i64> = chunks.iter().map(|c| c.first_block).collect();
    let ends: Vec<Option<i64>> = chunks.iter().map(|c| c.end_block).collect();
    client
        .execute(
            "INSERT INTO switchyard.chunks (migration, source_table, chunk_no, first_block, end_block)
             SELECT $1, * FROM unnest($2::text[], $3::int[], $4::int8[], $5::int8[])",
            &[&migration, &tables, &nos, &firsts, &ends],
        )
        .await
        .map_err(ctx("recording the chunk list"))?;
    Ok(())
}

/// Records an applied group, inside the target transaction that applied it: this is what makes
/// the apply exactly once (a restart skips source commits at or below `applied_lsn`).
pub async fn record_applied(
    tx: &impl GenericClient,
    migration: &str,
    applied: Lsn,
    commit_micros_since_2000: i64,
    changes: i64,
) -> Result<(), CheckpointError> {
    tx.execute(
        "UPDATE switchyard.migrations
            SET applied_lsn = $2::text::pg_lsn,
                applied_commit_at = timestamptz '2000-01-01 00:00:00+00' + $3 * interval '1 microsecond',
                changes_applied = changes_applied + $4, pending_since = NULL, updated_at = now()
          WHERE name = $1",
        &[&migration, &applied.to_string(), &(commit_micros_since_2000 as f64), &changes],
    )
    .await
    .map_err(ctx("recording the applied LSN"))?;
    Ok(())
}

/// The notification channel on which the consumer announces each applied fence; the payload
/// is the migration's name.
pub const FENCE_CHANNEL: &str = "switchyard_fence";

/// Records that everything before fence `id` is applied, inside the target transaction that
/// applied it, and notifies [`FENCE_CHANNEL`] (delivered when that transaction commits).
pub async fn record_fence(
    tx: &impl GenericClient,
    migration: &str,
    id: &str,
    lsn: Lsn,
) -> Result<(), CheckpointError> {
    tx.execute(
        "WITH f AS (UPDATE switchyard.migrations SET fence_id = $2, fence_lsn = $3::text::pg_lsn
                     WHERE name = $1 RETURNING name)
         SELECT pg_notify($4, name) FROM f",
        &[&migration, &id, &lsn.to_string(), &FENCE_CHANNEL],
    )
    .await
    .map_err(ctx("recording an applied fence"))?;
    Ok(())
}

/// The id of the last fence the consumer applied.
pub async fn applied_fence(
    client: &impl GenericClient,
    migration: &str,
) -> Result<Option<String>, CheckpointError> {
    let row = client
        .query_opt(
            "SELECT fence_id FROM switchyard.migrations WHERE name = $1",
            &[&migration],
        )
        .await
        .map_err(ctx("reading the applied fence"))?;
    Ok(row.and_then(|r| r.get(0)))
}

/// The consumer's liveness and what it holds unapplied, on its own connection and timer.
/// Returns the migration's status, so that the consumer sees a finished cutover.
pub async fn heartbeat(
    client: &Client,
    migration: &str,
    received: Lsn,
    pending_since_micros_since_2000: Option<i64>,
) -> Result<Option<MigrationStatus>, CheckpointError> {
    let row = client
        .query_opt(
            "UPDATE switchyard.migrations
                SET heartbeat_at = now(), received_lsn = $2::text::pg_lsn,
                    pending_since = timestamptz '2000-01-01 00:00:00+00' + $3 * interval '1 microsecond'
              WHERE name = $1
            RETURNING status",
            &[&migration, &received.to_string(), &pending_since_micros_since_2000.map(|m| m as f64)],
        )
        .await
        .map_err(ctx("recording the consumer heartbeat"))?;
    Ok(row.and_then(|r| r.get::<_, String>(0).parse().ok()))
}

/// The chunks not yet done, in order.
pub async fn pending_chunks(
    client: &Client,
    migration: &str,
) -> Result<Vec<Chunk>, CheckpointError> {
    let rows = client
        .query(
            "SELECT source_table, chunk_no, first_block, end_block FROM switchyard.chunks
              WHERE migration = $1 AND status <> 'done' ORDER BY source_table, chunk_no",
            &[&migration],
        )
        .await
        .map_err(ctx("reading pending chunks"))?;
    Ok(rows
        .iter()
        .map(|r| Chunk {
            source_table: r.get(0),
            chunk_no: r.get(1),
            first_block: r.get(2),
            end_block: r.get(3),
        })
        .collect())
}

/// Marks a chunk done; called inside the transaction that wrote its rows.
pub async fn finish_chunk(
    tx: &impl GenericClient,
    migration: &str,
    chunk: &Chunk,
    row_count: i64,
    rejected_count: i64,
) -> Result<(), CheckpointError> {
    tx.execute(
        "UPDATE switchyard.chunks SET status = 'done', row_count = $4, rejected_count = $5,
                finished_at = now()
          WHERE migration = $1 AND source_table = $2 AND chunk_no = $3",
        &[
            &migration,
            &chunk.source_table,
            &chunk.chunk_no,
            &row_count,
            &rejected_count,
        ],
    )
    .await
    .map_err(ctx("marking a chunk done"))?;
    Ok(())
}

/// Per source table: (chunks done, chunks in all, rows copied).
pub async fn chunk_progress(
    client: &Client,
    migration: &str,
) -> Result<Vec<(String, i64, i64, i64)>, CheckpointError> {
    let rows = client
        .query(
            "SELECT source_table, count(*) FILTER (WHERE status = 'done'), count(*),
                    coalesce(sum(row_count), 0)::int8
               FROM switchyard.chunks WHERE migration = $1 GROUP BY 1 ORDER BY 1",
            &[&migration],
        )
        .await
        .map_err(ctx("reading chunk progress"))?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect())
}

pub async fn dead_letter_count(client: &Client, migration: &str) -> Result<i64, CheckpointError> {
    let row = client
        .query_one(
            "SELECT count(*) FROM switchyard.dead_letters WHERE migration = $1",
            &[&migration],
        )
        .await
        .map_err(ctx("counting dead letters"))?;
    Ok(row.get(0))
}
