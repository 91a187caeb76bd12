//! The transformed source, streamed into temp tables on the target.
//!
//! ```text
//!  source (REPEATABLE READ snapshot)     rayon pool                target (verify's session)
//!  COPY (SELECT cols FROM t) TO STDOUT ─batch─> transform_batch ─rows─> COPY pg_temp.<output>
//!       reads batch k+1          while       batch k is transformed and written
//! ```
//!
//! The same code as the backfill (`copy_out`, [`transform_on_pool`]) produces the rows, so verify
//! checks the transforms' output as the backfill and the consumer would write it. The tool holds
//! one batch at a time ([`copy_out::BATCH_BYTES`]); the table itself lands in temp tables on
//! the target, where PostgreSQL's own input functions turn the transform's text into typed
//! values, exactly as the real COPY into the output table would.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::SinkExt;
use tokio_postgres::Client;

use crate::checkpoint::Chunk;
use crate::pg::ident::quote_ident;
use crate::pipeline::transform_pool::{transform_on_pool, WorkerPanicked};
use crate::plan::Plan;
use crate::sink::dead_letter::{DeadLetter, Rejects};
use crate::source::copy_out;
use crate::transform::batch::TransformedBatch;
use crate::transform::copy_binary::RowFormat;
use crate::transform::row::Rejected;

use super::error::VerifyError;
use super::lookups::ReadOnlyLookups;
use super::outputs::OutputSpec;

/// Rejected rows kept per source for the report; the rest are only counted.
const REJECTED_SHOWN: usize = 20;

/// The temp table holding the transformed rows of output `spec` (index into the specs).
pub fn temp_table(spec: usize) -> String {
    format!("pg_temp.switchyard_verify_{spec}")
}

/// Creates one temp table per output: the output's columns and types (`LIKE`, so a value is
/// read by the same input function), its defaults (for columns a source does not write), and
/// no NOT NULL, so a transformed row the target would refuse is still compared, not lost.
pub async fn create_temp_tables(target: &Client, specs: &[OutputSpec]) -> Result<(), VerifyError> {
    for (i, spec) in specs.iter().enumerate() {
        let temp = temp_table(i);
        target
            .batch_execute(&format!(
                "DROP TABLE IF EXISTS {temp}; CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS)",
                temp.trim_start_matches("pg_temp."),
                spec.table.quoted()
            ))
            .await
            .map_err(VerifyError::target(format!(
                "creating a temp table like {}",
                spec.table
            )))?;
        let not_null = target
            .query(
                "SELECT attname::text FROM pg_attribute WHERE attrelid = $1::text::regclass AND attnum > 0 AND attnotnull AND NOT attisdropped",
                &[&temp],
            )
            .await
            .map_err(VerifyError::target("reading the temp table's columns"))?;
        for row in not_null {
            let column: String = row.get(0);
            target
                .batch_execute(&format!(
                    "ALTER TABLE {temp} ALTER COLUMN {} DROP NOT NULL",
                    quote_ident(&column)
                ))
                .await
                .map_err(VerifyError::target("relaxing the temp table"))?;
        }
    }
    Ok(())
}

/// What one scan of a source read.
#[derive(Debug, Default, Clone)]
pub struct SourceScan {
    pub source_rows: u64,
    pub rejected_rows: u64,
    /// The first rejected rows: source key and reason.
    pub rejected: Vec<Rejected>,
}

/// Streams `plan.sources[source]` (read on `reader`, inside the round's snapshot) through its
/// transform into the temp tables of the outputs in `wanted` (indexes into `specs`).
pub async fn scan_source(
    reader: &Client,
    target: &Client,
    plan: &Arc<Plan>,
    lookups: &Arc<ReadOnlyLookups>,
    specs: &[OutputSpec],
    wanted: &[usize],
    source: usize,
) -> Result<SourceScan, VerifyError> {
    let plan_source = &plan.sources[source];
    // Where each output of the source goes: its temp table and column list, or nowhere.
    let statements: Vec<Option<String>> = (0..plan_source.outputs.len())
        .map(|o| {
            let spec = wanted
                .iter()
                .copied()
                .find(|&i| specs[i].feeds.contains(&(source, o)))?;
            let columns: Vec<String> = plan_source.outputs[o]
                .columns
                .iter()
                .map(|c| quote_ident(c))
                .collect();
            Some(format!(
                "COPY {} ({}) FROM STDIN",
                temp_table(spec),
                columns.join(", ")
            ))
        })
        .collect();
    let whole_table = Chunk {
        source_table: plan_source.table.to_string(),
        chunk_no: 0,
        first_block: 0,
        end_block: None,
    };
    let reading = format!("COPY out of {}", plan_source.table);
    let mut batches = copy_out::start(reader, plan_source, &whole_table)
        .await
        .map_err(VerifyError::source(reading.clone()))?;
    let mut scan = SourceScan::default();
    let mut rejects = Rejects::counted(REJECTED_SHOWN);
    let mut next = batches
        .next()
        .await
        .map_err(VerifyError::source(reading.clone()))?;
    while let Some(batch) = next {
        let write = async {
            // Verify's temporary tables take COPY text.
            let text: Arc<[RowFormat]> = Arc::new([]);
            let transformed = transform_on_pool(plan, lookups, &text, source, batch)
                .await
                .map_err(|WorkerPanicked| VerifyError::WorkerPanicked)?;
            write_batch(target, &statements, transformed).await
        };
        let (written, following) = tokio::join!(write, batches.next());
        let transformed = written?;
        scan.source_rows += transformed.source_rows;
        for rejected in transformed.rejected {
            let letter = DeadLetter {
                rejected,
                output_table: None,
            };
            rejects.push(source, letter);
        }
        next = following.map_err(VerifyError::source(reading.clone()))?;
    }
    scan.rejected_rows = rejects.count();
    scan.rejected = rejects.into_kept();
    Ok(scan)
}

/// COPYs each output's rows of a batch into its temp table; returns the batch for its counts.
async fn write_batch(
    target: &Client,
    statements: &[Option<String>],
    mut batch: TransformedBatch,
) -> Result<TransformedBatch, VerifyError> {
    for (statement, rows) in statements.iter().zip(batch.outputs.iter_mut()) {
        let Some(statement) = statement else { continue };
        if rows.is_empty() {
            continue;
        }
        let context = || format!("{statement} (the transformed rows)");
        let sink = target
            .copy_in::<_, Bytes>(statement.as_str())
            .await
            .map_err(VerifyError::target(context()))?;
        futures_util::pin_mut!(sink);
        sink.send(Bytes::from(std::mem::take(&mut rows.data)))
            .await
            .map_err(VerifyError::target(context()))?;
        sink.finish()
            .await
            .map_err(VerifyError::target(context()))?;
    }
    Ok(batch)
}
