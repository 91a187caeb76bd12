//! A cutover that leaves the application working (issue 18), one module per kind.

/// The application's non-owner role: grants carried or proved, row-level security kept, or
/// the cutover refused or rolled back naming what is missing.
mod access;
