//! Why a throwaway cluster could not be used.

use std::io;
use std::process::ExitStatus;

use thiserror::Error;

/// Why a throwaway cluster could not be used.
#[derive(Debug, Error)]
pub enum ClusterError {
    #[error("PostgreSQL binaries not found (looked in: {searched}); set PG_BIN to the directory holding initdb and postgres")]
    BinariesNotFound { searched: String },
    #[error("running as root, but there is no `postgres` user to run the server as (PostgreSQL refuses root)")]
    NoPostgresUser,
    #[error("could not {action}")]
    Io {
        action: String,
        #[source]
        source: io::Error,
    },
    #[error("initdb failed ({status}):\n{output}")]
    Initdb { status: ExitStatus, output: String },
    #[error("pg_basebackup failed ({status}):\n{output}")]
    BaseBackup { status: ExitStatus, output: String },
    #[error("the server did not start: {reason}\n--- server log (tail) ---\n{log_tail}")]
    Start { reason: String, log_tail: String },
    #[error("could not connect to {url}")]
    Connect {
        url: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("`{statement}` failed")]
    Sql {
        statement: String,
        #[source]
        source: tokio_postgres::Error,
    },
}

pub(super) fn io_error(action: impl Into<String>) -> impl FnOnce(io::Error) -> ClusterError {
    let action = action.into();
    move |source| ClusterError::Io { action, source }
}
