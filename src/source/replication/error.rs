//! What can go wrong on the replication connection, sorted by what the caller must do.
//!
//! A WAL consumer that loses its connection should reconnect and resume from its last flushed
//! LSN; one whose slot already exists or whose server has `wal_level = replica` must stop and
//! tell the operator what to change. [`ReplicationError::is_transient`] makes that split, and
//! [`ReplicationError::fix`] names the change for the errors operators hit most. Messages carry
//! the redacted connection string, never a password.

use std::fmt;

use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::{ErrorFields, ErrorResponseBody, NoticeResponseBody};

/// An ErrorResponse from the server, with the fields an operator needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerError {
    /// `ERROR`, `FATAL` or `PANIC` (never localized).
    pub severity: String,
    /// SQLSTATE, e.g. `28P01` for a wrong password.
    pub code: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl ServerError {
    /// Reads the fields of an ErrorResponse body.
    pub(super) fn from_fields(body: &ErrorResponseBody) -> std::io::Result<ServerError> {
        ServerError::read_fields(body.fields())
    }

    /// Reads a NoticeResponse the same way, for logging; a malformed one logs as empty.
    pub(super) fn from_fields_of_notice(body: &NoticeResponseBody) -> ServerError {
        ServerError::read_fields(body.fields()).unwrap_or_default()
    }

    fn read_fields(mut fields: ErrorFields<'_>) -> std::io::Result<ServerError> {
        let mut error = ServerError::default();
        let mut localized_severity = String::new();
        while let Some(field) = fields.next()? {
            let value = String::from_utf8_lossy(field.value_bytes()).into_owned();
            match field.type_() {
                b'S' => localized_severity = value,
                b'V' => error.severity = value,
                b'C' => error.code = value,
                b'M' => error.message = value,
                b'D' => error.detail = Some(value),
                b'H' => error.hint = Some(value),
                _ => {}
            }
        }
        if error.severity.is_empty() {
            error.severity = localized_severity;
        }
        Ok(error)
    }

    /// The server said the connection or the server itself is going away, or is busy.
    fn is_transient(&self) -> bool {
        let code = self.code.as_str();
        code.starts_with("08") // connection_exception
            || matches!(code, "57P01" | "57P02" | "57P03") // shutdown, crash, starting up
            || code == "53300" // too_many_connections
            || code == "55006" // object_in_use: the slot is still held by a dying consumer
            || code == "40001" // serialization_failure
            || code == "40P01" // deadlock_detected
    }

    /// What the operator should change, for the errors with one clear remedy.
    fn fix(&self) -> Option<&'static str> {
        let message = self.message.as_str();
        Some(match self.code.as_str() {
            _ if message.contains("wal_level") => {
                "set wal_level = logical in postgresql.conf and restart the server"
            }
            "28P01" => "check the user name and password in the connection string",
            "28000" if message.contains("pg_hba.conf") => {
                "add a pg_hba.conf line for this user, database and client address (logical \
                 replication matches the database name, not the keyword `replication`) and reload"
            }
            "42710" if message.contains("replication slot") => {
                "drop the old slot with SELECT pg_drop_replication_slot('<name>') if no migration \
                 uses it, or choose another slot name"
            }
            "42704" if message.contains("replication slot") => {
                "create the slot first, or check the slot name"
            }
            "42501" if message.contains("replication") => {
                "give the role the REPLICATION attribute: ALTER ROLE <user> REPLICATION"
            }
            "53400" if message.contains("replication slots") => {
                "raise max_replication_slots in postgresql.conf and restart, or drop unused slots"
            }
            "53300" if message.contains("max_wal_senders") => {
                "raise max_wal_senders in postgresql.conf and restart"
            }
            "3D000" => "check the database name in the connection string",
            "55006" if message.contains("replication slot") => {
                "another process is reading this slot; stop it or wait for it to disconnect"
            }
            _ => return None,
        })
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.severity, self.code, self.message)?;
        if let Some(detail) = &self.detail {
            write!(f, " (detail: {detail})")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

/// A failure on the replication connection. `dsn` is the redacted connection string.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    /// The network failed or the server could not be reached: reconnect and retry.
    #[error("replication connection to {dsn} failed")]
    Io {
        dsn: String,
        #[source]
        source: std::io::Error,
    },
    /// The server hung up without an error message (restart, kill, network drop).
    #[error("the server closed the replication connection to {dsn}")]
    Closed { dsn: String },
    /// The connection string cannot be used as given.
    #[error("cannot open a replication connection with {dsn}: {message}")]
    Config { dsn: String, message: String },
    /// TLS was required but failed (server without TLS, certificate rejected).
    #[error("TLS with {dsn} failed: {message}")]
    Tls { dsn: String, message: String },
    /// Authentication cannot proceed on the client side (no password, unsupported method).
    #[error("cannot authenticate to {dsn}: {message}")]
    Auth { dsn: String, message: String },
    /// The server answered with an ErrorResponse (boxed: it is the largest variant by far).
    #[error("{dsn}: {error}{}", fix_suffix(.error))]
    Server {
        dsn: String,
        error: Box<ServerError>,
    },
    /// The server sent something this client does not expect here.
    #[error("unexpected reply from {dsn}: {message}")]
    Protocol { dsn: String, message: String },
}

fn fix_suffix(error: &ServerError) -> String {
    error
        .fix()
        .map(|fix| format!("; to fix: {fix}"))
        .unwrap_or_default()
}

impl ReplicationError {
    /// Retrying (reconnect, resume from the last flushed LSN) may succeed without anyone
    /// changing anything. Everything else is definite: report it and stop.
    pub fn is_transient(&self) -> bool {
        match self {
            ReplicationError::Io { .. } | ReplicationError::Closed { .. } => true,
            ReplicationError::Server { error, .. } => error.is_transient(),
            ReplicationError::Config { .. }
            | ReplicationError::Tls { .. }
            | ReplicationError::Auth { .. }
            | ReplicationError::Protocol { .. } => false,
        }
    }

    /// The server's error, when it sent one.
    pub fn server_error(&self) -> Option<&ServerError> {
        match self {
            ReplicationError::Server { error, .. } => Some(error.as_ref()),
            _ => None,
        }
    }

    /// What the operator should change, when switchyard knows.
    pub fn fix(&self) -> Option<&'static str> {
        self.server_error().and_then(ServerError::fix)
    }
}

impl crate::error::Classify for ReplicationError {
    fn class(&self) -> crate::error::ErrorClass {
        crate::error::class::transient_if(self.is_transient())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: &str, message: &str) -> ReplicationError {
        ReplicationError::Server {
            dsn: "host=h user=u password=********".into(),
            error: Box::new(ServerError {
                severity: "ERROR".into(),
                code: code.into(),
                message: message.into(),
                detail: None,
                hint: None,
            }),
        }
    }

    #[test]
    fn wal_level_error_names_the_fix_and_is_definite() {
        let e = server("55000", "logical decoding requires wal_level >= logical");
        assert!(!e.is_transient());
        let text = e.to_string();
        assert!(text.contains("55000"), "{text}");
        assert!(text.contains("set wal_level = logical"), "{text}");
    }

    #[test]
    fn shutdown_and_lost_connections_are_transient() {
        assert!(server(
            "57P01",
            "terminating connection due to administrator command"
        )
        .is_transient());
        assert!(ReplicationError::Closed { dsn: "x".into() }.is_transient());
        assert!(!server("42710", "replication slot \"s\" already exists").is_transient());
        assert!(server("42710", "replication slot \"s\" already exists")
            .fix()
            .unwrap()
            .contains("pg_drop_replication_slot"));
        assert!(!server("28P01", "password authentication failed").is_transient());
    }
}
