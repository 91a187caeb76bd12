//! Why a cutover stopped; every variant raised after the lock was granted means that the
//! lock's transaction was rolled back: locks released, nothing changed.

use std::time::Duration;

use crate::checkpoint::CheckpointError;
use crate::error::Chain;
use crate::pg::connect::ConnectError;
use crate::plan::LegacyNames;
use crate::sink::fence::FenceError;

use super::counts::CountResult;
use super::report::CutoverReport;
use super::window::{Overrun, Step};
use super::write_lock::Blocker;

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
    #[error("{}", lock_not_granted(*.attempts, *.lock_timeout, .blockers, *.swap_lock_failures, *.writes_blocked_at_most))]
    LockNotGranted {
        attempts: u32,
        lock_timeout: Duration,
        blockers: Vec<Blocker>,
        /// Attempts whose write lock was granted but whose swap lock (ACCESS EXCLUSIVE) was not.
        swap_lock_failures: u32,
        /// The longest any attempt blocked writes (a failed swap lock: the window so far).
        writes_blocked_at_most: Duration,
    },
    #[error("--lock-timeout {lock_timeout:?} is not below the source's deadlock_timeout ({deadlock_timeout:?}); refused before taking any lock. \
             While the cutover's lock request waits, an application transaction that holds a lock on one legacy table and then queues \
             behind the request on another closes a cycle; PostgreSQL looks for it only deadlock_timeout after each session started \
             waiting, and the cutover's look came first and found nothing, so the application's transaction is the one cancelled \
             with \"deadlock detected\". Use a --lock-timeout below {deadlock_timeout:?} (the default is 500ms), or raise deadlock_timeout \
             on the source (ALTER SYSTEM SET deadlock_timeout = '...'; SELECT pg_reload_conf())")]
    LockTimeoutNotBelowDeadlockTimeout {
        lock_timeout: Duration,
        deadlock_timeout: Duration,
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
    #[error("cutover aborted at step \"{}\": {context}: {}. Everything was rolled back and the locks released", .step.describe(), Chain::new(.cause))]
    Database {
        step: Step,
        context: &'static str,
        /// Printed inside the message with its own causes, before the fix, and so not its
        /// source: the chain would name it again after the fix.
        cause: tokio_postgres::Error,
    },
    #[error("cutover aborted: the swap did not do what the plan promises ([cutover] legacy_names = \"{}\"{}{}): {}. Everything was rolled back and the locks released: the migration is not cut over and its slot is kept. Fix the cutover SQL (does it find the new tables? it ran with search_path {search_path}), or declare what it does with [cutover] legacy_names, then issue the cutover again", .promise.as_str(), promise_origin(*.declared, *.same_database), guard_origin(*.same_database), .broken.join("; "))]
    NotSwapped {
        promise: LegacyNames,
        declared: bool,
        same_database: bool,
        search_path: String,
        broken: Vec<String>,
    },
    #[error("the cutover committed on the {committed} but the {failed}'s commit failed: {}. \
             With side = \"source\" the swap is done and only switchyard's state lags: mark it with \
             `UPDATE switchyard.migrations SET status = 'cut_over'`. With side = \"target\" the new \
             tables are live but the legacy tables were released without their read-only triggers: \
             stop the application's writes to them. Either way `switchyard rollback` \
             says what is in place on the source and undoes it", Chain::new(.cause))]
    HalfCommitted {
        committed: &'static str,
        failed: &'static str,
        /// Printed inside the message with its own causes, before the fix, and so not its
        /// source: the chain would name it again after the fix.
        cause: tokio_postgres::Error,
    },
    /// An object bound to a legacy table (see `crate::cutover::dependents`).
    #[error(transparent)]
    Dependents(#[from] super::dependents::DependentsError),
    /// Grants or row-level security of a legacy table: refused before the lock, or not as
    /// the plan promised after the cutover SQL (rolled back).
    #[error(transparent)]
    Access(#[from] super::access::AccessError),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Fence(#[from] FenceError),
    #[error(transparent)]
    State(#[from] CheckpointError),
    /// The consumer's lag could not be read before the lock.
    #[error("cutover stopped before any lock: the consumer's lag could not be read")]
    Lag(#[from] crate::lag::LagError),
    /// Verify under the lock could not run (the lock's transaction was rolled back).
    #[error(transparent)]
    Verify(#[from] crate::verify::VerifyError),
}

fn lock_not_granted(
    attempts: u32,
    lock_timeout: Duration,
    blockers: &[Blocker],
    swap_lock_failures: u32,
    writes_blocked_at_most: Duration,
) -> String {
    let what = if swap_lock_failures == 0 {
        format!("the write lock was not granted in {attempts} attempts of {lock_timeout:?} each; writes were never blocked longer than that")
    } else {
        format!(
            "the cutover's locks were not granted in {attempts} attempts: in {swap_lock_failures} of them the write lock was granted \
             but the swap's ACCESS EXCLUSIVE lock was not within {lock_timeout:?}; each attempt was rolled back (nothing changed), \
             writes were never blocked longer than {:.0} ms, reads never longer than {lock_timeout:?}",
            writes_blocked_at_most.as_secs_f64() * 1e3
        )
    };
    format!("{what}. {}", blockers_hint(blockers))
}

fn promise_origin(declared: bool, same_database: bool) -> &'static str {
    match (declared, same_database) {
        (true, _) => "",
        (false, true) => ", the default with one database",
        (false, false) => ", the default with two servers",
    }
}

fn guard_origin(same_database: bool) -> &'static str {
    if same_database {
        ""
    } else {
        ", and read-only triggers enabled ALWAYS on the legacy tables"
    }
}

fn blockers_hint(blockers: &[Blocker]) -> String {
    if blockers.is_empty() {
        return "Other sessions kept taking conflicting locks; retry at a quieter moment or raise --lock-timeout (it must stay below deadlock_timeout)".to_owned();
    }
    let list: Vec<String> = blockers.iter().map(|b| b.to_string()).collect();
    format!(
        "Sessions hold conflicting locks: {}. End them (or wait for them; a session idle in a transaction holds its locks until it commits or rolls back), then retry",
        list.join("; ")
    )
}

fn describe_counts(bad: &[CountResult]) -> String {
    bad.iter()
        .map(|c| format!("{}: {} expected, {} found", c.table, c.expected, c.actual))
        .collect::<Vec<_>>()
        .join("; ")
}

pub(super) fn db(
    step: Step,
    context: &'static str,
) -> impl FnOnce(tokio_postgres::Error) -> CutoverError {
    move |cause| CutoverError::Database {
        step,
        context,
        cause,
    }
}
