//! When switchyard applied its last group: the moment the target's `applied_lsn` last moved.
//!
//! A drain ends, for every contender alike, when its slot has confirmed the backlog's end. But
//! switchyard reports its position to the server once a second (`STATUS_INTERVAL`), and only
//! after an identity check made since has passed, while native's apply worker reports as its
//! flushed position moves: on a drain of a few seconds that difference alone is tens of
//! percent. The target's `switchyard.migrations.applied_lsn` is recorded in the transaction of
//! each applied group, so the last time it moved before the slot confirmed the end is when the
//! backlog's last commit was applied. Polling it costs the target one indexed read per
//! [`POLL`], in a backend whose whole CPU time the drain takes off the target's.

use std::time::{Duration, Instant};

use switchyard::pg::lsn::Lsn;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often the applied LSN is read.
const POLL: Duration = Duration::from_millis(10);

pub struct Applied {
    stop: watch::Sender<bool>,
    /// When the applied LSN last moved; the polling backend's CPU seconds.
    task: JoinHandle<(Option<Instant>, f64)>,
    /// The polling session's backend on the target, not one of switchyard's.
    pub backend: i32,
}

impl Applied {
    /// Watch migration `name` in the target database at `url` from now on.
    pub async fn watch(url: &str, name: String) -> Applied {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let backend: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let read = client
                .prepare("SELECT applied_lsn FROM switchyard.migrations WHERE name = $1")
                .await
                .unwrap();
            let mut applied: Option<Lsn> = client.query_one(&read, &[&name]).await.unwrap().get(0);
            let mut moved = None;
            loop {
                let last = *stopped.borrow_and_update();
                let now: Option<Lsn> = client.query_one(&read, &[&name]).await.unwrap().get(0);
                if now != applied {
                    (applied, moved) = (now, Some(Instant::now()));
                }
                if last {
                    // Read while the session, hence its backend, is still open.
                    let cpu = crate::common::cpu::process_seconds(backend).unwrap_or(0.0);
                    return (moved, cpu);
                }
                tokio::select! {
                    _ = tokio::time::sleep(POLL) => {}
                    _ = stopped.changed() => {}
                }
            }
        });
        Applied {
            stop,
            task,
            backend,
        }
    }

    /// When the applied LSN last moved, if it did, and the CPU seconds the polling cost the
    /// target (its backend's, start-up included).
    pub async fn stop(self) -> (Option<Instant>, f64) {
        let _ = self.stop.send(true);
        self.task.await.unwrap()
    }
}
