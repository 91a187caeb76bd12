//! A cutover that leaves the application working (issue 18), one module per kind.

/// The swap's own locks: ACCESS EXCLUSIVE looked for, taken bounded, run in a dry run too;
/// --lock-timeout below deadlock_timeout; physical standbys warned about.
mod locks;

/// The read-only guard of a two-server cutover refuses every write, replica-role sessions
/// and partitions included; rollback lifts it.
mod guard;

/// The swap proves it swapped: a cutover SQL that matched nothing, or did something else than
/// the plan promises, is rolled back with the object named.
mod proof;

/// Rollback says what is in place (whatever the recorded status) and undoes it, and refuses
/// to leave writes made to the new tables behind without --yes.
mod rollback;

/// The seed migration in one database, and copies of its plan with other cutover settings.
mod harness;

/// Objects bound to the legacy tables (foreign keys, views, functions, triggers,
/// publications): refused and named, dealt with by the cutover SQL and proven, or carried.
mod dependents;

/// The application's non-owner role: grants carried or proved, row-level security kept, or
/// the cutover refused or rolled back naming what is missing.
mod access;
