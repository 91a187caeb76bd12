//! The cutover's row counts catch a target changed behind the consumer's back (issue 14).
//!
//! Each test edits a counted output table (`public.projects`, `public.tasks`,
//! `public.sub_tasks`) from a plain session, the way a DBA with psql would, and expects the
//! cutover to refuse, naming that table, and to change nothing: the legacy tables stay the
//! writable real tables, the migration stays `following`, the consumer keeps running. Once the
//! row is repaired, a second cutover commits.
//!
//! The assertions hold whether the counts are taken under the lock (scans) or before it and
//! carried forward (a snapshot for the source, statement triggers with transition tables for
//! the target): the refusal may come before or under the lock, and only has to say that the
//! counts differ and name the table.

/// What the tests share: the cutover run and watched, the row edits, what "nothing changed"
/// means.
mod harness;

/// A counted table changed before the cutover starts: a row deleted, a row inserted, a row
/// deleted under the write mix, and the same-database layout.
mod before;

/// A counted table changed while the cutover waits for its lock, after its steps before the
/// lock: a DELETE, a TRUNCATE, a DELETE from a session with `session_replication_role =
/// replica`.
mod during;

/// Source changes the counts carry forward by key while the cutover waits for its lock (a key
/// change, a delete and re-insert of one key, an insert deleted in its own transaction, a row
/// moved between outputs), and a source table whose replica identity is FULL.
mod source_changes;
