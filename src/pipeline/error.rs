//! Errors of the backfill's workers and of the WAL consumer, by what the caller must do: a
//! source or target error (retry or resume), a bad row under `--on-error stop`, or a stop the
//! consumer must not apply past (DDL, TRUNCATE, a broken stream).

use crate::checkpoint::CheckpointError;
use crate::pg::connect::ConnectError;
use crate::sink::copy_in::WriteError;

/// A closed session, or a server saying it is going away or not ready yet.
pub fn lost(e: &tokio_postgres::Error) -> bool {
    e.is_closed()
        || e.code().is_some_and(|c| {
            let c = c.code();
            c.starts_with("08") || c.starts_with("57P")
        })
}

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
    #[error(transparent)]
    ReplicationRole(#[from] crate::sink::replication_role::ReplicationRoleError),
    #[error("{table}: row {key} rejected ({reason}); stopping because of --on-error stop. A backfill reads the row again on `--resume`, so fixing it there is enough; the consumer meets this version again on every start, whatever the source holds now, so it goes on only with `--on-error dead-letter` (which records it) or a fixed plan (then `switchyard abort` and backfill again)")]
    BadRow {
        table: String,
        key: String,
        reason: String,
    },
    #[error("a transform worker panicked")]
    WorkerPanicked,
    /// The WAL consumer met something it must not apply past (DDL, TRUNCATE, a lost slot).
    #[error("{0}")]
    Stopped(String),
    #[error("replication stream: {0}")]
    Stream(#[from] crate::source::wal_stream::WalStreamError),
    /// The server ended the stream (CopyDone): it is shutting down or the walsender was told
    /// to stop.
    #[error("the server ended the replication stream")]
    StreamEnded,
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
    /// The connection to the source or the target was lost (network, server restart, the
    /// session terminated): starting over from the recorded position may succeed without
    /// anyone changing anything. Everything else needs a person.
    pub fn is_connection_loss(&self) -> bool {
        match self {
            PipelineError::Source { source, .. } | PipelineError::Target { source, .. } => {
                lost(source)
            }
            PipelineError::Write(w) => lost(&w.source),
            PipelineError::Checkpoint(c) => lost(c.postgres()),
            PipelineError::Connect(c) => c.is_transient(),
            PipelineError::ReplicationRole(r) => lost(r.postgres()),
            PipelineError::StreamEnded => true,
            PipelineError::Stream(crate::source::wal_stream::WalStreamError::Replication(r)) => {
                r.is_transient()
            }
            _ => false,
        }
    }

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
