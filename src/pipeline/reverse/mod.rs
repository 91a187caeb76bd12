//! The reverse stream: after `cutover --keep-reverse`, every change the application makes to
//! the new tables goes back into the legacy tables through the plan's `[reverse]` rules, so
//! that `rollback` loses nothing (the issue's "rollback that loses nothing"; gh-ost's
//! `--revert`, across a normalization).
//!
//! ```text
//!  new tables' slot ─ pgoutput ─> batch: changed primary keys, old rows (REPLICA IDENTITY FULL)
//!        ─> apply: each rule's SELECT over the changed rows as they are now (target)
//!                  + the legacy keys the old rows had
//!        ─> legacy transaction: deletes, upserts, applied LSN (+ fence) ─ COMMIT ─> confirm
//! ```
//!
//! - `output`   the new tables read, their primary keys, the SQL evaluating a rule
//! - `legacy`   the legacy tables written, by the OID the backfill recorded
//! - `keys`     legacy keys allocated for rows the new application created
//! - `batch`    what a batch holds
//! - `apply`    one batch into the legacy tables
//! - `dead_letters` rows the legacy tables refuse
//! - `relation` what a Relation message maps to, and the rows a change marks
//! - `consumer` the loop: stream, batches, fences, heartbeat, stop
//!
//! Transactions committed before the boundary the cutover recorded (the target's WAL position
//! inside its lock) are the forward consumer's writes and are skipped. The position applied
//! up to lives on the legacy side (`switchyard.reverse_progress`), committed with the rows;
//! the slot is confirmed only after that commit.

mod apply;
mod batch;
mod consumer;
mod dead_letters;
mod error;
mod keys;
mod legacy;
mod output;
mod relation;

pub use consumer::{fence_name, run, ReverseEnd};
pub use output::referenced_tables;

/// Set to `on` by the reverse stream's own session, which alone may write the legacy tables
/// after a cutover with two servers: their read-only trigger
/// (`switchyard.refuse_writes()`, see `crate::cutover::read_only`) lets it through. A guard
/// against the application writing the wrong side, not a security boundary: the tables'
/// owner can drop the trigger anyway.
pub const BYPASS_SETTING: &str = "switchyard.reverse_apply";
pub use error::ReverseError;
