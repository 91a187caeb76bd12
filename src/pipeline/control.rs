//! What the running workers obey between batches: an operator's pause and throttle (read from
//! `switchyard.control` in the target, see [`crate::checkpoint::control`]) and, for the
//! backfill, the source's load. One task per process reads them twice a second and publishes
//! the result on a watch channel; the workers look at it without a query of their own.
//!
//! ```text
//!   switchyard.control (target) ─┐
//!   pg_stat_activity (source)  ──┼─ poll task ──watch──> Gate: backfill workers (between
//!   --throttle-query (source)  ──┘                               chunks: pause; between batches:
//!                                                                load and rate cap)
//!                                                           └─> WAL consumer (between groups:
//!                                                               pause; per change: rate cap)
//! ```
//! Polling rather than LISTEN: a notification sent while the control session reconnects is
//! lost, a poll is not, and at twice a second it costs the target one primary-key read.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use crate::checkpoint::{self, CheckpointError, Control};
use crate::error::Chain;
use crate::source::load::{active_sessions, throttle_query, ThrottleQueryError};

use super::pace::Pace;

/// How often the controls are read: a pause takes effect within this plus what is in flight,
/// well inside the second operators are promised.
const CONTROL_POLL: Duration = Duration::from_millis(250);

/// How often the source's load is measured (gh-ost checks its `--max-load` once a second):
/// often enough to back off within a second of a peak, rarely enough to add no load of its own.
const LOAD_POLL: Duration = Duration::from_secs(1);

/// Waits shorter than this are carried over into the next one: a sleep cannot be shorter
/// than the timer's millisecond, and a consumer capped at thousands of changes per second
/// would otherwise be capped by the timer instead.
const MIN_WAIT: Duration = Duration::from_millis(5);

/// When the backfill should wait for the source: gh-ost's `--max-load` and throttle query.
#[derive(Debug, Clone, Default)]
pub struct SourceLoad {
    /// Wait while more sessions than this run a statement on the source.
    pub max_sessions: Option<i64>,
    /// Wait while this SQL returns true.
    pub throttle_query: Option<String>,
}

impl SourceLoad {
    pub fn is_set(&self) -> bool {
        self.max_sessions.is_some() || self.throttle_query.is_some()
    }
}

/// Why the controls cannot be followed; at start, the run stops before it changes anything.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("reading the pause and throttle controls")]
    State(#[from] CheckpointError),
    #[error("counting the source's active sessions for --max-source-sessions")]
    Sessions(#[source] tokio_postgres::Error),
    #[error("--throttle-query cannot be used; fix it")]
    ThrottleQuery(#[from] ThrottleQueryError),
}

/// What the workers obey now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ControlState {
    /// Who paused, and when, while paused.
    pub paused: Option<String>,
    /// The operator's cap, in source rows (backfill) or changes (consumer) per second.
    pub rows_per_sec: Option<u64>,
    /// Who set the cap, and when.
    pub throttled_by: Option<String>,
    /// Why the source's load says to wait, while it does.
    pub slow_down: Option<String>,
}

impl ControlState {
    fn record(&mut self, control: Control) {
        self.paused = control.paused.map(|p| format!("{} at {}", p.by, p.at));
        self.rows_per_sec = control.rows_per_sec.map(|r| r.max(1) as u64);
        self.throttled_by = control.throttled.map(|t| format!("{} at {}", t.by, t.at));
    }

    /// Why work waits now, for the displays; `None` when it runs at full speed.
    pub fn waiting(&self) -> Option<String> {
        if let Some(by) = &self.paused {
            return Some(format!(
                "waiting: paused by {by}; `switchyard resume` goes on"
            ));
        }
        if let Some(why) = &self.slow_down {
            return Some(why.clone());
        }
        self.rows_per_sec.map(|r| {
            format!(
                "throttled to {r} rows/s by {}",
                self.throttled_by.as_deref().unwrap_or("?")
            )
        })
    }
}

/// The poll task of one process; stops when dropped.
pub struct Controls {
    state: watch::Receiver<ControlState>,
    task: JoinHandle<()>,
}

impl Controls {
    /// Reads the controls of `migration` and the source's load once (a throttle query that
    /// fails or returns anything but one boolean is an error here, before any work), then
    /// keeps reading them on a task of its own, on these sessions.
    pub async fn start(
        target: Client,
        migration: &str,
        load: Option<(Client, SourceLoad)>,
    ) -> Result<Controls, ControlError> {
        let mut state = ControlState::default();
        state.record(checkpoint::control(&target, migration).await?);
        if let Some((source, load)) = &load {
            state.slow_down = slow_down(source, load).await?;
        }
        let (tx, rx) = watch::channel(state.clone());
        let task = tokio::spawn(poll(target, migration.to_owned(), load, tx, state));
        Ok(Controls { state: rx, task })
    }

    /// What the workers consult.
    pub fn gate(&self) -> Gate {
        Gate {
            state: self.state.clone(),
            pace: Arc::default(),
        }
    }

    /// The state as it changes, for the displays.
    pub fn subscribe(&self) -> watch::Receiver<ControlState> {
        self.state.clone()
    }
}

impl Drop for Controls {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads the controls every [`CONTROL_POLL`] and the load every [`LOAD_POLL`]. A read that
/// fails keeps the last state (the workers' own sessions meet the same failure and handle
/// it); a load check that fails at run time means wait, the safe side for the source.
async fn poll(
    target: Client,
    migration: String,
    load: Option<(Client, SourceLoad)>,
    tx: watch::Sender<ControlState>,
    mut state: ControlState,
) {
    let mut tick = tokio::time::interval(CONTROL_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut load_read = Instant::now();
    let mut warned = false;
    loop {
        tick.tick().await;
        match checkpoint::control(&target, &migration).await {
            Ok(control) => {
                state.record(control);
                warned = false;
            }
            Err(e) if !warned => {
                tracing::warn!(
                    "could not read the pause and throttle controls ({}); the last ones read still hold",
                    Chain::new(&e)
                );
                warned = true;
            }
            Err(_) => {}
        }
        if let Some((source, load)) = &load {
            if load_read.elapsed() >= LOAD_POLL {
                load_read = Instant::now();
                state.slow_down = slow_down(source, load).await.unwrap_or_else(|e| {
                    Some(format!(
                        "waiting: could not check the source's load ({})",
                        Chain::new(&e)
                    ))
                });
            }
        }
        tx.send_if_modified(|current| {
            let changed = *current != state;
            if changed {
                *current = state.clone();
            }
            changed
        });
        if tx.is_closed() {
            return;
        }
    }
}

/// Whether the source's load says to wait, and why.
async fn slow_down(source: &Client, load: &SourceLoad) -> Result<Option<String>, ControlError> {
    if let Some(max) = load.max_sessions {
        let active = active_sessions(source)
            .await
            .map_err(ControlError::Sessions)?;
        if active > max {
            return Ok(Some(format!(
                "waiting: source has {active} active sessions > --max-source-sessions {max}"
            )));
        }
    }
    if let Some(sql) = &load.throttle_query {
        if throttle_query(source, sql).await? {
            return Ok(Some("waiting: throttle query returned true".to_owned()));
        }
    }
    Ok(None)
}

/// The workers' side of the controls: waits while paused, while the source is busy, and
/// long enough to hold the rate cap. Clones share one rate cap (all the backfill's workers
/// together are held to it).
#[derive(Clone)]
pub struct Gate {
    state: watch::Receiver<ControlState>,
    pace: Arc<Mutex<Pace>>,
}

impl Gate {
    /// Paused now; never once the poll task is gone (the run is ending, and a wait for a
    /// resume nobody would publish must not spin or hang).
    pub fn paused(&self) -> bool {
        self.state.borrow().paused.is_some() && self.state.has_changed().is_ok()
    }

    /// Returns once not paused.
    pub async fn unpaused(&self) {
        let mut state = self.state.clone();
        // An error means the poll task is gone (the run is ending): nothing to wait for.
        let _ = state.wait_for(|s| s.paused.is_none()).await;
    }

    /// Returns once neither paused nor held back by the source's load: before a chunk.
    pub async fn clear(&self) {
        let mut state = self.state.clone();
        let _ = state
            .wait_for(|s| s.paused.is_none() && s.slow_down.is_none())
            .await;
    }

    /// Called after `units` (rows, changes) were done: waits while the source's load says
    /// so, then as long as the rate cap asks.
    pub async fn pace(&self, units: u64) {
        let rate = {
            let state = self.state.borrow();
            if state.slow_down.is_none() && state.rows_per_sec.is_none() {
                return;
            }
            state.rows_per_sec
        };
        let mut state = self.state.clone();
        if state.borrow().slow_down.is_some() {
            let _ = state.wait_for(|s| s.slow_down.is_none()).await;
        }
        let Some(rate) = rate else {
            return;
        };
        let wait = self
            .pace
            .lock()
            .expect("pace poisoned")
            .after(Instant::now(), units, rate);
        if wait < MIN_WAIT {
            return;
        }
        state.mark_unchanged();
        // A new cap (or none) applies at once, not after a wait computed under the old one.
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = state.changed() => {}
        }
    }
}
