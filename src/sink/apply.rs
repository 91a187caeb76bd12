//! Applies a group of source transactions to the target, set-based.
//!
//! Operations are coalesced per output key first: only the last operation of a key matters
//! within one target transaction (an insert then a delete is a delete; a delete then an insert
//! is an upsert), and insert-if-absent rows keep their first version. Then, per output, the
//! deletes run as one `DELETE ... USING` and the upserts as one `INSERT ... ON CONFLICT`, each
//! fed by COPY: a few statements per output per group, never one per row.

use rustc_hash::FxHashMap;
use tokio_postgres::Transaction;

use crate::plan::{OutputPlan, SourcePlan, WriteMode};
use crate::transform::batch::OutputRows;
use crate::transform::change::OutputOp;

use super::copy_in::{OutputWriter, Refused, WriteError};

/// The last operation for a key, and the change it came from (for dead letters).
#[derive(Debug)]
enum Last {
    Upsert { row: Vec<u8>, origin: u32 },
    Delete { key: Vec<u8> },
}

/// Coalesced operations for every output of the plan (outputs numbered across sources).
#[derive(Debug, Default)]
pub struct ApplyBatch {
    outputs: Vec<FxHashMap<Vec<u8>, Last>>,
    /// Bytes held, to flush before memory grows with a large source transaction.
    bytes: usize,
}

/// Where each output of each source sits in the plan-wide numbering.
pub fn output_numbers(sources: &[SourcePlan]) -> Vec<Vec<usize>> {
    let mut next = 0;
    sources
        .iter()
        .map(|s| {
            (0..s.outputs.len())
                .map(|_| {
                    next += 1;
                    next - 1
                })
                .collect()
        })
        .collect()
}

impl ApplyBatch {
    pub fn new(output_count: usize) -> ApplyBatch {
        ApplyBatch {
            outputs: (0..output_count).map(|_| FxHashMap::default()).collect(),
            bytes: 0,
        }
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.outputs.iter().all(|o| o.is_empty())
    }

    /// Adds one change's operations; `numbers` maps the source's outputs to plan-wide ones.
    pub fn add(&mut self, source: &SourcePlan, numbers: &[usize], ops: Vec<OutputOp>, origin: u32) {
        for op in ops {
            match op {
                OutputOp::Upsert { output, row } => {
                    let plan = &source.outputs[output];
                    let key = key_of(plan, &row);
                    self.bytes += row.len() + key.len();
                    let slot = &mut self.outputs[numbers[output]];
                    if plan.mode == WriteMode::InsertIfAbsent && slot.contains_key(&key) {
                        continue;
                    }
                    slot.insert(key, Last::Upsert { row, origin });
                }
                OutputOp::Delete { output, key } => {
                    self.bytes += 2 * key.len();
                    self.outputs[numbers[output]].insert(key.clone(), Last::Delete { key });
                }
            }
        }
    }

    /// Writes everything into `tx` and empties the batch. Returns the refused rows as
    /// (plan-wide output, origin, reason).
    pub async fn flush(
        &mut self,
        tx: &Transaction<'_>,
        writers: &[OutputWriter],
    ) -> Result<Vec<(usize, u32, String)>, WriteError> {
        let mut refused = Vec::new();
        for (number, ops) in self.outputs.iter_mut().enumerate() {
            if ops.is_empty() {
                continue;
            }
            let mut deletes = Vec::new();
            let mut upserts = OutputRows::default();
            for (_, last) in ops.drain() {
                match last {
                    Last::Delete { key } => deletes.extend_from_slice(&key),
                    // The first row's buffer becomes the batch's: a large row is not copied.
                    Last::Upsert { row, origin } if upserts.data.is_empty() => {
                        upserts.data = row;
                        upserts.row_ends.push(upserts.data.len() as u32);
                        upserts.origins.push(origin);
                    }
                    Last::Upsert { row, origin } => {
                        upserts.data.extend_from_slice(&row);
                        upserts.row_ends.push(upserts.data.len() as u32);
                        upserts.origins.push(origin);
                    }
                }
            }
            if !deletes.is_empty() {
                writers[number].delete(tx, &deletes).await?;
            }
            let rejected: Vec<Refused> = writers[number].write(tx, &upserts).await?;
            refused.extend(
                rejected
                    .into_iter()
                    .map(|(row, reason)| (number, upserts.origins[row], reason)),
            );
        }
        self.bytes = 0;
        Ok(refused)
    }
}

/// The key fields of an output row (COPY text), in key order, without collecting the row's
/// fields: this runs for every change.
fn key_of(plan: &OutputPlan, row: &[u8]) -> Vec<u8> {
    let row = row.strip_suffix(b"\n").unwrap_or(row);
    let mut key = Vec::with_capacity(64);
    for (i, &position) in plan.key_positions.iter().enumerate() {
        if i > 0 {
            key.push(b'\t');
        }
        let field = row.split(|b| *b == b'\t').nth(position).unwrap_or_default();
        key.extend_from_slice(field);
    }
    key.push(b'\n');
    key
}
