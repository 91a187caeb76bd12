//! The CPU time of the walsender serving one slot, while a contender drains.
//!
//! Each drain connects anew (switchyard and pg_recvlogical start, native's apply worker starts
//! on `ENABLE`), so the slot's walsender is a fresh backend: its CPU over its whole life,
//! `utime + stime` of `/proc/<pid>/stat`, is what this drain cost the source's walsender, plus
//! its connection start (milliseconds). The pid is `pg_replication_slots.active_pid`, polled
//! until the walsender takes the slot; its time is then read every [`POLL`] until the drain
//! ends, so a walsender that exits first (pg_recvlogical's, at `--endpos`) loses at most its
//! last interval.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use crate::common::cpu;

/// How often the walsender's pid, then its CPU time, is read: one clock tick (10 ms) is the
/// resolution of the figure anyway.
const POLL: Duration = Duration::from_millis(10);

/// A running watch over one slot's walsender.
pub struct Walsender {
    stop: watch::Sender<bool>,
    /// CPU seconds, and when the walsender was first seen on the slot.
    task: JoinHandle<(f64, Option<Instant>)>,
}

impl Walsender {
    /// Watch `slot` on `source` from now on.
    pub fn watch(source: Arc<Client>, slot: String) -> Walsender {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut pid: Option<i32> = None;
            let mut seconds = 0.0;
            let mut seen = None;
            loop {
                let last = *stopped.borrow_and_update();
                match pid {
                    None => {
                        pid = source
                            .query_one(
                                "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1",
                                &[&slot],
                            )
                            .await
                            .unwrap()
                            .get(0);
                        if let Some(pid) = pid {
                            seen = Some(Instant::now());
                            seconds = cpu::process_seconds(pid).unwrap_or(0.0);
                        }
                    }
                    // An error: the walsender exited; its last reading stands.
                    Some(pid) => seconds = cpu::process_seconds(pid).unwrap_or(seconds),
                }
                if last {
                    return (seconds, seen);
                }
                tokio::select! {
                    _ = tokio::time::sleep(POLL) => {}
                    _ = stopped.changed() => {}
                }
            }
        });
        Walsender { stop, task }
    }

    /// CPU seconds the walsender has spent, read once more now, and when it took the slot
    /// (within [`POLL`]): the end of the contender's start-up.
    pub async fn stop(self) -> (f64, Option<Instant>) {
        let _ = self.stop.send(true);
        self.task.await.unwrap()
    }
}
