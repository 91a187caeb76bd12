//! The sessions a cutover works with, all opened before the lock so that none is opened inside
//! the window, and what they find out before it: same database or two, and the lag.

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::lag;
use crate::pg::connect::connect;
use crate::pg::conninfo::ConnInfo;
use crate::plan::Plan;
use crate::sink::fence::FenceListener;

use super::counts::CountPlan;
use super::error::{db, CutoverError};
use super::options::CutoverOptions;
use super::window::Step;

/// The sessions the cutover works with, opened before the lock so none is opened inside it.
pub(super) struct Sessions {
    /// Holds the lock's transaction.
    pub lock: Client,
    /// Writes fences (each in its own committed transaction).
    pub fencer: Client,
    /// One per source count query: the baseline's key lookups under the lock, or its scan.
    pub source_counters: Vec<Client>,
    /// One per table the target's counts cover; the first also runs the target's part of
    /// the swap.
    pub target_counters: Vec<Client>,
    pub listener: FenceListener,
}

pub(super) async fn open_sessions(
    plan: &Plan,
    source: &ConnInfo,
    target: &ConnInfo,
    counts: &CountPlan,
) -> Result<Sessions, CutoverError> {
    let mut source_counters = Vec::new();
    for _ in &counts.source_queries {
        source_counters.push(connect(source, "switchyard cutover").await?);
    }
    // One per output and lookup table (any may need a scan; the counted outputs are among
    // them), and at least one.
    let tables = super::writes_since::tables_of(plan).len();
    let mut target_counters = Vec::new();
    for _ in 0..tables.max(1) {
        target_counters.push(connect(target, "switchyard cutover").await?);
    }
    Ok(Sessions {
        lock: connect(source, "switchyard cutover").await?,
        fencer: connect(source, "switchyard cutover").await?,
        source_counters,
        target_counters,
        listener: FenceListener::listen(target, &plan.name).await?,
    })
}

/// Whether source and target are one database: the lock's session, tagged with a unique
/// application name, is then visible in the target's `pg_stat_activity`.
pub async fn same_database(lock: &Client, target: &Client) -> Result<bool, CutoverError> {
    let tag = format!(
        "switchyard cutover {}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    let pid: i32 = lock
        .query_one(
            "SELECT pg_backend_pid() FROM set_config('application_name', $1, false)",
            &[&tag],
        )
        .await
        .map_err(db(Step::Rehearsal, "tagging the lock session"))?
        .get(0);
    let seen: bool = target
        .query_one(
            "SELECT EXISTS (SELECT FROM pg_stat_activity
                             WHERE pid = $1 AND application_name = $2 AND datname = current_database())",
            &[&pid, &tag],
        )
        .await
        .map_err(db(Step::Rehearsal, "comparing source and target"))?
        .get(0);
    Ok(seen)
}

pub(super) async fn wait_for_lag(
    plan: &Plan,
    s: &Sessions,
    state: &Client,
    options: &CutoverOptions,
    say: &(dyn Fn(String) + Sync),
) -> Result<(), CutoverError> {
    let started = Instant::now();
    let mut last_said = None::<Instant>;
    loop {
        let sample = lag::sample(&s.fencer, state, plan).await?;
        let bytes = sample.and_then(|x| x.bytes_behind).unwrap_or(0);
        if bytes <= options.max_lag {
            return Ok(());
        }
        if started.elapsed() > options.catch_up_timeout {
            return Err(CutoverError::LagTooHigh {
                max_lag: options.max_lag,
                bytes,
                waited: started.elapsed(),
            });
        }
        if last_said.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            say(format!(
                "waiting for the consumer: {bytes} bytes behind (--max-lag {})",
                options.max_lag
            ));
            last_said = Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The consumer's backlog at or below which the lock is requested at once: about 15 ms of a
/// busy source's WAL. Every byte of backlog at the lock is applied inside the window (the
/// fence step).
pub const LOCK_AT_BACKLOG: u64 = 16 * 1024;

/// How long the backlog is watched before a lock attempt: a few of the consumer's group
/// commits (100 ms apart under load), so its smallest value is the trough after a commit.
pub const BACKLOG_WATCH: Duration = Duration::from_millis(300);

/// How long, after the watch, to wait for the backlog to come back to its trough before
/// locking anyway.
pub const BACKLOG_WAIT: Duration = Duration::from_secs(1);

/// Picks the moment of a lock attempt: when the consumer's furthest lane has committed to
/// within [`LOCK_AT_BACKLOG`] of the source's WAL, or else back to the smallest backlog seen
/// while watching for [`BACKLOG_WATCH`] (the trough right after a group commit), polling every
/// 5 ms; after [`BACKLOG_WAIT`] more, at once. Only a choice of moment: the fence proves the
/// catch-up. Returns the backlog at the chosen moment, in bytes.
pub(super) async fn wait_for_short_backlog(
    plan: &Plan,
    s: &Sessions,
    state: &Client,
) -> Result<u64, tokio_postgres::Error> {
    let started = Instant::now();
    let mut trough = u64::MAX;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&plan.name];
    loop {
        let (source, target) = tokio::try_join!(
            s.fencer.query_one("SELECT pg_current_wal_lsn()", &[]),
            state.query_one(
                "SELECT max(applied_lsn) FROM switchyard.apply_lanes WHERE migration = $1",
                &params,
            )
        )?;
        let current: crate::pg::lsn::Lsn = source.get(0);
        let applied: Option<crate::pg::lsn::Lsn> = target.get(0);
        let backlog = applied.map_or(u64::MAX, |a| {
            u64::from(current).saturating_sub(u64::from(a))
        });
        let watching = started.elapsed() < BACKLOG_WATCH;
        if backlog <= LOCK_AT_BACKLOG
            || (!watching && backlog <= trough.saturating_add(trough / 10))
            || started.elapsed() >= BACKLOG_WATCH + BACKLOG_WAIT
        {
            return Ok(backlog);
        }
        if watching {
            trough = trough.min(backlog);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
