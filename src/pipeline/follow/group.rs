//! One group of source transactions: the row changes go through the same transforms as the
//! backfill into coalesced operations, each routed to the apply lane of its output key
//! ([`super::routing`]) and sent to it whenever the group holds [`GROUP_BYTES`]; at the
//! group's end, every lane commits its share with its applied LSN ([`super::lane`]).
//!
//! A serial group goes through lane 0 alone, in one transaction for every lane: always with
//! one lane, and after a restart until every lane is past the furthest lane's position (a
//! transaction applied by some lanes and not others) or past a conflict between lanes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::pg::lsn::Lsn;
use crate::pg::pgoutput::CommitBody;
use crate::plan::{OnError, Plan};
use crate::sink::apply::ApplyBatch;
use crate::sink::dead_letter::{DeadLetter, Rejects};
use crate::source::row_change::SourceChange;
use crate::transform::batch::describe_origin;
use crate::transform::change::{change_ops, rejected_ops, OutputOp, RowChange};
use crate::transform::memo::Memo;
use crate::transform::row::{encode_value, Env};

use super::lane::{Commit, Ops, Record, Work};
use super::lanes::{InFlight, Lanes};
use super::routing::{lane_of, Positions};
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
    pub(super) owner: Vec<usize>,
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

/// How a group is applied, decided when it opens.
#[derive(Debug, Clone)]
pub(super) struct Routing {
    /// Through lane 0 alone, in one transaction for every lane.
    pub(super) serial: bool,
    /// The lanes keys are assigned to (for skipping what a lane applied before a restart):
    /// the lanes the positions were recorded under, until a serial group sets them up anew.
    pub(super) lanes: usize,
    /// The lanes' positions when the consumer started, while some lane may hold a
    /// transaction the group reads.
    pub(super) positions: Option<Arc<Positions>>,
}

/// One lane's share of the open group.
struct Share {
    batch: ApplyBatch,
    rejects: Rejects,
    /// Source changes counted as this lane's.
    changes: i64,
}

/// One group of source transactions being applied.
pub(super) struct Group {
    routing: Routing,
    /// Per lane the group goes to (one when serial).
    shares: Vec<Share>,
    /// The changes as COPY lines of their plan columns, for dead letters.
    descriptors: Vec<u8>,
    /// Per assigned lane, whether it applied the transaction being read (after a restart).
    skip: Vec<bool>,
    changes: i64,
    last_end: Option<Lsn>,
    /// A source transaction of the group began and has not committed yet: the group cannot
    /// end here, its position would not cover the changes already added.
    in_transaction: bool,
    last_commit_micros: i64,
    /// When the group's first transaction committed on the source, if its Begin was seen.
    pub(super) first_commit_micros: Option<i64>,
    started: Instant,
    /// The id of a fence met in this group; recorded with it.
    fence: Option<String>,
}

impl Group {
    /// Opens a group applied as `routing` says, on `lanes` lanes; `final_lsn` is the commit of
    /// the transaction it starts in.
    pub(super) fn open(
        transforms: &Transforms<'_>,
        routing: Routing,
        lanes: usize,
        final_lsn: Lsn,
        first_commit_micros: Option<i64>,
    ) -> Group {
        let shares = if routing.serial { 1 } else { lanes };
        let mut group = Group {
            shares: (0..shares)
                .map(|_| Share {
                    batch: ApplyBatch::new(transforms.owner.len()),
                    rejects: Rejects::new(transforms.on_error),
                    changes: 0,
                })
                .collect(),
            skip: vec![false; routing.lanes],
            routing,
            descriptors: Vec::new(),
            changes: 0,
            last_end: None,
            in_transaction: true,
            last_commit_micros: 0,
            first_commit_micros,
            started: Instant::now(),
            fence: None,
        };
        group.begin(final_lsn);
        group
    }

    /// A source transaction committed at `final_lsn` starts: which lanes applied it before.
    pub(super) fn begin(&mut self, final_lsn: Lsn) {
        self.in_transaction = true;
        match &self.routing.positions {
            Some(p) if final_lsn < p.max() => self.skip = p.applied_before(final_lsn),
            _ => self.skip.iter_mut().for_each(|s| *s = false),
        }
    }

    /// Whether the group may end now: a transaction of it committed, and none is open. A
    /// group ended inside a transaction would commit part of it in the lanes with a position
    /// before it, so a restart from that position would apply that part again.
    pub(super) fn committed(&self) -> bool {
        self.last_end.is_some() && !self.in_transaction
    }

    /// A transaction the group skipped (applied before) commits.
    pub(super) fn skipped_commit_seen(&mut self) {
        self.in_transaction = false;
    }

    /// A transaction of the group commits; `true` when the group should end at it (a fence,
    /// or old or big enough).
    pub(super) fn commit_seen(&mut self, commit: &CommitBody) -> bool {
        self.in_transaction = false;
        self.last_end = Some(commit.end_lsn);
        self.last_commit_micros = commit.commit_timestamp.0;
        self.fence.is_some() || self.started.elapsed() >= GROUP_AGE || self.bytes() >= GROUP_BYTES
    }

    fn bytes(&self) -> usize {
        self.shares.iter().map(|s| s.batch.bytes()).sum()
    }

    /// The group holds this migration's fence: it ends at this transaction's commit.
    pub(super) fn fence(&mut self, id: &str) {
        self.fence = Some(id.to_owned());
    }

    /// Whether the group holds this migration's fence.
    pub(super) fn fenced(&self) -> bool {
        self.fence.is_some()
    }

    /// The end of the group's last commit.
    pub(super) fn end(&self) -> Lsn {
        self.last_end.expect("a group ends at a commit")
    }

    /// Turns one row change into coalesced operations (or a dead letter), each in its lane's
    /// share; what a lane applied before a restart is left out of it.
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
        let letter = match transformed {
            Ok(()) => None,
            Err(e) => {
                let rejected = describe_origin(source, &self.descriptors, origin, e.message);
                // The rejected version has no output rows: its key leaves the outputs, in order
                // with the group's other operations. A key that cannot be computed either leaves
                // only the dead letter.
                ops.clear();
                if rejected_ops(source, env, change, &mut ops).is_err() {
                    ops.clear();
                }
                Some(DeadLetter {
                    rejected,
                    output_table: None,
                })
            }
        };
        // The change counts (and its dead letter lands) in the lane of its first operation.
        let mut home = None;
        for op in ops {
            let lane = self.lane_of(source, &op);
            home.get_or_insert(lane);
            if !self.skip[lane] {
                let share = if self.routing.serial { 0 } else { lane };
                self.shares[share].batch.add_op(source, op, origin);
            }
        }
        let home = home.unwrap_or(0);
        if !self.skip[home] {
            let share = &mut self.shares[if self.routing.serial { 0 } else { home }];
            share.changes += 1;
            if let Some(letter) = letter {
                share.rejects.push(*index, letter);
                share.rejects.check(&transforms.plan.sources)?;
            }
        }
        Ok(())
    }

    /// Counts a change that has nothing to apply (its row is gone on the source, a later
    /// change supersedes it), like a change with no operations: in lane 0's share.
    pub(super) fn add_superseded(&mut self) {
        self.changes += 1;
        if !self.skip[0] {
            self.shares[0].changes += 1;
        }
    }

    /// The lane an operation of `source` belongs to.
    fn lane_of(&self, source: &crate::transform::program::SourcePlan, op: &OutputOp) -> usize {
        let (output, key) = match op {
            OutputOp::Upsert { output, key, .. } | OutputOp::Delete { output, key } => {
                (output, key)
            }
        };
        lane_of(source.outputs[*output].number, key, self.routing.lanes)
    }

    /// Sends the operations held to their lanes when they reach [`GROUP_BYTES`].
    pub(super) async fn flush_if_full(
        &mut self,
        transforms: &Transforms<'_>,
        lanes: &mut Lanes,
    ) -> Result<(), PipelineError> {
        if self.bytes() >= GROUP_BYTES {
            self.flush(transforms, lanes).await?;
        }
        Ok(())
    }

    /// Sends every share's operations and dead letters to its lane.
    async fn flush(
        &mut self,
        transforms: &Transforms<'_>,
        lanes: &mut Lanes,
    ) -> Result<(), PipelineError> {
        let descriptors = Arc::new(std::mem::take(&mut self.descriptors));
        for (lane, share) in self.shares.iter_mut().enumerate() {
            if share.batch.is_empty() && share.rejects.count() == 0 {
                continue;
            }
            let ops = Ops {
                batch: std::mem::replace(&mut share.batch, ApplyBatch::new(transforms.owner.len())),
                rejects: std::mem::replace(&mut share.rejects, Rejects::new(transforms.on_error)),
                descriptors: Arc::clone(&descriptors),
                serial: self.routing.serial,
            };
            lanes.send(lane, Work::Ops(ops)).await?;
        }
        Ok(())
    }

    /// Ends the group at its last commit: sends what is held, then every lane's commit (each
    /// records its applied LSN in the same transaction; a serial group sets up `relane` lanes
    /// when given); returns without waiting for them.
    pub(super) async fn commit(
        mut self,
        transforms: &Transforms<'_>,
        lanes: &mut Lanes,
        relane: Option<usize>,
    ) -> Result<(), PipelineError> {
        let end = self.end();
        self.flush(transforms, lanes).await?;
        let serial = self.routing.serial;
        let fence = self.fence.take();
        let mut in_flight = InFlight {
            end,
            commit_micros: self.last_commit_micros,
            first_commit_micros: self.first_commit_micros,
            waiting: self.shares.len(),
            fence: None,
        };
        let record = |fence: Option<String>| {
            if serial {
                Record::Serial { relane, fence }
            } else {
                Record::Lane
            }
        };
        let fence_in_lane = if serial { fence.clone() } else { None };
        for (lane, share) in self.shares.iter().enumerate() {
            let commit = Commit {
                end,
                commit_micros: self.last_commit_micros,
                changes: share.changes,
                record: record(fence_in_lane.clone()),
            };
            lanes.send(lane, Work::Commit(commit)).await?;
        }
        if !serial {
            in_flight.fence = fence;
        }
        tracing::debug!(applied = %end, changes = self.changes, serial, "group sent");
        lanes.sent(in_flight);
        Ok(())
    }
}
