//! The WAL consumer: source commits in order, grouped, applied by parallel lanes.
//!
//! ```text
//!  WalPump ───msg──> Begin: skip if every lane applied it (final_lsn < the smallest position)
//!                     Relation: map onto the plan (DDL on a read column stops the consumer)
//!                     Insert/Update/Delete: same transforms as the backfill -> operations,
//!                         each to the lane of hash(output, key) (coalesced per key; sent to
//!                         the lanes whenever the group holds GROUP_BYTES, so a huge source
//!                         transaction never sits in memory)
//!                     Truncate: stop, the target cannot follow it by key
//!                     Message switchyard.fence: the group ends at this transaction's commit
//!                     Commit: the group ends at a commit boundary when it is old or big
//!                          enough or the stream goes idle
//!                     Stream Start/Stop/Commit/Abort: stop, never asked for
//!  group end: every lane commits its share with its applied LSN in the same transaction;
//!             meanwhile the next group is decoded and transformed
//!  every lane committed the group: report its end to the server (confirmed_flush_lsn)
//! ```
//! All operations on one output key stay in one lane, in commit order; between two groups
//! every lane committed, the target may show part of a source transaction (as with any online
//! copier), never a key out of order. A fence (see [`crate::source::fence`]) is recorded once
//! every lane committed everything before it, without waiting for more commits: the cutover
//! holds its write lock until then. Exactly once, per lane: a lane's position and its changes
//! commit together; a restart streams from the smallest position and each lane skips the
//! transactions it applied (serially, one transaction per group, until every lane is past the
//! furthest one). A shutdown request is honoured between groups, once every lane committed,
//! and so is a pause (`switchyard pause`, see [`super::control`]); a rate cap is held per
//! change.
//! This file only wires: [`dispatch`] says what a message means, [`upstream`] reads the next
//! one, [`crate::source::row_change`] makes a row change of it, [`group`] routes it,
//! [`lanes`] and [`lane`] apply it.

pub mod context;
mod dispatch;
mod group;
mod lane;
mod lanes;
mod relation;
mod routing;
mod upstream;

use std::sync::Arc;

use crate::pg::lsn::Lsn;
use crate::source::current_row::CurrentRows;
use crate::source::relations::Relations;
use crate::source::row_change::{row_change, RowChangeOf};
use crate::transform::row::Env;

use super::error::PipelineError;
use dispatch::{Dispatch, Step};
use group::{Group, InGroup, Routing, Transforms};
use lane::LaneShared;
use lanes::Lanes;
use relation::{relation, truncate};
use routing::Positions;
use upstream::{Feed, Pending};

pub use context::{FollowContext, IDLE_COMMIT};
pub use group::{GROUP_AGE, GROUP_BYTES};
pub use lane::LaneSession;
pub use upstream::Upstream;

/// Why a consumer ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowEnd {
    /// Asked to stop; `switchyard follow` resumes from the applied LSN.
    Stopped,
    /// The migration was cut over: there is nothing left to follow.
    CutOver,
}

/// Where the lanes stand when the consumer starts.
#[derive(Debug, Clone)]
pub struct Start {
    /// Per lane (as recorded), its applied LSN; the stream starts at the smallest.
    pub positions: Vec<Lsn>,
    /// Apply every group that starts at or before this LSN in one transaction (after a
    /// conflict between lanes).
    pub serial_through: Option<Lsn>,
}

/// Runs until `shutdown` turns true (a clean stop between groups), the migration is cut over,
/// or an error; one lane per session in `sessions`.
pub async fn follow(
    ctx: &FollowContext,
    sessions: Vec<LaneSession>,
    relations: Relations,
    upstream: Upstream,
    start: Start,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<FollowEnd, PipelineError> {
    // The follow writes COPY text: its coalescing works on text keys.
    let env = Env {
        maps: &ctx.plan.maps,
        lookups: &*ctx.lookups,
        formats: &[],
    };
    let positions = Positions::new(start.positions);
    let applied = positions.min();
    let transforms = Transforms::new(&ctx.plan, env, ctx.on_error);
    let shared = LaneShared {
        plan: Arc::clone(&ctx.plan),
        owner: transforms.owner.clone(),
        progress: Arc::clone(&ctx.progress),
    };
    let lanes = Lanes::start(sessions, shared, applied);
    let mut consumer = Consumer {
        ctx,
        feed: Feed::start(upstream, applied),
        dispatch: Dispatch::new(applied),
        relations,
        current: CurrentRows::new(&ctx.source_conninfo, &ctx.key_types),
        transforms,
        first_commit_micros: None,
        final_lsn: applied,
        routing: Routing {
            serial: false,
            lanes: positions.lanes(),
            positions: None,
        },
        relane_at: None,
        lanes,
    };
    // Lanes at different positions, or not as many as the sessions: serial until a group ends
    // past the furthest, which sets them up anew. After a conflict: serial past it.
    let relane = positions.lanes() != consumer.lanes.count() || positions.min() != positions.max();
    consumer.relane_at = relane.then(|| positions.max());
    let serial_through = match (consumer.relane_at, start.serial_through) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let positions = Arc::new(positions);
    let end = consumer.run(&positions, serial_through, shutdown).await;
    let Consumer { feed, lanes, .. } = consumer;
    lanes.close().await;
    match end {
        Ok(end) => {
            feed.close().await?;
            Ok(end)
        }
        Err(e) => Err(e),
    }
}

/// The consumer between two messages.
struct Consumer<'a> {
    ctx: &'a FollowContext,
    feed: Feed,
    dispatch: Dispatch,
    relations: Relations,
    current: CurrentRows<'a>,
    transforms: Transforms<'a>,
    /// When the transaction a group would start in committed on the source.
    first_commit_micros: Option<i64>,
    /// The commit LSN of the transaction being read.
    final_lsn: Lsn,
    /// How the last group was applied.
    routing: Routing,
    /// The lanes are set up anew by the first serial group that ends at or past this.
    relane_at: Option<Lsn>,
    lanes: Lanes,
}

impl Consumer<'_> {
    async fn run(
        &mut self,
        positions: &Arc<Positions>,
        serial_through: Option<Lsn>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Result<FollowEnd, PipelineError> {
        let ctx = self.ctx;
        // Between groups: wait for the first change to apply.
        loop {
            if let Some(done) = self.lanes.collect(ctx, false, false).await? {
                self.feed.done(done);
            }
            // A stop is honoured here, between groups: nothing is half applied once every
            // lane committed what it was sent.
            if *shutdown.borrow() || self.feed.cut_over {
                if let Some(done) = self.lanes.drain(ctx).await? {
                    self.feed.done(done);
                }
                return Ok(if self.feed.cut_over {
                    FollowEnd::CutOver
                } else {
                    FollowEnd::Stopped
                });
            }
            // Paused between groups too: what was sent is committed first, and nothing after
            // it is applied or confirmed until the pause is lifted.
            if ctx.gate.paused() {
                if let Some(done) = self.lanes.drain(ctx).await? {
                    self.feed.done(done);
                }
                self.feed.paused(ctx, &mut shutdown).await?;
                continue;
            }
            let pending = Pending {
                open: false,
                committed: false,
                in_flight: !self.lanes.settled(),
                first_commit_micros: self.lanes.oldest_pending_micros(),
            };
            let Some(message) = self.feed.next(ctx, pending).await? else {
                continue;
            };
            match self.dispatch.step(&message, &ctx.plan.name)? {
                Step::Begin(b) => {
                    self.dispatch.trace_begin(b);
                    self.first_commit_micros = Some(b.commit_timestamp.0);
                    self.final_lsn = b.final_lsn;
                }
                Step::Relation(r) => {
                    self.feed.cut_over |= relation(ctx, &mut self.relations, r).await?;
                }
                // Nothing of this transaction touched the plan's tables.
                Step::Commit { body, skipped } => {
                    self.feed.received = body.end_lsn;
                    self.lanes.received = body.end_lsn;
                    if !skipped {
                        if let Some(done) = self.lanes.quiet_until(body.end_lsn) {
                            self.feed.done(done);
                        }
                    }
                }
                Step::Nothing => {}
                first @ (Step::Change(_) | Step::Truncate(_) | Step::Fence(_)) => {
                    self.open(positions, serial_through).await?;
                    if !self.group(first).await? {
                        return Ok(FollowEnd::CutOver);
                    }
                    self.first_commit_micros = None;
                }
            }
        }
    }

    /// Decides how the group about to open is applied; between a serial group and parallel
    /// ones, waits for the lanes to commit everything sent (a key's operations must not pass
    /// each other on two sessions).
    async fn open(
        &mut self,
        positions: &Arc<Positions>,
        serial_through: Option<Lsn>,
    ) -> Result<(), PipelineError> {
        let from = self.lanes.last_sent;
        let lanes = self.lanes.count();
        let serial = lanes == 1 || serial_through.is_some_and(|t| from <= t);
        let catching_up = from < positions.max();
        let routing = Routing {
            serial,
            lanes: self.routing.lanes,
            positions: catching_up.then(|| Arc::clone(positions)),
        };
        if serial != self.routing.serial && !self.lanes.settled() {
            if let Some(done) = self.lanes.drain(self.ctx).await? {
                self.feed.done(done);
            }
        }
        self.routing = routing;
        Ok(())
    }

    /// Applies one group of source transactions, from its first change; `false` when the
    /// migration was cut over meanwhile.
    async fn group(&mut self, first: Step<'_>) -> Result<bool, PipelineError> {
        let ctx = self.ctx;
        let mut group = Group::open(
            &self.transforms,
            self.routing.clone(),
            self.lanes.count(),
            self.final_lsn,
            self.first_commit_micros,
        );
        let mut next = self.apply(&mut group, first).await?;
        loop {
            match next {
                InGroup::More => {}
                InGroup::End => break,
                InGroup::CutOver => return Ok(false),
            }
            if let Some(done) = self.lanes.collect(ctx, false, false).await? {
                self.feed.done(done);
            }
            let pending = Pending {
                open: true,
                committed: group.committed(),
                in_flight: !self.lanes.settled(),
                first_commit_micros: self
                    .lanes
                    .oldest_pending_micros()
                    .or(group.first_commit_micros),
            };
            next = match self.feed.next(ctx, pending).await? {
                Some(message) => {
                    let step = self.dispatch.step(&message, &ctx.plan.name)?;
                    self.apply(&mut group, step).await?
                }
                // The stream is idle: commit what is pending now.
                None if group.committed() => InGroup::End,
                None => InGroup::More,
            };
        }
        let fenced = group.fenced();
        // A serial group that ends past every lane's position sets the lanes up anew: the
        // furthest lane's transactions are all behind it.
        let relane = match self.relane_at {
            Some(at) if self.routing.serial && group.end() >= at => Some(self.lanes.count()),
            _ => None,
        };
        group
            .commit(&self.transforms, &mut self.lanes, relane)
            .await?;
        if relane.is_some() {
            self.relane_at = None;
            self.routing.lanes = self.lanes.count();
        }
        // The cutover holds its write lock until the fence is recorded: no waiting for more.
        if fenced {
            if let Some(done) = self.lanes.drain(ctx).await? {
                self.feed.done(done);
            }
        }
        self.dispatch = Dispatch::new(self.lanes.last_sent);
        Ok(true)
    }

    /// One message in the open group.
    async fn apply(&mut self, group: &mut Group, step: Step<'_>) -> Result<InGroup, PipelineError> {
        match step {
            Step::Nothing => {}
            Step::Begin(b) => {
                self.final_lsn = b.final_lsn;
                group.begin(b.final_lsn);
            }
            Step::Relation(r) => {
                if relation(self.ctx, &mut self.relations, r).await? {
                    return Ok(InGroup::CutOver);
                }
            }
            Step::Change(message) => {
                let mut fetched = None;
                let plan = &self.ctx.plan;
                let change = row_change(
                    plan,
                    &self.relations,
                    &mut self.current,
                    message,
                    &mut fetched,
                )
                .await?;
                match change {
                    RowChangeOf::Change(change) => {
                        group.add(&mut self.transforms, &change)?;
                        self.ctx.gate.pace(1).await;
                    }
                    RowChangeOf::Superseded => group.add_superseded(),
                    RowChangeOf::NotFollowed => {}
                }
            }
            Step::Truncate(t) => truncate(self.ctx, &self.relations, t)?,
            Step::Fence(id) => group.fence(id),
            Step::Commit { body, skipped } => {
                self.feed.received = body.end_lsn;
                self.lanes.received = body.end_lsn;
                if skipped {
                    group.skipped_commit_seen();
                } else if group.commit_seen(body) {
                    return Ok(InGroup::End);
                }
            }
        }
        group
            .flush_if_full(&self.transforms, &mut self.lanes)
            .await?;
        Ok(InGroup::More)
    }
}
