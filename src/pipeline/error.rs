//! Errors of the backfill's workers and of the WAL consumer, by what the caller must do: a
//! source or target error (retry or resume), a bad row under `--on-error stop`, or a stop the
//! consumer must not apply past (DDL, TRUNCATE, a broken stream).

use crate::checkpoint::CheckpointError;
use crate::pg::connect::ConnectError;
use crate::sink::copy_in::WriteError;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("source: {context}: {source}")]
    Source {
        context: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("target: {context}: {source}")]
    Target {
        context: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("{table}: row {key} rejected ({reason}); stopping because of --on-error stop")]
    BadRow {
        table: String,
        key: String,
        reason: String,
    },
    #[error("a transform worker panicked")]
    WorkerPanicked,
    /// The WAL consumer met something it must not apply past (DDL, TRUNCATE, a broken stream).
    #[error("{0}")]
    Stopped(String),
}

impl PipelineError {
    pub fn source(context: impl Into<String>, source: tokio_postgres::Error) -> Self {
        PipelineError::Source {
            context: context.into(),
            source,
        }
    }

    pub fn target(context: impl Into<String>, source: tokio_postgres::Error) -> Self {
        PipelineError::Target {
            context: context.into(),
            source,
        }
    }
}

impl PipelineError {
    /// A deadlock or serialization failure: the transaction was rolled back and may simply be
    /// run again.
    pub fn is_retryable(&self) -> bool {
        let code = match self {
            PipelineError::Source { source, .. } | PipelineError::Target { source, .. } => {
                source.code()
            }
            PipelineError::Write(w) => w.source.code(),
            _ => None,
        };
        code.is_some_and(|c| {
            *c == tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED
                || *c == tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE
        })
    }
}
