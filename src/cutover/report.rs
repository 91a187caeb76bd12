//! What a cutover did, step by step, for the operator and for
//! `switchyard.migrations.cutover_report`.

use serde::Serialize;

use super::access::AccessLine;
use super::counts::CountResult;
use super::sequences::{SequenceSet, Unplaced};
use super::window::Step;

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
    /// Defaults drawing from a sequence the cutover could not set: the operator's to set.
    pub unplaced: Vec<Unplaced>,
    /// Grants carried or proved, row-level security proved, and what `warn` left.
    pub access: Vec<AccessLine>,
    pub fence_lsn: Option<String>,
    pub slot: Option<String>,
    /// What went wrong after the commit (the cutover itself stands).
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepTime {
    pub step: Step,
    pub ms: f64,
}
