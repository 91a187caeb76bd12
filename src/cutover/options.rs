//! What the operator asked of a cutover: its own file so that the run and the steps it calls
//! (sessions, the work under the lock) read it without importing each other.

use std::time::Duration;

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
    /// Start the reverse stream with the swap (`--keep-reverse`): the boundary is recorded in
    /// the lock's transaction (see [`super::reverse_stream`]).
    pub keep_reverse: bool,
}
