//! The cutover's sequence of steps (see the module documentation for the picture).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::checkpoint::{self, MigrationStatus};
use crate::error::Chain;
use crate::pg::connect::connect;
use crate::pg::conninfo::ConnInfo;
use crate::pg::ident::TableName;
use crate::plan::{Plan, SlotDisposal};
use crate::sink::fence::FenceWait;
use crate::source::fence;
use crate::source::{publication, slot};

use super::access;
use super::baseline::{self, Baselines};
use super::counts::CountPlan;
use super::deadlock_timeout;
use super::dependents;
use super::error::{db, CutoverError};
use super::options::CutoverOptions;
use super::read_only;
use super::report::{CutoverReport, StepTime};
use super::sequences;
use super::sessions::{
    open_sessions, same_database, wait_for_lag, wait_for_short_backlog, Sessions,
};
use super::standbys;
use super::swap_lock;
use super::tally;
use super::under_lock::{locked, Aborted, Job};
use super::window::{Step, Window};
use super::write_lock::{self, Attempt, Blocker, Mode};
use super::writes_since;

/// Runs the cutover. `say` receives progress lines for the operator.
pub async fn cutover(
    plan: &Arc<Plan>,
    source: &ConnInfo,
    target: &ConnInfo,
    options: &CutoverOptions,
    say: &(dyn Fn(String) + Sync),
) -> Result<CutoverReport, CutoverError> {
    let result = attempt(plan, source, target, options, say).await;
    // The window drops the tally's triggers once the counts are checked; whatever is left
    // (any other end, or a drop that did not get its locks in time) goes here.
    // The temporary slot goes with its connection, closed as the attempt returned; the
    // walsender lets go of it a moment later. Wait for that, so the cutover leaves no slot.
    if let Err(e) = temporary_slot_gone(source).await {
        say(format!("warning: {e:#}"));
    }
    if let Err(e) = drop_tally(plan, target).await {
        say(format!(
            "warning: could not look for (or drop) the cutover's row-tally triggers ({e:#}): `switchyard abort` or the next cutover drops any left"
        ));
    }
    result
}

/// Waits (at most 5 s) until this process's temporary slots are gone from the source.
async fn temporary_slot_gone(source: &ConnInfo) -> anyhow::Result<()> {
    let client = connect(source, "switchyard cutover").await?;
    let prefix = baseline::temporary_slot_prefix();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_replication_slots WHERE starts_with(slot_name::text, $1)",
                &[&prefix],
            )
            .await?
            .get(0);
        if left == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!("the cutover's temporary slot ({prefix}*) is still there after 5 s; it goes when its walsender exits");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn drop_tally(plan: &Plan, target: &ConnInfo) -> anyhow::Result<()> {
    let client = connect(target, "switchyard cutover").await?;
    tally::remove_leftovers(&client, plan).await?;
    Ok(())
}

async fn attempt(
    plan: &Arc<Plan>,
    source: &ConnInfo,
    target: &ConnInfo,
    options: &CutoverOptions,
    say: &(dyn Fn(String) + Sync),
) -> Result<CutoverReport, CutoverError> {
    // Before anything else: a lock_timeout that lets the application be the deadlock victim.
    let probe = connect(source, "switchyard cutover").await?;
    deadlock_timeout::refuse_unsafe(&probe, options.lock_timeout).await?;
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
    // Objects bound to the legacy tables: one the plan refuses stops the cutover here, before
    // any lock (see `super::dependents`).
    let dependents = dependents::before_lock(&s.lock, plan, same_database).await?;

    // Grants and row-level security of the legacy tables: refused here, before any lock.
    let access = access::before_lock(plan, &s.lock, say).await?;

    // 1. Catch up, rehearse and take the count baselines, without any lock.
    let baselines = rehearse(
        plan,
        source,
        &mut s,
        &state,
        &counts,
        options,
        &mut window,
        say,
    )
    .await?;
    // Catalog only, so outside the window; the values are read under the lock.
    let inventory = sequences::inventory(&state, &sequences::tables_of(plan))
        .await
        .map_err(db(
            Step::Rehearsal,
            "reading which sequences the output tables use",
        ))?;
    // The swap's strongest lock, and the standbys that will replay it (before the lock).
    let swap_mode = swap_lock::mode(plan);
    let standbys = standbys::physical(&probe, &tables, swap_mode)
        .await
        .map_err(db(Step::Rehearsal, "reading pg_stat_replication"))?;
    drop(probe);
    for s in &standbys {
        say(format!("warning: {}", s.warning));
    }
    // 2. The lock, retried without ever queuing behind a long transaction; 3. the work under
    // it. A swap lock that is not granted rolls everything back and counts as a failed attempt.
    let started = Instant::now();
    let mut tries = Tries::default();
    let (report, outcome) = loop {
        acquire(
            plan, &s, &state, &tables, swap_mode, options, &mut tries, say,
        )
        .await?;
        window.granted();
        window.finished(Step::Lock, started.elapsed()).ok();
        // Every exit path below rolls back unless the commit succeeded.
        let mut report = CutoverReport {
            dry_run: options.dry_run,
            committed: false,
            same_database,
            window_ms: 0.0,
            max_blocked_ms: options.max_blocked.as_secs_f64() * 1e3,
            lock_attempts: tries.attempts,
            swap_lock: swap_mode.sql(),
            standbys: standbys.clone(),
            steps: Vec::new(),
            counts: Vec::new(),
            unchecked: counts
                .unchecked
                .iter()
                .map(|(t, why)| (t.clone(), (*why).to_owned()))
                .collect(),
            sequences: Vec::new(),
            unplaced: Vec::new(),
            dependents: dependents.clone(),
            access: Vec::new(),
            fence_lsn: None,
            slot: None,
            notes: Vec::new(),
            writes_boundary: None,
            reverse_boundary: None,
        };
        let job = Job {
            plan,
            source,
            target,
            counts: &counts,
            baselines: &baselines,
            tables: &tables,
            inventory: &inventory,
            access: &access,
            options,
            swap_mode,
        };
        let outcome = locked(&job, &mut s, &mut window, &mut report).await;
        let released = window.elapsed();
        if outcome.is_err() || !report.committed {
            let _ = s.lock.batch_execute("ROLLBACK").await;
            let _ = s.target_counters[0].batch_execute("ROLLBACK").await;
        }
        let Err(Aborted::SwapLockNotGranted(holders)) = outcome else {
            report.window_ms = released.as_secs_f64() * 1e3;
            break (report, outcome);
        };
        window.released();
        tries.swap_lock_failures += 1;
        tries.writes_blocked_at_most = tries.writes_blocked_at_most.max(released);
        if tries.attempts >= options.lock_attempts {
            return Err(tries.not_granted(options, holders));
        }
        let pause = write_lock::backoff(tries.attempts);
        say(format!(
            "lock attempt {}: the write lock was granted, but the swap's ACCESS EXCLUSIVE lock was not within --lock-timeout ({:?}) or what was left of the window{}; \
             rolled back after {:.0} ms (nothing changed), retrying in {:.0} ms",
            tries.attempts,
            options.lock_timeout,
            describe(&holders),
            released.as_secs_f64() * 1e3,
            pause.as_secs_f64() * 1e3
        ));
        tries.blockers = holders;
        tokio::time::sleep(pause).await;
    };
    let mut report = report;
    report.steps = window
        .steps
        .iter()
        .map(|(step, took)| StepTime {
            step: *step,
            ms: took.as_secs_f64() * 1e3,
            reads: window
                .reads
                .iter()
                .find(|(s, _)| s == step)
                .map(|(_, r)| r.clone()),
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
        Err(Aborted::Failed(e @ CutoverError::HalfCommitted { .. })) => {
            // One side committed: `rollback` needs the report's writes boundary to count what
            // it would leave behind.
            record(plan, &state, &mut report).await;
            return Err(e);
        }
        Err(Aborted::Failed(e)) => return Err(e),
        Err(Aborted::SwapLockNotGranted(holders)) => {
            return Err(tries.not_granted(options, holders))
        }
        Ok(()) => {}
    }
    if report.committed {
        finish(plan, source, &state, &mut report).await;
    }
    Ok(report)
}

/// Everything before the lock: the lag under `--max-lag`, a fence the consumer applies, and
/// the count baselines the lock's check carries forward (see [`super::baseline`]).
#[allow(clippy::too_many_arguments)]
async fn rehearse(
    plan: &Plan,
    source: &ConnInfo,
    s: &mut Sessions,
    state: &Client,
    counts: &CountPlan,
    options: &CutoverOptions,
    window: &mut Window,
    say: &(dyn Fn(String) + Sync),
) -> Result<Baselines, CutoverError> {
    let started = Instant::now();
    wait_for_lag(plan, s, state, options, say).await?;
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
    say(format!(
        "consumer caught up (rehearsal fence applied in {:.0} ms); counting once without the lock",
        started.elapsed().as_secs_f64() * 1e3
    ));
    // The target first: its triggers must tally every write after its baseline.
    let tables = writes_since::tables_of(plan);
    let untallied = tally::install(&s.target_counters[0], &plan.name, &tables)
        .await
        .map_err(db(
            Step::Rehearsal,
            "installing the row tally on the target",
        ))?;
    for (table, why) in &untallied {
        say(format!(
            "warning: {table} gets no row tally ({why}): it is counted by a scan under the lock"
        ));
    }
    let tallied: Vec<TableName> = tables
        .iter()
        .filter(|t| !untallied.iter().any(|(u, _)| u == *t))
        .cloned()
        .collect();
    let (slot, publication) = (baseline::temporary_slot_name(), plan.publication_name());
    let (source_baseline, target_baseline) = tokio::join!(
        baseline::source(source, &s.fencer, counts, &slot, &publication, &plan.name),
        tally::baseline(&s.target_counters, &plan.name, &tallied)
    );
    let target = target_baseline.map_err(db(Step::Rehearsal, "counting target rows (baseline)"))?;
    let source = match source_baseline {
        Ok(b) => Some(b),
        Err(why) => {
            say(format!(
                "warning: no source baseline ({why}): the source is counted by a scan under the lock"
            ));
            None
        }
    };
    window.finished(Step::Rehearsal, started.elapsed()).ok();
    Ok(Baselines {
        source,
        target,
        tables,
    })
}

/// The lock attempts made so far, and what stood in the way.
#[derive(Default)]
struct Tries {
    attempts: u32,
    swap_lock_failures: u32,
    writes_blocked_at_most: Duration,
    blockers: Vec<Blocker>,
}

impl Tries {
    /// The error after the last attempt; `blockers` are the ones seen at it, else the last
    /// ones seen at all.
    fn not_granted(&self, options: &CutoverOptions, blockers: Vec<Blocker>) -> CutoverError {
        let blockers = if blockers.is_empty() {
            self.blockers.clone()
        } else {
            blockers
        };
        CutoverError::LockNotGranted {
            attempts: self.attempts,
            lock_timeout: options.lock_timeout,
            blockers,
            swap_lock_failures: self.swap_lock_failures,
            writes_blocked_at_most: self.writes_blocked_at_most.max(options.lock_timeout),
        }
    }
}

/// `: <who holds conflicting locks>`, or nothing when nobody is seen holding one any more.
fn describe(blockers: &[Blocker]) -> String {
    if blockers.is_empty() {
        return String::new();
    }
    let list: Vec<String> = blockers.iter().map(Blocker::to_string).collect();
    format!(": {}", list.join("; "))
}

/// Takes the write lock on the lock session, counting attempts in `tries`. An attempt is made
/// only when the lag is under `--max-lag` again and no session has been holding a lock that
/// conflicts with `swap_mode` (the strongest lock the cutover will take) for longer than
/// `--lock-timeout`: an idle reader is named, never queued behind.
#[allow(clippy::too_many_arguments)]
async fn acquire(
    plan: &Plan,
    s: &Sessions,
    state: &Client,
    tables: &[TableName],
    swap_mode: Mode,
    options: &CutoverOptions,
    tries: &mut Tries,
    say: &(dyn Fn(String) + Sync),
) -> Result<(), CutoverError> {
    loop {
        tries.attempts += 1;
        let attempts = tries.attempts;
        wait_for_lag(plan, s, state, options, say).await?;
        let mut blockers =
            write_lock::long_blockers(&s.lock, tables, options.lock_timeout, swap_mode)
                .await
                .map_err(db(
                    Step::Lock,
                    "looking for sessions holding conflicting locks",
                ))?;
        // Autovacuum gives way to a waiting lock; anything else would make the application queue.
        let granted = if blockers.iter().all(|b| b.autovacuum) {
            // Every byte the consumer has not applied at the lock is applied inside the window.
            wait_for_short_backlog(plan, s, state)
                .await
                .map_err(db(Step::Lock, "reading the consumer's backlog"))?;
            let attempt = write_lock::lock(&s.lock, tables, options.lock_timeout)
                .await
                .map_err(db(Step::Lock, "locking the source tables"))?;
            if matches!(attempt, Attempt::TimedOut) {
                // Name whoever holds a conflicting lock now, however young.
                blockers =
                    write_lock::long_blockers(&s.lock, tables, Duration::ZERO, Mode::Exclusive)
                        .await
                        .map_err(db(
                            Step::Lock,
                            "looking for sessions holding conflicting locks",
                        ))?;
            }
            matches!(attempt, Attempt::Granted)
        } else {
            false
        };
        if granted {
            return Ok(());
        }
        if attempts >= options.lock_attempts {
            return Err(tries.not_granted(options, blockers));
        }
        let pause = write_lock::backoff(attempts);
        match blockers.iter().find(|b| !b.autovacuum) {
            Some(b) if b.transaction_age >= options.lock_timeout => say(format!(
                "lock attempt {attempts}: not queued, {b}; retrying in {:.0} ms",
                pause.as_secs_f64() * 1e3
            )),
            _ => say(format!(
                "lock attempt {attempts}: not granted within {:?}{}; writers released, retrying in {:.0} ms",
                options.lock_timeout,
                describe(&blockers),
                pause.as_secs_f64() * 1e3
            )),
        }
        tries.blockers = blockers;
        tokio::time::sleep(pause).await;
    }
}

/// After the commit: the consumer stops on its own (it sees `cut_over`); the slot goes or
/// stays as the plan says; the report is recorded. The cutover has happened whatever fails
/// here, so failures become notes in the report, not errors.
async fn finish(plan: &Plan, source: &ConnInfo, state: &Client, report: &mut CutoverReport) {
    if plan.cutover.slot == SlotDisposal::Keep {
        report.slot = Some(format!("{} kept", plan.slot_name()));
    } else {
        report.slot = Some(match drop_slot(plan, source).await {
            Ok(()) => format!("{} dropped", plan.slot_name()),
            Err(e) => format!(
                "{} NOT dropped ({}): drop it once the consumer stopped (`switchyard abort`), or the source keeps WAL for it",
                plan.slot_name(),
                Chain::from(&e)
            ),
        });
    }
    record(plan, state, report).await;
}

/// Keeps the report in `switchyard.migrations.cutover_report`; a failure becomes a note.
async fn record(plan: &Plan, state: &Client, report: &mut CutoverReport) {
    let json = serde_json::to_string(&*report).expect("a report serializes");
    if let Err(e) = state
        .execute(
            "UPDATE switchyard.migrations SET cutover_report = $2::text::jsonb WHERE name = $1",
            &[&plan.name, &json],
        )
        .await
    {
        report.notes.push(format!(
            "the report was not recorded in the target: {}",
            Chain::new(&e)
        ));
    }
}

/// Drops the slot once the consumer has let go of it (at its next heartbeat), and the
/// publication.
async fn drop_slot(plan: &Plan, source: &ConnInfo) -> anyhow::Result<()> {
    let source = connect(source, "switchyard cutover").await?;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let active = slot::state(&source, &plan.slot_name())
            .await?
            .map(|s| s.active);
        if active != Some(true) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    slot::drop(&source, &plan.slot_name()).await?;
    publication::drop(&source, &plan.publication_name()).await?;
    Ok(())
}
