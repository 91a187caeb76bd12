//! Chunk leases: how the backfill's workers, in one process or on several machines
//! (`backfill --join`), share one chunk list in `switchyard.chunks` without a coordinator.
//!
//! ```text
//!  take:    SELECT .. WHERE not done AND (no lease OR lease expired) FOR UPDATE SKIP LOCKED
//!           SET lease_owner = me, lease_expires_at = now() + ttl          (own transaction)
//!  beat:    every few seconds: lease_expires_at = now() + ttl WHERE lease_owner = me
//!  finish:  in the chunk's own transaction, with its rows:
//!           UPDATE .. SET status = 'done' WHERE lease_owner = me AND not done
//!           0 rows: the lease was taken over; roll the chunk back
//! ```
//!
//! Every time is the target server's `now()`, so the machines' clocks never meet.
//!
//! # Why a chunk is never copied twice into the target
//!
//! A worker whose lease expired (a stall, a network partition) may still be copying when
//! another takes the chunk over; both then write the chunk's rows, each in its own uncommitted
//! transaction. Only one of them can commit:
//!
//! - The done mark ([`super::finish_chunk`]) is the chunk transaction's last statement and
//!   matches only while `lease_owner` is still the writer. Its UPDATE locks the chunk's row
//!   until that transaction ends.
//! - If the takeover committed first, the UPDATE (read committed: it re-reads the newest row
//!   version) finds another owner, matches nothing, and the late worker rolls its rows back.
//! - If the late worker's UPDATE came first, it holds the row lock until it commits. A take
//!   skips locked rows (`SKIP LOCKED`) and, once the row is unlocked, finds it done; a take
//!   that locked the row first makes the UPDATE wait and then find the new owner, as above.
//! - A heartbeat only extends leases still owned (`WHERE lease_owner = me`), so it cannot win
//!   a lease back.
//!
//! So the rows and the done mark commit together, at most once, by the owner at commit time.
//! Rows written apart from the chunk's transaction (insert-if-absent outputs, see
//! `crate::pipeline::chunk_copy::Worker`) are inserted only if absent, so two writers add
//! nothing twice.
//!
//! A chunk is taken only while the migration's recorded snapshot is the one the taker reads
//! under ([`super::set_exported_snapshot`]): a `--resume` exports a newer one and copies with
//! upserts, and workers still reading the old one (plain inserts) stop taking chunks then.

use std::time::Duration;

use tokio_postgres::Client;

use super::{ctx, CheckpointError, Chunk, ChunkStatus};

/// Who holds a lease: one process (all its workers share it), as `host/pid/started`, which
/// `switchyard.workers` describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseOwner(pub String);

/// What a worker that found nothing to take should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunksLeft {
    /// Every chunk is done: the copy is over, whoever copied them.
    None,
    /// Chunks are left but all are leased by live workers: wait, one may die and its chunk
    /// come free.
    Leased,
    /// The migration now reads under another snapshot (a `--resume` elsewhere): this process's
    /// readers must not copy more.
    SnapshotReplaced,
}

/// Leases the next chunk free to take (never leased, or whose lease expired), round-robin
/// across tables so that all of them progress together; `None` when there is none.
pub async fn take_lease(
    client: &Client,
    migration: &str,
    owner: &LeaseOwner,
    snapshot: &str,
    ttl: Duration,
) -> Result<Option<Chunk>, CheckpointError> {
    let row = client
        .query_opt(
            "WITH next AS (
                 SELECT c.source_table, c.chunk_no FROM switchyard.chunks c
                  WHERE c.migration = $1 AND c.status <> $5
                    AND (c.lease_owner IS NULL OR c.lease_expires_at < now())
                    AND EXISTS (SELECT FROM switchyard.migrations m
                                 WHERE m.name = $1 AND m.exported_snapshot = $3)
                  ORDER BY c.chunk_no, c.source_table
                  LIMIT 1 FOR UPDATE OF c SKIP LOCKED)
             UPDATE switchyard.chunks c
                SET lease_owner = $2, lease_expires_at = now() + $4 * interval '1 second'
               FROM next
              WHERE c.migration = $1 AND c.source_table = next.source_table
                AND c.chunk_no = next.chunk_no
          RETURNING c.source_table, c.chunk_no, c.first_block, c.end_block",
            &[
                &migration,
                &owner.0,
                &snapshot,
                &ttl.as_secs_f64(),
                &ChunkStatus::Done,
            ],
        )
        .await
        .map_err(ctx("taking a chunk lease"))?;
    Ok(row.map(|r| Chunk {
        source_table: r.get(0),
        chunk_no: r.get(1),
        first_block: r.get(2),
        end_block: r.get(3),
    }))
}

/// Why [`take_lease`] found nothing.
pub async fn chunks_left(
    client: &Client,
    migration: &str,
    snapshot: &str,
) -> Result<ChunksLeft, CheckpointError> {
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM switchyard.chunks
                      WHERE migration = $1 AND status <> $3),
                    coalesce((SELECT exported_snapshot IS DISTINCT FROM $2
                                FROM switchyard.migrations WHERE name = $1), true)",
            &[&migration, &snapshot, &ChunkStatus::Done],
        )
        .await
        .map_err(ctx("counting the chunks left"))?;
    let (left, replaced): (i64, bool) = (row.get(0), row.get(1));
    Ok(match (left, replaced) {
        (0, _) => ChunksLeft::None,
        (_, true) => ChunksLeft::SnapshotReplaced,
        _ => ChunksLeft::Leased,
    })
}

/// Extends every lease `owner` still holds on chunks not done; returns how many.
pub async fn extend_leases(
    client: &Client,
    migration: &str,
    owner: &LeaseOwner,
    ttl: Duration,
) -> Result<u64, CheckpointError> {
    client
        .execute(
            "UPDATE switchyard.chunks SET lease_expires_at = now() + $3 * interval '1 second'
              WHERE migration = $1 AND lease_owner = $2 AND status <> $4",
            &[&migration, &owner.0, &ttl.as_secs_f64(), &ChunkStatus::Done],
        )
        .await
        .map_err(ctx("extending chunk leases"))
}

/// Gives up the leases of owners that are gone for sure (a process that stopped, or one on
/// this host whose pid is no longer running), so that their chunks need not wait for expiry.
pub async fn release_leases(
    client: &Client,
    migration: &str,
    owners: &[String],
) -> Result<u64, CheckpointError> {
    client
        .execute(
            "UPDATE switchyard.chunks SET lease_owner = NULL, lease_expires_at = NULL
              WHERE migration = $1 AND lease_owner = ANY($2) AND status <> $3",
            &[&migration, &owners, &ChunkStatus::Done],
        )
        .await
        .map_err(ctx("releasing chunk leases"))
}
