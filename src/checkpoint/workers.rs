//! `switchyard.workers`: one row per backfill process copying a migration's chunks (the first
//! one and every `--join`), written by its lease heartbeat, so that the progress display and
//! `watch` on any machine show who copies what and who stopped beating.

use std::fmt;

use tokio_postgres::Client;

use super::leases::LeaseOwner;
use super::{ctx, CheckpointError};

/// A process's row as `watch` and the progress display show it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WorkerState {
    pub worker_id: String,
    pub host: String,
    pub pid: i32,
    /// Chunks this process marked done, and the source rows they held.
    pub chunks_done: i64,
    pub row_count: i64,
    /// Seconds since its last heartbeat; more than a lease's lifetime means it is gone and
    /// its chunks are free to take.
    pub heartbeat_age_s: f64,
    /// Set when it stopped cleanly.
    pub finished: bool,
}

impl fmt::Display for WorkerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} pid {}: {} chunks, {} rows",
            self.host, self.pid, self.chunks_done, self.row_count
        )?;
        if self.finished {
            f.write_str(", finished")
        } else {
            write!(f, ", beat {:.0} s ago", self.heartbeat_age_s)
        }
    }
}

/// Records this process as a worker of `migration`.
pub async fn register_worker(
    client: &Client,
    migration: &str,
    owner: &LeaseOwner,
    host: &str,
    pid: i32,
) -> Result<(), CheckpointError> {
    client
        .execute(
            "INSERT INTO switchyard.workers (migration, worker_id, host, pid)
             VALUES ($1, $2, $3, $4) ON CONFLICT (migration, worker_id) DO NOTHING",
            &[&migration, &owner.0, &host, &pid],
        )
        .await
        .map_err(ctx("registering the worker"))?;
    Ok(())
}

/// The heartbeat of this process's row, with what it copied so far; `finished` when it stops.
pub async fn worker_heartbeat(
    client: &Client,
    migration: &str,
    owner: &LeaseOwner,
    (chunks_done, row_count): (i64, i64),
    finished: bool,
) -> Result<(), CheckpointError> {
    client
        .execute(
            "UPDATE switchyard.workers SET heartbeat_at = now(), chunks_done = $3, row_count = $4,
                    finished_at = CASE WHEN $5 THEN now() END
              WHERE migration = $1 AND worker_id = $2",
            &[&migration, &owner.0, &chunks_done, &row_count, &finished],
        )
        .await
        .map_err(ctx("recording the worker's heartbeat"))?;
    Ok(())
}

/// Every worker of `migration`, oldest first.
pub async fn workers(
    client: &Client,
    migration: &str,
) -> Result<Vec<WorkerState>, CheckpointError> {
    let rows = client
        .query(
            "SELECT worker_id, host, pid, chunks_done, row_count,
                    extract(epoch FROM now() - heartbeat_at)::float8, finished_at IS NOT NULL
               FROM switchyard.workers WHERE migration = $1 ORDER BY started_at, worker_id",
            &[&migration],
        )
        .await
        .map_err(ctx("reading the workers"))?;
    Ok(rows
        .iter()
        .map(|r| WorkerState {
            worker_id: r.get(0),
            host: r.get(1),
            pid: r.get(2),
            chunks_done: r.get(3),
            row_count: r.get(4),
            heartbeat_age_s: r.get(5),
            finished: r.get(6),
        })
        .collect())
}

/// Forgets the workers of a migration recorded anew (see [`super::create`]).
pub(super) async fn clear(client: &Client, migration: &str) -> Result<(), CheckpointError> {
    client
        .execute(
            "DELETE FROM switchyard.workers WHERE migration = $1",
            &[&migration],
        )
        .await
        .map_err(ctx("clearing old workers"))?;
    Ok(())
}
