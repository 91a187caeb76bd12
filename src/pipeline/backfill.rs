//! The backfill's worker pool: wiring only.
//!
//! ```text
//!   switchyard.chunks ──lease──> worker 1: source reader (snapshot tx) ─> rayon ─> target tx per chunk
//!   (shared by every  ──lease──> worker 2: ...
//!    process, --join) ──lease──> worker N
//!                     <─extend── lease heartbeat (every LEASE_BEAT; also the progress of all)
//! ```
//! Every worker owns one source connection inside the exported snapshot and one target
//! connection (a replica session, as the follow's: [`crate::sink::replication_role`], that
//! commits asynchronously: [`crate::sink::async_commit`]). It leases chunks from the table
//! (one code path for the first process and for every `backfill --join`, see
//! [`crate::checkpoint::leases`]) until every chunk is done, by whichever process, or another
//! worker failed. With nothing free to take it waits, because a chunk leased by a worker that
//! dies comes free when its lease expires and is taken over.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio_postgres::Client;

use crate::checkpoint::leases::{chunks_left, take_lease, ChunksLeft};
use crate::error::Chain;
use crate::pg::connect::connect;
use crate::pg::conninfo::ConnInfo;
use crate::sink::async_commit::commit_asynchronously;
use crate::sink::copy_in::{OutputWriter, WriterMode};
use crate::sink::replication_role::set_replica;
use crate::transform::copy_binary::RowFormat;

use super::chunk_copy::{copy_chunk, ChunkContext, Copied, Worker};
use super::error::PipelineError;
use super::lease_heartbeat::{self, WorkerTally, LEASE_TTL};

/// Attempts per chunk when it meets a deadlock (two chunks inserting the same shared rows).
const MAX_CHUNK_ATTEMPTS: u32 = 5;

/// How long a worker with nothing free to take waits before looking again: short next to
/// [`LEASE_TTL`], so a dead worker's chunk is taken over soon after it comes free, and one
/// cheap query per worker per period.
const IDLE_POLL: std::time::Duration = std::time::Duration::from_millis(300);

/// Copies chunks with one worker per reader until every chunk of the migration is done.
pub async fn copy_chunks(
    ctx: Arc<ChunkContext>,
    readers: Vec<Client>,
    target: &ConnInfo,
    resumed: bool,
    tally: Arc<WorkerTally>,
) -> Result<(), PipelineError> {
    let heartbeat = lease_heartbeat::start(target, Arc::clone(&ctx), Arc::clone(&tally)).await?;
    let failed = Arc::new(AtomicBool::new(false));
    // Dropping the set aborts the workers: a stopped copy (Ctrl-C drops this future) ends
    // its chunk transactions now, not when the process exits, so what the caller does next
    // (give up the leases, say the chunks in flight rolled back) is true.
    let mut workers = tokio::task::JoinSet::new();
    for reader in readers {
        let target_info = target;
        let target = connect(target_info, "switchyard backfill").await?;
        set_replica(&target).await?;
        // Safe for chunks only: a chunk and its `done` mark are lost or kept together.
        commit_asynchronously(&target)
            .await
            .map_err(|e| PipelineError::target("setting synchronous_commit = off", e))?;
        let shared_rows = connect(target_info, "switchyard backfill").await?;
        set_replica(&shared_rows).await?;
        // Safe too: a batch's shared rows commit before its chunk, earlier in the WAL, so a
        // chunk whose commit survives a crash has its shared rows; a lost chunk is copied again.
        commit_asynchronously(&shared_rows)
            .await
            .map_err(|e| PipelineError::target("setting synchronous_commit = off", e))?;
        let writers = output_writers(&target, &shared_rows, &ctx, resumed).await?;
        let worker = Worker {
            reader,
            target,
            shared_rows,
            writers,
        };
        let (ctx, failed, tally) = (Arc::clone(&ctx), Arc::clone(&failed), Arc::clone(&tally));
        workers.spawn(async move {
            let run = work(&ctx, worker, &failed, &tally).await;
            if run.is_err() {
                failed.store(true, Ordering::Relaxed);
            }
            run
        });
    }
    let mut first_error = None;
    while let Some(w) = workers.join_next().await {
        match w {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(_) => {
                first_error.get_or_insert(PipelineError::WorkerPanicked);
            }
        }
    }
    heartbeat.finish(first_error.is_none()).await;
    first_error.map_or(Ok(()), Err)
}

/// One worker: lease, copy, repeat, until no chunk is left or another worker failed.
async fn work(
    ctx: &ChunkContext,
    mut worker: Worker,
    failed: &AtomicBool,
    tally: &WorkerTally,
) -> Result<(), PipelineError> {
    while !failed.load(Ordering::Relaxed) {
        // Paused (or the source is busy): the chunk just copied is committed; no lease is
        // taken until the gate clears. The snapshot stays: each reader's transaction holds it.
        ctx.gate.clear().await;
        if failed.load(Ordering::Relaxed) {
            return Ok(());
        }
        let taken = take_lease(
            &worker.target,
            &ctx.migration,
            &ctx.lease_owner,
            &ctx.snapshot,
            LEASE_TTL,
        )
        .await?;
        let Some(chunk) = taken else {
            match chunks_left(&worker.target, &ctx.migration, &ctx.snapshot).await? {
                ChunksLeft::None => return Ok(()),
                ChunksLeft::SnapshotReplaced => return Err(PipelineError::SnapshotReplaced),
                ChunksLeft::Leased => {
                    tokio::time::sleep(IDLE_POLL).await;
                    continue;
                }
            }
        };
        let source_index = ctx
            .plan
            .sources
            .iter()
            .position(|s| s.table.to_string() == chunk.source_table)
            .expect("chunks are made from the plan's sources");
        let mut attempt = 1;
        loop {
            match copy_chunk(ctx, &mut worker, source_index, &chunk).await {
                Ok(Copied::Done { row_count }) => {
                    tally.chunks_done.fetch_add(1, Ordering::Relaxed);
                    tally
                        .row_count
                        .fetch_add(row_count as i64, Ordering::Relaxed);
                    break;
                }
                Ok(Copied::LeaseLost) => {
                    tracing::warn!(chunk = chunk.chunk_no, table = %chunk.source_table, "the chunk's lease expired and another worker took it over; this copy was rolled back");
                    break;
                }
                Err(e) if e.is_retryable() && attempt < MAX_CHUNK_ATTEMPTS => {
                    tracing::warn!(chunk = chunk.chunk_no, table = %chunk.source_table, error = %Chain::new(&e), "retrying the chunk");
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Writers for every output of every source, indexed like the plan: the outputs
/// [`crate::plan::Plan::writes_apart`] names on `shared_rows`, the others on `client` (see
/// [`Worker`]); staging tables are named after the output's plan-wide number.
async fn output_writers(
    client: &Client,
    shared_rows: &Client,
    ctx: &ChunkContext,
    resumed: bool,
) -> Result<Vec<Vec<OutputWriter>>, PipelineError> {
    let mut all = Vec::new();
    for source in &ctx.plan.sources {
        let mut writers = Vec::new();
        for output in &source.outputs {
            let on = if ctx.plan.writes_apart(output) {
                shared_rows
            } else {
                client
            };
            writers.push(
                OutputWriter::new(
                    on,
                    output,
                    if resumed {
                        WriterMode::ResumedBackfill
                    } else {
                        WriterMode::FreshBackfill
                    },
                    ctx.formats
                        .get(output.number)
                        .unwrap_or(&RowFormat::Text)
                        .is_binary(),
                )
                .await?,
            );
        }
        all.push(writers);
    }
    Ok(all)
}
