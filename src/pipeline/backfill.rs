//! The backfill's worker pool: wiring only.
//!
//! ```text
//!   chunk queue ──pull──> worker 1: source reader (snapshot tx) ─> rayon ─> target tx per chunk
//!               ──pull──> worker 2: ...
//!               ──pull──> worker N
//! ```
//! Every worker owns one source connection inside the exported snapshot and one target
//! connection (a replica session, as the follow's: [`crate::sink::replication_role`], that
//! commits asynchronously: [`crate::sink::async_commit`]); it pulls chunks until the queue is
//! empty or another worker failed.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio_postgres::Client;

use crate::checkpoint::Chunk;
use crate::error::Chain;
use crate::pg::connect::connect;
use crate::pg::conninfo::ConnInfo;
use crate::sink::async_commit::commit_asynchronously;
use crate::sink::copy_in::{OutputWriter, WriterMode};
use crate::sink::replication_role::set_replica;
use crate::transform::copy_binary::RowFormat;

use super::chunk_copy::{copy_chunk, ChunkContext, Worker};
use super::error::PipelineError;

/// Attempts per chunk when it meets a deadlock (two chunks inserting the same shared rows).
const MAX_CHUNK_ATTEMPTS: u32 = 5;

/// Copies `chunks` with one worker per reader.
pub async fn copy_chunks(
    ctx: Arc<ChunkContext>,
    chunks: Vec<Chunk>,
    readers: Vec<Client>,
    target: &ConnInfo,
    resumed: bool,
) -> Result<(), PipelineError> {
    let queue = Arc::new(Mutex::new(VecDeque::from(chunks)));
    let failed = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
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
        let mut worker = Worker {
            reader,
            target,
            shared_rows,
            writers,
        };
        let (ctx, queue, failed) = (Arc::clone(&ctx), Arc::clone(&queue), Arc::clone(&failed));
        workers.push(tokio::spawn(async move {
            loop {
                // Paused (or the source is busy): the chunk just copied is committed; the next
                // waits. The snapshot stays meanwhile: each reader's transaction holds it.
                ctx.gate.clear().await;
                if failed.load(Ordering::Relaxed) {
                    return Ok(());
                }
                let Some(chunk) = queue.lock().expect("queue poisoned").pop_front() else {
                    return Ok(());
                };
                let source_index = ctx
                    .plan
                    .sources
                    .iter()
                    .position(|s| s.table.to_string() == chunk.source_table)
                    .expect("chunks are made from the plan's sources");
                let mut attempt = 1;
                loop {
                    match copy_chunk(&ctx, &mut worker, source_index, &chunk).await {
                        Ok(()) => break,
                        Err(e) if e.is_retryable() && attempt < MAX_CHUNK_ATTEMPTS => {
                            tracing::warn!(chunk = chunk.chunk_no, table = %chunk.source_table, error = %Chain::new(&e), "retrying the chunk");
                            attempt += 1;
                        }
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            return Err(e);
                        }
                    }
                }
            }
        }));
    }
    let mut first_error = None;
    for w in workers {
        match w.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(_) => {
                first_error.get_or_insert(PipelineError::WorkerPanicked);
            }
        }
    }
    first_error.map_or(Ok(()), Err)
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
