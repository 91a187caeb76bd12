//! Applies a group of source transactions to the target, set-based, and in source order when
//! the set-based write is refused.
//!
//! Operations are coalesced per output key first: only the last operation of a key matters
//! within one target transaction (an insert then a delete is a delete; a delete then an insert
//! is an upsert), and insert-if-absent rows keep their first version. Then, per output, the
//! deletes run as one `DELETE ... USING` and the upserts as one `INSERT ... ON CONFLICT`, each
//! fed by COPY: a few statements per output per group, never one per row.
//!
//! Coalescing chooses an order the source never had. Two rows that exchange a unique value
//! (through a temporary value, in one source transaction or in several of the group) end in a
//! state the source reached, but one statement that moves both at once meets the other row's
//! old value first and is refused. So every operation is also kept in source order, and when
//! the target refuses an output's set-based write, that output's operations are replayed one
//! by one in source order ([`super::replay`]): each intermediate state is one the source
//! accepted, so only a row the target itself refuses (a constraint or a type the source does
//! not have) ends in the dead-letter table.
//!
//! ```text
//!   add(op) ──> log: every op in source order ──(refused)──> replay in source order
//!          └──> last: key -> its op in the log ──────────────> set-based delete + upsert
//! ```

use rustc_hash::{FxHashMap, FxHashSet};
use tokio_postgres::Transaction;

use crate::transform::change::OutputOp;
use crate::transform::program::{SourcePlan, WriteMode};

use super::copy_in::{OutputWriter, WriteError};
use super::replay::{Op, Replayed};

/// What to do when the target refuses an output's set-based write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRefused {
    /// Replay the output's operations in source order, and return the rows still refused.
    ReplayInSourceOrder,
    /// Return at once: the operations are a share of a group (an apply lane's), and only the
    /// whole group in one transaction can be replayed in source order.
    Report,
}

/// What a flush did.
#[derive(Debug)]
pub enum Flushed {
    /// Everything was written, except the rows the target refused as (plan-wide output,
    /// origin, reason).
    Applied { refused: Vec<(usize, u32, String)> },
    /// Under [`OnRefused::Report`]: the target refused the set-based write into `table`.
    Refused { table: String, reason: String },
}

/// The operations of one output in a group.
#[derive(Debug, Default)]
struct OutputOps {
    /// Every operation, in source order: what a replay applies.
    log: Vec<Op>,
    /// Per key, the index in `log` of the operation the set-based write applies.
    last: FxHashMap<Vec<u8>, usize>,
}

/// Coalesced operations for every output of the plan (outputs numbered across sources).
#[derive(Debug, Default)]
pub struct ApplyBatch {
    outputs: Vec<OutputOps>,
    /// Bytes held (every operation, coalesced or not), to flush before memory grows with a
    /// large source transaction.
    bytes: usize,
}

impl ApplyBatch {
    pub fn new(output_count: usize) -> ApplyBatch {
        ApplyBatch {
            outputs: (0..output_count).map(|_| OutputOps::default()).collect(),
            bytes: 0,
        }
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.outputs.iter().all(|o| o.log.is_empty())
    }

    /// Adds one change's operations (`ops` name the source's outputs by their index in it).
    pub fn add(&mut self, source: &SourcePlan, ops: Vec<OutputOp>, origin: u32) {
        for op in ops {
            self.add_op(source, op, origin);
        }
    }

    /// Adds one operation of a change of `source`.
    pub fn add_op(&mut self, source: &SourcePlan, op: OutputOp, origin: u32) {
        match op {
            OutputOp::Upsert { output, row, key } => {
                let plan = &source.outputs[output];
                self.bytes += row.len() + 2 * key.len();
                let slot = &mut self.outputs[plan.number];
                if plan.mode == WriteMode::InsertIfAbsent && slot.last.contains_key(&key) {
                    return;
                }
                slot.last.insert(key, slot.log.len());
                slot.log.push(Op::Upsert { row, origin });
            }
            OutputOp::Delete { output, key } => {
                self.bytes += 2 * key.len();
                let slot = &mut self.outputs[source.outputs[output].number];
                slot.last.insert(key.clone(), slot.log.len());
                slot.log.push(Op::Delete { key, origin });
            }
        }
    }

    /// Writes everything into `tx` and empties the batch. Returns the refused rows as
    /// (plan-wide output, origin, reason); under [`OnRefused::Report`], the first refused
    /// set-based write instead, with the batch left as it was (the caller rolls back).
    pub async fn flush(
        &mut self,
        tx: &Transaction<'_>,
        writers: &[OutputWriter],
        on_refused: OnRefused,
    ) -> Result<Flushed, WriteError> {
        let mut refused = Vec::new();
        for (number, ops) in self.outputs.iter_mut().enumerate() {
            if ops.log.is_empty() {
                continue;
            }
            let (mut deletes, mut rows) = (Vec::new(), Vec::new());
            for &index in ops.last.values() {
                match &ops.log[index] {
                    Op::Delete { key, .. } => deletes.extend_from_slice(key),
                    Op::Upsert { row, .. } => rows.push(row.as_slice()),
                }
            }
            // One row (a large one is usually alone) goes out as it is in the log: no copy.
            let joined;
            let upserts: &[u8] = match rows.as_slice() {
                [row] => row,
                _ => {
                    joined = rows.concat();
                    &joined
                }
            };
            let writer = &writers[number];
            if let Some(reason) = writer.apply_set(tx, &deletes, upserts).await? {
                if on_refused == OnRefused::Report {
                    return Ok(Flushed::Refused {
                        table: writer.table().to_owned(),
                        reason,
                    });
                }
                tracing::debug!(table = writer.table(), %reason, ops = ops.log.len(), "set-based write refused; replaying in source order");
                let Replayed { refused: failed } = writer.replay(tx, &ops.log).await?;
                // Only a key's last operation is the row the target must hold; an earlier
                // version refused on the way is superseded, as coalescing would have done.
                let last: FxHashSet<usize> = ops.last.values().copied().collect();
                refused.extend(
                    failed
                        .into_iter()
                        .filter(|(index, _)| last.contains(index))
                        .map(|(index, reason)| (number, ops.log[index].origin(), reason)),
                );
            }
            ops.log.clear();
            ops.last.clear();
        }
        self.bytes = 0;
        Ok(Flushed::Applied { refused })
    }
}
