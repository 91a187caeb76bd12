//! One chunk, start to finish: COPY out of the source -> transform on the rayon pool -> COPY
//! into the target, all in one target transaction that also marks the chunk done.
//!
//! ```text
//!   source (snapshot tx)         rayon pool              target (one tx per chunk)
//!   COPY ... TO STDOUT ──batch──> transform_batch ──rows──> COPY / staged upsert per output
//!   reads and transforms batch k+1          while           batch k is written
//! ```

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use tokio_postgres::{Client, Transaction};

use crate::checkpoint::leases::LeaseOwner;
use crate::checkpoint::{self, Chunk};
use crate::plan::{OnError, Plan};
use crate::sink::copy_in::OutputWriter;
use crate::sink::dead_letter::{DeadLetter, Rejects};
use crate::sink::lookup::LookupCache;
use crate::source::copy_out;
use crate::transform::batch::{describe_origin, TransformedBatch};
use crate::transform::copy_binary::RowFormat;

use super::control::Gate;
use super::error::PipelineError;
use super::transform_pool::{transform_on_pool, WorkerPanicked};
use crate::progress::{BackfillProgress, TableProgress};

/// What a worker needs for every chunk it copies.
pub struct ChunkContext {
    pub plan: Arc<Plan>,
    pub migration: String,
    pub lookups: Arc<LookupCache>,
    pub on_error: OnError,
    pub progress: Arc<BackfillProgress>,
    /// Each output's COPY format, indexed by its number (see [`crate::sink::copy_format`]).
    pub formats: Arc<[RowFormat]>,
    /// Pause, rate cap and source load: see [`super::control`].
    pub gate: Gate,
    /// This process, as the chunks' leases name it (see [`checkpoint::leases`]).
    pub lease_owner: LeaseOwner,
    /// The exported snapshot the readers imported: chunks are taken only while the migration
    /// still reads under it.
    pub snapshot: String,
}

/// How one chunk ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copied {
    /// Its rows and its done mark committed; this many source rows.
    Done { row_count: u64 },
    /// Another worker took the chunk over after this one's lease expired: everything this
    /// attempt wrote was rolled back, and the other worker's copy counts.
    LeaseLost,
}

/// What one worker owns: its snapshot reader, its target connections and its output writers
/// (indexed like the plan's sources and outputs).
pub struct Worker {
    pub reader: Client,
    /// Writes the chunk's transaction: its upsert outputs, dead letters and `done` mark.
    pub target: Client,
    /// Writes insert-if-absent outputs (rows many source rows share, like teams), each batch's
    /// in a short transaction of its own. In the chunk's transaction, two chunks inserting the
    /// same shared keys batch after batch would lock them in no common order and deadlock;
    /// committed at once, every transaction takes its keys in one sorted statement. Committing
    /// them ahead of the chunk loses nothing: they are inserted if absent, so a chunk that
    /// rolls back and is copied again finds them there and inserts nothing twice. Not an
    /// insert-if-absent output whose table an upsert output also writes: see
    /// [`Plan::writes_apart`].
    pub shared_rows: Client,
    pub writers: Vec<Vec<OutputWriter>>,
}

/// Copies one chunk of `plan.sources[source_index]`, whose lease this process holds.
pub async fn copy_chunk(
    ctx: &ChunkContext,
    worker: &mut Worker,
    source_index: usize,
    chunk: &Chunk,
) -> Result<Copied, PipelineError> {
    let plan_source = &ctx.plan.sources[source_index];
    let progress: &TableProgress = &ctx.progress.tables[source_index];
    let writers = &worker.writers[source_index];
    let (source, target) = (&worker.reader, &mut worker.target);
    let shared_rows = &mut worker.shared_rows;
    // Rows shown in the progress display by this attempt; taken back if it fails, so that a
    // retried chunk is not counted twice.
    let mut shown = 0u64;
    let attempt = async {
        let mut batches = copy_out::start(source, plan_source, chunk)
            .await
            .map_err(|e| PipelineError::source(format!("COPY out of {}", plan_source.table), e))?;
        let tx = target
            .transaction()
            .await
            .map_err(|e| PipelineError::target("starting a chunk transaction", e))?;
        let (mut rows, mut rejected) = (0i64, 0i64);
        let reading = |e| PipelineError::source(format!("COPY out of {}", plan_source.table), e);
        let transform = |batch: Bytes| async move {
            let transformed = transform_on_pool(
                &ctx.plan,
                &ctx.lookups,
                &ctx.formats,
                source_index,
                batch.clone(),
            )
            .await
            .map_err(|WorkerPanicked| PipelineError::WorkerPanicked)?;
            Ok::<_, PipelineError>((batch, transformed))
        };
        let mut next = match batches.next().await.map_err(reading)? {
            Some(batch) => Some(transform(batch).await?),
            None => None,
        };
        while let Some((batch, transformed)) = next {
            let to = Targets {
                chunk: &tx,
                shared_rows: &mut *shared_rows,
            };
            let write = write_batch(ctx, source_index, writers, to, &batch, transformed);
            // The next batch is read and transformed while this one is written.
            let following = async {
                match batches.next().await.map_err(reading)? {
                    Some(batch) => transform(batch).await.map(Some),
                    None => Ok::<_, PipelineError>(None),
                }
            };
            let (written, following) = tokio::join!(write, following);
            let (batch_rows, batch_rejected) = written?;
            rows += batch_rows as i64;
            rejected += batch_rejected as i64;
            progress.rows.fetch_add(batch_rows, Ordering::Relaxed);
            shown += batch_rows;
            next = following?;
            // Inside the chunk, not only between chunks: a chunk is 8 MB of heap, seconds of
            // work at a low cap, and a busy source should not wait that long.
            ctx.gate.pace(batch_rows).await;
        }
        let owned =
            checkpoint::finish_chunk(&tx, &ctx.migration, chunk, &ctx.lease_owner, rows, rejected)
                .await?;
        if !owned {
            // Dropping the transaction rolls the rows back: the new owner's copy counts.
            return Ok(None);
        }
        tx.commit()
            .await
            .map_err(|e| PipelineError::target("committing a chunk", e))?;
        Ok::<_, PipelineError>(Some((rows, rejected)))
    };
    match attempt.await {
        Ok(Some((rows, rejected))) => {
            ctx.progress
                .rejected
                .fetch_add(rejected as u64, Ordering::Relaxed);
            progress
                .rejected
                .fetch_add(rejected as u64, Ordering::Relaxed);
            progress.chunks_done.fetch_add(1, Ordering::Relaxed);
            Ok(Copied::Done {
                row_count: rows as u64,
            })
        }
        Ok(None) => {
            progress.rows.fetch_sub(shown, Ordering::Relaxed);
            Ok(Copied::LeaseLost)
        }
        Err(e) => {
            progress.rows.fetch_sub(shown, Ordering::Relaxed);
            Err(e)
        }
    }
}

/// Where a batch is written: see [`Worker`].
struct Targets<'a, 't> {
    chunk: &'a Transaction<'t>,
    shared_rows: &'a mut Client,
}

/// Writes a transformed batch and its rejects; returns (source rows, rejected rows).
async fn write_batch(
    ctx: &ChunkContext,
    source_index: usize,
    writers: &[OutputWriter],
    to: Targets<'_, '_>,
    text: &[u8],
    batch: TransformedBatch,
) -> Result<(u64, u64), PipelineError> {
    let tx = to.chunk;
    let source = &ctx.plan.sources[source_index];
    let mut rejects = Rejects::new(ctx.on_error);
    for rejected in batch.rejected {
        let letter = DeadLetter {
            rejected,
            output_table: None,
        };
        rejects.push(source_index, letter);
    }
    let parts = writers.iter().zip(&batch.outputs).zip(&batch.text_rows);
    for (((writer, rows), text_rows), output) in parts.zip(&source.outputs) {
        if rows.is_empty() && text_rows.is_empty() {
            continue;
        }
        let shared = ctx.plan.writes_apart(output);
        let own = if shared {
            Some(
                to.shared_rows
                    .transaction()
                    .await
                    .map_err(|e| PipelineError::target("starting a shared rows transaction", e))?,
            )
        } else {
            None
        };
        let into = own.as_ref().unwrap_or(tx);
        let refused = writer.write(into, rows).await?;
        let refused_as_text = writer.write_text(into, text_rows).await?;
        if let Some(own) = own {
            own.commit()
                .await
                .map_err(|e| PipelineError::target("committing shared rows", e))?;
        }
        let origins = refused
            .into_iter()
            .map(|(row, reason)| (rows.origins[row], reason))
            .chain(
                refused_as_text
                    .into_iter()
                    .map(|(row, reason)| (text_rows.origins[row], reason)),
            );
        for (origin, reason) in origins {
            let letter = DeadLetter {
                rejected: describe_origin(source, text, origin, reason),
                output_table: Some(writer.table().to_owned()),
            };
            rejects.push(source_index, letter);
        }
    }
    rejects.check(&ctx.plan.sources)?;
    rejects
        .write(tx, &ctx.migration, "backfill", &ctx.plan.sources)
        .await
        .map_err(|e| PipelineError::target("writing dead letters", e))?;
    Ok((batch.source_rows, rejects.count()))
}
