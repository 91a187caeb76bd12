//! Verify's hand-off with the consumer: after each snapshot, a fence, and a wait until the
//! consumer has applied it, so the target holds at least everything the snapshot sees.
//!
//! ```text
//!  source:  BEGIN REPEATABLE READ; SELECT ...   (snapshot S)  ── emit fence F (own tx, after S)
//!  target:  ................................ consumer applies up to F ── NOTIFY ── verify reads
//! ```
//!
//! Without it a fresh insert would be reported missing only because the consumer had not got
//! there yet. When no consumer runs (no recent heartbeat in `switchyard.migrations`) verify does
//! not wait at all; when a fence is not applied within the timeout, it stops waiting for later
//! ones. Either way the report says so, and the comparison still runs: on rows nobody writes,
//! a difference is then still real.

use std::time::Duration;

use tokio_postgres::Client;

use crate::pg::connect::connect;
use crate::pg::conninfo::ConnInfo;
use crate::sink::fence::{FenceListener, FenceWait};
use crate::source::fence;

use super::error::VerifyError;

/// A consumer whose last heartbeat is older than this is taken as not running (it beats about
/// once a second, see [`crate::source::wal_stream::STATUS_INTERVAL`]).
const CONSUMER_SILENT_AFTER_S: f64 = 10.0;

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
    /// Whether a consumer was running when verify began.
    pub running: bool,
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
        let listener = if consumer_running(target_client, migration).await? {
            Some(
                FenceListener::listen(target, migration)
                    .await
                    .map_err(|e| VerifyError::Fence {
                        context: "listening on the target".to_owned(),
                        source: Box::new(e),
                    })?,
            )
        } else {
            None
        };
        Ok(Gate {
            caught_up: listener.is_some(),
            running: listener.is_some(),
            fencer,
            listener,
            migration: migration.to_owned(),
            timeout,
        })
    }

    /// Call right after a snapshot was taken: emits a fence and waits until the consumer has
    /// applied it, or stops waiting for good after the timeout.
    pub async fn pass(&mut self) -> Result<(), VerifyError> {
        let Some(listener) = self.listener.as_mut() else {
            return Ok(());
        };
        let fence = fence::emit(&self.fencer, &self.migration)
            .await
            .map_err(VerifyError::source("emitting a fence"))?;
        let waited = listener
            .wait(&fence, self.timeout)
            .await
            .map_err(|e| VerifyError::Fence {
                context: format!("waiting for fence {} at {}", fence.id, fence.lsn),
                source: Box::new(e),
            })?;
        if waited == FenceWait::TimedOut {
            tracing::warn!(fence = %fence.id, timeout = ?self.timeout, "the consumer did not apply verify's fence in time");
            self.caught_up = false;
            self.listener = None;
        }
        Ok(())
    }
}

/// Whether a consumer of `migration` has beaten recently (none runs after a cutover: the
/// source is frozen then, and there is nothing to wait for).
async fn consumer_running(target: &Client, migration: &str) -> Result<bool, VerifyError> {
    let context = "looking for a running consumer in switchyard.migrations";
    let has_state = crate::checkpoint::state_exists(target)
        .await
        .map_err(VerifyError::target(context))?;
    if !has_state {
        return Ok(false);
    }
    let row = target
        .query_opt(
            "SELECT coalesce(status = 'following' AND heartbeat_at > now() - make_interval(secs => $2), false)
               FROM switchyard.migrations WHERE name = $1",
            &[&migration, &CONSUMER_SILENT_AFTER_S],
        )
        .await
        .map_err(VerifyError::target(context))?;
    Ok(row.is_some_and(|r| r.get(0)))
}
