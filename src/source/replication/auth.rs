//! The startup exchange: StartupMessage, authentication, then the server's parameters until
//! ReadyForQuery.
//!
//! Supports what PostgreSQL 15 servers ask for in practice: trust, cleartext password, MD5, and
//! SCRAM-SHA-256, with SCRAM-SHA-256-PLUS channel binding when the session runs over TLS and the
//! server offers it. Kerberos, GSSAPI and SSPI are refused with a clear message.

use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{
    ChannelBinding, ScramSha256, SCRAM_SHA_256, SCRAM_SHA_256_PLUS,
};
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;
use tokio::io::{AsyncRead, AsyncWrite};

use super::channel_binding::tls_server_end_point;
use super::error::ReplicationError;
use super::transport::Transport;

/// Who logs in, and with what.
pub(super) struct Credentials<'a> {
    pub user: &'a str,
    pub password: Option<&'a [u8]>,
    /// The server's certificate (DER) when the stream is TLS, for channel binding.
    pub tls_server_certificate: Option<&'a [u8]>,
}

/// Sends the StartupMessage with `params`, authenticates, and reads until ReadyForQuery.
pub(super) async fn startup<S>(
    transport: &mut Transport<S>,
    params: &[(&str, &str)],
    credentials: &Credentials<'_>,
) -> Result<(), ReplicationError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    frontend::startup_message(params.iter().copied(), &mut transport.write_buf)
        .map_err(|e| transport.protocol_error(e.to_string()))?;
    transport.flush().await?;
    authenticate(transport, credentials).await?;
    loop {
        match transport.read_message().await? {
            Message::ReadyForQuery(_) => return Ok(()),
            Message::ParameterStatus(_) | Message::BackendKeyData(_) => {}
            Message::ErrorResponse(body) => return Err(transport.server_error(&body)),
            _ => return Err(transport.protocol_error("unexpected message during startup".into())),
        }
    }
}

async fn authenticate<S>(
    transport: &mut Transport<S>,
    credentials: &Credentials<'_>,
) -> Result<(), ReplicationError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let dsn = transport.dsn.clone();
    let auth_error = |message: &str| ReplicationError::Auth {
        dsn: dsn.clone(),
        message: message.to_string(),
    };
    let protocol_error = |message: String| ReplicationError::Protocol {
        dsn: dsn.clone(),
        message,
    };
    let password = || {
        credentials.password.ok_or_else(|| {
            auth_error("the server asks for a password but the connection string has none")
        })
    };
    let mut scram: Option<ScramSha256> = None;
    loop {
        let encoded =
            match transport.read_message().await? {
                Message::AuthenticationOk => return Ok(()),
                Message::ErrorResponse(body) => return Err(transport.server_error(&body)),
                Message::AuthenticationCleartextPassword => {
                    frontend::password_message(password()?, &mut transport.write_buf)
                }
                Message::AuthenticationMd5Password(body) => {
                    let hash = md5_hash(credentials.user.as_bytes(), password()?, body.salt());
                    frontend::password_message(hash.as_bytes(), &mut transport.write_buf)
                }
                Message::AuthenticationSasl(body) => {
                    let mechanisms: Vec<String> = body
                        .mechanisms()
                        .map(|m| Ok(m.to_string()))
                        .collect()
                        .map_err(|e| protocol_error(e.to_string()))?;
                    let offers = |name: &str| mechanisms.iter().any(|m| m == name);
                    let binding = credentials
                        .tls_server_certificate
                        .and_then(tls_server_end_point);
                    // Claiming binding support without using it while the server offers PLUS
                    // ("y") is what the server rejects as a downgrade, so: PLUS when both sides
                    // can, "y" when only we can, "n" when we cannot.
                    let (mechanism, channel_binding) = match binding {
                        Some(data) if offers(SCRAM_SHA_256_PLUS) => (
                            SCRAM_SHA_256_PLUS,
                            ChannelBinding::tls_server_end_point(data),
                        ),
                        Some(_) => (SCRAM_SHA_256, ChannelBinding::unrequested()),
                        None => (SCRAM_SHA_256, ChannelBinding::unsupported()),
                    };
                    if !offers(mechanism) {
                        return Err(auth_error(&format!(
                            "the server offers only SASL mechanisms {mechanisms:?}"
                        )));
                    }
                    tracing::debug!(mechanism, "SASL authentication");
                    let state = scram.insert(ScramSha256::new(password()?, channel_binding));
                    frontend::sasl_initial_response(
                        mechanism,
                        state.message(),
                        &mut transport.write_buf,
                    )
                }
                Message::AuthenticationSaslContinue(body) => {
                    let state = scram
                        .as_mut()
                        .ok_or_else(|| protocol_error("SASL continue before start".into()))?;
                    state
                        .update(body.data())
                        .map_err(|e| auth_error(&format!("SCRAM exchange failed: {e}")))?;
                    frontend::sasl_response(state.message(), &mut transport.write_buf)
                }
                Message::AuthenticationSaslFinal(body) => {
                    let state = scram
                        .as_mut()
                        .ok_or_else(|| protocol_error("SASL final before start".into()))?;
                    state.finish(body.data()).map_err(|e| {
                        auth_error(&format!("the server's SCRAM proof is wrong: {e}"))
                    })?;
                    continue;
                }
                Message::AuthenticationKerberosV5
                | Message::AuthenticationScmCredential
                | Message::AuthenticationGss
                | Message::AuthenticationSspi
                | Message::AuthenticationGssContinue(_) => return Err(auth_error(
                    "the server asks for Kerberos/GSSAPI/SSPI authentication, which switchyard \
                     does not support; use scram-sha-256 in pg_hba.conf",
                )),
                _ => {
                    return Err(protocol_error(
                        "unexpected message during authentication".into(),
                    ))
                }
            };
        encoded.map_err(|e| protocol_error(e.to_string()))?;
        transport.flush().await?;
    }
}
