//! The cutover: writes on the legacy tables stop for a window of seconds at most, the target is
//! proven caught up, checked, and swapped in; any step that would overrun the window rolls
//! everything back.
//!
//! ```text
//!  no lock      wait for lag < --max-lag ─> rehearsal fence (the consumer answers)
//!               ─> lock attempt: EXCLUSIVE, lock_timeout; never queued behind a long
//!                  transaction; on timeout roll back, back off, retry
//!  ── granted ── fence ─┬─ consumer applies everything before it, records it, NOTIFY
//!   (window)            └─ source counts (concurrently: the source can no longer change)
//!               target counts ─> [dry run: ROLLBACK here]
//!               sequences ─> cutover SQL (+ read-only triggers with two servers)
//!               ─> grants carried / proved, row-level security proved ([`access`])
//!  ── COMMIT ─── locks released; state cut_over; consumer stops; slot dropped or kept
//! ```
//! Every step inside the window is bounded by what is left of `--max-blocked`: server-side by
//! `statement_timeout`/`lock_timeout` on the lock's session, client-side by a timeout on the
//! others. An overrun rolls back the lock's transaction (nothing changed, locks released)
//! and names the step; the consumer keeps running, so the cutover can simply be issued again.

pub mod access;
pub mod counts;
pub mod read_only;
pub mod sequences;
pub mod window;
pub mod write_lock;

mod error;
mod report;
mod run;
mod sessions;
mod under_lock;

pub use error::CutoverError;
pub use report::{CutoverReport, StepTime};
pub use run::{cutover, CutoverOptions};
