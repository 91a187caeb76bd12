//! The backfill as the command line (or the demo, or a test) resolved it, and what its copy
//! starts from: their own file so that the command and what a failure keeps (`failure.rs`)
//! both read them without importing each other.

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::Client;

use crate::pg::conninfo::ConnInfo;
use crate::pg::lsn::Lsn;
use crate::pipeline::control::SourceLoad;
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
    /// When to wait for the source between batches (`--max-source-sessions`,
    /// `--throttle-query`).
    pub load: SourceLoad,
    /// What the workers update: the display and the metrics read it.
    pub progress: Arc<BackfillProgress>,
}

/// What the copy starts from: readers inside the snapshot, the session that keeps it
/// importable for `--join` (closed once every chunk is done), and its name.
pub(super) struct Copying {
    pub(super) readers: Vec<Client>,
    pub(super) holder: Client,
    pub(super) snapshot: String,
    pub(super) consistent_lsn: Lsn,
}
