//! Everything done while the write lock is held: the fence with the source counts beside it,
//! the target counts, optionally a full verify, the swap's ACCESS EXCLUSIVE lock (when its SQL
//! runs on the source), sequences, the swap SQL, what it leaves bound to the legacy tables
//! (`dependents`, `access`), the proof that it swapped (`proof`), and the commit (a dry run
//! rolls back instead: it runs the swap too, so it measures and exposes the swap's locks).
//! Each step is bounded by what is left of the window.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use crate::checkpoint::MigrationStatus;
use crate::pg::conninfo::ConnInfo;
use crate::pg::ident::TableName;
use crate::plan::{CutoverSide, Plan};
use crate::sink::fence::FenceWait;
use crate::source::fence::{self, Fence};
use crate::verify::{verify, VerifyOptions};

use super::access;
use super::baseline::{self, Baselines, Carried};
use super::counts::{compare, CountPlan, CountResult};
use super::dependents;
use super::error::{db, CutoverError};
use super::options::CutoverOptions;
use super::proof;
use super::read_only;
use super::report::CutoverReport;
use super::reverse_stream;
use super::sequences;
use super::sessions::Sessions;
use super::swap_lock::{self, Upgrade};
use super::tally;
use super::window::{Overrun, Step, Window};
use super::write_lock::{Blocker, Mode};
use super::writes_since;

/// Why the work under the lock stopped short; the caller rolls back either way.
pub(super) enum Aborted {
    Overrun(Overrun),
    Failed(CutoverError),
    /// The swap's ACCESS EXCLUSIVE lock was not granted (or not requested: it would have
    /// deadlocked): a failed lock attempt, retried after a rollback.
    SwapLockNotGranted(Vec<Blocker>),
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

/// What the work under the lock reads.
pub(super) struct Job<'a> {
    pub plan: &'a Arc<Plan>,
    pub source: &'a ConnInfo,
    pub target: &'a ConnInfo,
    pub counts: &'a CountPlan,
    pub baselines: &'a Baselines,
    pub tables: &'a [TableName],
    pub inventory: &'a sequences::Inventory,
    pub access: &'a access::Access,
    pub options: &'a CutoverOptions,
    /// The strongest lock the swap takes on `tables` ([`swap_lock::mode`]).
    pub swap_mode: Mode,
}

/// Everything done while the lock is held; leaves the rollback to the caller.
pub(super) async fn locked(
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
        baselines,
        tables,
        inventory,
        access,
        options,
        swap_mode,
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
    // The fence: the consumer applies everything committed before the lock.
    let fenced = async {
        let f: Fence = fence::emit(fencer, &plan.name)
            .await
            .map_err(db(Step::Fence, "writing the fence"))?;
        let wait = listener.wait(&f, options.max_blocked).await?;
        Ok::<_, CutoverError>((f, wait))
    };
    let (f, wait) = within!(Step::Fence, fenced)?;
    if wait == FenceWait::TimedOut {
        return Err(Aborted::Overrun(window.overrun_at(Step::Fence)));
    }
    report.fence_lsn = Some(f.lsn.to_string());
    // The counts at the fence, carried from the baselines (see `baseline`): no scan unless
    // something could not be carried, which the step's `reads` then names.
    let limit = window.remaining();
    let counted = within!(Step::Counts, async {
        let source_side = async {
            match &baselines.source {
                Some(b) => b.at_fence(counts, source_counters, &f, limit).await,
                None => counts.count_source(source_counters).await.map(|e| {
                    let scanned = counts
                        .source_queries
                        .iter()
                        .map(|q| (q.table.to_string(), "no baseline".to_owned()))
                        .collect();
                    (e, Carried { keys: 0, scanned })
                }),
            }
        };
        let mut target_carried = Carried::default();
        let target_side = baseline::target_at_fence(
            &target_counters[0],
            target_counters,
            &plan.name,
            &baselines.tables,
            &baselines.target,
            &mut target_carried,
        );
        let (source_side, target_side) = tokio::join!(source_side, target_side);
        Ok::<_, tokio_postgres::Error>((source_side?, target_side?, target_carried))
    })
    .map_err(db(Step::Counts, "counting rows at the fence"))?;
    let ((expected, source_carried), rows, target_carried) = counted;
    let carried = Carried {
        keys: source_carried.keys,
        scanned: [source_carried.scanned, target_carried.scanned].concat(),
    };
    window.reads.push((Step::Counts, carried.describe()));
    let actual: BTreeMap<String, i64> = counts
        .checked
        .iter()
        .filter_map(|t| rows.get(t).map(|n| (t.clone(), *n)))
        .collect();
    let (all, bad) = compare(&expected, &actual);
    report.counts = all;
    if !bad.is_empty() {
        return Err(CutoverError::CountsDiffer(bad).into());
    }
    // The tally has served: its triggers go now, in a transaction of their own on the target
    // (in the swap's, the target session would hold the new tables' locks against the swap's
    // own SQL when both are one database). Only the consumer, idle after the fence, writes
    // these tables yet. Left in place, `cutover` drops them as it ends.
    let started = Instant::now();
    let wait = options
        .lock_timeout
        .min(window.remaining())
        .as_millis()
        .max(1);
    let tally_session = &target_counters[0];
    let dropped = async {
        tally_session
            .batch_execute(&format!("BEGIN; SET LOCAL lock_timeout = {wait}"))
            .await?;
        tally::remove(tally_session, &plan.name, &baselines.tables).await?;
        tally_session.batch_execute("COMMIT").await
    }
    .await;
    if let Err(e) = dropped {
        let _ = tally_session.batch_execute("ROLLBACK").await;
        report.notes.push(format!(
            "the row tally's triggers were not dropped under the lock ({}); the cutover drops them as it ends, or warns",
            crate::error::Chain::new(&e)
        ));
    }
    window.finished(Step::Tally, started.elapsed())?;
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
        .map_err(CutoverError::Verify)?;
        window
            .reads
            .push((Step::Verify, "TABLE SIZE: every row compared".to_owned()));
        if verified.diverged() {
            return Err(CutoverError::Diverged(verified.render()).into());
        }
    }
    // ── The swap's own lock (issue 18): taken explicitly, bounded by --lock-timeout, so that a
    // reader idle in its transaction never makes the swap's implicit ACCESS EXCLUSIVE request
    // stall every read and write for the rest of the window. Not granted: a failed lock
    // attempt (the caller rolls back, names the holders, retries), never an overrun.
    if swap_mode == Mode::AccessExclusive {
        let started = Instant::now();
        let wait = options.lock_timeout.min(window.remaining());
        let upgraded = swap_lock::upgrade(lock, tables, wait)
            .await
            .map_err(db(Step::SwapLock, "locking the source tables for the swap"))?;
        if let Upgrade::NotGranted(holders) = upgraded {
            window.steps.push((Step::SwapLock, started.elapsed()));
            return Err(Aborted::SwapLockNotGranted(holders));
        }
        window.finished(Step::SwapLock, started.elapsed())?;
    }
    // ── end of the swap's own lock
    // Sequences, read (and set unless a dry run) inside the window: their reads are part of
    // what the real cutover holds the lock for. The target's part of the swap is a
    // transaction of its own, committed just before (side target) or just after (side
    // source) the source's.
    let target = &target_counters[0];
    let remaining_ms = |w: &Window| w.remaining().as_millis().max(1);
    // After the fence: every row written to the new tables from here on is the application's,
    // which a rollback would leave behind (see `writes_since`). Read outside the target's
    // transaction, whose locks last until the commit: with one database the cutover SQL may
    // alter these tables, and would wait for a lock held by our own target session.
    let known: Vec<CountResult> = rows
        .iter()
        .map(|(table, n)| CountResult {
            table: table.clone(),
            expected: *n,
            actual: *n,
        })
        .collect();
    let boundary = within!(
        Step::WritesBoundary,
        writes_since::take(target, &writes_since::tables_of(plan), &known)
    )
    .map_err(db(Step::WritesBoundary, "recording the writes boundary"))?;
    report.writes_boundary = Some(boundary);
    if options.keep_reverse && !options.dry_run {
        let boundary = within!(
            Step::ReverseStream,
            reverse_stream::begin(&*lock, target, plan)
        )
        .map_err(db(
            Step::ReverseStream,
            "recording the reverse stream's boundary",
        ))?;
        report.reverse_boundary = Some(boundary.to_string());
    }
    let set = within!(Step::Sequences, async {
        target
            .batch_execute(&format!(
                "BEGIN; SET LOCAL statement_timeout = {}",
                remaining_ms(window)
            ))
            .await?;
        sequences::sync(target, inventory, !options.dry_run).await
    });
    let (set, unplaced) = set.map_err(db(Step::Sequences, "setting sequences"))?;
    report.sequences = set;
    report.unplaced = inventory.unplaced.clone();
    report.unplaced.extend(unplaced);
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
            read_only::install(&*lock, tables, &plan.name, read_only::After::Cutover).await?;
        }
        // The legacy tables as they are before the SQL, for the proof below; and the layout,
        // for SQL that asserts its own assumptions (`proof::SAME_DATABASE_SETTING`).
        let legacy_oids = proof::legacy_oids(&*lock, tables).await?;
        proof::tell_layout(&*lock, same_database).await?;
        proof::tell_layout(target, same_database).await?;
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
        Ok::<_, tokio_postgres::Error>(legacy_oids)
    });
    let legacy_oids = swapped.map_err(db(Step::CutoverSql, "running the cutover SQL"))?;
    // Objects bound to the legacy tables: views carried over, then none the plan refuses or
    // leaves to its SQL may still be bound (see `super::dependents`), in the swap's transaction.
    let swap_session = match (same_database, plan.cutover.side) {
        (true, CutoverSide::Target) => target,
        _ => &*lock,
    };
    within!(
        Step::Dependents,
        dependents::after_swap(swap_session, plan, &mut report.dependents)
    )
    .map_err(CutoverError::from)?;
    // Grants and row-level security, in the swap's transactions (bounded by the
    // statement_timeout set above): carried or proved before anything commits.
    let swap = match plan.cutover.side {
        CutoverSide::Source => &*lock,
        CutoverSide::Target => target,
    };
    let (named, new) = if same_database {
        (swap, swap)
    } else {
        (&*lock, target)
    };
    report.access = access::after_swap(plan, access, named, new, !same_database)
        .await
        .map_err(CutoverError::from)?;
    // ── The swap proves it swapped (see `proof`); rolled back when it did not. ──
    let broken = within!(Step::Proof, async {
        // The session that ran the SQL sees its own DDL; with two servers a target-side SQL
        // cannot have touched the legacy names.
        let ran_sql = swap_session;
        let promise = plan.cutover.legacy_names(same_database);
        let mut broken = proof::legacy_names_kept(ran_sql, promise, tables, &legacy_oids).await?;
        if !same_database {
            broken.extend(proof::guards_in_place(&*lock, &legacy_oids).await?);
        }
        let search_path = proof::search_path(ran_sql).await?;
        Ok::<_, tokio_postgres::Error>((promise, broken, search_path))
    });
    let (promise, broken, search_path) = broken.map_err(db(Step::Proof, "proving the swap"))?;
    if !broken.is_empty() {
        return Err(CutoverError::NotSwapped {
            promise,
            declared: plan.cutover.declared_legacy_names.is_some(),
            same_database,
            search_path,
            broken,
        }
        .into());
    }
    // ── End of the proof. ──
    // ── The dry run ends here: everything above ran (the swap SQL, its locks, on either side,
    // its proof)
    // inside transactions rolled back now; sequences were read, never set (setval is not
    // transactional).
    if options.dry_run {
        let started = Instant::now();
        let _ = lock.batch_execute("ROLLBACK").await;
        let _ = target.batch_execute("ROLLBACK").await;
        window.finished(Step::Commit, started.elapsed()).ok();
        return Ok(());
    }
    // ── end of the dry run
    // No timeout from here: a COMMIT cut short by one could have committed anyway, and the
    // report would claim a rollback. The swap's side commits first, the other follows.
    let started = Instant::now();
    let (first, second, sides) = match plan.cutover.side {
        CutoverSide::Target => (target, &*lock, ("target", "source")),
        CutoverSide::Source => (&*lock, target, ("source", "target")),
    };
    first
        .batch_execute("COMMIT")
        .await
        .map_err(db(Step::Commit, "committing"))?;
    report.committed = true;
    if let Err(cause) = second.batch_execute("COMMIT").await {
        return Err(CutoverError::HalfCommitted {
            committed: sides.0,
            failed: sides.1,
            cause,
        }
        .into());
    }
    window.finished(Step::Commit, started.elapsed()).ok();
    Ok(())
}
