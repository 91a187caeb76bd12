//! One apply lane: a target session of its own that applies its share of each group in a
//! transaction of its own, and records its applied LSN in that same transaction.
//!
//! ```text
//!   Work::Ops ──> BEGIN (at the first), flush the share's operations and dead letters
//!   Work::Ops ──> flush ...
//!   Work::Commit ──> record the lane's applied LSN (or, for a serial group, every lane's and
//!                    the summary), COMMIT, report Done(end)
//! ```
//! A lane whose share of a group is empty reports it done without a transaction, unless its
//! row has not moved for [`IDLE_RECORD`]: a restart streams from the smallest row, so a lane
//! idle for long would make it read far back. The consumer also brings such a row up to the
//! summary before writing it (`checkpoint::raise_idle_lanes`), so no row is behind the summary.
//!
//! In a parallel group a refused set-based write, a deadlock, a serialization failure or a
//! lock wait longer than [`LOCK_TIMEOUT`] is a [`Conflict`]: an order between lanes that the
//! source never had (two rows exchanging a unique value through different lanes). The lane
//! rolls back and the consumer applies that stretch again in one transaction, where the
//! source order holds ([`crate::sink::replay`]). Nothing is dead-lettered for an order the
//! tool chose.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Transaction};

use crate::checkpoint;
use crate::pg::lsn::Lsn;
use crate::plan::Plan;
use crate::progress::FollowProgress;
use crate::sink::apply::{ApplyBatch, Flushed, OnRefused};
use crate::sink::copy_in::OutputWriter;
use crate::sink::dead_letter::{DeadLetter, Rejects};
use crate::transform::batch::describe_origin;

use crate::pipeline::error::PipelineError;

/// A lane whose share stayed empty records its position anyway after this long.
pub(super) const IDLE_RECORD: Duration = Duration::from_secs(1);

/// In a parallel group, a lane waits this long for a row lock before it calls the wait a
/// conflict: another lane may hold it while that lane waits for the consumer, which waits for
/// this lane.
pub(super) const LOCK_TIMEOUT: &str = "2s";

/// What the consumer sends a lane.
pub(super) enum Work {
    /// Operations to write into the lane's open transaction (opened by the first).
    Ops(Ops),
    /// The group ends: record the position and commit.
    Commit(Commit),
}

/// A share of a group's operations.
pub(super) struct Ops {
    pub(super) batch: ApplyBatch,
    /// Rows the transforms rejected, already described.
    pub(super) rejects: Rejects,
    /// The changes as COPY lines, which the operations' origins point into: for rows the
    /// target refuses in a serial group.
    pub(super) descriptors: Arc<Vec<u8>>,
    /// The whole group goes through this one lane (see [`Record::Serial`]).
    pub(super) serial: bool,
}

/// The end of a group.
pub(super) struct Commit {
    /// The end of the group's last source commit, and when it committed.
    pub(super) end: Lsn,
    pub(super) commit_micros: i64,
    /// Source changes the lane counts as its own.
    pub(super) changes: i64,
    pub(super) record: Record,
}

/// What a group's transaction records.
pub(super) enum Record {
    /// The lane's own position.
    Lane,
    /// The group went through one transaction, for every lane: every lane's position, then
    /// the summary (and the fence met, announced at commit). `relane`: the lanes are set up
    /// anew, that many, all at the group's end.
    Serial {
        relane: Option<usize>,
        fence: Option<String>,
    },
}

/// What a lane tells the consumer.
pub(super) enum Report {
    Done { end: Lsn },
    Failed { lane: usize, error: LaneError },
}

/// Why a lane stopped.
#[derive(Debug)]
pub(super) enum LaneError {
    /// An order between lanes the source never had; see the module doc.
    Conflict(Conflict),
    Failed(PipelineError),
}

/// A parallel group's share that only the whole group, in source order, can apply.
#[derive(Debug)]
pub(super) struct Conflict {
    /// The output table, when a write into it was refused.
    pub(super) table: Option<String>,
    pub(super) reason: String,
}

/// A target session set up for applying (see `commands::follow`).
pub struct LaneSession {
    pub client: Client,
    /// Per plan-wide output, its writer on this session.
    pub writers: Vec<OutputWriter>,
}

/// What every lane shares.
pub(super) struct LaneShared {
    pub(super) plan: Arc<Plan>,
    /// Per plan-wide output, its source.
    pub(super) owner: Vec<usize>,
    /// Bumped by the changes of every committed group (read by the metrics).
    pub(super) progress: Arc<FollowProgress>,
}

/// Runs lane `index` until the consumer closes its queue (a group left open is rolled back)
/// or the lane fails (reported, then it ends).
pub(super) async fn run(
    index: usize,
    mut session: LaneSession,
    shared: Arc<LaneShared>,
    mut work: mpsc::Receiver<Work>,
    reports: mpsc::UnboundedSender<Report>,
) {
    let mut recorded = Instant::now();
    while let Some(first) = work.recv().await {
        let lane = Lane {
            index,
            shared: &shared,
            writers: &session.writers,
        };
        let report = match lane
            .group(&mut session.client, first, &mut work, &mut recorded)
            .await
        {
            Ok(Some(end)) => Report::Done { end },
            // The consumer stopped mid-group: the transaction rolls back.
            Ok(None) => return,
            Err(error) => Report::Failed { lane: index, error },
        };
        let failed = matches!(report, Report::Failed { .. });
        if reports.send(report).is_err() || failed {
            return;
        }
    }
}

struct Lane<'a> {
    index: usize,
    shared: &'a LaneShared,
    writers: &'a [OutputWriter],
}

impl Lane<'_> {
    /// Applies one group's share, from its first message; `None` when the queue closed first.
    async fn group(
        &self,
        client: &mut Client,
        first: Work,
        work: &mut mpsc::Receiver<Work>,
        recorded: &mut Instant,
    ) -> Result<Option<Lsn>, LaneError> {
        if let Work::Commit(c) = &first {
            if matches!(c.record, Record::Lane)
                && c.changes == 0
                && recorded.elapsed() < IDLE_RECORD
            {
                return Ok(Some(c.end));
            }
        }
        let tx = client
            .transaction()
            .await
            .map_err(|e| failed("starting an apply transaction", e))?;
        let mut serial = None;
        let mut next = Some(first);
        loop {
            let message = match next.take() {
                Some(m) => m,
                None => match work.recv().await {
                    Some(m) => m,
                    None => return Ok(None),
                },
            };
            match message {
                Work::Ops(ops) => {
                    if serial.is_none() {
                        serial = Some(ops.serial);
                        if !ops.serial {
                            tx.batch_execute(&format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
                                .await
                                .map_err(|e| failed("setting the lane's lock timeout", e))?;
                        }
                    }
                    self.flush(&tx, ops).await?;
                }
                Work::Commit(c) => {
                    let end = c.end;
                    self.commit(tx, c, serial.unwrap_or(false)).await?;
                    *recorded = Instant::now();
                    return Ok(Some(end));
                }
            }
        }
    }

    /// Writes a share's operations and dead letters into the open transaction.
    async fn flush(&self, tx: &Transaction<'_>, mut ops: Ops) -> Result<(), LaneError> {
        let plan = &self.shared.plan;
        let sources = &plan.sources;
        let on_refused = if ops.serial {
            OnRefused::ReplayInSourceOrder
        } else {
            OnRefused::Report
        };
        let flushed = ops
            .batch
            .flush(tx, self.writers, on_refused)
            .await
            .map_err(|e| classify(e.into(), ops.serial))?;
        match flushed {
            Flushed::Refused { table, reason } => {
                return Err(LaneError::Conflict(Conflict {
                    table: Some(table),
                    reason,
                }))
            }
            Flushed::Applied { refused } => {
                for (number, origin, reason) in refused {
                    let index = self.shared.owner[number];
                    let rejected =
                        describe_origin(&sources[index], &ops.descriptors, origin, reason);
                    let letter = DeadLetter {
                        rejected,
                        output_table: Some(self.writers[number].table().to_owned()),
                    };
                    ops.rejects.push(index, letter);
                }
            }
        }
        ops.rejects
            .check(sources)
            .map_err(|e| LaneError::Failed(e.into()))?;
        ops.rejects
            .write(tx, &plan.name, "follow", sources)
            .await
            .map_err(|e| classify(PipelineError::target("writing dead letters", e), ops.serial))
    }

    /// Records the group's position in its transaction and commits it.
    async fn commit(&self, tx: Transaction<'_>, c: Commit, serial: bool) -> Result<(), LaneError> {
        let migration = &self.shared.plan.name;
        let record = async {
            match &c.record {
                Record::Lane => {
                    checkpoint::record_lane(
                        &tx,
                        migration,
                        Some(self.index),
                        c.end,
                        c.commit_micros,
                        c.changes,
                    )
                    .await?
                }
                Record::Serial { relane, fence } => {
                    // The cutover goes on once the fence is announced: it must be on disk.
                    if fence.is_some() {
                        checkpoint::commit_synchronously(&tx).await?;
                    }
                    if let Some(lanes) = relane {
                        checkpoint::reset_lanes(&tx, migration, *lanes, c.end).await?;
                    }
                    checkpoint::record_lane(
                        &tx,
                        migration,
                        None,
                        c.end,
                        c.commit_micros,
                        c.changes,
                    )
                    .await?;
                    checkpoint::summarize(&tx, migration, c.end, c.commit_micros, fence.as_deref())
                        .await?;
                }
            }
            Ok::<(), checkpoint::CheckpointError>(())
        };
        record.await.map_err(|e| classify(e.into(), serial))?;
        tx.commit().await.map_err(|e| {
            // A deferred constraint is checked here: in a parallel group, possibly against
            // another lane's share not yet committed.
            classify(
                PipelineError::target("committing an applied group", e),
                serial,
            )
        })?;
        self.shared
            .progress
            .changes_applied
            .fetch_add(c.changes.max(0) as u64, Ordering::Relaxed);
        tracing::debug!(lane = self.index, applied = %c.end, changes = c.changes, "group applied");
        Ok(())
    }
}

fn failed(context: &str, e: tokio_postgres::Error) -> LaneError {
    LaneError::Failed(PipelineError::target(context, e))
}

/// A parallel group's error that another lane's uncommitted share may have caused is a
/// [`Conflict`]; anything else stays what it is.
fn classify(e: PipelineError, serial: bool) -> LaneError {
    let code = match &e {
        PipelineError::Target { source, .. } => source.code(),
        PipelineError::Write(w) => w.source.code(),
        PipelineError::Checkpoint(c) => c.postgres().code(),
        _ => None,
    };
    let between_lanes = code.is_some_and(|c| {
        *c == SqlState::T_R_DEADLOCK_DETECTED
            || *c == SqlState::T_R_SERIALIZATION_FAILURE
            || *c == SqlState::LOCK_NOT_AVAILABLE
            || c.code().starts_with("23")
    });
    if serial || !between_lanes {
        return LaneError::Failed(e);
    }
    LaneError::Conflict(Conflict {
        table: None,
        reason: crate::error::Chain::new(&e).to_string(),
    })
}
