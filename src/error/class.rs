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

use crate::checkpoint::CheckpointError;
use crate::pg::connect::ConnectError;
use crate::pipeline::error::PipelineError;
use crate::sink::copy_in::WriteError;
use crate::sink::replication_role::ReplicationRoleError;
use crate::source::replication::ReplicationError;
use crate::source::wal_stream::WalStreamError;

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

/// The class of an error anywhere in an `anyhow` chain: `Transient` when any link is (a
/// definite-looking wrapper around a lost connection is still a lost connection), else the
/// class of the outermost link that has one, else `Definite`.
pub fn class_of(e: &anyhow::Error) -> ErrorClass {
    let classes: Vec<ErrorClass> = e.chain().filter_map(class_of_link).collect();
    if classes.contains(&ErrorClass::Transient) {
        ErrorClass::Transient
    } else {
        classes.first().copied().unwrap_or(ErrorClass::Definite)
    }
}

/// The class of one link, when its type has one.
fn class_of_link(link: &(dyn std::error::Error + 'static)) -> Option<ErrorClass> {
    fn as_class<E: Classify + std::error::Error + 'static>(
        link: &(dyn std::error::Error + 'static),
    ) -> Option<ErrorClass> {
        link.downcast_ref::<E>().map(Classify::class)
    }
    as_class::<PipelineError>(link)
        .or_else(|| as_class::<ConnectError>(link))
        .or_else(|| as_class::<CheckpointError>(link))
        .or_else(|| as_class::<ReplicationError>(link))
        .or_else(|| as_class::<WalStreamError>(link))
        .or_else(|| as_class::<WriteError>(link))
        .or_else(|| as_class::<ReplicationRoleError>(link))
        .or_else(|| as_class::<tokio_postgres::Error>(link))
}

fn transient_if(transient: bool) -> ErrorClass {
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

impl Classify for ConnectError {
    fn class(&self) -> ErrorClass {
        transient_if(self.is_transient())
    }
}

impl Classify for ReplicationError {
    fn class(&self) -> ErrorClass {
        transient_if(self.is_transient())
    }
}

impl Classify for WalStreamError {
    fn class(&self) -> ErrorClass {
        match self {
            WalStreamError::Replication(r) => r.class(),
            // The stream sent bytes that are not pgoutput: they would be sent again.
            WalStreamError::Decode { .. } => ErrorClass::Definite,
        }
    }
}

impl Classify for CheckpointError {
    fn class(&self) -> ErrorClass {
        self.postgres().class()
    }
}

impl Classify for WriteError {
    fn class(&self) -> ErrorClass {
        self.source.class()
    }
}

impl Classify for ReplicationRoleError {
    fn class(&self) -> ErrorClass {
        self.postgres().class()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::error::StopReason;

    #[test]
    fn a_stop_is_definite_and_a_bad_row_is_input() {
        let stop: PipelineError = StopReason::Truncate {
            table: "public.t".into(),
        }
        .into();
        assert_eq!(stop.class(), ErrorClass::Definite);
        let bad_row = PipelineError::BadRow {
            table: "public.t".into(),
            key: "1".into(),
            reason: "no".into(),
        };
        assert_eq!(bad_row.class(), ErrorClass::Input);
    }

    #[test]
    fn a_lost_connection_anywhere_in_the_chain_is_transient() {
        let e = anyhow::Error::new(PipelineError::StreamEnded).context("following");
        assert_eq!(class_of(&e), ErrorClass::Transient);
        let closed = ReplicationError::Closed { dsn: "x".into() };
        let e = anyhow::Error::new(WalStreamError::Replication(closed)).context("following");
        assert_eq!(class_of(&e), ErrorClass::Transient);
    }

    #[test]
    fn the_outermost_class_answers_when_nothing_is_transient() {
        let bad_row = PipelineError::BadRow {
            table: "public.t".into(),
            key: "1".into(),
            reason: "no".into(),
        };
        assert_eq!(
            class_of(&anyhow::Error::new(bad_row).context("following")),
            ErrorClass::Input
        );
        assert_eq!(class_of(&anyhow::anyhow!("no plan")), ErrorClass::Definite);
    }
}
