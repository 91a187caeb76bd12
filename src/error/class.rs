//! Errors sorted by what the caller must do, as Materialize's PostgreSQL source sorts them
//! into transient and definite ones: a lost connection is retried from the recorded position
//! without anyone changing anything, while DDL, a TRUNCATE or an invalidated slot would fail
//! again on every start until a person acts. A bad row is a third kind: it belongs to its row
//! alone, and `--on-error` says whether it is dead-lettered or stops the run.
//!
//! ```text
//!   anyhow chain:  context ──> PipelineError ──> tokio_postgres::Error ──> io::Error
//!                      any link Transient? ──yes──> Transient (reconnect, resume)
//!                      └─no──> the outermost link that has a class, else Definite
//! ```
//! This module sits below every layer and imports none: each error type implements
//! [`Classify`] where it is defined, and the walk over a chain
//! ([`crate::pipeline::error::class_of`]) lives where all of those types are known.

/// What the caller of a failed operation must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The connection was lost, or the server is going away or not ready yet: start over from
    /// the recorded position (the applied LSN, the chunks done); nothing needs to change.
    Transient,
    /// Retrying cannot help (DDL, TRUNCATE, a lost slot, a refused permission, a bug): stop,
    /// record why and report the error, whose message names the fix.
    Definite,
    /// One row cannot be transformed or written: dead-letter it under `--on-error
    /// dead-letter`, stop under `--on-error stop`. Fixing the row or the plan fixes it.
    Input,
}

/// An error that knows what its caller must do.
pub trait Classify {
    fn class(&self) -> ErrorClass;
}

/// `Transient` when `transient`, else `Definite`: for errors that know whether they were lost.
pub fn transient_if(transient: bool) -> ErrorClass {
    if transient {
        ErrorClass::Transient
    } else {
        ErrorClass::Definite
    }
}

/// A closed session, or a server saying it is going away or not ready yet (SQLSTATE classes
/// 08, connection exception, and 57P, operator intervention).
impl Classify for tokio_postgres::Error {
    fn class(&self) -> ErrorClass {
        transient_if(
            self.is_closed()
                || self.code().is_some_and(|c| {
                    let c = c.code();
                    c.starts_with("08") || c.starts_with("57P")
                }),
        )
    }
}
