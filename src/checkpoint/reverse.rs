//! The reverse stream's state (after `cutover --keep-reverse`; see [`crate::pipeline::reverse`]).
//!
//! ```text
//! target  switchyard.reverse_keys      legacy keys allocated for rows the new application
//!                                      created, so later changes find the same legacy row;
//!         switchyard.legacy_key(t, k)  reads them, for reverse rules that reference such rows
//! legacy  switchyard.reverse_progress  per migration: the reverse slot, the boundary (the
//!                                      target's WAL position at the swap: what the forward
//!                                      consumer wrote lies before it), the LSN applied up to,
//!                                      written in the same legacy transaction as the rows,
//!                                      and the last fence applied
//! ```
//!
//! The progress lives beside the legacy tables because that is where the reverse consumer's
//! writes commit: exactly once needs the position in the same transaction as the rows. With one
//! database both are the same schema.

use tokio_postgres::{Client, GenericClient};

use super::{ctx, CheckpointError};
use crate::pg::lsn::Lsn;

/// Created with the rest of the target's state ([`super::ensure_schema`]), and by `check` in
/// its rolled-back transaction so that reverse rules calling `switchyard.legacy_key` prepare
/// before a backfill made the schema.
pub const KEYS_SQL: &str = r#"
CREATE TABLE IF NOT EXISTS switchyard.reverse_keys (
    migration     text NOT NULL,
    legacy_table  text NOT NULL,   -- the reverse rule's `table`, as written in the plan
    output_table  text NOT NULL,
    output_key    text NOT NULL,   -- the output row's primary key, as text (a uuid)
    legacy_key    text NOT NULL,   -- from the rule's `sequence`, as text
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (legacy_table, output_key, migration)
);
-- The legacy key allocated for an output row the new application created, or NULL: for
-- reverse rules such as coalesce(p.legacy_id, switchyard.legacy_key('company_projects', p.id::text)::bigint).
CREATE OR REPLACE FUNCTION switchyard.legacy_key(legacy_table text, output_key text)
RETURNS text LANGUAGE sql STABLE AS $f$
    SELECT k.legacy_key FROM switchyard.reverse_keys k
     WHERE k.legacy_table = $1 AND k.output_key = $2
     ORDER BY k.created_at DESC LIMIT 1
$f$;
"#;

/// The legacy side's table; run by `cutover --keep-reverse` before its lock.
const PROGRESS_SQL: &str = r#"
CREATE TABLE IF NOT EXISTS switchyard.reverse_progress (
    migration        text PRIMARY KEY,
    slot_name        text NOT NULL,
    publication      text NOT NULL,
    boundary_lsn     pg_lsn NOT NULL,
    applied_lsn      pg_lsn NOT NULL,
    changes_applied  bigint NOT NULL DEFAULT 0,
    fence_id         text,
    fence_lsn        pg_lsn,
    received_lsn     pg_lsn,
    heartbeat_at     timestamptz,
    started_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    ended_at         timestamptz
);
"#;

/// A migration's reverse stream, as recorded on the legacy side.
#[derive(Debug, Clone)]
pub struct ReverseProgress {
    pub slot_name: String,
    pub publication: String,
    /// The target's WAL position at the swap: transactions committed before it are the forward
    /// consumer's, never the application's.
    pub boundary: Lsn,
    /// Every transaction committed at or before this target LSN is in the legacy tables.
    pub applied: Lsn,
    pub changes_applied: i64,
    /// Seconds since the consumer's last heartbeat; `None` before its first.
    pub heartbeat_age_s: Option<f64>,
    /// Set by `rollback` once the stream is no longer needed.
    pub ended: bool,
}

/// Creates `switchyard.reverse_progress` on the legacy side (schema included when missing).
pub async fn ensure_progress_table(client: &Client) -> Result<(), CheckpointError> {
    let missing: bool = client
        .query_one("SELECT to_regnamespace('switchyard') IS NULL", &[])
        .await
        .map_err(ctx("looking for schema switchyard on the legacy side"))?
        .get(0);
    if missing {
        client
            .batch_execute("CREATE SCHEMA IF NOT EXISTS switchyard")
            .await
            .map_err(ctx("creating schema switchyard on the legacy side"))?;
    }
    client.batch_execute(PROGRESS_SQL).await.map_err(ctx(
        "creating switchyard.reverse_progress on the legacy side",
    ))
}

/// Starts (or restarts, after a rollback and a new cutover) the reverse stream's record; run
/// in the cutover's lock transaction, so it exists exactly when the swap does.
pub async fn start(
    client: &impl GenericClient,
    migration: &str,
    slot: &str,
    publication: &str,
    boundary: Lsn,
) -> Result<(), CheckpointError> {
    client
        .execute(
            "INSERT INTO switchyard.reverse_progress
                    (migration, slot_name, publication, boundary_lsn, applied_lsn)
             VALUES ($1, $2, $3, $4, $4)
             ON CONFLICT (migration) DO UPDATE
                SET slot_name = EXCLUDED.slot_name, publication = EXCLUDED.publication,
                    boundary_lsn = EXCLUDED.boundary_lsn, applied_lsn = EXCLUDED.applied_lsn,
                    changes_applied = 0, fence_id = NULL, fence_lsn = NULL, received_lsn = NULL,
                    heartbeat_at = NULL, started_at = now(), updated_at = now(), ended_at = NULL",
            &[&migration, &slot, &publication, &boundary],
        )
        .await
        .map_err(ctx("recording the reverse stream's start"))?;
    Ok(())
}

/// The reverse stream of `migration`, if one was ever started.
pub async fn load(
    client: &impl GenericClient,
    migration: &str,
) -> Result<Option<ReverseProgress>, CheckpointError> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('switchyard.reverse_progress') IS NOT NULL",
            &[],
        )
        .await
        .map_err(ctx("looking for switchyard.reverse_progress"))?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let row = client
        .query_opt(
            "SELECT slot_name, publication, boundary_lsn, applied_lsn, changes_applied,
                    extract(epoch FROM now() - heartbeat_at)::float8, ended_at IS NOT NULL
               FROM switchyard.reverse_progress WHERE migration = $1",
            &[&migration],
        )
        .await
        .map_err(ctx("reading the reverse stream's progress"))?;
    Ok(row.map(|r| ReverseProgress {
        slot_name: r.get(0),
        publication: r.get(1),
        boundary: r.get(2),
        applied: r.get(3),
        changes_applied: r.get(4),
        heartbeat_age_s: r.get(5),
        ended: r.get(6),
    }))
}

/// Records, in the legacy transaction that wrote the rows, that everything up to `applied`
/// is in the legacy tables, and the fence among it, if any.
pub async fn record_applied(
    tx: &impl GenericClient,
    migration: &str,
    applied: Lsn,
    changes: i64,
    fence: Option<(&str, Lsn)>,
) -> Result<(), CheckpointError> {
    let (fence_id, fence_lsn) = fence.unzip();
    tx.execute(
        "UPDATE switchyard.reverse_progress
            SET applied_lsn = greatest(applied_lsn, $2), changes_applied = changes_applied + $3,
                fence_id = coalesce($4, fence_id), fence_lsn = coalesce($5, fence_lsn),
                updated_at = now()
          WHERE migration = $1",
        &[&migration, &applied, &changes, &fence_id, &fence_lsn],
    )
    .await
    .map_err(ctx("recording the reverse stream's applied LSN"))?;
    Ok(())
}

/// The consumer's liveness and what it received; returns whether the stream was ended.
pub async fn heartbeat(
    client: &Client,
    migration: &str,
    received: Lsn,
) -> Result<bool, CheckpointError> {
    let row = client
        .query_opt(
            "UPDATE switchyard.reverse_progress
                SET heartbeat_at = now(), received_lsn = greatest(received_lsn, $2)
              WHERE migration = $1
             RETURNING ended_at IS NOT NULL",
            &[&migration, &received],
        )
        .await
        .map_err(ctx("recording the reverse consumer's heartbeat"))?;
    Ok(row.is_none_or(|r| r.get(0)))
}

/// Marks the stream ended (by `rollback`, in its legacy transaction): its consumer stops.
pub async fn end(client: &impl GenericClient, migration: &str) -> Result<(), CheckpointError> {
    client
        .execute(
            "UPDATE switchyard.reverse_progress SET ended_at = now(), updated_at = now()
              WHERE migration = $1",
            &[&migration],
        )
        .await
        .map_err(ctx("ending the reverse stream"))?;
    Ok(())
}

/// A fence the reverse consumer applied, by id: whether it is in the legacy tables.
pub async fn applied_fence(
    client: &impl GenericClient,
    migration: &str,
) -> Result<Option<String>, CheckpointError> {
    let row = client
        .query_opt(
            "SELECT fence_id FROM switchyard.reverse_progress WHERE migration = $1",
            &[&migration],
        )
        .await
        .map_err(ctx("reading the reverse stream's fence"))?;
    Ok(row.and_then(|r| r.get(0)))
}
