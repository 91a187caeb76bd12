//! The cutover: writes on the legacy tables stop for a window of seconds at most, the target is
//! proven caught up, checked, and swapped in; any step that would overrun the window rolls
//! everything back.
//!
//! ```text
//!  no lock      refuse --lock-timeout >= deadlock_timeout; warn of physical standbys
//!               wait for lag < --max-lag ─> rehearsal fence (the consumer answers)
//!               ─> lock attempt: EXCLUSIVE, lock_timeout; never queued behind a long
//!                  transaction holding a lock that conflicts with the swap's strongest lock;
//!                  on timeout roll back, back off, retry
//!  ── granted ── fence ─┬─ consumer applies everything before it, records it, NOTIFY
//!   (window)            └─ source counts (concurrently: the source can no longer change)
//!               target counts ─> [verify]
//!               swap lock: ACCESS EXCLUSIVE, lock_timeout (not granted: roll back, retry)
//!               sequences ─> cutover SQL (+ read-only triggers with two servers)
//!               ─> proof: the legacy names and triggers are what the plan promises
//!               ─> grants carried / proved, row-level security proved ([`access`])
//!  ── COMMIT ─── locks released; state cut_over; consumer stops; slot dropped or kept
//!               [dry run: ROLLBACK instead, sequences read but never set]
//! ```
//! Every step inside the window is bounded by what is left of `--max-blocked`: server-side by
//! `statement_timeout`/`lock_timeout` on the lock's session, client-side by a timeout on the
//! others. An overrun rolls back the lock's transaction (nothing changed, locks released)
//! and names the step; the consumer keeps running, so the cutover can simply be issued again.

pub mod access;
pub mod baseline;
pub mod changed_keys;
pub mod counts;
pub mod dependents;
pub mod in_place;
pub mod proof;
pub mod read_only;
pub mod reverse_rollback;
pub mod reverse_rules;
pub mod reverse_stream;
pub mod sequences;
pub mod standbys;
pub mod swap_lock;
pub mod tally;
pub mod window;
pub mod write_lock;
pub mod writes_since;

mod deadlock_timeout;
mod error;
mod options;
mod report;
mod run;
mod sessions;
mod under_lock;

pub use error::CutoverError;
pub use options::CutoverOptions;
pub use report::{CutoverReport, StepTime};
pub use run::cutover;
pub use sessions::same_database;
