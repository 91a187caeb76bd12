//! A write load on the legacy tables, so that a migration can be watched (and tested) while the
//! old application keeps writing.
//!
//! N connections each run one statement per transaction (autocommit), drawn from a fixed mix:
//!
//! ```text
//!   60%  UPDATE vortex_items SET status, updated_at   by random id
//!   20%  INSERT INTO vortex_items                     a quarter of them sub-tasks
//!   10%  UPDATE company_projects SET status, ...      by random id
//!   10%  DELETE FROM vortex_items                     by random id
//! ```
//!
//! Ids are drawn uniformly from every id so far, unless `hot_items` skews the item updates: then
//! a share of them (80% in [`HotItems::SKEWED`]) goes to a fixed hot set, ids `1..=n` with `n` a
//! fraction (1%) of the highest item id at the start, and the rest stays uniform. Inserts,
//! deletes and project updates are uniform either way.
//!
//! Counters can be read while it runs. With `record_acks`, every write the server acknowledged
//! with at least one row is logged, so a test can check that each one reached the target.
//! The log is in the order the acknowledgements arrived; two connections writing the same row
//! commit in lock order, but their acknowledgements may be logged in either order.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, Statement};

use super::generator::{messy_email, priority, ITEM_STATUSES, PROJECT_STATUSES};
use super::prng::Prng;

/// Default number of connections: enough to make row locks and commit order interleave.
const DEFAULT_CONNECTIONS: usize = 4;
/// Default seed for the statement mix; any fixed value keeps runs comparable.
const DEFAULT_SEED: u64 = 0x7772_6974_655f_6c64;
/// Companies the inserted rows' e-mail addresses come from; few, so that addresses repeat.
const EMAIL_COMPANIES: u64 = 50;

const UPDATE_ITEM: &str = "UPDATE vortex_items SET status = $1, updated_at = now() WHERE id = $2";
const INSERT_ITEM: &str = "INSERT INTO vortex_items \
    (project_id, title, status, priority, assignee_email, due, body, created_at, updated_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, now(), now()) RETURNING id";
/// The parent is the first top-level item at or after a random id, found in the same statement.
const INSERT_SUB_TASK: &str = "INSERT INTO vortex_items \
    (project_id, parent_item_id, title, status, priority, assignee_email, due, body, \
     created_at, updated_at) \
    SELECT project_id, id, $2, $3, $4, $5, $6, $7, now(), now() FROM vortex_items \
    WHERE parent_item_id IS NULL AND id >= $1 ORDER BY id LIMIT 1 RETURNING id";
const UPDATE_PROJECT: &str =
    "UPDATE company_projects SET status = $1, updated_at = now() WHERE id = $2";
const DELETE_ITEM: &str = "DELETE FROM vortex_items WHERE id = $1";

/// How to run a [`WriteLoad`].
#[derive(Debug, Clone)]
pub struct WriteLoadOptions {
    pub connections: usize,
    /// Total transactions per second over all connections; `None`: as fast as possible.
    pub target_rate: Option<f64>,
    /// Keep the log of acknowledged writes (see [`WriteLoadReport::acked`]).
    pub record_acks: bool,
    pub seed: u64,
    /// Send a share of the item updates to a few hot rows; `None` (the default): uniform.
    pub hot_items: Option<HotItems>,
}

/// Which item updates hit hot rows: `share_of_updates` of them go to ids `1..=n`, `n` being
/// `fraction_of_items` of the highest item id when the load starts (at least one row).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HotItems {
    /// The hot set's size, as a fraction of the items at the start (0.01: 1%).
    pub fraction_of_items: f64,
    /// The fraction of item updates that hit the hot set (0.8: 80%).
    pub share_of_updates: f64,
}

impl HotItems {
    /// 80% of the item updates on 1% of the items.
    pub const SKEWED: HotItems = HotItems {
        fraction_of_items: 0.01,
        share_of_updates: 0.8,
    };

    /// The hot set's size, for `max_item_id` at the start.
    fn hot_count(self, max_item_id: i64) -> u64 {
        ((max_item_id.max(1) as f64 * self.fraction_of_items.clamp(0.0, 1.0)).ceil() as u64).max(1)
    }

    /// `share_of_updates` in millionths, for one draw of [`Prng::below`].
    fn share_per_million(self) -> u64 {
        (self.share_of_updates.clamp(0.0, 1.0) * 1e6).round() as u64
    }
}

impl Default for WriteLoadOptions {
    fn default() -> Self {
        WriteLoadOptions {
            connections: DEFAULT_CONNECTIONS,
            target_rate: None,
            record_acks: false,
            seed: DEFAULT_SEED,
            hot_items: None,
        }
    }
}

/// The statements of the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WriteKind {
    UpdateItem,
    InsertItem,
    InsertSubTask,
    UpdateProject,
    DeleteItem,
}

impl WriteKind {
    /// The legacy table the statement writes.
    pub fn table(self) -> &'static str {
        match self {
            WriteKind::UpdateProject => "company_projects",
            _ => "vortex_items",
        }
    }
}

/// One acknowledged write: the row it touched and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckedWrite {
    pub table: &'static str,
    pub id: i64,
    pub kind: WriteKind,
}

/// Committed transactions by kind, and failed statements.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteCounts {
    pub item_updates: u64,
    pub item_inserts: u64,
    pub sub_task_inserts: u64,
    pub project_updates: u64,
    pub item_deletes: u64,
    /// Committed statements that found no row (a deleted or never used id).
    pub misses: u64,
    pub errors: u64,
}

impl WriteCounts {
    pub fn committed(&self) -> u64 {
        self.item_updates
            + self.item_inserts
            + self.sub_task_inserts
            + self.project_updates
            + self.item_deletes
    }
}

/// What a stopped load did.
#[derive(Debug, Clone)]
pub struct WriteLoadReport {
    pub counts: WriteCounts,
    /// Acknowledged writes in the order they were acknowledged (empty unless `record_acks`).
    pub acked: Vec<AckedWrite>,
    /// The last statement error, if any (a lost connection ends that worker).
    pub last_error: Option<String>,
}

/// Why the load could not start or stop.
#[derive(Debug, Error)]
pub enum WriteLoadError {
    #[error("could not connect the write load to the source database")]
    Connect(#[source] tokio_postgres::Error),
    #[error("{step} failed")]
    Sql {
        step: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("a write load worker panicked")]
    Worker(#[source] tokio::task::JoinError),
}

/// State shared by the workers and the handle.
#[derive(Default)]
struct Shared {
    item_updates: AtomicU64,
    item_inserts: AtomicU64,
    sub_task_inserts: AtomicU64,
    project_updates: AtomicU64,
    item_deletes: AtomicU64,
    misses: AtomicU64,
    errors: AtomicU64,
    /// Random ids are drawn from `1..=max`; inserts raise it.
    max_item_id: AtomicI64,
    max_project_id: AtomicI64,
    acks: Option<Mutex<Vec<AckedWrite>>>,
    last_error: Mutex<Option<String>>,
}

impl Shared {
    fn counts(&self) -> WriteCounts {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        WriteCounts {
            item_updates: read(&self.item_updates),
            item_inserts: read(&self.item_inserts),
            sub_task_inserts: read(&self.sub_task_inserts),
            project_updates: read(&self.project_updates),
            item_deletes: read(&self.item_deletes),
            misses: read(&self.misses),
            errors: read(&self.errors),
        }
    }

    fn counter(&self, kind: WriteKind) -> &AtomicU64 {
        match kind {
            WriteKind::UpdateItem => &self.item_updates,
            WriteKind::InsertItem => &self.item_inserts,
            WriteKind::InsertSubTask => &self.sub_task_inserts,
            WriteKind::UpdateProject => &self.project_updates,
            WriteKind::DeleteItem => &self.item_deletes,
        }
    }

    /// Count a committed statement; log it when it touched row `id`.
    fn committed(&self, kind: WriteKind, id: Option<i64>) {
        self.counter(kind).fetch_add(1, Ordering::Relaxed);
        match (id, &self.acks) {
            (None, _) => {
                self.misses.fetch_add(1, Ordering::Relaxed);
            }
            (Some(id), Some(acks)) => {
                let table = kind.table();
                lock(acks).push(AckedWrite { table, id, kind });
            }
            (Some(_), None) => {}
        }
    }
}

/// A poisoned lock only means another worker panicked; the data is still a valid log.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running write load; [`WriteLoad::stop`] ends it and returns the totals. Dropping the
/// handle also ends it, after the statements in flight.
pub struct WriteLoad {
    stop: watch::Sender<bool>,
    workers: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl WriteLoad {
    /// Connect `options.connections` clients to `url` (the database holding the legacy
    /// tables) and start writing.
    pub async fn start(url: &str, options: WriteLoadOptions) -> Result<WriteLoad, WriteLoadError> {
        let connections = options.connections.max(1);
        let mut clients = Vec::with_capacity(connections);
        for _ in 0..connections {
            let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .map_err(WriteLoadError::Connect)?;
            tokio::spawn(connection);
            clients.push(client);
        }
        let max_id =
            |table: &'static str| {
                let client = &clients[0];
                async move {
                    let sql = format!("SELECT coalesce(max(id), 0) FROM {table}");
                    let row = client.query_one(&sql, &[]).await.map_err(|source| {
                        WriteLoadError::Sql {
                            step: "reading the highest ids",
                            source,
                        }
                    })?;
                    Ok::<i64, WriteLoadError>(row.get(0))
                }
            };
        let shared = Arc::new(Shared {
            max_item_id: AtomicI64::new(max_id("vortex_items").await?),
            max_project_id: AtomicI64::new(max_id("company_projects").await?),
            acks: options.record_acks.then(|| Mutex::new(Vec::new())),
            ..Shared::default()
        });
        let hot = options.hot_items.map(|hot| HotSet {
            count: hot.hot_count(shared.max_item_id.load(Ordering::Relaxed)),
            share_per_million: hot.share_per_million(),
        });
        // Each worker paces itself to its share of the target rate.
        let period = options
            .target_rate
            .filter(|rate| rate.is_finite() && *rate > 0.0)
            .map(|rate| Duration::from_secs_f64(connections as f64 / rate));
        // Prepare everywhere before any worker starts, so a failure leaves nothing running.
        let mut prepared = Vec::with_capacity(connections);
        for client in clients {
            let statements = Statements::prepare(&client).await?;
            prepared.push((client, statements));
        }
        let (stop, stopped) = watch::channel(false);
        let mut workers = Vec::with_capacity(connections);
        for (index, (client, statements)) in prepared.into_iter().enumerate() {
            let worker = Worker {
                client,
                statements,
                shared: Arc::clone(&shared),
                hot,
                rng: Prng::new(options.seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            };
            workers.push(tokio::spawn(worker.run(period, stopped.clone())));
        }
        Ok(WriteLoad {
            stop,
            workers,
            shared,
        })
    }

    /// The counters so far.
    pub fn counts(&self) -> WriteCounts {
        self.shared.counts()
    }

    /// How many acknowledged writes are logged so far.
    pub fn acked_count(&self) -> usize {
        self.shared.acks.as_ref().map_or(0, |acks| lock(acks).len())
    }

    /// Stop after the statements in flight (they may wait on locks) and return the totals.
    pub async fn stop(self) -> Result<WriteLoadReport, WriteLoadError> {
        let _ = self.stop.send(true);
        for worker in self.workers {
            worker.await.map_err(WriteLoadError::Worker)?;
        }
        let acked = match &self.shared.acks {
            Some(acks) => std::mem::take(&mut *lock(acks)),
            None => Vec::new(),
        };
        Ok(WriteLoadReport {
            counts: self.shared.counts(),
            acked,
            last_error: lock(&self.shared.last_error).clone(),
        })
    }
}

struct Statements {
    update_item: Statement,
    insert_item: Statement,
    insert_sub_task: Statement,
    update_project: Statement,
    delete_item: Statement,
}

impl Statements {
    async fn prepare(client: &Client) -> Result<Statements, WriteLoadError> {
        let prepare = |sql| async move {
            client
                .prepare(sql)
                .await
                .map_err(|source| WriteLoadError::Sql {
                    step: "preparing the write load statements",
                    source,
                })
        };
        Ok(Statements {
            update_item: prepare(UPDATE_ITEM).await?,
            insert_item: prepare(INSERT_ITEM).await?,
            insert_sub_task: prepare(INSERT_SUB_TASK).await?,
            update_project: prepare(UPDATE_PROJECT).await?,
            delete_item: prepare(DELETE_ITEM).await?,
        })
    }
}

/// [`HotItems`] resolved against the ids at the start.
#[derive(Debug, Clone, Copy)]
struct HotSet {
    /// Hot ids are `1..=count`.
    count: u64,
    share_per_million: u64,
}

struct Worker {
    client: Client,
    statements: Statements,
    shared: Arc<Shared>,
    hot: Option<HotSet>,
    rng: Prng,
}

impl Worker {
    async fn run(mut self, period: Option<Duration>, mut stopped: watch::Receiver<bool>) {
        let mut ticker = period.map(|period| {
            let mut ticker = tokio::time::interval(period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            ticker
        });
        // Stop when asked, or when the handle is gone (the sender dropped).
        while !*stopped.borrow() && stopped.has_changed().is_ok() {
            if let Some(ticker) = ticker.as_mut() {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = stopped.changed() => break,
                }
            }
            let (kind, result) = self.one_statement().await;
            match result {
                Ok(id) => self.shared.committed(kind, id),
                Err(err) => {
                    self.shared.errors.fetch_add(1, Ordering::Relaxed);
                    *lock(&self.shared.last_error) = Some(format!("{kind:?}: {err}"));
                    if self.client.is_closed() {
                        break;
                    }
                }
            }
        }
    }

    /// Run one statement of the mix; `Ok(Some(id))` when it touched row `id`.
    async fn one_statement(&mut self) -> (WriteKind, Result<Option<i64>, tokio_postgres::Error>) {
        let s = &self.statements;
        let rng = &mut self.rng;
        let roll = rng.below(100);
        let item_id = 1 + rng.below(self.shared.max_item_id.load(Ordering::Relaxed).max(1) as u64);
        let item_id = item_id as i64;
        let touched = |rows: u64, id: i64| (rows > 0).then_some(id);
        match roll {
            0..=59 => {
                let item_id = match self.hot {
                    Some(hot) if rng.below(1_000_000) < hot.share_per_million => {
                        1 + rng.below(hot.count) as i64
                    }
                    _ => item_id,
                };
                let status = rng.pick(ITEM_STATUSES);
                let result = self
                    .client
                    .execute(&s.update_item, &[&status, &item_id])
                    .await;
                (
                    WriteKind::UpdateItem,
                    result.map(|rows| touched(rows, item_id)),
                )
            }
            60..=79 => {
                let sub_task = rng.below(4) == 0;
                let max_project = self.shared.max_project_id.load(Ordering::Relaxed).max(1);
                let project_id = 1 + rng.below(max_project as u64) as i64;
                let title = format!("new {} item", rng.pick(ITEM_STATUSES).unwrap_or("untitled"));
                let status = rng.pick(ITEM_STATUSES);
                let priority = priority(rng);
                let company = 1 + rng.below(EMAIL_COMPANIES);
                let email = messy_email(rng, company);
                let due = format!("2026-{:02}-{:02}", 1 + rng.below(12), 1 + rng.below(28));
                let body = format!("Raised by the write load, item {item_id} nearby.");
                let (kind, statement, first) = if sub_task {
                    (WriteKind::InsertSubTask, &s.insert_sub_task, item_id)
                } else {
                    (WriteKind::InsertItem, &s.insert_item, project_id)
                };
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] =
                    [&first, &title, &status, &priority, &email, &due, &body];
                let result = self.client.query_opt(statement, &params).await;
                let result = result.map(|row| {
                    let id: Option<i64> = row.map(|row| row.get(0));
                    if let Some(id) = id {
                        self.shared.max_item_id.fetch_max(id, Ordering::Relaxed);
                    }
                    id
                });
                (kind, result)
            }
            80..=89 => {
                let max_project = self.shared.max_project_id.load(Ordering::Relaxed).max(1);
                let project_id = 1 + rng.below(max_project as u64) as i64;
                let status = rng.pick(PROJECT_STATUSES);
                let result = self
                    .client
                    .execute(&s.update_project, &[&status, &project_id])
                    .await;
                (
                    WriteKind::UpdateProject,
                    result.map(|rows| touched(rows, project_id)),
                )
            }
            _ => {
                let result = self.client.execute(&s.delete_item, &[&item_id]).await;
                (
                    WriteKind::DeleteItem,
                    result.map(|rows| touched(rows, item_id)),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_skewed_hot_set_is_one_percent_of_the_ids_and_eighty_percent_of_the_updates() {
        assert_eq!(HotItems::SKEWED.hot_count(200_000), 2_000);
        assert_eq!(HotItems::SKEWED.hot_count(150), 2);
        // An empty table still has a hot id to miss.
        assert_eq!(HotItems::SKEWED.hot_count(0), 1);
        assert_eq!(HotItems::SKEWED.share_per_million(), 800_000);
    }
}
