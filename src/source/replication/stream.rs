//! START_REPLICATION for a logical slot: the CopyBoth stream of WAL messages and status updates.
//!
//! The server streams `w` (one pgoutput message each) and `k` (keepalive); the client reports
//! with `r` how far it has durably applied, which is what lets the server drop WAL for the slot.
//! This is only the transport; deciding when to report what belongs to the WAL consumer (see
//! research notes: answer keepalives that ask for a reply, otherwise report on a timer).
//!
//! <https://www.postgresql.org/docs/15/protocol-replication.html#PROTOCOL-REPLICATION-START-REPLICATION-SLOT-LOGICAL>

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;
use tokio::io::{AsyncRead, AsyncWrite};

use super::connection::{BoxedStream, ReplicationConnection};
use super::error::ReplicationError;
use super::slot::quote_identifier;
use super::transport::Backend;
use crate::pg::lsn::Lsn;
use crate::pg::replication_message::{
    PgTimestamp, ReplicationMessage, StandbyStatusUpdate, STANDBY_STATUS_UPDATE_LEN,
};

/// A connection in CopyBoth mode, streaming from a logical slot.
#[derive(Debug)]
pub struct ReplicationStream<S = BoxedStream> {
    connection: ReplicationConnection<S>,
    /// The server sent CopyDone: no more messages.
    server_done: bool,
}

impl<S> ReplicationConnection<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// Starts streaming changes from `slot` committed after `start` (use the slot's
    /// `consistent_point` the first time, the last flushed commit end after a restart).
    /// `options` go to the output plugin, e.g. `[("proto_version", "1"),
    /// ("publication_names", "switchyard")]`.
    ///
    /// Consumes the connection; [`ReplicationStream::finish`] gives it back.
    pub async fn start_logical_replication(
        mut self,
        slot: &str,
        start: Lsn,
        options: &[(&str, &str)],
    ) -> Result<ReplicationStream<S>, ReplicationError> {
        let mut command = format!(
            "START_REPLICATION SLOT {} LOGICAL {start}",
            quote_identifier(slot)
        );
        if !options.is_empty() {
            let list: Vec<String> = options
                .iter()
                .map(|(name, value)| {
                    format!("{} '{}'", quote_identifier(name), value.replace('\'', "''"))
                })
                .collect();
            command = format!("{command} ({})", list.join(", "));
        }
        let transport = &mut self.transport;
        frontend::query(&command, &mut transport.write_buf)
            .map_err(|e| transport.protocol_error(e.to_string()))?;
        transport.flush().await?;
        loop {
            match transport.read().await? {
                Backend::CopyBoth => break,
                Backend::Message(Message::ErrorResponse(body)) => {
                    let error = transport.server_error(&body);
                    return transport.recover(error).await;
                }
                Backend::Message(Message::ParameterStatus(_)) => {}
                Backend::Message(_) => {
                    return Err(
                        transport.protocol_error("unexpected reply to START_REPLICATION".into())
                    )
                }
            }
        }
        Ok(ReplicationStream {
            connection: self,
            server_done: false,
        })
    }
}

impl<S> ReplicationStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// The next XLogData or keepalive; `None` once the server has ended the stream (then call
    /// [`finish`](Self::finish)). Cancel-safe, so it can sit in a `select!` beside a timer.
    pub async fn next_message(&mut self) -> Result<Option<ReplicationMessage>, ReplicationError> {
        if self.server_done {
            return Ok(None);
        }
        let transport = &mut self.connection.transport;
        loop {
            match transport.read_message().await? {
                Message::CopyData(body) => {
                    return ReplicationMessage::decode(body.into_bytes())
                        .map(Some)
                        .map_err(|e| transport.protocol_error(e.to_string()));
                }
                // A walsender told to stop (the server shutting down) that has sent
                // everything ends with CommandComplete "COPY 0", without a CopyDone.
                Message::CopyDone | Message::CommandComplete(_) => {
                    self.server_done = true;
                    return Ok(None);
                }
                Message::ErrorResponse(body) => return Err(transport.server_error(&body)),
                Message::ParameterStatus(_) | Message::NoticeResponse(_) => {}
                _ => return Err(transport.protocol_error("unexpected message in CopyBoth".into())),
            }
        }
    }

    /// Reports positions to the server: `flush` becomes the slot's `confirmed_flush_lsn`, so
    /// pass only what the target has durably committed. `reply_requested` asks for a keepalive.
    pub async fn send_status(
        &mut self,
        write: Lsn,
        flush: Lsn,
        apply: Lsn,
        reply_requested: bool,
    ) -> Result<(), ReplicationError> {
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        let mut payload = BytesMut::with_capacity(STANDBY_STATUS_UPDATE_LEN);
        StandbyStatusUpdate {
            write,
            flush,
            apply,
            client_time: PgTimestamp::from_unix_micros(micros),
            reply_requested,
        }
        .encode(&mut payload);
        let transport = &mut self.connection.transport;
        frontend::CopyData::new(payload.freeze())
            .map_err(|e| transport.protocol_error(e.to_string()))?
            .write(&mut transport.write_buf);
        transport.flush().await
    }

    /// Ends streaming (CopyDone), skips what the server had already sent, and returns the
    /// connection ready for the next command.
    pub async fn finish(mut self) -> Result<ReplicationConnection<S>, ReplicationError> {
        let transport = &mut self.connection.transport;
        frontend::copy_done(&mut transport.write_buf);
        transport.flush().await?;
        let mut error = None;
        loop {
            match transport.read().await? {
                Backend::Message(Message::ReadyForQuery(_)) => break,
                Backend::Message(Message::ErrorResponse(body)) => {
                    error = Some(transport.server_error(&body));
                }
                // In-flight WAL, the server's CopyDone, CommandComplete, a result set.
                Backend::Message(_) | Backend::CopyBoth => {}
            }
        }
        error.map_or(Ok(self.connection), Err)
    }
}
