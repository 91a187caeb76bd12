//! The cutover's sequence of steps (see the module documentation for the picture).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_postgres::Client;

use crate::checkpoint::{self, CheckpointError, MigrationStatus};
use crate::commands::watch;
use crate::pg::connect::{connect, ConnectError};
use crate::pg::conninfo::ConnInfo;
use crate::pg::ident::TableName;
use crate::plan::{CutoverSide, Plan, SlotDisposal};
use crate::sink::fence::{FenceError, FenceListener, FenceWait};
use crate::source::fence::{self, Fence};
use crate::source::{publication, slot};
use crate::verify::{verify, VerifyOptions};

use super::counts::{compare, CountPlan, CountResult};
use super::read_only;
use super::sequences::{self, SequenceSet};
use super::window::{Overrun, Step, Window};
use super::write_lock::{self, Attempt, Blocker};

/// What the operator asked for.
#[derive(Debug, Clone)]
pub struct CutoverOptions {
    /// The write-blocked window must stay under this, or everything is rolled back.
    pub max_blocked: Duration,
    /// The lock is requested only once the consumer is this close (bytes of WAL).
    pub max_lag: i64,
    /// How long to wait for the lag to fall under `max_lag` (and for the rehearsal fence).
    pub catch_up_timeout: Duration,
    /// Each lock attempt waits at most this long; writers queue behind it meanwhile.
    pub lock_timeout: Duration,
    pub lock_attempts: u32,
    /// Stop after the checks and roll back: measures the window, changes nothing.
    pub dry_run: bool,
    /// Also compare every row (`switchyard verify`) under the lock: conclusive, and as long as
    /// a full read of both sides, so it needs a `max_blocked` to match.
    pub verify: bool,
}

/// What happened, for the operator and for `switchyard.migrations.cutover_report`.
#[derive(Debug, Clone, Serialize)]
pub struct CutoverReport {
    pub dry_run: bool,
    pub committed: bool,
    pub same_database: bool,
    /// Lock granted to lock released.
    pub window_ms: f64,
    pub max_blocked_ms: f64,
    pub lock_attempts: u32,
    pub steps: Vec<StepTime>,
    pub counts: Vec<CountResult>,
    pub unchecked: Vec<(String, String)>,
    pub sequences: Vec<SequenceSet>,
    pub fence_lsn: Option<String>,
    pub slot: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepTime {
    pub step: Step,
    pub ms: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum CutoverError {
    #[error("{0}")]
    NotReady(String),
    #[error("the consumer did not apply a fence within {0:?}: is `switchyard follow` running? (`switchyard watch` shows it)")]
    NoConsumer(Duration),
    #[error("the lag stayed above --max-lag ({max_lag} bytes) for {waited:?}; last seen {bytes} bytes behind")]
    LagTooHigh {
        max_lag: i64,
        bytes: i64,
        waited: Duration,
    },
    #[error("the write lock was not granted in {attempts} attempts of {lock_timeout:?} each; writes were never blocked longer than that. {}", blockers_hint(.blockers))]
    LockNotGranted {
        attempts: u32,
        lock_timeout: Duration,
        blockers: Vec<Blocker>,
    },
    #[error("cutover aborted: the write-blocked window would exceed --max-blocked ({:?}) at step \"{}\" ({:.0} ms held). Everything was rolled back and the locks released; the consumer keeps running: issue the cutover again (at a quieter moment or with a larger --max-blocked)", .limit, .overrun.step.describe(), .overrun.elapsed.as_secs_f64() * 1e3)]
    Overrun {
        overrun: Overrun,
        limit: Duration,
        report: Box<CutoverReport>,
    },
    #[error(
        "cutover aborted: verify under the lock found divergence. Everything was rolled back.\n{0}"
    )]
    Diverged(String),
    #[error("cutover aborted: row counts differ under the lock ({}). Everything was rolled back; `switchyard verify` lists the rows, `switchyard.dead_letters` holds rows that were refused", describe_counts(.0))]
    CountsDiffer(Vec<CountResult>),
    #[error("cutover aborted at step \"{}\": {context}: {source}. Everything was rolled back and the locks released", .step.describe())]
    Database {
        step: Step,
        context: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Fence(#[from] FenceError),
    #[error(transparent)]
    State(#[from] CheckpointError),
    #[error("{0}")]
    Other(#[from] anyhow::Error),
}

fn blockers_hint(blockers: &[Blocker]) -> String {
    if blockers.is_empty() {
        return "Other sessions kept taking conflicting locks; retry at a quieter moment or raise --lock-timeout".to_owned();
    }
    let list: Vec<String> = blockers.iter().map(|b| b.to_string()).collect();
    format!(
        "Long transactions hold conflicting locks: {}. End them (or wait for them), then retry",
        list.join("; ")
    )
}

fn describe_counts(bad: &[CountResult]) -> String {
    bad.iter()
        .map(|c| format!("{}: {} expected, {} found", c.table, c.expected, c.actual))
        .collect::<Vec<_>>()
        .join("; ")
}

fn db(step: Step, context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> CutoverError {
    move |source| CutoverError::Database {
        step,
        context,
        source,
    }
}

/// The sessions the cutover works with, opened before the lock so none is opened inside it.
struct Sessions {
    /// Holds the lock's transaction.
    lock: Client,
    /// Writes fences (each in its own committed transaction).
    fencer: Client,
    /// One per source count query.
    source_counters: Vec<Client>,
    /// One per target count query; the first also runs the target's part of the swap.
    target_counters: Vec<Client>,
    listener: FenceListener,
}

/// Runs the cutover. `say` receives progress lines for the operator.
pub async fn cutover(
    plan: &Arc<Plan>,
    source: &ConnInfo,
    target: &ConnInfo,
    options: &CutoverOptions,
    say: &(dyn Fn(String) + Sync),
) -> Result<CutoverReport, CutoverError> {
    let mut window = Window::new(options.max_blocked);
    let tables: Vec<TableName> = plan.sources.iter().map(|s| s.table.clone()).collect();
    let counts = CountPlan::new(plan);
    let state = connect(target, "switchyard cutover").await?;
    let Some(m) = checkpoint::load(&state, &plan.name).await? else {
        return Err(CutoverError::NotReady(format!(
            "there is no migration {}: backfill and follow first",
            plan.name
        )));
    };
    if !matches!(
        m.status,
        MigrationStatus::Backfilled | MigrationStatus::Following
    ) {
        return Err(CutoverError::NotReady(format!(
            "migration {} is {}: a cutover needs a finished backfill and a running consumer",
            plan.name, m.status
        )));
    }
    let mut s = open_sessions(plan, source, target, &counts).await?;
    let same_database = same_database(&s.lock, &state).await?;
    if !same_database {
        s.lock
            .batch_execute(read_only::FUNCTION_SQL)
            .await
            .map_err(db(
                Step::Rehearsal,
                "creating switchyard.refuse_writes() on the source",
            ))?;
    }

    // 1. Catch up, without any lock.
    let started = Instant::now();
    wait_for_lag(plan, &s, &state, options, say).await?;
    window.finished(Step::WaitForLag, started.elapsed()).ok();
    let started = Instant::now();
    let rehearsal = fence::emit(&s.fencer, &plan.name)
        .await
        .map_err(db(Step::Rehearsal, "writing a fence"))?;
    if s.listener
        .wait(&rehearsal, options.catch_up_timeout)
        .await?
        == FenceWait::TimedOut
    {
        return Err(CutoverError::NoConsumer(options.catch_up_timeout));
    }
    window.finished(Step::Rehearsal, started.elapsed()).ok();
    say(format!(
        "consumer caught up (rehearsal fence applied in {:.0} ms); vacuuming the counted tables and counting once without the lock",
        started.elapsed().as_secs_f64() * 1e3
    ));
    counts
        .prepare_target(&s.target_counters)
        .await
        .map_err(db(Step::Rehearsal, "vacuuming the counted target tables"))?;
    // Also proves every count query runs before one runs under the lock.
    counts
        .count_source(&s.source_counters)
        .await
        .map_err(db(Step::Rehearsal, "counting source rows (rehearsal)"))?;
    counts
        .count_target(&s.target_counters)
        .await
        .map_err(db(Step::Rehearsal, "counting target rows (rehearsal)"))?;

    // 2. The lock, retried without ever queuing behind a long transaction.
    let started = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let blockers = write_lock::long_blockers(&s.lock, &tables, options.lock_timeout)
            .await
            .map_err(db(
                Step::Lock,
                "looking for sessions holding conflicting locks",
            ))?;
        let granted = if blockers.iter().all(|b| b.autovacuum) {
            let attempt = write_lock::lock(&s.lock, &tables, options.lock_timeout)
                .await
                .map_err(db(Step::Lock, "locking the source tables"))?;
            matches!(attempt, Attempt::Granted)
        } else {
            false
        };
        if granted {
            break;
        }
        if attempts >= options.lock_attempts {
            return Err(CutoverError::LockNotGranted {
                attempts,
                lock_timeout: options.lock_timeout,
                blockers,
            });
        }
        let pause = write_lock::backoff(attempts);
        match blockers.iter().find(|b| !b.autovacuum) {
            Some(b) => say(format!(
                "lock attempt {attempts}: not queued, {b}; retrying in {:.0} ms",
                pause.as_secs_f64() * 1e3
            )),
            None => say(format!(
                "lock attempt {attempts}: not granted within {:?}; writers released, retrying in {:.0} ms",
                options.lock_timeout,
                pause.as_secs_f64() * 1e3
            )),
        }
        tokio::time::sleep(pause).await;
    }
    window.granted();
    window.finished(Step::Lock, started.elapsed()).ok();

    // 3. Under the lock: every exit path below rolls back unless the commit succeeded.
    let mut report = CutoverReport {
        dry_run: options.dry_run,
        committed: false,
        same_database,
        window_ms: 0.0,
        max_blocked_ms: options.max_blocked.as_secs_f64() * 1e3,
        lock_attempts: attempts,
        steps: Vec::new(),
        counts: Vec::new(),
        unchecked: counts
            .unchecked
            .iter()
            .map(|(t, why)| (t.clone(), (*why).to_owned()))
            .collect(),
        sequences: Vec::new(),
        fence_lsn: None,
        slot: None,
    };
    let job = Job {
        plan,
        source,
        target,
        counts: &counts,
        tables: &tables,
        options,
    };
    let outcome = locked(&job, &mut s, &mut window, &mut report).await;
    let released = window.elapsed();
    if outcome.is_err() || !report.committed {
        let _ = s.lock.batch_execute("ROLLBACK").await;
        let _ = s.target_counters[0].batch_execute("ROLLBACK").await;
    }
    report.window_ms = released.as_secs_f64() * 1e3;
    report.steps = window
        .steps
        .iter()
        .map(|(step, took)| StepTime {
            step: *step,
            ms: took.as_secs_f64() * 1e3,
        })
        .collect();
    match outcome {
        Err(Aborted::Overrun(overrun)) => {
            return Err(CutoverError::Overrun {
                overrun,
                limit: options.max_blocked,
                report: Box::new(report),
            })
        }
        Err(Aborted::Failed(e)) => return Err(e),
        Ok(()) => {}
    }
    if report.committed {
        finish(plan, source, &state, &mut report).await?;
    }
    Ok(report)
}

/// Why the work under the lock stopped short; the caller rolls back either way.
enum Aborted {
    Overrun(Overrun),
    Failed(CutoverError),
}

impl From<Overrun> for Aborted {
    fn from(o: Overrun) -> Aborted {
        Aborted::Overrun(o)
    }
}

impl From<CutoverError> for Aborted {
    fn from(e: CutoverError) -> Aborted {
        Aborted::Failed(e)
    }
}

/// Everything done while the lock is held; leaves the rollback to the caller.
/// What the work under the lock reads.
struct Job<'a> {
    plan: &'a Arc<Plan>,
    source: &'a ConnInfo,
    target: &'a ConnInfo,
    counts: &'a CountPlan,
    tables: &'a [TableName],
    options: &'a CutoverOptions,
}

async fn locked(
    job: &Job<'_>,
    s: &mut Sessions,
    window: &mut Window,
    report: &mut CutoverReport,
) -> Result<(), Aborted> {
    let Job {
        plan,
        source,
        target: target_info,
        counts,
        tables,
        options,
    } = *job;
    let Sessions {
        lock,
        fencer,
        source_counters,
        target_counters,
        listener,
    } = s;
    // Runs a step bounded by what is left of the window, and times it.
    macro_rules! within {
        ($step:expr, $fut:expr) => {{
            let started = Instant::now();
            let result = match tokio::time::timeout(window.remaining(), $fut).await {
                Ok(r) => r,
                Err(_) => return Err(Aborted::Overrun(window.overrun_at($step))),
            };
            window.finished($step, started.elapsed())?;
            result
        }};
    }
    // The fence, and the source counts meanwhile: the source can no longer change.
    let fence_and_counts = async {
        let source_counts = counts.count_source(source_counters);
        let fenced = async {
            let f: Fence = fence::emit(fencer, &plan.name)
                .await
                .map_err(db(Step::Fence, "writing the fence"))?;
            let wait = listener.wait(&f, options.max_blocked).await?;
            Ok::<_, CutoverError>((f, wait))
        };
        tokio::join!(source_counts, fenced)
    };
    let (expected, fenced) = within!(Step::Fence, fence_and_counts);
    let (f, wait) = fenced?;
    if wait == FenceWait::TimedOut {
        return Err(Aborted::Overrun(window.overrun_at(Step::Fence)));
    }
    report.fence_lsn = Some(f.lsn.to_string());
    let expected = expected.map_err(db(Step::Counts, "counting source rows"))?;
    let actual: BTreeMap<String, i64> = within!(Step::Counts, counts.count_target(target_counters))
        .map_err(db(Step::Counts, "counting target rows"))?;
    let (all, bad) = compare(&expected, &actual);
    report.counts = all;
    if !bad.is_empty() {
        return Err(CutoverError::CountsDiffer(bad).into());
    }
    if options.verify {
        let verified = within!(
            Step::Verify,
            verify(
                plan,
                source,
                target_info,
                VerifyOptions {
                    // Nothing is in flight under the lock: the first comparison is the verdict.
                    recheck_rounds: 0,
                    ..VerifyOptions::default()
                },
            )
        )
        .map_err(|e| CutoverError::Other(e.into()))?;
        if verified.diverged() {
            return Err(CutoverError::Diverged(verified.render()).into());
        }
    }
    if options.dry_run {
        let started = Instant::now();
        let _ = lock.batch_execute("ROLLBACK").await;
        window.finished(Step::Commit, started.elapsed()).ok();
        return Ok(());
    }
    // The swap: the target's part in a transaction of its own, committed just before (side
    // target) or just after (side source) the source's.
    let target = &target_counters[0];
    let remaining_ms = |w: &Window| w.remaining().as_millis().max(1);
    let outputs: Vec<TableName> = plan
        .sources
        .iter()
        .flat_map(|src| src.outputs.iter().map(|o| o.table.clone()))
        .chain(plan.lookups.iter().map(|l| l.table.clone()))
        .collect();
    let set = within!(Step::Sequences, async {
        target
            .batch_execute(&format!(
                "BEGIN; SET LOCAL statement_timeout = {}",
                remaining_ms(window)
            ))
            .await?;
        sequences::sync(target, &outputs).await
    });
    report.sequences = set.map_err(db(Step::Sequences, "setting sequences"))?;
    let sql: String = plan
        .phases
        .cutover
        .iter()
        .map(|f| f.sql.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let same_database = report.same_database;
    let swapped = within!(Step::CutoverSql, async {
        lock.batch_execute(&format!(
            "SET LOCAL statement_timeout = {0}; SET LOCAL lock_timeout = {0}",
            remaining_ms(window)
        ))
        .await?;
        if !same_database {
            read_only::install(&*lock, tables, &plan.name).await?;
        }
        match plan.cutover.side {
            CutoverSide::Source => lock.batch_execute(&sql).await?,
            CutoverSide::Target => target.batch_execute(&sql).await?,
        }
        target
            .execute(
                "UPDATE switchyard.migrations SET status = $2, cutover_at = now(), updated_at = now(),
                        message = 'cut over' WHERE name = $1",
                &[&plan.name, &MigrationStatus::CutOver.as_str()],
            )
            .await?;
        Ok::<_, tokio_postgres::Error>(())
    });
    swapped.map_err(db(Step::CutoverSql, "running the cutover SQL"))?;
    let committed = within!(Step::Commit, async {
        match plan.cutover.side {
            CutoverSide::Target => {
                target.batch_execute("COMMIT").await?;
                lock.batch_execute("COMMIT").await
            }
            CutoverSide::Source => {
                lock.batch_execute("COMMIT").await?;
                target.batch_execute("COMMIT").await
            }
        }
    });
    committed.map_err(db(Step::Commit, "committing"))?;
    report.committed = true;
    Ok(())
}

/// After the commit: the consumer stops on its own (it sees `cut_over`); the slot goes or
/// stays as the plan says.
async fn finish(
    plan: &Plan,
    source: &ConnInfo,
    state: &Client,
    report: &mut CutoverReport,
) -> Result<(), CutoverError> {
    let json = serde_json::to_string(&*report).map_err(anyhow::Error::from)?;
    state
        .execute(
            "UPDATE switchyard.migrations SET cutover_report = $2::text::jsonb WHERE name = $1",
            &[&plan.name, &json],
        )
        .await
        .map_err(db(Step::Commit, "recording the cutover report"))?;
    if plan.cutover.slot == SlotDisposal::Keep {
        report.slot = Some(format!("{} kept", plan.slot_name()));
        return Ok(());
    }
    let source = connect(source, "switchyard cutover").await?;
    // The consumer notices the cutover at its next heartbeat and closes the stream; a slot in
    // use cannot be dropped.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let active: Option<bool> = source
            .query_opt(
                "SELECT active FROM pg_replication_slots WHERE slot_name = $1",
                &[&plan.slot_name()],
            )
            .await
            .map_err(db(Step::Commit, "reading the slot"))?
            .map(|r| r.get(0));
        if active != Some(true) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dropped = slot::drop(&source, &plan.slot_name()).await;
    let _ = publication::drop(&source, &plan.publication_name()).await;
    report.slot = Some(match dropped {
        Ok(_) => format!("{} dropped", plan.slot_name()),
        Err(e) => format!(
            "{} NOT dropped ({e}): drop it once the consumer stopped, or the source keeps WAL for it",
            plan.slot_name()
        ),
    });
    Ok(())
}

async fn open_sessions(
    plan: &Plan,
    source: &ConnInfo,
    target: &ConnInfo,
    counts: &CountPlan,
) -> Result<Sessions, CutoverError> {
    let mut source_counters = Vec::new();
    for _ in &counts.source_queries {
        source_counters.push(connect(source, "switchyard cutover").await?);
    }
    let mut target_counters = Vec::new();
    for _ in 0..counts.target_queries.len().max(1) {
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
async fn same_database(lock: &Client, target: &Client) -> Result<bool, CutoverError> {
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

async fn wait_for_lag(
    plan: &Plan,
    s: &Sessions,
    state: &Client,
    options: &CutoverOptions,
    say: &(dyn Fn(String) + Sync),
) -> Result<(), CutoverError> {
    let started = Instant::now();
    let mut last_said = None::<Instant>;
    loop {
        let sample = watch::sample(&s.fencer, state, plan).await?;
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
