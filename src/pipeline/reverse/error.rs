//! Errors of the reverse consumer, by what the caller must do (see
//! [`crate::error::ErrorClass`]): a lost connection is retried from the applied LSN recorded on
//! the legacy side; a change it cannot map stops it before anything past it is confirmed.

use crate::checkpoint::CheckpointError;
use crate::error::{Classify, ErrorClass};
use crate::pg::connect::ConnectError;
use crate::source::wal_stream::WalStreamError;

#[derive(Debug, thiserror::Error)]
pub enum ReverseError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("reverse replication stream (the new tables' slot)")]
    Stream(#[from] WalStreamError),
    /// Reading the new tables: a rule's SELECT, the catalog, the allocated keys.
    #[error("new tables: {context}")]
    Target {
        context: String,
        #[source]
        source: tokio_postgres::Error,
    },
    /// Writing the legacy tables (or allocating from their sequences).
    #[error("legacy tables: {context}")]
    Legacy {
        context: String,
        #[source]
        source: tokio_postgres::Error,
    },
    /// A change the reverse rules cannot map: nothing past it is confirmed. The text says what
    /// happened and what to do.
    #[error("{0}")]
    Unmappable(String),
    #[error("migration {0} has no reverse stream: `switchyard cutover --keep-reverse` starts one")]
    NoStream(String),
}

impl ReverseError {
    pub(super) fn target(context: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> Self {
        let context = context.into();
        move |source| ReverseError::Target { context, source }
    }

    pub(super) fn legacy(context: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> Self {
        let context = context.into();
        move |source| ReverseError::Legacy { context, source }
    }
}

impl Classify for ReverseError {
    fn class(&self) -> ErrorClass {
        match self {
            ReverseError::Connect(e) => e.class(),
            ReverseError::Checkpoint(e) => e.class(),
            ReverseError::Stream(e) => e.class(),
            ReverseError::Target { source, .. } | ReverseError::Legacy { source, .. } => {
                source.class()
            }
            ReverseError::Unmappable(_) | ReverseError::NoStream(_) => ErrorClass::Definite,
        }
    }
}
