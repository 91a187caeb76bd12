//! Reads the replication stream on a task of its own, so that receiving and decoding overlap
//! with applying; the consumer hands back the LSN it has committed, which the pump reports.
//!
//! ```text
//!   WalStream ──(bounded queue of decoded messages)──> consumer
//!       ^                                                 │
//!       └────────────── flushed LSN (watch) ──────────────┘
//! ```

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::pg::lsn::Lsn;
use crate::source::wal_stream::{WalEvent, WalStream, WalStreamError};

/// Decoded messages buffered ahead of the consumer: enough to keep it busy while the next
/// ones are read, few enough to bound memory.
const QUEUE: usize = 4096;

/// How long the pump waits for a message before it looks for a new flushed LSN to report.
const POLL: Duration = Duration::from_millis(20);

pub struct WalPump {
    events: mpsc::Receiver<Result<WalEvent, WalStreamError>>,
    flushed: watch::Sender<Lsn>,
    closing: watch::Sender<bool>,
    /// Hands the stream back when the pump stops, for a clean CopyDone.
    task: Option<JoinHandle<Option<WalStream>>>,
}

impl WalPump {
    pub fn start(mut stream: WalStream, start: Lsn) -> WalPump {
        let (tx, events) = mpsc::channel(QUEUE);
        let (flushed, mut flushed_rx) = watch::channel(start);
        let (closing, closing_rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                if *closing_rx.borrow() {
                    return Some(stream);
                }
                if flushed_rx.has_changed().unwrap_or(false) {
                    let lsn = *flushed_rx.borrow_and_update();
                    if let Err(e) = stream.flushed(lsn).await {
                        let _ = tx.send(Err(e)).await;
                        return None;
                    }
                }
                let event = match stream.next(POLL).await {
                    Ok(WalEvent::Idle) => continue,
                    other => other,
                };
                let stop = !matches!(
                    event,
                    Ok(WalEvent::Message { .. } | WalEvent::CaughtUp { .. })
                );
                // Wait for room, still reporting flushed positions meanwhile.
                let permit = loop {
                    tokio::select! {
                        permit = tx.reserve() => break permit,
                        changed = flushed_rx.changed() => {
                            if changed.is_err() {
                                return None;
                            }
                            let lsn = *flushed_rx.borrow_and_update();
                            if let Err(e) = stream.flushed(lsn).await {
                                let _ = tx.send(Err(e)).await;
                                return None;
                            }
                        }
                    }
                };
                match permit {
                    Ok(permit) => permit.send(event),
                    // The consumer closed the queue: it is stopping, hand the stream back.
                    Err(_) => return Some(stream),
                }
                if stop {
                    return None;
                }
            }
        });
        WalPump {
            events,
            flushed,
            closing,
            task: Some(task),
        }
    }

    /// The next event, or `Idle` when none arrives within `idle`.
    pub async fn next(&mut self, idle: Duration) -> Result<WalEvent, WalStreamError> {
        match tokio::time::timeout(idle, self.events.recv()).await {
            Err(_) => Ok(WalEvent::Idle),
            Ok(Some(event)) => event,
            Ok(None) => Ok(WalEvent::Ended),
        }
    }

    /// Reports that the target committed everything up to `lsn`.
    pub fn flushed(&self, lsn: Lsn) {
        self.flushed.send_if_modified(|current| {
            let newer = lsn > *current;
            if newer {
                *current = lsn;
            }
            newer
        });
    }
}

impl WalPump {
    /// Stops reading and ends the stream with CopyDone, after reporting the last flushed LSN.
    pub async fn close(mut self) -> Result<(), WalStreamError> {
        let _ = self.closing.send(true);
        self.events.close();
        let task = self.task.take().expect("closed once");
        if let Ok(Some(mut stream)) = task.await {
            let lsn = *self.flushed.borrow();
            stream.flushed(lsn).await?;
            stream.close().await?;
        }
        Ok(())
    }
}

impl Drop for WalPump {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}
