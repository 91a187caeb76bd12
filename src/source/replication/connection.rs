//! Opening a replication connection: socket, optional TLS, startup with `replication=database`.
//!
//! tokio-postgres cannot send the `replication` startup key, so this connection is ours. It
//! runs over any `AsyncRead + AsyncWrite` stream; [`ReplicationConnection::connect`] picks TCP,
//! a Unix socket (`host=/dir` means `/dir/.s.PGSQL.<port>`, as in libpq) or TLS, and the rest of
//! the protocol code never knows which.

use std::path::Path;

use postgres_protocol::message::frontend;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio_postgres::config::Host;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};

use super::auth::{startup, Credentials};
use super::error::ReplicationError;
use super::transport::Transport;
use crate::pg::connect::{startup_options, tls_setup, TlsSetupError};
use crate::pg::conninfo::{ConnInfo, SslMode};

/// libpq's default port.
const DEFAULT_PORT: u16 = 5432;
/// `application_name` when the connection string sets none; shows in `pg_stat_replication`.
const DEFAULT_APPLICATION_NAME: &str = "switchyard";

/// Any byte stream a connection can run over.
pub trait PgStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + ?Sized> PgStream for T {}

/// The stream [`ReplicationConnection::connect`] opens: TCP, Unix socket or TLS over TCP.
pub type BoxedStream = Box<dyn PgStream>;

/// A walsender session in logical (database) replication mode.
pub struct ReplicationConnection<S = BoxedStream> {
    pub(super) transport: Transport<S>,
}

/// Shows the redacted connection string only.
impl<S> std::fmt::Debug for ReplicationConnection<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicationConnection")
            .field("dsn", &self.transport.dsn)
            .finish()
    }
}

impl ReplicationConnection<BoxedStream> {
    /// Connects to the first host in `info` that answers, applying `sslmode` (Unix sockets never
    /// use TLS) and `connect_timeout`.
    pub async fn connect(info: &ConnInfo) -> Result<Self, ReplicationError> {
        let config = info.config();
        let config_error = |message: &str| ReplicationError::Config {
            dsn: info.redacted(),
            message: message.to_string(),
        };
        if config.get_hosts().is_empty() {
            return Err(config_error(
                "it names no host (hostaddr alone is not supported here)",
            ));
        }
        let mut last_error = None;
        for (i, host) in config.get_hosts().iter().enumerate() {
            let ports = config.get_ports();
            let port = ports
                .get(i)
                .or(ports.first())
                .copied()
                .unwrap_or(DEFAULT_PORT);
            let attempt = async {
                let (stream, certificate) = open(info, host, port).await?;
                Self::handshake(stream, info, certificate.as_deref()).await
            };
            let result = match config.get_connect_timeout() {
                Some(timeout) => tokio::time::timeout(*timeout, attempt)
                    .await
                    .unwrap_or_else(|_| {
                        Err(ReplicationError::Io {
                            dsn: info.redacted(),
                            source: std::io::ErrorKind::TimedOut.into(),
                        })
                    }),
                None => attempt.await,
            };
            match result {
                Ok(connection) => return Ok(connection),
                // Only a failure to reach this host is a reason to try the next one.
                Err(e) if e.is_transient() => last_error = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_error.unwrap_or_else(|| config_error("no host could be tried")))
    }
}

impl<S> ReplicationConnection<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// Runs startup and authentication on an already open stream (TLS, if any, already
    /// negotiated; pass the server certificate's DER for SCRAM channel binding).
    pub async fn handshake(
        stream: S,
        info: &ConnInfo,
        tls_server_certificate: Option<&[u8]>,
    ) -> Result<Self, ReplicationError> {
        let config = info.config();
        let dsn = info.redacted();
        let user = match config.get_user() {
            Some(user) => user.to_string(),
            None => std::env::var("USER").map_err(|_| ReplicationError::Config {
                dsn: dsn.clone(),
                message: "it names no user".into(),
            })?,
        };
        let dbname = config.get_dbname().unwrap_or(&user).to_string();
        let options = startup_options(config.get_options());
        let application_name = config
            .get_application_name()
            .unwrap_or(DEFAULT_APPLICATION_NAME);
        let params = [
            ("user", user.as_str()),
            ("database", dbname.as_str()),
            // Logical replication bound to this database; it also allows SQL commands.
            ("replication", "database"),
            ("application_name", application_name),
            ("client_encoding", "UTF8"),
            ("options", options.as_str()),
        ];
        let mut transport = Transport::new(stream, dsn);
        let credentials = Credentials {
            user: &user,
            password: config.get_password(),
            tls_server_certificate,
        };
        startup(&mut transport, &params, &credentials).await?;
        Ok(ReplicationConnection { transport })
    }

    /// Ends the session politely (Terminate), so the server logs no "unexpected EOF".
    pub async fn close(mut self) -> Result<(), ReplicationError> {
        frontend::terminate(&mut self.transport.write_buf);
        self.transport.flush().await?;
        self.transport.shutdown().await;
        Ok(())
    }
}

/// Opens the socket to one host, negotiating TLS on TCP according to `sslmode`. Returns the
/// server certificate (DER) when TLS is up.
async fn open(
    info: &ConnInfo,
    host: &Host,
    port: u16,
) -> Result<(BoxedStream, Option<Vec<u8>>), ReplicationError> {
    let io_error = |source| ReplicationError::Io {
        dsn: info.redacted(),
        source,
    };
    let name = match host {
        Host::Unix(dir) => {
            let path = Path::new(dir).join(format!(".s.PGSQL.{port}"));
            let stream = UnixStream::connect(path).await.map_err(io_error)?;
            return Ok((Box::new(stream), None));
        }
        Host::Tcp(name) => name,
    };
    let mut tcp = TcpStream::connect((name.as_str(), port))
        .await
        .map_err(io_error)?;
    // Status updates are small and latency matters to the walsender's timeout.
    tcp.set_nodelay(true).map_err(io_error)?;
    let tls_error = |message: String| ReplicationError::Tls {
        dsn: info.redacted(),
        message,
    };
    let setup = match tls_setup(info) {
        Ok(Some(setup)) => setup,
        Ok(None) => return Ok((Box::new(tcp), None)),
        Err(TlsSetupError { message, .. }) => return Err(tls_error(message)),
    };
    let mut request = bytes::BytesMut::new();
    frontend::ssl_request(&mut request);
    tcp.write_all(&request).await.map_err(io_error)?;
    let answer = tcp.read_u8().await.map_err(io_error)?;
    match (answer, info.ssl_mode()) {
        (b'S', _) => {}
        (b'N', SslMode::Prefer) => return Ok((Box::new(tcp), None)),
        (b'N', mode) => {
            return Err(tls_error(format!(
                "the server does not accept TLS, which sslmode={} requires; set ssl = on in \
                 postgresql.conf or lower sslmode",
                mode.as_str()
            )))
        }
        (other, _) => {
            return Err(ReplicationError::Protocol {
                dsn: info.redacted(),
                message: format!("unexpected answer {other:#04x} to SSLRequest"),
            })
        }
    }
    let mut connector = setup.connector;
    let tls = MakeTlsConnect::<TcpStream>::make_tls_connect(&mut connector, name)
        .map_err(|e| tls_error(e.to_string()))?
        .connect(tcp)
        .await
        .map_err(|e| tls_error(e.to_string()))?;
    let certificate = setup
        .server_certificate
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    Ok((Box::new(tls), certificate))
}
