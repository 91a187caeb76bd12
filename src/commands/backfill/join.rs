//! `switchyard backfill --join`: one more process, usually on another machine, copying the
//! chunks of a migration whose first `backfill` is running.
//!
//! ```text
//!  first process:  slot + snapshot S ─> holder exports S2 ─> record S2 ─> copy (leases) ─┐
//!                                         (held open until every chunk is done)         │
//!  joiner:         read S2 ─> readers: SET TRANSACTION SNAPSHOT S2 ─> copy (leases) ──────┤
//!                                                                                        ▼
//!  first process:  every chunk done, by anyone ─> clear S2 ─> after-backfill SQL ─> follow
//! ```
//! A joiner reads exactly what the first process reads (the same snapshot), so its chunks are
//! as of the slot's consistent point like the others. It runs only the copy: the first process
//! waits for every chunk, then runs the after-backfill SQL and the consumer. It exits 0 when no
//! chunk is left. The snapshot is importable only while the first process (or the
//! `--resume` that recorded it) lives; after that a joiner cannot start, and says what to do.

use std::sync::Arc;

use anyhow::{bail, Context};

use crate::checkpoint::leases::release_leases;
use crate::checkpoint::{self, MigrationStatus};
use crate::pg::connect::connect;
use crate::pipeline::backfill::copy_chunks;
use crate::pipeline::lease_heartbeat::WorkerTally;
use crate::progress::Display;
use crate::sink::copy_format;
use crate::source::snapshot::{self, SnapshotError};

use super::super::signal::{Interrupted, Stop};
use super::job::BackfillJob;
use super::worker::ThisProcess;

/// What a joining process did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joined {
    /// Every chunk was already done (or the backfill had moved past its copy).
    NothingLeft,
    /// This process copied these chunks, holding these source rows, until none was left.
    Copied { chunks: i64, row_count: i64 },
}

/// Why a joiner cannot start: each names what to do instead.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("there is no migration {0} to join: start `switchyard backfill` on one machine first, then `--join` on the others")]
    NotStarted(String),
    #[error("migration {0} is {1}: there is no copy to join")]
    NotCopying(String, MigrationStatus),
    #[error("the plan or its SQL files differ from those migration {0} started with: join with the same plan files")]
    PlanDiffers(String),
    #[error("migration {0} is still preparing its snapshot: run `--join` again once its first process shows its chunks")]
    Preparing(String),
    /// The exported snapshot is gone, so this process cannot read what the others read.
    #[error("{0} chunks of migration {1} are left, but the snapshot they are copied under is gone: the `switchyard backfill` process that exported it has ended. Run `switchyard backfill --resume` on one machine (it exports a new snapshot), then `--join` on the others")]
    SnapshotGone(i64, String),
}

impl BackfillJob {
    /// Joins the running backfill of this plan; a stop request (Ctrl-C, SIGTERM) ends it with
    /// [`Interrupted`]: its finished chunks stay done, the ones in flight roll back and their
    /// leases are given up, and the other processes take them over at once.
    pub async fn join(self, stop: &Stop) -> anyhow::Result<Joined> {
        let plan = Arc::clone(&self.plan);
        let target = connect(&self.target, "switchyard backfill --join").await?;
        checkpoint::ensure_schema(&target).await?;
        let m = checkpoint::load(&target, &plan.name)
            .await?
            .ok_or_else(|| JoinError::NotStarted(plan.name.clone()))?;
        if !plan.has_checksum(&m.plan_checksum) {
            bail!(JoinError::PlanDiffers(plan.name.clone()));
        }
        match m.status {
            MigrationStatus::Backfilling => {}
            MigrationStatus::Created => bail!(JoinError::Preparing(plan.name.clone())),
            MigrationStatus::Aborted | MigrationStatus::RolledBack => {
                bail!(JoinError::NotCopying(plan.name.clone(), m.status))
            }
            _ => return Ok(Joined::NothingLeft),
        }
        let left = chunks_left(&target, &plan.name).await?;
        if left == 0 {
            return Ok(Joined::NothingLeft);
        }
        let gone = || JoinError::SnapshotGone(left, plan.name.clone());
        let exported = checkpoint::exported_snapshot(&target, &plan.name)
            .await?
            .ok_or_else(gone)?;
        let source = connect(&self.source, "switchyard backfill --join").await?;
        crate::source::ctype::use_source_ctype(&source).await?;
        let readers = match snapshot::open_readers(&self.source, self.jobs, &exported).await {
            Ok(readers) => readers,
            // The exporting session ended: because the copy is over, or because it died.
            Err(SnapshotError::Import { .. }) => match chunks_left(&target, &plan.name).await? {
                0 => return Ok(Joined::NothingLeft),
                _ => bail!(gone()),
            },
            Err(e) => return Err(e.into()),
        };
        let formats = copy_format::choose(&target, plan.outputs().map(|(_, o)| o))
            .await
            .context("reading the output tables' column types")?;
        // A joiner obeys `pause` and `throttle` like the first process.
        let controls = self.controls().await?;
        let me = ThisProcess::new();
        me.register(&target, &plan.name).await?;
        tracing::info!(snapshot = %exported, worker = %me.owner.0, "joined the backfill");
        // The job's own: `--metrics-addr` reads it too.
        let progress = Arc::clone(&self.progress);
        let ctx = self
            .chunk_context(
                &progress,
                formats.formats.into(),
                &me,
                &exported,
                controls.gate(),
            )
            .await?;
        // A resumed backfill copies with upserts (see the README's resume); so do its joiners.
        let resumed = m.consistent_lsn != m.snapshot_lsn;
        let display = Display::start(Arc::clone(&progress), self.display);
        let tally = Arc::new(WorkerTally::default());
        let copied = stop
            .unless_stopped(copy_chunks(
                ctx,
                readers,
                &self.target,
                resumed,
                Arc::clone(&tally),
            ))
            .await;
        display.finish().await;
        drop(controls);
        let (chunks, row_count) = tally.get();
        // Stopped or failed: the chunks in flight rolled back with their sessions, so their
        // leases are given up now rather than after LEASE_TTL. A late commit of ours could
        // not land anyway: it checks the lease.
        let released = match &copied {
            Some(Ok(())) => None,
            _ => release_leases(&target, &plan.name, std::slice::from_ref(&me.owner.0))
                .await
                .inspect_err(|e| tracing::warn!("giving up this worker's chunk leases: {e}"))
                .ok(),
        };
        let taken_over = match released {
            Some(_) => "the other processes take them over now",
            None => "the other processes take them over once their leases expire",
        };
        match copied {
            Some(Ok(())) => Ok(Joined::Copied { chunks, row_count }),
            Some(Err(e)) => Err(anyhow::Error::new(e).context(format!(
                "this worker stopped after copying {chunks} chunks; the chunks it held were rolled back and {taken_over}"
            ))),
            None => Err(Interrupted(format!(
                "after copying {chunks} chunks ({row_count} rows); the chunks in flight were rolled back and {taken_over}"
            ))
            .into()),
        }
    }
}

/// The chunks of `migration` not yet done, by anyone.
async fn chunks_left(target: &tokio_postgres::Client, migration: &str) -> anyhow::Result<i64> {
    let progress = checkpoint::chunk_progress(target, migration).await?;
    Ok(progress
        .iter()
        .map(|(_, done, total, _)| total - done)
        .sum())
}
