//! The consumer's side of the apply lanes ([`super::lane`]): starts them, hands each its share
//! of a group, and tracks which groups every lane committed: that is how far the slot may be
//! confirmed.
//!
//! ```text
//!   group g sent ──> in flight: g waits for its lanes ──(each Done)──> g done
//!   front of the queue done ──> confirmed up to its end; the summary row says so (fence too)
//! ```
//! Lanes commit at their own pace: lane 1 may have committed g+1 while lane 0 still writes g.
//! The slot is confirmed only up to a group every lane committed, and a restart streams from
//! the smallest lane position, each lane skipping what it applied.
//!
//! The lanes commit with `synchronous_commit = off`, as native logical replication's apply
//! worker does: a commit returns before its WAL is flushed, so a lane never waits for the disk.
//! A target crash may then lose the last lane commits, each whole with its applied LSN, so the
//! lane applies them again; what must never happen is a slot confirmed past them, since the
//! source would drop that WAL. So the position goes to the server only after a synchronous
//! commit on the monitor session (the summary row, every [`SYNC_INTERVAL`]): WAL is flushed in
//! order, so that flush covers every lane commit that returned before it.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::checkpoint;
use crate::pg::lsn::Lsn;

use super::context::FollowContext;
use super::lane::{self, LaneError, LaneSession, LaneShared, Report, Work};
use crate::pipeline::error::PipelineError;

/// Messages queued per lane: two groups (operations and commit) ahead of the lane.
const QUEUE: usize = 4;

/// How often the lanes' asynchronous commits are made durable and confirmed (and at every
/// fence, and when the consumer stops).
const SYNC_INTERVAL: Duration = Duration::from_millis(100);

/// A group sent to the lanes, not yet committed by all of them.
#[derive(Debug)]
pub(super) struct InFlight {
    pub(super) end: Lsn,
    pub(super) commit_micros: i64,
    /// When the group's first transaction committed on the source, if known.
    pub(super) first_commit_micros: Option<i64>,
    /// Lanes yet to report it done.
    pub(super) waiting: usize,
    /// A fence met in a parallel group: recorded once every lane committed the group.
    pub(super) fence: Option<String>,
}

pub(super) struct Lanes {
    senders: Vec<mpsc::Sender<Work>>,
    reports: mpsc::UnboundedReceiver<Report>,
    tasks: Vec<JoinHandle<()>>,
    in_flight: VecDeque<InFlight>,
    /// Confirmable once nothing is in flight: a commit that needed nothing, seen after every
    /// group in flight was sent.
    quiet: Option<Lsn>,
    /// The end of the last group sent.
    pub(super) last_sent: Lsn,
    /// The end of the last source commit received, for a conflict's serial stretch.
    pub(super) received: Lsn,
    /// The last group every lane committed, not yet known to be flushed: its end and when it
    /// committed on the source.
    unsynced: Option<(Lsn, i64)>,
    synced_at: Instant,
}

impl Lanes {
    /// Starts a lane per session.
    pub(super) fn start(sessions: Vec<LaneSession>, shared: LaneShared, start: Lsn) -> Lanes {
        let shared = Arc::new(shared);
        let (report, reports) = mpsc::unbounded_channel();
        let mut senders = Vec::with_capacity(sessions.len());
        let mut tasks = Vec::with_capacity(sessions.len());
        for (index, session) in sessions.into_iter().enumerate() {
            let (tx, rx) = mpsc::channel(QUEUE);
            senders.push(tx);
            let lane = lane::run(index, session, Arc::clone(&shared), rx, report.clone());
            let report = report.clone();
            tasks.push(tokio::spawn(async move {
                // A panic is reported like any failure: the consumer never waits on a lane gone.
                if AssertUnwindSafe(lane).catch_unwind().await.is_err() {
                    let error = LaneError::Failed(PipelineError::WorkerPanicked);
                    let _ = report.send(Report::Failed { lane: index, error });
                }
            }));
        }
        Lanes {
            senders,
            reports,
            tasks,
            in_flight: VecDeque::new(),
            quiet: None,
            last_sent: start,
            received: start,
            unsynced: None,
            synced_at: Instant::now(),
        }
    }

    /// How many lanes apply.
    pub(super) fn count(&self) -> usize {
        self.senders.len()
    }

    /// Nothing sent and not yet committed durably.
    pub(super) fn settled(&self) -> bool {
        self.in_flight.is_empty() && self.unsynced.is_none()
    }

    /// When the oldest source commit not yet applied by every lane committed.
    pub(super) fn oldest_pending_micros(&self) -> Option<i64> {
        self.in_flight.front().and_then(|g| g.first_commit_micros)
    }

    /// Sends `work` to lane `lane`; a lane that stopped answers with its failure.
    pub(super) async fn send(&mut self, lane: usize, work: Work) -> Result<(), PipelineError> {
        if self.senders[lane].send(work).await.is_ok() {
            return Ok(());
        }
        // The lane ended, which it does only after reporting a failure (or in a panic).
        loop {
            match self.reports.recv().await {
                Some(Report::Failed { lane, error }) => return Err(self.failure(lane, error)),
                Some(Report::Done { end }) => self.done(end),
                None => return Err(PipelineError::WorkerPanicked),
            }
        }
    }

    /// A lane committed the group that ends at `end`.
    fn done(&mut self, end: Lsn) {
        if let Some(g) = self.in_flight.iter_mut().find(|g| g.end == end) {
            g.waiting -= 1;
        }
    }

    /// A group was sent, to `waiting` lanes.
    pub(super) fn sent(&mut self, group: InFlight) {
        self.last_sent = group.end;
        self.in_flight.push_back(group);
    }

    /// A commit at `lsn` needed nothing from the lanes: the position to confirm now, if
    /// nothing is in flight or waiting for its flush.
    pub(super) fn quiet_until(&mut self, lsn: Lsn) -> Option<Lsn> {
        if self.settled() {
            return Some(lsn);
        }
        self.quiet = Some(self.quiet.map_or(lsn, |q| q.max(lsn)));
        None
    }

    /// Takes the lanes' reports (waiting for one when `wait` and a group is in flight);
    /// returns how far every lane committed durably, when that moved: at a fence, when
    /// `force`d, or every [`SYNC_INTERVAL`].
    pub(super) async fn collect(
        &mut self,
        ctx: &FollowContext,
        wait: bool,
        force: bool,
    ) -> Result<Option<Lsn>, PipelineError> {
        let mut first = if wait && !self.in_flight.is_empty() {
            match self.reports.recv().await {
                Some(r) => Some(r),
                None => return Err(PipelineError::WorkerPanicked),
            }
        } else {
            None
        };
        loop {
            let report = match first.take() {
                Some(r) => r,
                None => match self.reports.try_recv() {
                    Ok(r) => r,
                    Err(_) => break,
                },
            };
            match report {
                Report::Done { end } => self.done(end),
                Report::Failed { lane, error } => return Err(self.failure(lane, error)),
            }
        }
        let mut fence = None;
        while self.in_flight.front().is_some_and(|g| g.waiting == 0) {
            let g = self.in_flight.pop_front().expect("a front group");
            self.unsynced = Some((g.end, g.commit_micros));
            fence = g.fence.or(fence);
        }
        let mut done = None;
        if let Some((end, commit_micros)) = self.unsynced {
            if !(force || fence.is_some() || self.synced_at.elapsed() >= SYNC_INTERVAL) {
                return Ok(None);
            }
            // A lane that had nothing to apply since it last recorded is behind `end` in its
            // row: brought up to it first, so the summary is behind no lane.
            checkpoint::raise_idle_lanes(&ctx.monitor, &ctx.plan.name, end, commit_micros).await?;
            // The lanes commit asynchronously; this commit waits for its WAL to be flushed,
            // and with it every lane commit before it (see the module doc).
            checkpoint::summarize(
                &ctx.monitor,
                &ctx.plan.name,
                end,
                commit_micros,
                fence.as_deref(),
            )
            .await?;
            self.unsynced = None;
            self.synced_at = Instant::now();
            done = Some(end);
        }
        if self.in_flight.is_empty() {
            if let Some(q) = self.quiet.take() {
                done = Some(done.map_or(q, |d| d.max(q)));
            }
        }
        Ok(done)
    }

    /// Waits until every lane committed every group sent, durably; returns how far that is,
    /// when it moved.
    pub(super) async fn drain(
        &mut self,
        ctx: &FollowContext,
    ) -> Result<Option<Lsn>, PipelineError> {
        let mut done = None;
        while !self.in_flight.is_empty() {
            if let Some(d) = self.collect(ctx, true, false).await? {
                done = Some(d);
            }
        }
        if let Some(d) = self.collect(ctx, false, true).await? {
            done = Some(d);
        }
        Ok(done)
    }

    /// A lane's failure as the consumer's error.
    fn failure(&self, lane: usize, error: LaneError) -> PipelineError {
        match error {
            LaneError::Failed(e) => e,
            LaneError::Conflict(c) => PipelineError::LaneConflict {
                lane,
                table: c.table,
                reason: c.reason,
                // Everything sent or received so far goes through one transaction again.
                through: self.last_sent.max(self.received),
            },
        }
    }

    /// Closes the lanes' queues and waits for them to end: a lane mid-group rolls back, and
    /// none commits anything after this returns (a restart reads their positions next).
    pub(super) async fn close(self) {
        drop(self.senders);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}
