//! The lease heartbeat of a backfill process: on one target session of its own, every
//! [`LEASE_BEAT`] it extends the leases of the chunks its workers copy, writes its row in
//! `switchyard.workers`, and reads back every process's progress for the display (chunks done
//! by anyone, each worker's share).
//!
//! A heartbeat that fails is only logged: the leases then expire, other workers take the
//! chunks over, and this process's late commits are refused by the lease check (see
//! [`crate::checkpoint::leases`]), so a lost heartbeat costs time, never correctness.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::Client;

use crate::checkpoint::{self, leases};
use crate::error::Chain;
use crate::pg::connect::connect;
use crate::pg::conninfo::ConnInfo;

use super::chunk_copy::ChunkContext;
use super::error::PipelineError;

/// How long a lease lasts without a heartbeat: a dead worker's chunk waits this long before
/// another takes it over. Five beats, so that a few slow or lost ones (a busy target, a
/// reconnecting network) never let a live worker's lease lapse.
pub const LEASE_TTL: Duration = Duration::from_secs(10);

/// How often the leases are extended and the workers' table is written.
pub const LEASE_BEAT: Duration = Duration::from_secs(2);

/// What this process copied (the first process's or a joiner's share), for
/// `switchyard.workers` and the joiner's report.
#[derive(Debug, Default)]
pub struct WorkerTally {
    pub chunks_done: AtomicI64,
    pub row_count: AtomicI64,
}

impl WorkerTally {
    pub fn get(&self) -> (i64, i64) {
        (
            self.chunks_done.load(Ordering::Relaxed),
            self.row_count.load(Ordering::Relaxed),
        )
    }
}

/// The running heartbeat; stops when finished or dropped (a stopped backfill drops it).
pub struct LeaseHeartbeat {
    stop: tokio::sync::watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Starts beating at once, so that the display shows every worker from the start.
pub async fn start(
    target: &ConnInfo,
    ctx: Arc<ChunkContext>,
    tally: Arc<WorkerTally>,
) -> Result<LeaseHeartbeat, PipelineError> {
    let client = connect(target, "switchyard backfill leases").await?;
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        loop {
            let finished = *stopped.borrow();
            if let Err(e) = beat(&client, &ctx, &tally, finished).await {
                tracing::warn!(error = %Chain::new(&e), "the lease heartbeat failed; trying again");
            }
            if finished {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(LEASE_BEAT) => {}
                _ = stopped.changed() => {}
            }
        }
    });
    Ok(LeaseHeartbeat {
        stop,
        task: Some(task),
    })
}

impl LeaseHeartbeat {
    /// Stops beating; `finished` records the process as done in `switchyard.workers`.
    pub async fn finish(mut self, finished: bool) {
        if finished {
            let _ = self.stop.send(true);
            if let Some(task) = self.task.take() {
                let _ = task.await;
            }
        }
    }
}

impl Drop for LeaseHeartbeat {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn beat(
    client: &Client,
    ctx: &ChunkContext,
    tally: &WorkerTally,
    finished: bool,
) -> Result<(), checkpoint::CheckpointError> {
    leases::extend_leases(client, &ctx.migration, &ctx.lease_owner, LEASE_TTL).await?;
    checkpoint::worker_heartbeat(
        client,
        &ctx.migration,
        &ctx.lease_owner,
        tally.get(),
        finished,
    )
    .await?;
    // Chunks done by every process, not only this one's.
    for (table, done, total, _) in checkpoint::chunk_progress(client, &ctx.migration).await? {
        let mut sources = ctx.plan.sources.iter().map(|s| s.table.to_string());
        if let Some(i) = sources.position(|s| s == table) {
            let t = &ctx.progress.tables[i];
            t.chunks_done.store(done as u64, Ordering::Relaxed);
            t.chunks_total.store(total as u64, Ordering::Relaxed);
        }
    }
    let workers = checkpoint::workers(client, &ctx.migration).await?;
    *ctx.progress.workers.lock().expect("workers poisoned") = workers;
    Ok(())
}
