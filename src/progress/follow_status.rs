//! The consumer's own status line (`backfill` once it follows, and `follow`): on a terminal one
//! line redrawn in place each second (bytes and seconds behind, the minute's trend, changes
//! applied per second, the slot's retained WAL, consistent or not); otherwise a plain line every
//! few seconds, as `watch` prints them. It samples [`crate::lag::sample`] on sessions of its own,
//! as `watch` would from another machine: it reads what the consumer committed and never
//! slows or drives it. A failed sample only skips a beat, and the sessions are opened again
//! at the next (the consumer's own reconnects are no business of the display).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::lag;
use crate::pg::connect::connect;
use crate::pg::conninfo::ConnInfo;
use crate::plan::Plan;

use super::history::LagHistory;
use super::lag_frame::{plain_line, status_line};
use super::live::LiveText;

/// One sample a second: the sparkline's resolution, and `watch`'s.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Off a terminal, a line this often: a log a person can scroll, not a line a second.
const PRINT_EVERY: Duration = Duration::from_secs(5);

/// A running status display; [`FollowStatus::finish`] stops it.
pub struct FollowStatus {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl FollowStatus {
    /// Starts sampling `plan`'s migration on sessions of its own to `source` and `target`.
    pub fn start(source: ConnInfo, target: ConnInfo, plan: Arc<Plan>) -> FollowStatus {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let live = LiveText::on_stdout();
            let started = Instant::now();
            let mut printed: Option<Instant> = None;
            let mut history = LagHistory::default();
            let mut sessions: Option<(Client, Client)> = None;
            loop {
                if sessions.is_none() {
                    sessions = open(&source, &target).await;
                }
                if let Some((s, t)) = &sessions {
                    match lag::sample(s, t, &plan).await {
                        Ok(Some(sample)) => history.push(started.elapsed(), sample),
                        Ok(None) => {}
                        Err(e) => {
                            tracing::debug!("sampling the lag for the status line: {e}");
                            sessions = None;
                        }
                    }
                }
                if history.latest().is_some() {
                    match &live {
                        Some(live) => live.show(&status_line(&history)),
                        None if printed.is_none_or(|p| p.elapsed() >= PRINT_EVERY) => {
                            println!("{}", plain_line(&plan.name, &history));
                            printed = Some(Instant::now());
                        }
                        None => {}
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(SAMPLE_EVERY) => {}
                    _ = stopped.changed() => break,
                }
            }
            if let Some(live) = live {
                live.finish();
            }
        });
        FollowStatus { stop, task }
    }

    /// Stops sampling; on a terminal the last line stays.
    pub async fn finish(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// The display's two sessions, or none for now.
async fn open(source: &ConnInfo, target: &ConnInfo) -> Option<(Client, Client)> {
    const NAME: &str = "switchyard follow status";
    let opened = async {
        Ok::<_, crate::pg::connect::ConnectError>((
            connect(source, NAME).await?,
            connect(target, NAME).await?,
        ))
    };
    match opened.await {
        Ok(sessions) => Some(sessions),
        Err(e) => {
            tracing::debug!("opening the status line's sessions: {e}");
            None
        }
    }
}
