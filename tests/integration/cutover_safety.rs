//! A cutover that leaves the application working (issue 18), one module per kind.

/// The swap's own locks: ACCESS EXCLUSIVE looked for, taken bounded, run in a dry run too;
/// --lock-timeout below deadlock_timeout; physical standbys warned about.
mod locks;
