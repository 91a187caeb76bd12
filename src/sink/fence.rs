//! Waiting, on the target, for the consumer to apply a fence (see [`crate::source::fence`]).
//!
//! The waiter listens before the fence is written and is woken by the consumer's `NOTIFY`,
//! which the target delivers when the applying transaction commits: no polling interval adds
//! to the cutover's write-blocked window.

use std::time::Duration;

use tokio::time::Instant;
use tokio_postgres::Client;

use crate::checkpoint::FENCE_CHANNEL;
use crate::pg::connect::{connect_listening, ConnectError, Notifications};
use crate::pg::conninfo::ConnInfo;
use crate::pg::ident::quote_ident;
use crate::source::fence::Fence;

/// A session listening for applied fences of one migration.
pub struct FenceListener {
    client: Client,
    notifications: Notifications,
    migration: String,
}

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FenceWait {
    /// The consumer applied everything before the fence.
    Applied,
    /// The timeout passed first (no consumer running, or one too far behind).
    TimedOut,
}

#[derive(Debug, thiserror::Error)]
pub enum FenceError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("listening for applied fences on the target")]
    Listen(#[source] tokio_postgres::Error),
    #[error("the target session listening for applied fences closed")]
    Closed,
}

impl FenceListener {
    /// Opens a session on the target and listens; call before the fence is written.
    pub async fn listen(target: &ConnInfo, migration: &str) -> Result<FenceListener, FenceError> {
        let (client, notifications) = connect_listening(target, "switchyard fence").await?;
        client
            .batch_execute(&format!("LISTEN {}", quote_ident(FENCE_CHANNEL)))
            .await
            .map_err(FenceError::Listen)?;
        Ok(FenceListener {
            client,
            notifications,
            migration: migration.to_owned(),
        })
    }

    /// Waits until the consumer has recorded `fence` (or a later one), at most `timeout`.
    pub async fn wait(
        &mut self,
        fence: &Fence,
        timeout: Duration,
    ) -> Result<FenceWait, FenceError> {
        let deadline = Instant::now() + timeout;
        loop {
            // Checked after every notification and once up front: the fence may have been
            // applied before this wait began.
            if self.applied(fence).await? {
                return Ok(FenceWait::Applied);
            }
            loop {
                match tokio::time::timeout_at(deadline, self.notifications.recv()).await {
                    Err(_) => return Ok(FenceWait::TimedOut),
                    Ok(None) => return Err(FenceError::Closed),
                    Ok(Some(n)) if n.payload() == self.migration => break,
                    Ok(Some(_)) => continue,
                }
            }
        }
    }

    /// Whether the recorded fence is `fence` or one written after it.
    async fn applied(&self, fence: &Fence) -> Result<bool, FenceError> {
        let row = self
            .client
            .query_opt(
                "SELECT fence_id = $2 OR fence_lsn > $3
                   FROM switchyard.migrations WHERE name = $1",
                &[&self.migration, &fence.id, &fence.lsn],
            )
            .await
            .map_err(FenceError::Listen)?;
        Ok(row
            .and_then(|r| r.get::<_, Option<bool>>(0))
            .unwrap_or(false))
    }
}
