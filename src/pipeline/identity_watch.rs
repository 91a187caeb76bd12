//! The identity check (see [`crate::source::identity`]) on a task and a connection of its
//! own, every [`CHECK_INTERVAL`], so that the apply loop never waits for the catalog.
//!
//! ```text
//!   consumer ──received LSN (watch)──> task: r = received; check the catalog
//!            <──Proven(r) | Failed(why)──  (a check made after r arrived saw everything
//!                                           committed before r)
//! ```

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use crate::error::Chain;
use crate::pg::lsn::Lsn;
use crate::plan::Plan;
use crate::source::identity::{self, CheckError, IdentityError};

/// How often the catalog is checked: the slot's confirmed position (the WAL the source retains
/// for the consumer) trails what the target applied by about this much. A check is a handful of
/// catalog reads.
pub const CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// What the last check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// No check has finished yet.
    Nothing,
    /// Every commit up to this LSN was received before a check that passed.
    Proven(Lsn),
    /// A followed table is not what the plan names; the checks have ended.
    Failed(IdentityError),
}

/// What the checks need, resolved by the command.
pub struct Followed {
    pub plan: Arc<Plan>,
    pub oids: Vec<u32>,
    pub publication_rels: Vec<Option<u32>>,
    pub publication: String,
}

pub struct IdentityWatch {
    received: watch::Sender<Lsn>,
    checked: watch::Receiver<Checked>,
    task: JoinHandle<()>,
}

impl IdentityWatch {
    /// Starts checking on `client`, a source connection of its own.
    pub fn start(client: Client, followed: Followed, start: Lsn) -> IdentityWatch {
        let (received, received_rx) = watch::channel(start);
        let (checked_tx, checked) = watch::channel(Checked::Nothing);
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(CHECK_INTERVAL).await;
                let r = *received_rx.borrow();
                let verdict = identity::check(
                    &client,
                    &followed.plan,
                    &followed.oids,
                    &followed.publication,
                    &followed.publication_rels,
                )
                .await;
                let sent = match verdict {
                    Ok(()) => checked_tx.send(Checked::Proven(r)),
                    Err(CheckError::Identity(e)) => {
                        let _ = checked_tx.send(Checked::Failed(e));
                        return;
                    }
                    Err(CheckError::Catalog(e)) => {
                        tracing::warn!(
                            "could not check the source tables in the catalog ({}); the slot's confirmed position waits for the next check",
                            Chain::new(&e)
                        );
                        Ok(())
                    }
                };
                if sent.is_err() {
                    return; // the consumer is gone
                }
            }
        });
        IdentityWatch {
            received,
            checked,
            task,
        }
    }

    /// Tells the checks that every commit up to `lsn` has been received.
    pub fn received(&self, lsn: Lsn) {
        self.received.send_if_modified(|current| {
            let newer = lsn > *current;
            if newer {
                *current = lsn;
            }
            newer
        });
    }

    /// The verdict of a check finished since the last call, if any.
    /// A failure is repeated on every call: the task has ended with it.
    pub fn latest(&mut self) -> Option<Checked> {
        match self.checked.has_changed() {
            Ok(true) => Some(self.checked.borrow_and_update().clone()),
            Ok(false) => None,
            // The task ended; its last word stays readable.
            Err(_) => match &*self.checked.borrow() {
                failed @ Checked::Failed(_) => Some(failed.clone()),
                _ => None,
            },
        }
    }
}

impl Drop for IdentityWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}
