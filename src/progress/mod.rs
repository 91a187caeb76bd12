//! Progress counters and the displays that read them. Displays never drive work: the pipeline
//! bumps atomics, a display samples them on its own timer (an indicatif bar per table on a
//! terminal, plain log lines otherwise, JSON events for scripts).
//!
//! - [`human`]: every number a person reads goes through it (`73.6k rows/s`, `4.7 MB`, `1m12s`);
//! - [`history`], [`lag_frame`], [`sparkline`]: the lag displays as pure text from samples;
//! - [`live`]: the terminal side, which redraws that text in place;
//! - [`follow_status`]: the consumer's own status line, sampled on a timer of its own.

pub mod follow_status;
pub mod history;
pub mod human;
pub mod lag_frame;
pub mod live;
pub mod sparkline;

use std::io::IsTerminal;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use crate::checkpoint::WorkerState;
use crate::plan::Plan;

/// How often a display samples the counters.
const REFRESH: Duration = Duration::from_millis(200);

/// How often plain-text and JSON displays print (a line per table each time).
const LOG_EVERY: Duration = Duration::from_secs(5);

/// One source table's backfill.
#[derive(Debug)]
pub struct TableProgress {
    pub name: String,
    pub estimated_rows: AtomicU64,
    pub rows: AtomicU64,
    pub chunks_total: AtomicU64,
    pub chunks_done: AtomicU64,
    /// Rows of this table rejected in chunks that committed (their dead letters with them).
    pub rejected: AtomicU64,
}

/// The whole backfill: what workers update.
#[derive(Debug, Default)]
pub struct BackfillProgress {
    pub tables: Vec<TableProgress>,
    pub rejected: AtomicU64,
    /// WAL the slot holds on the source, in bytes; -1 until first measured.
    pub slot_retained_bytes: AtomicI64,
    /// Why the workers wait (a pause, the source's load, a rate cap), while they do.
    waiting: Mutex<Option<String>>,
    /// Every process copying this migration's chunks (`backfill --join`), as the lease
    /// heartbeat last read them.
    pub workers: Mutex<Vec<WorkerState>>,
}

impl BackfillProgress {
    pub fn new(tables: impl IntoIterator<Item = String>) -> Arc<Self> {
        Arc::new(BackfillProgress {
            tables: tables
                .into_iter()
                .map(|name| TableProgress {
                    name,
                    estimated_rows: AtomicU64::new(0),
                    rows: AtomicU64::new(0),
                    chunks_total: AtomicU64::new(0),
                    chunks_done: AtomicU64::new(0),
                    rejected: AtomicU64::new(0),
                })
                .collect(),
            rejected: AtomicU64::new(0),
            slot_retained_bytes: AtomicI64::new(-1),
            waiting: Mutex::new(None),
            workers: Mutex::new(Vec::new()),
        })
    }

    /// Says why the workers wait, or that they no longer do (`None`).
    pub fn set_waiting(&self, why: Option<String>) {
        *self.waiting.lock().expect("progress poisoned") = why;
    }

    fn waiting(&self) -> Option<String> {
        self.waiting.lock().expect("progress poisoned").clone()
    }

    /// One table per source of `plan`, in the plan's order (as the workers index them).
    pub fn of_plan(plan: &Plan) -> Arc<Self> {
        BackfillProgress::new(plan.sources.iter().map(|s| s.table.name.clone()))
    }

    pub fn total_rows(&self) -> u64 {
        self.tables
            .iter()
            .map(|t| t.rows.load(Ordering::Relaxed))
            .sum()
    }
}

/// The WAL consumer in this process: what its apply lanes update, across its restarts.
#[derive(Debug, Default)]
pub struct FollowProgress {
    /// Source changes applied and committed in the target (as `switchyard.migrations` counts
    /// them), by this process.
    pub changes_applied: AtomicU64,
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisplayMode {
    /// Bars on a terminal, plain lines otherwise.
    Auto,
    /// One JSON object per line on stdout.
    Json,
    Quiet,
}

/// A running display; `finish` prints the last state and stops it.
pub struct Display {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Display {
    pub fn start(progress: Arc<BackfillProgress>, mode: DisplayMode) -> Display {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut view = View::new(&progress, mode);
            loop {
                let done = tokio::select! {
                    _ = tokio::time::sleep(REFRESH) => false,
                    _ = stopped.changed() => true,
                };
                view.update(&progress, started.elapsed(), done);
                if done {
                    break;
                }
            }
        });
        Display { stop, task }
    }

    pub async fn finish(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

enum View {
    Bars {
        bars: Vec<ProgressBar>,
        total: ProgressBar,
    },
    Lines {
        last: Instant,
        json: bool,
        /// The wait last printed: a new one is printed at once, not at the next line.
        waiting: Option<String>,
    },
    Quiet,
}

impl View {
    fn new(progress: &BackfillProgress, mode: DisplayMode) -> View {
        match mode {
            DisplayMode::Quiet => View::Quiet,
            DisplayMode::Json => View::Lines {
                last: Instant::now(),
                json: true,
                waiting: None,
            },
            DisplayMode::Auto if !std::io::stdout().is_terminal() => View::Lines {
                last: Instant::now(),
                json: false,
                waiting: None,
            },
            DisplayMode::Auto => {
                let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
                // indicatif's own `{per_sec}` prints the float as it is
                // (`7,356.018159923259/s`): the rate goes through `human` instead.
                let style = ProgressStyle::with_template(
                    "{prefix:>18} [{bar:30}] {human_pos:>10}/{human_len:<10} {rate:>14} ETA {eta}",
                )
                .expect("valid template")
                .with_key(
                    "rate",
                    |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = w.write_str(&human::rate(state.per_sec(), "rows"));
                    },
                )
                .progress_chars("=> ");
                let bars = progress
                    .tables
                    .iter()
                    .map(|t| {
                        let bar = multi.add(ProgressBar::new(0).with_style(style.clone()));
                        bar.set_prefix(t.name.clone());
                        bar
                    })
                    .collect();
                let total = multi.add(ProgressBar::new_spinner());
                View::Bars { bars, total }
            }
        }
    }

    fn update(&mut self, progress: &BackfillProgress, elapsed: Duration, done: bool) {
        let total_rows = progress.total_rows();
        let rate = total_rows as f64 / elapsed.as_secs_f64().max(0.001);
        let slot = progress.slot_retained_bytes.load(Ordering::Relaxed);
        let rejected = progress.rejected.load(Ordering::Relaxed);
        let waiting = progress.waiting();
        let workers = progress.workers.lock().expect("workers poisoned").clone();
        // One process is the usual case, which needs no line of its own.
        let shared = if workers.len() > 1 {
            let each: Vec<String> = workers.iter().map(ToString::to_string).collect();
            format!("; {} workers: {}", workers.len(), each.join("; "))
        } else {
            String::new()
        };
        match self {
            View::Quiet => {}
            View::Bars { bars, total } => {
                for (bar, t) in bars.iter().zip(&progress.tables) {
                    let rows = t.rows.load(Ordering::Relaxed);
                    bar.set_length(t.estimated_rows.load(Ordering::Relaxed).max(rows));
                    bar.set_position(rows);
                    if done {
                        bar.finish();
                    }
                }
                total.set_message(format!(
                    "total {} rows, {}, {rejected} rejected, slot holds {}{shared}{}",
                    human::count(total_rows as f64),
                    human::rate(rate, "rows"),
                    human::bytes(slot),
                    waiting.map(|w| format!("; {w}")).unwrap_or_default()
                ));
                if done {
                    total.finish();
                } else {
                    total.tick();
                }
            }
            View::Lines {
                last,
                json,
                waiting: shown,
            } => {
                if waiting != *shown {
                    let line = waiting.as_deref().unwrap_or("no longer waiting");
                    if *json {
                        println!(
                            "{}",
                            serde_json::json!({"event": "backfill_waiting", "waiting": waiting})
                        );
                    } else {
                        println!("backfill {line}");
                    }
                    *shown = waiting;
                }
                if !done && last.elapsed() < LOG_EVERY {
                    return;
                }
                *last = Instant::now();
                for t in &progress.tables {
                    let rows = t.rows.load(Ordering::Relaxed);
                    let estimate = t.estimated_rows.load(Ordering::Relaxed);
                    let chunks = (
                        t.chunks_done.load(Ordering::Relaxed),
                        t.chunks_total.load(Ordering::Relaxed),
                    );
                    if *json {
                        println!(
                            "{}",
                            serde_json::json!({
                                "event": "backfill_progress", "table": t.name, "rows": rows,
                                "estimated_rows": estimate, "chunks_done": chunks.0,
                                "chunks_total": chunks.1, "elapsed_s": elapsed.as_secs_f64(),
                            })
                        );
                    } else {
                        println!(
                            "backfill {:<20} {rows:>10} / ~{estimate} rows, chunks {}/{}",
                            t.name, chunks.0, chunks.1
                        );
                    }
                }
                if *json {
                    println!(
                        "{}",
                        serde_json::json!({
                            "event": "backfill_total", "rows": total_rows, "rows_per_s": rate,
                            "rejected": rejected, "slot_retained_bytes": slot, "done": done,
                            "workers": workers,
                        })
                    );
                } else {
                    println!(
                        "backfill total {total_rows} rows, {}, {rejected} rejected, slot holds {}{shared}",
                        human::rate(rate, "rows"),
                        human::bytes(slot)
                    );
                }
            }
        }
    }
}
