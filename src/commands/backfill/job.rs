//! The backfill as the command line (or the demo, or a test) resolved it: its own file so that
//! the command and what a failure keeps (`failure.rs`) both read it without importing each
//! other.

use std::sync::Arc;
use std::time::Duration;

use crate::pg::conninfo::ConnInfo;
use crate::plan::{OnError, Plan};
use crate::progress::{BackfillProgress, DisplayMode};

/// A backfill as resolved from the command line (or built by the demo and the tests).
pub struct BackfillJob {
    pub plan: Arc<Plan>,
    pub source: ConnInfo,
    pub target: ConnInfo,
    pub jobs: usize,
    pub resume: bool,
    pub on_error: OnError,
    pub display: DisplayMode,
    /// `maintenance_work_mem` (bytes) of each after-backfill session, unless the server's is
    /// larger.
    pub maintenance_work_mem: i64,
    /// How long creating the slot may wait for open source transactions to end.
    pub snapshot_timeout: Duration,
    /// What the workers update: the display and the metrics read it.
    pub progress: Arc<BackfillProgress>,
}
