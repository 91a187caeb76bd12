//! Ordinary (non-replication) sessions: tokio-postgres over TCP, Unix sockets or TLS, with the
//! session settings every switchyard session relies on.
//!
//! Copy workers, the applier, verification and cutover all read and write values as text, so
//! the text must mean the same thing on every session whatever the server's or the role's
//! defaults are: dates in ISO form, timestamps in UTC, floats with all their digits, bytea in
//! hex. Long copies must not be cut off by a `statement_timeout` or an
//! `idle_in_transaction_session_timeout` configured for the application. The settings travel
//! as `-c` switches in the startup packet's `options`, which costs no round trip; the
//! replication connection sends the same switches ([`startup_options`]).
//!
//! TLS follows libpq's `sslmode` (see [`crate::pg::tls`]): `require` encrypts without
//! verifying, `verify-ca` checks the chain against `sslrootcert`, `verify-full` also checks the
//! host name, `prefer` uses TLS when the server offers it. As in libpq, Unix sockets never use
//! TLS. Unlike libpq, `prefer` does not retry in plain text after a failed TLS handshake (only
//! after the server declines TLS).

use std::fmt::Write as _;

use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_postgres::config::{Host, SslMode as PgSslMode};
use tokio_postgres::{AsyncMessage, Connection, Notification};

use crate::pg::conninfo::{ConnInfo, SslMode};
pub use crate::pg::tls::{tls_setup, TlsSetup, TlsSetupError};

/// Settings sent with every session, as `(name, value)`; each line says why.
pub const SESSION_SETTINGS: &[(&str, &str)] = &[
    // Timestamps are compared and copied as text: one zone for all sessions.
    ("TimeZone", "UTC"),
    // Dates parse back unambiguously; the server's default may be DMY or SQL style.
    ("DateStyle", "ISO, MDY"),
    // Intervals in the form the interval input function reads back.
    ("IntervalStyle", "postgres"),
    // Floats round-trip exactly through text (the PG12+ default, set in case a role lowered it).
    ("extra_float_digits", "3"),
    // bytea as `\x...`; the older escape format is ambiguous to re-encode.
    ("bytea_output", "hex"),
    // A backfill statement runs for hours; a role's timeout must not abort it.
    ("statement_timeout", "0"),
    // Cutover takes locks deliberately and bounds the wait itself.
    ("lock_timeout", "0"),
    // Copy workers hold a snapshot transaction open while they wait for chunks.
    ("idle_in_transaction_session_timeout", "0"),
];

/// A session could not be opened. Carries the redacted connection string, never the password.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    #[error("cannot connect to {dsn}")]
    Postgres {
        dsn: String,
        #[source]
        source: tokio_postgres::Error,
    },
}

impl ConnectError {
    /// Worth retrying: the server was unreachable, restarting, or out of connection slots.
    pub fn is_transient(&self) -> bool {
        match self {
            ConnectError::Tls(_) => false,
            ConnectError::Postgres { source, .. } => match source.as_db_error() {
                Some(db) => {
                    let code = db.code().code();
                    code.starts_with("08") || code.starts_with("57P") || code == "53300"
                }
                None => source.is_closed() || caused_by_io(source),
            },
        }
    }
}

/// An I/O failure (refused, reset, timed out), but not a TLS handshake that failed: rustls
/// reports a certificate it does not trust as an I/O error too, and retrying cannot fix that.
fn caused_by_io(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = error.source();
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return !io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>());
        }
        cause = e.source();
    }
    false
}

/// Opens a session and spawns its connection task on the current tokio runtime.
pub async fn connect(
    info: &ConnInfo,
    application_name: &str,
) -> Result<tokio_postgres::Client, ConnectError> {
    open(info, application_name, None).await
}

/// Like [`connect`], and hands the session's `NOTIFY` payloads to the returned receiver (for
/// `LISTEN`); the other sessions drop them.
pub async fn connect_listening(
    info: &ConnInfo,
    application_name: &str,
) -> Result<(tokio_postgres::Client, Notifications), ConnectError> {
    let (sender, receiver) = mpsc::unbounded_channel();
    let client = open(info, application_name, Some(sender)).await?;
    Ok((client, receiver))
}

/// Notifications received by a [`connect_listening`] session.
pub type Notifications = mpsc::UnboundedReceiver<Notification>;

async fn open(
    info: &ConnInfo,
    application_name: &str,
    notifications: Option<mpsc::UnboundedSender<Notification>>,
) -> Result<tokio_postgres::Client, ConnectError> {
    let mut config = info.config().clone();
    config.application_name(application_name);
    config.options(startup_options(config.get_options()));
    let all_unix = config
        .get_hosts()
        .iter()
        .all(|h| matches!(h, Host::Unix(_)));
    let tls = match info.ssl_mode() {
        _ if all_unix && !config.get_hosts().is_empty() => None,
        SslMode::Disable => None,
        _ => tls_setup(info)?,
    };
    let pg_error = |source| ConnectError::Postgres {
        dsn: info.redacted(),
        source,
    };
    let client = match tls {
        None => {
            config.ssl_mode(PgSslMode::Disable);
            let (client, connection) = config
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(pg_error)?;
            tokio::spawn(drive(connection, notifications));
            client
        }
        Some(tls) => {
            let mode = match info.ssl_mode() {
                SslMode::Prefer => PgSslMode::Prefer,
                _ => PgSslMode::Require,
            };
            config.ssl_mode(mode);
            let (client, connection) = config.connect(tls.connector).await.map_err(pg_error)?;
            tokio::spawn(drive(connection, notifications));
            client
        }
    };
    Ok(client)
}

/// Runs a session's connection until it ends, forwarding notifications when asked to.
async fn drive<S, T>(
    mut connection: Connection<S, T>,
    notifications: Option<mpsc::UnboundedSender<Notification>>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
    T: AsyncRead + AsyncWrite + Unpin,
{
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    while let Some(message) = messages.next().await {
        match message {
            Ok(AsyncMessage::Notification(n)) => {
                if let Some(sender) = &notifications {
                    let _ = sender.send(n);
                }
            }
            Ok(AsyncMessage::Notice(n)) => {
                tracing::debug!(
                    severity = n.severity(),
                    message = n.message(),
                    "server notice"
                );
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "postgres connection ended with an error");
                return;
            }
        }
    }
}

/// The startup `options` value: the user's own switches first, then [`SESSION_SETTINGS`] as
/// `-c name=value`, so ours win where both set the same name.
pub fn startup_options(user_options: Option<&str>) -> String {
    let mut options = user_options.unwrap_or_default().trim().to_string();
    for (name, value) in SESSION_SETTINGS {
        if !options.is_empty() {
            options.push(' ');
        }
        let _ = write!(options, "-c {name}=");
        // The server splits `options` on whitespace; a backslash keeps the next byte literal.
        for c in value.chars() {
            if c.is_whitespace() || c == '\\' {
                options.push('\\');
            }
            options.push(c);
        }
    }
    options
}

impl crate::error::Classify for ConnectError {
    fn class(&self) -> crate::error::ErrorClass {
        crate::error::class::transient_if(self.is_transient())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_options_escape_spaces_and_keep_user_switches_first() {
        let options = startup_options(Some("-c search_path=app"));
        assert!(options.starts_with("-c search_path=app -c TimeZone=UTC -c DateStyle=ISO,\\ MDY"));
        assert!(options.ends_with("-c idle_in_transaction_session_timeout=0"));
        assert!(startup_options(None).starts_with("-c TimeZone=UTC"));
    }
}
