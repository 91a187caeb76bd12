//! What a backfill that fails or is stopped keeps and removes. Before its chunk list is
//! recorded nothing is worth resuming: a run removes the slot and the publication it made, and
//! the next run starts over after one that was killed. After that point the slot and the
//! finished chunks are kept, and the reason is written where `status` shows it.

use std::time::{Duration, Instant};

use anyhow::bail;
use tokio_postgres::Client;

use crate::checkpoint::{self, MigrationStatus};
use crate::commands::signal::{Interrupted, Stop};
use crate::error::Chain;
use crate::pg::connect::connect;
use crate::progress::BackfillProgress;
use crate::source::{publication, slot};

use super::job::{BackfillJob, Copying};

/// How long recording why the backfill stopped (and removing what a first run made) may take:
/// a stop request must end the process even when the target does not answer.
const RECORD_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a slot left by a killed first run may stay in use before a new run gives up.
const SLOT_RELEASE: Duration = Duration::from_secs(10);

/// What a first run created on the source, so that a failure removes exactly that.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Made {
    pub(super) slot: bool,
    pub(super) publication: bool,
}

impl BackfillJob {
    /// Once the chunk list is recorded the migration is resumable: a stop or a failure keeps
    /// the slot and the finished chunks, and says so in the migration's message (shown by
    /// `status`) as well as in the error.
    ///
    /// `in_flight` are the backends of the job's own target sessions: a stop cancels the
    /// statements they may still run (an index build, the after-backfill SQL), which the
    /// server would otherwise carry on with, holding their locks, until it noticed the client
    /// gone.
    pub(super) async fn resumable<T>(
        &self,
        outcome: Option<anyhow::Result<T>>,
        interrupted: &str,
        in_flight: &[i32],
    ) -> anyhow::Result<T> {
        let plan = &self.plan;
        let cancel = if outcome.is_none() { in_flight } else { &[] };
        let go_on = "`switchyard backfill --resume` goes on, `switchyard abort` removes the slot and the publication";
        let (message, error) = match outcome {
            Some(Ok(value)) => return Ok(value),
            Some(Err(e)) => (
                format!("backfill stopped: {}; {go_on}", Chain::from(&e)),
                e.context(format!(
                    "backfill of {} stopped; the slot and the finished chunks are kept: {go_on}",
                    plan.name
                )),
            ),
            None => {
                let message = format!("{interrupted}; {go_on}");
                (
                    format!("backfill interrupted {message}"),
                    Interrupted(message).into(),
                )
            }
        };
        // A fresh session: the job's own may still wait on the statement it was stopped in.
        // Only an interrupted backfill's message is written; any other state stays as it is.
        let recorded = tokio::time::timeout(RECORD_TIMEOUT, async {
            let target = connect(&self.target, "switchyard backfill").await?;
            for pid in cancel {
                target
                    .execute("SELECT pg_cancel_backend($1)", &[pid])
                    .await?;
            }
            let status = checkpoint::load(&target, &plan.name)
                .await?
                .map(|m| m.status);
            if status == Some(MigrationStatus::Backfilling) {
                checkpoint::set_status(
                    &target,
                    &plan.name,
                    MigrationStatus::Backfilling,
                    Some(&message),
                )
                .await?;
            }
            anyhow::Ok(())
        })
        .await;
        if !matches!(recorded, Ok(Ok(()))) {
            tracing::warn!("could not record why the backfill stopped in the target");
        }
        Err(error)
    }

    /// First run: the slot's exported snapshot, imported by every reader. Until the chunk list
    /// is recorded nothing is worth resuming, so a failure or a stop up to there removes the
    /// slot and the publication this run made (never ones that were there before) and marks
    /// the migration aborted: nothing is left behind.
    pub(super) async fn fresh_snapshot(
        &self,
        source: &Client,
        target: &mut Client,
        progress: &BackfillProgress,
        stop: &Stop,
    ) -> anyhow::Result<Copying> {
        let mut made = Made::default();
        let prepared = stop
            .unless_stopped(self.prepare_fresh(source, target, progress, &mut made))
            .await;
        let (why, error) = match prepared {
            Some(Ok(prepared)) => return Ok(prepared),
            Some(Err(e)) => (
                format!("backfill failed before copying: {}", Chain::from(&e)),
                Some(e),
            ),
            None => (
                "backfill interrupted before the copy began".to_owned(),
                None,
            ),
        };
        // Fresh sessions: the job's own may still wait on the statement it was stopped in.
        // What the messages say was removed is what the source shows afterwards.
        let removed = tokio::time::timeout(RECORD_TIMEOUT, self.remove_fresh(made, &why)).await;
        let outcome = match removed {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(e)) => format!(
                "removing what this run made failed ({}): check for slot {} and publication {} on the source, `switchyard abort` removes them",
                Chain::from(&e),
                self.plan.slot_name(),
                self.plan.publication_name()
            ),
            Err(_) => format!(
                "removing what this run made did not finish within {RECORD_TIMEOUT:?}: check for slot {} and publication {} on the source, `switchyard abort` removes them",
                self.plan.slot_name(),
                self.plan.publication_name()
            ),
        };
        Err(match error {
            Some(e) => e.context(outcome),
            None => Interrupted(format!(
                "before the copy began; {outcome}: run `switchyard backfill` again"
            ))
            .into(),
        })
    }

    /// A first run that died (SIGKILL, a lost machine) between creating its slot and recording
    /// its chunk list left status `created` and perhaps the slot. Nothing in it is worth
    /// resuming, so a new run removes that slot, as `abort` would, and starts over. A slot that
    /// stays in use belongs to a run that is still alive.
    pub(super) async fn discard_unfinished_first_run(&self, source: &Client) -> anyhow::Result<()> {
        let name = self.plan.slot_name();
        // The killed run's walsender may take a moment to notice its client is gone.
        let deadline = Instant::now() + SLOT_RELEASE;
        loop {
            match slot::state(source, &name).await? {
                None => return Ok(()),
                Some(state) if !state.active => {
                    slot::drop(source, &name).await?;
                    tracing::warn!(slot = %name, "a first run stopped before recording its chunk list: its slot is dropped and the backfill starts over");
                    return Ok(());
                }
                Some(_) if Instant::now() >= deadline => bail!(
                    "replication slot {name} is in use: another `switchyard backfill` of {} is still preparing; wait for it or stop it",
                    self.plan.name
                ),
                Some(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// Drops the slot and the publication this run made, and marks the migration aborted.
    /// Returns what the source shows afterwards, for the messages: only what is really gone
    /// is called removed.
    async fn remove_fresh(&self, made: Made, why: &str) -> anyhow::Result<String> {
        let plan = &self.plan;
        let source = connect(&self.source, "switchyard backfill").await?;
        let (slot_name, pub_name) = (plan.slot_name(), plan.publication_name());
        let mut said = Vec::new();
        if made.slot {
            slot::drop(&source, &slot_name).await?;
            said.push(match slot::state(&source, &slot_name).await? {
                None => format!("slot {slot_name} removed"),
                Some(_) => {
                    format!("slot {slot_name} is still there (`switchyard abort` removes it)")
                }
            });
        }
        if made.publication {
            publication::drop(&source, &pub_name).await?;
            let left = source
                .query_opt(
                    "SELECT FROM pg_publication WHERE pubname = $1",
                    &[&pub_name],
                )
                .await?
                .is_some();
            said.push(if left {
                format!("publication {pub_name} is still there (`switchyard abort` removes it)")
            } else {
                format!("publication {pub_name} removed")
            });
        }
        let outcome = if said.is_empty() {
            "nothing was created on the source yet".to_owned()
        } else {
            said.join(", ")
        };
        let target = connect(&self.target, "switchyard backfill").await?;
        if checkpoint::load(&target, &plan.name).await?.is_some() {
            let message = format!("{why}; {outcome}");
            checkpoint::set_status(
                &target,
                &plan.name,
                MigrationStatus::Aborted,
                Some(&message),
            )
            .await?;
        }
        Ok(outcome)
    }
}

/// The backend serving `client`, so that a stop can cancel what it runs.
pub(super) async fn backend_pid(client: &Client) -> Option<i32> {
    let row = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .ok()?;
    Some(row.get(0))
}
