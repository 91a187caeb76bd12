//! Reads the replication stream on a task of its own, so that receiving and decoding overlap
//! with applying; the consumer hands back the LSN it has committed, which the pump reports.
//!
//! ```text
//!   WalStream ──(queue bounded in messages and in bytes)──> consumer
//!       ^                                                      │
//!       └──────────────── flushed LSN (watch) ─────────────────┘
//! ```
//!
//! The byte bound counts each message from the moment the pump has read it until the consumer
//! asks for the one after it, so the message being applied counts too. The pump reads only
//! while some of the bound is free: a message larger than the whole bound is read alone, after
//! the consumer is done with everything before it, and a 100 MB row is in memory once.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio::task::JoinHandle;

use crate::pg::lsn::Lsn;
use crate::source::wal_stream::{WalEvent, WalStream, WalStreamError, STATUS_INTERVAL};

/// Decoded messages buffered ahead of the consumer: enough to keep it busy while the next
/// ones are read, few enough to bound the per-message overhead of tiny changes.
const QUEUE: usize = 4096;

/// Bytes of messages read but not yet done with: as much as a full apply group
/// (`GROUP_BYTES`), so the pump stays a group ahead on ordinary rows, while memory for large
/// rows is this plus one row.
const QUEUE_BYTES: usize = 8 * 1024 * 1024;

/// How long the pump waits for a message before it looks for a new flushed LSN to report.
const POLL: Duration = Duration::from_millis(20);

/// An event with its share of [`QUEUE_BYTES`], given back when the consumer moves on.
type Queued = (
    Result<WalEvent, WalStreamError>,
    Option<OwnedSemaphorePermit>,
);

pub struct WalPump {
    events: mpsc::Receiver<Queued>,
    /// The byte bound, in permits of one byte.
    budget: Arc<Semaphore>,
    /// The share of the event the consumer was last given.
    held: Option<OwnedSemaphorePermit>,
    flushed: watch::Sender<Lsn>,
    closing: watch::Sender<bool>,
    /// Hands the stream back when the pump stops, for a clean CopyDone.
    task: Option<JoinHandle<Option<WalStream>>>,
}

impl WalPump {
    pub fn start(mut stream: WalStream, start: Lsn) -> WalPump {
        let (tx, events) = mpsc::channel::<Queued>(QUEUE);
        let budget = Arc::new(Semaphore::new(QUEUE_BYTES));
        let (flushed, mut flushed_rx) = watch::channel(start);
        let (closing, closing_rx) = watch::channel(false);
        let room = Arc::clone(&budget);
        let task = tokio::spawn(async move {
            loop {
                if *closing_rx.borrow() {
                    return Some(stream);
                }
                if flushed_rx.has_changed().unwrap_or(false) {
                    let lsn = *flushed_rx.borrow_and_update();
                    if let Err(e) = stream.flushed(lsn).await {
                        let _ = tx.send((Err(e), None)).await;
                        return None;
                    }
                }
                // Read only with some of the bound free.
                let mut share = match take_room(&room, 1, &mut stream, &mut flushed_rx).await {
                    Ok(Some(share)) => share,
                    Ok(None) => return Some(stream),
                    Err(e) => {
                        let _ = tx.send((Err(e), None)).await;
                        return None;
                    }
                };
                let event = match stream.next(POLL).await {
                    Ok(WalEvent::Idle) => continue,
                    other => other,
                };
                let stop = !matches!(
                    event,
                    Ok(WalEvent::Message { .. } | WalEvent::CaughtUp { .. })
                );
                if let Ok(WalEvent::Message { bytes, .. }) = &event {
                    let rest = (*bytes).clamp(1, QUEUE_BYTES) as u32 - 1;
                    if rest > 0 {
                        match take_room(&room, rest, &mut stream, &mut flushed_rx).await {
                            Ok(Some(rest)) => share.merge(rest),
                            Ok(None) => return Some(stream),
                            Err(e) => {
                                let _ = tx.send((Err(e), None)).await;
                                return None;
                            }
                        }
                    }
                }
                // Wait for a slot, still reporting flushed positions meanwhile.
                let slot = match tx.try_reserve() {
                    Ok(slot) => Ok(slot),
                    Err(TrySendError::Closed(())) => return Some(stream),
                    Err(TrySendError::Full(())) => {
                        match reporting(tx.reserve(), &mut stream, &mut flushed_rx).await {
                            Ok(Some(slot)) => slot.map_err(|_closed| ()),
                            Ok(None) => return None,
                            Err(e) => {
                                let _ = tx.send((Err(e), None)).await;
                                return None;
                            }
                        }
                    }
                };
                match slot {
                    Ok(slot) => slot.send((event, Some(share))),
                    // The consumer closed the queue: it is stopping, hand the stream back.
                    Err(()) => return Some(stream),
                }
                if stop {
                    return None;
                }
            }
        });
        WalPump {
            events,
            budget,
            held: None,
            flushed,
            closing,
            task: Some(task),
        }
    }

    /// The next event, or `Idle` when none arrives within `idle`.
    /// The event returned before is done with: its bytes no longer count.
    pub async fn next(&mut self, idle: Duration) -> Result<WalEvent, WalStreamError> {
        self.held = None;
        match tokio::time::timeout(idle, self.events.recv()).await {
            Err(_) => Ok(WalEvent::Idle),
            Ok(Some((event, share))) => {
                self.held = share;
                event
            }
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
        // Wakes a pump waiting for room in the bound.
        self.budget.close();
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

/// Takes `bytes` of the bound, waiting while it is full; `None` when the consumer is stopping.
async fn take_room(
    room: &Arc<Semaphore>,
    bytes: u32,
    stream: &mut WalStream,
    flushed: &mut watch::Receiver<Lsn>,
) -> Result<Option<OwnedSemaphorePermit>, WalStreamError> {
    match Arc::clone(room).try_acquire_many_owned(bytes) {
        Ok(share) => return Ok(Some(share)),
        Err(TryAcquireError::Closed) => return Ok(None),
        Err(TryAcquireError::NoPermits) => {}
    }
    let wait = Arc::clone(room).acquire_many_owned(bytes);
    Ok(reporting(wait, stream, flushed).await?.and_then(Result::ok))
}

/// Waits for `wait`, meanwhile reporting the consumer's flushed LSN when it changes and at
/// least every [`STATUS_INTERVAL`], so that the server neither keeps WAL longer nor times the
/// connection out while the consumer works through a large message. `None` when the consumer
/// has gone.
async fn reporting<F: Future>(
    wait: F,
    stream: &mut WalStream,
    flushed: &mut watch::Receiver<Lsn>,
) -> Result<Option<F::Output>, WalStreamError> {
    tokio::pin!(wait);
    let mut tick = tokio::time::interval(STATUS_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.reset();
    loop {
        tokio::select! {
            out = &mut wait => return Ok(Some(out)),
            changed = flushed.changed() => {
                if changed.is_err() {
                    return Ok(None);
                }
                let lsn = *flushed.borrow_and_update();
                stream.flushed(lsn).await?;
            }
            _ = tick.tick() => {
                let lsn = *flushed.borrow();
                stream.flushed(lsn).await?;
            }
        }
    }
}
