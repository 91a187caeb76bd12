//! `switchyard.migrations`: one row per plan, with its status, slot, LSNs and the WAL
//! consumer's progress (applied LSN, heartbeat, last fence).

use std::fmt;
use std::str::FromStr;

use tokio_postgres::{Client, GenericClient};

use super::{apply_lanes, chunks, ctx, source_relations, workers, CheckpointError};
use crate::pg::lsn::Lsn;
use crate::pg::replication_message::PgTimestamp;

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

/// Whether the target holds the tool's state at all: before the first backfill it has no
/// `switchyard.migrations`, and readers say "not started" instead of failing on the relation.
pub async fn state_exists(client: &Client) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT to_regclass('switchyard.migrations') IS NOT NULL",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

/// The migration's row, if `switchyard.migrations` exists and has it.
pub async fn load(client: &Client, name: &str) -> Result<Option<Migration>, CheckpointError> {
    if !state_exists(client)
        .await
        .map_err(ctx("looking for switchyard.migrations"))?
    {
        return Ok(None);
    }
    let row = client
        .query_opt(
            "SELECT name, plan_checksum, status, slot_name, publication, snapshot_lsn,
                    consistent_lsn, applied_lsn, message
               FROM switchyard.migrations WHERE name = $1",
            &[&name],
        )
        .await
        .map_err(ctx("reading the migration"))?;
    Ok(row.map(|r| Migration {
        name: r.get(0),
        plan_checksum: r.get(1),
        status: r
            .get::<_, String>(2)
            .parse()
            .unwrap_or(MigrationStatus::Created),
        slot_name: r.get(3),
        publication: r.get(4),
        snapshot_lsn: r.get(5),
        consistent_lsn: r.get(6),
        applied_lsn: r.get(7),
        message: r.get(8),
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
                 backfill_started_at = NULL, backfill_finished_at = NULL,
                 exported_snapshot = NULL",
            &[&m.name, &m.plan_checksum, &m.status.as_str(), &m.slot_name, &m.publication],
        )
        .await
        .map_err(ctx("recording the migration"))?;
    chunks::clear(client, &m.name).await?;
    source_relations::clear(client, &m.name).await?;
    apply_lanes::clear(client, &m.name).await?;
    workers::clear(client, &m.name).await?;
    Ok(())
}

/// Records the snapshot the chunks are copied under, for `backfill --join` to import; `None`
/// once every chunk is done. Clearing names the snapshot cleared, so that a process never
/// clears the newer one a `--resume` elsewhere recorded.
pub async fn set_exported_snapshot(
    client: &Client,
    name: &str,
    snapshot: Option<&str>,
    replacing: Option<&str>,
) -> Result<(), CheckpointError> {
    client
        .execute(
            "UPDATE switchyard.migrations SET exported_snapshot = $2, updated_at = now()
              WHERE name = $1 AND ($3::text IS NULL OR exported_snapshot = $3)",
            &[&name, &snapshot, &replacing],
        )
        .await
        .map_err(ctx("recording the exported snapshot"))?;
    Ok(())
}

/// The snapshot a joining worker imports, if one is recorded.
pub async fn exported_snapshot(
    client: &Client,
    name: &str,
) -> Result<Option<String>, CheckpointError> {
    let row = client
        .query_opt(
            "SELECT exported_snapshot FROM switchyard.migrations WHERE name = $1",
            &[&name],
        )
        .await
        .map_err(ctx("reading the exported snapshot"))?;
    Ok(row.and_then(|r| r.get(0)))
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
                SET snapshot_lsn = coalesce($2, snapshot_lsn), consistent_lsn = $3,
                    updated_at = now()
              WHERE name = $1",
            &[&name, &snapshot, &consistent],
        )
        .await
        .map_err(ctx("recording LSNs"))?;
    Ok(())
}

/// The notification channel on which the consumer announces each applied fence; the payload
/// is the migration's name.
pub const FENCE_CHANNEL: &str = "switchyard_fence";

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

/// The last fence the consumer applied: where, and when (seconds since the Unix epoch; `None`
/// for a fence applied before the tool recorded the time).
pub async fn last_fence(
    client: &impl GenericClient,
    migration: &str,
) -> Result<Option<(Lsn, Option<f64>)>, CheckpointError> {
    let row = client
        .query_opt(
            "SELECT fence_lsn, extract(epoch FROM fence_at)::float8
               FROM switchyard.migrations WHERE name = $1 AND fence_lsn IS NOT NULL",
            &[&migration],
        )
        .await
        .map_err(ctx("reading the last fence"))?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
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
                SET heartbeat_at = now(), received_lsn = $2, pending_since = $3
              WHERE name = $1
            RETURNING status",
            &[
                &migration,
                &received,
                &pending_since_micros_since_2000.map(PgTimestamp),
            ],
        )
        .await
        .map_err(ctx("recording the consumer heartbeat"))?;
    Ok(row.and_then(|r| r.get::<_, String>(0).parse().ok()))
}
