//! What a cutover did, step by step, for the operator and for
//! `switchyard.migrations.cutover_report`.

use serde::Serialize;

use super::access::AccessLine;
use super::counts::CountResult;
use super::dependents::DependencyReport;
use super::sequences::{SequenceSet, Unplaced};
use super::standbys::Standby;
use super::window::Step;
use super::writes_since::WritesBoundary;

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
    /// The strongest lock taken on the source tables: `ACCESS EXCLUSIVE` when the swap runs
    /// there (its SQL renames and alters them), else `EXCLUSIVE`.
    pub swap_lock: &'static str,
    /// Physical standbys that replay the swap's ACCESS EXCLUSIVE lock (read before the lock).
    pub standbys: Vec<Standby>,
    pub steps: Vec<StepTime>,
    pub counts: Vec<CountResult>,
    pub unchecked: Vec<(String, String)>,
    pub sequences: Vec<SequenceSet>,
    /// Defaults drawing from a sequence the cutover could not set: the operator's to set.
    pub unplaced: Vec<Unplaced>,
    /// Objects bound to the legacy tables, read before the lock, and the views carried over.
    pub dependents: DependencyReport,
    /// Grants carried or proved, row-level security proved, and what `warn` left.
    pub access: Vec<AccessLine>,
    pub fence_lsn: Option<String>,
    pub slot: Option<String>,
    /// What went wrong after the commit (the cutover itself stands).
    pub notes: Vec<String>,
    /// Where the target stood under the lock: `rollback` counts the writes made since.
    pub writes_boundary: Option<WritesBoundary>,
    /// `--keep-reverse`: the target's WAL position under the lock, from which the reverse
    /// stream applies the application's writes (see `reverse_stream`).
    pub reverse_boundary: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepTime {
    pub step: Step,
    pub ms: f64,
    /// What the step read beyond a constant: `changed rows: ...` or `TABLE SIZE: ...`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reads: Option<String>,
}
