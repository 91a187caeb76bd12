//! Verify's hand-off with the consumer: after each snapshot, a fence, and a wait until the
//! consumer has applied it, so the target holds at least everything the snapshot sees.
//!
//! ```text
//!  source:  BEGIN REPEATABLE READ; SELECT ...   (snapshot S)  ── emit fence F (own tx, after S)
//!  target:  ................................ consumer applies up to F ── NOTIFY ── verify reads
//! ```
//!
//! Without it a fresh insert would be reported missing only because the consumer had not got
//! there yet. When no consumer runs (no recent heartbeat in `switchyard.migrations`, or no
//! walsender holding the slot: see [`super::consumer`]) verify does not wait at all; when a fence
//! is not applied within the timeout, or the consumer lets go of the slot while verify waits,
//! it stops waiting for later ones. Either way the report says so, with the reason, and the comparison still runs: on rows nobody writes,
//! a difference is then still real.

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::pg::connect::connect;
use crate::pg::conninfo::ConnInfo;
use crate::sink::fence::{FenceListener, FenceWait};
use crate::source::fence;

use super::consumer::{self, Consumer};
use super::error::VerifyError;

/// While a fence is waited for, the slot is looked at this often: a consumer that dies
/// meanwhile ends the wait within a second instead of at the timeout.
const RECHECK_EVERY: Duration = Duration::from_secs(1);

/// Emits fences on the source and waits for them on the target.
pub struct Gate {
    /// Outside any snapshot transaction: a fence commits on its own.
    fencer: Client,
    /// `None` once there is nothing (more) to wait for.
    listener: Option<FenceListener>,
    migration: String,
    timeout: Duration,
    /// Whether every fence so far was applied.
    pub caught_up: bool,
    /// Whether a consumer was running when verify began (it beat recently and held the slot).
    pub running: bool,
    /// Why no fence was (or will be) waited for, for the report.
    pub why_not: Option<String>,
    /// The slot the running consumer holds.
    slot: Option<String>,
}

impl Gate {
    /// Connects, and listens when a consumer of `migration` is running.
    pub async fn open(
        source: &ConnInfo,
        target: &ConnInfo,
        target_client: &Client,
        migration: &str,
        timeout: Duration,
    ) -> Result<Gate, VerifyError> {
        let fencer = connect(source, "switchyard verify fence").await?;
        let consumer = consumer::find(target_client, &fencer, migration).await?;
        let listener = match &consumer {
            Consumer::Running { .. } => Some(
                FenceListener::listen(target, migration)
                    .await
                    .map_err(|e| VerifyError::Fence {
                        context: "listening on the target".to_owned(),
                        source: Box::new(e),
                    })?,
            ),
            Consumer::NotRunning(_) => None,
        };
        let (slot, why_not) = match consumer {
            Consumer::Running { slot } => (Some(slot), None),
            Consumer::NotRunning(why) => (None, Some(why)),
        };
        Ok(Gate {
            caught_up: listener.is_some(),
            running: listener.is_some(),
            why_not,
            slot,
            fencer,
            listener,
            migration: migration.to_owned(),
            timeout,
        })
    }

    /// Call right after a snapshot was taken: emits a fence and waits until the consumer has
    /// applied it, or stops waiting for good after the timeout or once its slot is released.
    pub async fn pass(&mut self) -> Result<(), VerifyError> {
        let (Some(listener), Some(slot)) = (self.listener.as_mut(), &self.slot) else {
            return Ok(());
        };
        let fence = fence::emit(&self.fencer, &self.migration)
            .await
            .map_err(VerifyError::source("emitting a fence"))?;
        let deadline = Instant::now() + self.timeout;
        loop {
            let step = deadline
                .saturating_duration_since(Instant::now())
                .min(RECHECK_EVERY);
            let waited = listener
                .wait(&fence, step)
                .await
                .map_err(|e| VerifyError::Fence {
                    context: format!("waiting for fence {} at {}", fence.id, fence.lsn),
                    source: Box::new(e),
                })?;
            if waited == FenceWait::Applied {
                return Ok(());
            }
            let holder = consumer::slot_holder(&self.fencer, slot).await?;
            let gone = match holder {
                Consumer::NotRunning(why) => Some(format!("the consumer stopped: {why}")),
                Consumer::Running { .. } => None,
            };
            if gone.is_some() || Instant::now() >= deadline {
                self.why_not = Some(gone.unwrap_or_else(|| {
                    format!(
                        "it did not apply fence {} within {}",
                        fence.id,
                        crate::progress::human::duration(self.timeout)
                    )
                }));
                self.caught_up = false;
                self.listener = None;
                return Ok(());
            }
        }
    }
}
