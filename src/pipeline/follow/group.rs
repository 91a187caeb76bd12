//! One group of source transactions, applied in one target transaction: the row changes go
//! through the same transforms as the backfill into coalesced operations, flushed into the
//! transaction whenever they hold [`GROUP_BYTES`]; at the group's end, the applied LSN (and a
//! fence met) is recorded in the same transaction before it commits.

use std::time::{Duration, Instant};

use tokio_postgres::{Client, Transaction};

use crate::checkpoint;
use crate::pg::lsn::Lsn;
use crate::pg::pgoutput::CommitBody;
use crate::plan::{OnError, Plan};
use crate::sink::apply::ApplyBatch;
use crate::sink::copy_in::OutputWriter;
use crate::sink::dead_letter::{DeadLetter, Rejects};
use crate::source::row_change::SourceChange;
use crate::transform::batch::describe_origin;
use crate::transform::change::{change_ops, rejected_ops, RowChange};
use crate::transform::memo::Memo;
use crate::transform::row::{encode_value, Env};

use crate::pipeline::error::PipelineError;

/// Bytes of coalesced operations held before they are written into the open target
/// transaction: bounds memory for any source transaction size.
pub const GROUP_BYTES: usize = 8 * 1024 * 1024;

/// A group of source transactions is committed at the first commit boundary after this long,
/// which bounds the lag a busy stream adds.
pub const GROUP_AGE: Duration = Duration::from_millis(100);

/// What every group of a run shares: the source of each plan-wide output (the writers are
/// indexed by [`crate::transform::program::OutputPlan::number`]), and each source's memo of
/// derived values.
pub(super) struct Transforms<'p> {
    plan: &'p Plan,
    env: Env<'p>,
    on_error: OnError,
    /// Per plan-wide output, its source.
    owner: Vec<usize>,
    memos: Vec<Memo>,
}

impl<'p> Transforms<'p> {
    pub(super) fn new(plan: &'p Plan, env: Env<'p>, on_error: OnError) -> Transforms<'p> {
        let owner = plan.outputs().map(|(source, _)| source).collect();
        let memos = plan
            .sources
            .iter()
            .map(|s| Memo::new(s.derived.len()))
            .collect();
        Transforms {
            plan,
            env,
            on_error,
            owner,
            memos,
        }
    }
}

/// Where a message leaves the open group.
pub(super) enum InGroup {
    More,
    /// It ends at the commit just seen.
    End,
    /// The migration was cut over meanwhile: what follows is not the migration's to apply.
    CutOver,
}

/// One group of source transactions being applied.
pub(super) struct Group<'c> {
    tx: Transaction<'c>,
    batch: ApplyBatch,
    /// The changes as COPY lines of their plan columns, for dead letters.
    descriptors: Vec<u8>,
    rejects: Rejects,
    changes: i64,
    last_end: Option<Lsn>,
    last_commit_micros: i64,
    /// When the group's first transaction committed on the source, if its Begin was seen.
    pub(super) first_commit_micros: Option<i64>,
    started: Instant,
    /// The id of a fence met in this group; recorded with it.
    fence: Option<String>,
}

impl<'c> Group<'c> {
    /// Opens the group's target transaction.
    pub(super) async fn open(
        target: &'c mut Client,
        transforms: &Transforms<'_>,
        first_commit_micros: Option<i64>,
    ) -> Result<Group<'c>, PipelineError> {
        let tx = target
            .transaction()
            .await
            .map_err(|e| PipelineError::target("starting an apply transaction", e))?;
        Ok(Group {
            tx,
            batch: ApplyBatch::new(transforms.owner.len()),
            descriptors: Vec::new(),
            rejects: Rejects::new(transforms.on_error),
            changes: 0,
            last_end: None,
            last_commit_micros: 0,
            first_commit_micros,
            started: Instant::now(),
            fence: None,
        })
    }

    /// Whether a transaction of the group committed, so the group may end now.
    pub(super) fn committed(&self) -> bool {
        self.last_end.is_some()
    }

    /// A transaction of the group commits; `true` when the group should end at it (a fence,
    /// or old or big enough).
    pub(super) fn commit_seen(&mut self, commit: &CommitBody) -> bool {
        self.last_end = Some(commit.end_lsn);
        self.last_commit_micros = commit.commit_timestamp.0;
        self.fence.is_some()
            || self.started.elapsed() >= GROUP_AGE
            || self.batch.bytes() >= GROUP_BYTES
    }

    /// The group holds this migration's fence: it ends at this transaction's commit.
    pub(super) fn fence(&mut self, id: &str) {
        self.fence = Some(id.to_owned());
    }

    /// Turns one row change into coalesced operations (or a dead letter).
    pub(super) fn add(
        &mut self,
        transforms: &mut Transforms<'_>,
        SourceChange {
            source: index,
            change,
        }: &SourceChange<'_>,
    ) -> Result<(), PipelineError> {
        let source = &transforms.plan.sources[*index];
        let shown = match change {
            RowChange::Insert { new } | RowChange::Update { new, .. } => new,
            RowChange::Delete { old_key } => old_key,
        };
        let origin = self.descriptors.len() as u32;
        for (i, v) in shown.iter().enumerate() {
            if i > 0 {
                self.descriptors.push(b'\t');
            }
            encode_value(v, &mut self.descriptors);
        }
        self.descriptors.push(b'\n');
        let mut ops = Vec::new();
        self.changes += 1;
        let env = &transforms.env;
        // Lookups may block on a miss (an insert into the lookup table): not on a runtime thread.
        let memo = &mut transforms.memos[*index];
        let transformed =
            tokio::task::block_in_place(|| change_ops(source, env, memo, change, &mut ops));
        match transformed {
            Ok(()) => self.batch.add(source, ops, origin),
            Err(e) => {
                let rejected = describe_origin(source, &self.descriptors, origin, e.message);
                let letter = DeadLetter {
                    rejected,
                    output_table: None,
                };
                self.rejects.push(*index, letter);
                self.rejects.check(&transforms.plan.sources)?;
                // The rejected version has no output rows: its key leaves the outputs, in order
                // with the group's other operations. A key that cannot be computed either leaves
                // only the dead letter.
                let mut deletes = Vec::new();
                if rejected_ops(source, env, change, &mut deletes).is_ok() {
                    self.batch.add(source, deletes, origin);
                }
            }
        }
        Ok(())
    }

    /// Writes the operations held when they reach [`GROUP_BYTES`].
    pub(super) async fn flush_if_full(
        &mut self,
        transforms: &Transforms<'_>,
        writers: &[OutputWriter],
    ) -> Result<(), PipelineError> {
        if self.batch.bytes() >= GROUP_BYTES {
            self.flush(transforms, writers).await?;
        }
        Ok(())
    }

    /// Writes the operations held, and the dead letters, into the group's transaction.
    async fn flush(
        &mut self,
        transforms: &Transforms<'_>,
        writers: &[OutputWriter],
    ) -> Result<(), PipelineError> {
        let sources = &transforms.plan.sources;
        for (number, origin, reason) in self.batch.flush(&self.tx, writers).await? {
            let index = transforms.owner[number];
            let rejected = describe_origin(&sources[index], &self.descriptors, origin, reason);
            let letter = DeadLetter {
                rejected,
                output_table: Some(writers[number].table().to_owned()),
            };
            self.rejects.push(index, letter);
        }
        self.rejects.check(sources)?;
        self.rejects
            .write(&self.tx, &transforms.plan.name, "follow", sources)
            .await
            .map_err(|e| PipelineError::target("writing dead letters", e))?;
        self.descriptors.clear();
        Ok(())
    }

    /// Ends the group at its last commit: flushes, records the applied LSN (and the fence) in
    /// the same transaction, and commits it. Returns the applied LSN.
    pub(super) async fn commit(
        mut self,
        transforms: &Transforms<'_>,
        writers: &[OutputWriter],
    ) -> Result<Lsn, PipelineError> {
        let end = self.last_end.expect("a group ends at a commit");
        self.flush(transforms, writers).await?;
        let migration = &transforms.plan.name;
        checkpoint::record_applied(
            &self.tx,
            migration,
            end,
            self.last_commit_micros,
            self.changes,
        )
        .await?;
        if let Some(id) = &self.fence {
            checkpoint::record_fence(&self.tx, migration, id, end).await?;
        }
        self.tx
            .commit()
            .await
            .map_err(|e| PipelineError::target("committing an applied group", e))?;
        tracing::debug!(applied = %end, changes = self.changes, "group applied");
        Ok(end)
    }
}
