//! A cutover that leaves the application working (issue 18): one module per kind of fault, on
//! the seed plan in its same-database layout.

/// The seed migration in one database, and copies of its plan with other cutover settings.
mod harness;

/// Objects bound to the legacy tables (foreign keys, views, functions, triggers,
/// publications): refused and named, dealt with by the cutover SQL and proven, or carried.
mod dependents;
