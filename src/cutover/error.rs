//! Why a cutover stopped; every variant raised after the lock was granted means that the
//! lock's transaction was rolled back: locks released, nothing changed.

use std::time::Duration;

use crate::checkpoint::CheckpointError;
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
    #[error("cutover aborted: the swap did not do what the plan promises ([cutover] legacy_names = \"{}\"{}{}): {}. Everything was rolled back and the locks released: the migration is not cut over and its slot is kept. Fix the cutover SQL (does it find the new tables? it ran with search_path {search_path}), or declare what it does with [cutover] legacy_names, then issue the cutover again", .promise.as_str(), promise_origin(*.declared, *.same_database), guard_origin(*.same_database), .broken.join("; "))]
    NotSwapped {
        promise: LegacyNames,
        declared: bool,
        same_database: bool,
        search_path: String,
        broken: Vec<String>,
    },
    #[error("the cutover committed on the {committed} but the {failed}'s commit failed: {source}. \
             With side = \"source\" the swap is done and only switchyard's state lags: mark it with \
             `UPDATE switchyard.migrations SET status = 'cut_over'`. With side = \"target\" the new \
             tables are live but the legacy tables were released without their read-only triggers: \
             stop the application's writes to them. Either way `switchyard rollback` \
             says what is in place on the source and undoes it")]
    HalfCommitted {
        committed: &'static str,
        failed: &'static str,
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

pub(super) fn db(
    step: Step,
    context: &'static str,
) -> impl FnOnce(tokio_postgres::Error) -> CutoverError {
    move |source| CutoverError::Database {
        step,
        context,
        source,
    }
}
