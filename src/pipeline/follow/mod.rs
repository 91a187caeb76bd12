//! The WAL consumer: source commits in order, grouped into target transactions.
//!
//! ```text
//!  WalPump ───msg──> Begin: skip if already applied (final_lsn < applied_lsn)
//!                     Relation: map onto the plan (DDL on a read column stops the consumer)
//!                     Insert/Update/Delete: same transforms as the backfill -> ApplyBatch
//!                         (coalesced per key; flushed into the open target transaction
//!                          whenever it holds GROUP_BYTES, so a huge source transaction
//!                          never sits in memory)
//!                     Truncate: stop, the target cannot follow it by key
//!                     Message switchyard.fence: the group ends at this transaction's commit
//!                     Commit: the group ends at a commit boundary when it is old or big
//!                          enough or the stream goes idle
//!                     Stream Start/Stop/Commit/Abort: stop, never asked for
//!  group end: flush, record applied_lsn (and the fence) in the same target transaction,
//!             COMMIT, then report the commit's end LSN to the server (confirmed_flush_lsn)
//! ```
//! A fence (see [`crate::source::fence`]) is applied without waiting for more commits: the
//! cutover holds its write lock until it is, so every millisecond here is write-blocked time.
//! Exactly once: applied_lsn and the changes commit together; a restart streams from
//! applied_lsn and skips any source transaction that committed before it. A shutdown request
//! is honoured between groups, so a clean stop never leaves a group half applied.
//! This file only wires: [`dispatch`] says what a message means, [`upstream`] reads the next
//! one, [`crate::source::row_change`] makes a row change of it, [`group`] applies it.

pub mod context;
mod dispatch;
mod group;
mod relation;
mod upstream;

use tokio_postgres::Client;

use crate::pg::lsn::Lsn;
use crate::sink::copy_in::OutputWriter;
use crate::source::current_row::CurrentRows;
use crate::source::relations::Relations;
use crate::source::row_change::row_change;
use crate::transform::row::Env;

use super::error::PipelineError;
use dispatch::{Dispatch, Step};
use group::{Group, InGroup, Transforms};
use relation::{relation, truncate};
use upstream::Feed;

pub use context::{FollowContext, IDLE_COMMIT};
pub use group::{GROUP_AGE, GROUP_BYTES};
pub use upstream::Upstream;

/// Why a consumer ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowEnd {
    /// Asked to stop; `switchyard follow` resumes from the applied LSN.
    Stopped,
    /// The migration was cut over: there is nothing left to follow.
    CutOver,
}

/// Runs until `shutdown` turns true (a clean stop between groups), the migration is cut over,
/// or an error.
pub async fn follow(
    ctx: &FollowContext,
    target: &mut Client,
    writers: &[OutputWriter],
    relations: Relations,
    upstream: Upstream,
    applied: Lsn,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<FollowEnd, PipelineError> {
    // The follow writes COPY text: its coalescing works on text keys.
    let env = Env {
        maps: &ctx.plan.maps,
        lookups: &*ctx.lookups,
        formats: &[],
    };
    let mut consumer = Consumer {
        ctx,
        writers,
        feed: Feed::start(upstream, applied),
        dispatch: Dispatch::new(applied),
        relations,
        current: CurrentRows::new(&ctx.source, &ctx.key_types),
        transforms: Transforms::new(&ctx.plan, env, ctx.on_error),
        first_commit_micros: None,
    };
    // Between groups, without a target transaction: wait for the first change to apply.
    loop {
        // A stop is honoured here, between groups: nothing is half applied, and the last
        // group's LSN is already recorded and reported.
        if *shutdown.borrow() || consumer.feed.cut_over {
            let cut_over = consumer.feed.cut_over;
            consumer.feed.close().await?;
            return Ok(if cut_over {
                FollowEnd::CutOver
            } else {
                FollowEnd::Stopped
            });
        }
        let Some(message) = consumer.feed.next(ctx, None).await? else {
            continue;
        };
        match consumer.dispatch.step(&message, &ctx.plan.name)? {
            Step::Begin(b) => {
                consumer.dispatch.trace_begin(b);
                consumer.first_commit_micros = Some(b.commit_timestamp.0);
            }
            Step::Relation(r) => {
                consumer.feed.cut_over |= relation(ctx, &mut consumer.relations, r).await?;
            }
            // Nothing of this transaction touched the plan's tables.
            Step::Commit { body, skipped } => {
                consumer.feed.received = body.end_lsn;
                if !skipped {
                    consumer.feed.done(body.end_lsn);
                }
            }
            Step::Nothing => {}
            first @ (Step::Change(_) | Step::Truncate(_) | Step::Fence(_)) => {
                match consumer.group(target, first).await? {
                    Some(applied) => {
                        consumer.feed.done(applied);
                        consumer.dispatch = Dispatch::new(applied);
                        consumer.first_commit_micros = None;
                    }
                    None => return Ok(FollowEnd::CutOver),
                }
            }
        }
    }
}

/// The consumer between two messages.
struct Consumer<'a> {
    ctx: &'a FollowContext,
    writers: &'a [OutputWriter],
    feed: Feed,
    dispatch: Dispatch,
    relations: Relations,
    current: CurrentRows<'a>,
    transforms: Transforms<'a>,
    /// When the transaction a group would start in committed on the source.
    first_commit_micros: Option<i64>,
}

impl Consumer<'_> {
    /// Applies one group of source transactions, from its first change; returns the LSN it
    /// applied up to, or `None` when the migration was cut over meanwhile.
    async fn group(
        &mut self,
        target: &mut Client,
        first: Step<'_>,
    ) -> Result<Option<Lsn>, PipelineError> {
        let mut group = Group::open(target, &self.transforms, self.first_commit_micros).await?;
        let mut next = self.apply(&mut group, first).await?;
        loop {
            match next {
                InGroup::More => {}
                InGroup::End => break,
                InGroup::CutOver => return Ok(None),
            }
            next = match self.feed.next(self.ctx, Some(&group)).await? {
                Some(message) => {
                    let step = self.dispatch.step(&message, &self.ctx.plan.name)?;
                    self.apply(&mut group, step).await?
                }
                // The stream is idle: commit what is pending now.
                None if group.committed() => InGroup::End,
                None => InGroup::More,
            };
        }
        group.commit(&self.transforms, self.writers).await.map(Some)
    }

    /// One message in the open group.
    async fn apply(
        &mut self,
        group: &mut Group<'_>,
        step: Step<'_>,
    ) -> Result<InGroup, PipelineError> {
        match step {
            Step::Begin(_) | Step::Nothing => {}
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
                if let Some(change) = change {
                    group.add(&mut self.transforms, &change)?;
                }
            }
            Step::Truncate(t) => truncate(self.ctx, &self.relations, t)?,
            Step::Fence(id) => group.fence(id),
            Step::Commit { body, skipped } => {
                self.feed.received = body.end_lsn;
                if !skipped && group.commit_seen(body) {
                    return Ok(InGroup::End);
                }
            }
        }
        group.flush_if_full(&self.transforms, self.writers).await?;
        Ok(InGroup::More)
    }
}
