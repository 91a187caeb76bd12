//! Frontend/backend message I/O over any byte stream: the only place that reads or writes.
//!
//! Messages are framed and parsed by postgres-protocol, except CopyBothResponse (`W`), which it
//! does not know; [`take_copy_both_response`] consumes that one before `Message::parse` sees it.

use bytes::BytesMut;
use postgres_protocol::message::backend::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::error::{ReplicationError, ServerError};
use crate::pg::replication_message::take_copy_both_response;

/// Free space ensured before each read. Large enough that a burst of small WAL messages arrives
/// in one read; BytesMut reclaims the space once parsed messages are dropped.
const READ_BUFFER_SIZE: usize = 64 * 1024;

/// A read buffer larger than this once its large message is parsed is replaced by a small one.
/// BytesMut takes back the whole allocation a large message was read into once the message is
/// dropped, so without this one 100 MB row would stay resident for the stream's lifetime
/// (README, Memory).
const RETAINED_AT_MOST: usize = 16 * 1024 * 1024;

/// One message from the server.
pub(super) enum Backend {
    /// The CopyBothResponse that starts streaming.
    CopyBoth,
    Message(Message),
}

/// A byte stream with its read and write buffers.
pub(super) struct Transport<S> {
    io: S,
    read_buf: BytesMut,
    pub(super) write_buf: BytesMut,
    /// The redacted connection string, for errors.
    pub(super) dsn: String,
}

impl<S> Transport<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    pub(super) fn new(io: S, dsn: String) -> Transport<S> {
        Transport {
            io,
            read_buf: BytesMut::with_capacity(READ_BUFFER_SIZE),
            write_buf: BytesMut::new(),
            dsn,
        }
    }

    /// The next message; notices are logged and skipped. Cancel-safe: bytes already read stay
    /// in the buffer.
    pub(super) async fn read(&mut self) -> Result<Backend, ReplicationError> {
        loop {
            match self.parse()? {
                Some(Backend::Message(Message::NoticeResponse(body))) => {
                    let notice = ServerError::from_fields_of_notice(&body);
                    tracing::info!(dsn = %self.dsn, "server notice: {notice}");
                    continue;
                }
                Some(message) => return Ok(message),
                None => {}
            }
            self.read_buf.reserve(READ_BUFFER_SIZE);
            if self.read_buf.capacity() > RETAINED_AT_MOST && self.read_buf.len() < READ_BUFFER_SIZE
            {
                let mut small = BytesMut::with_capacity(2 * READ_BUFFER_SIZE);
                small.extend_from_slice(&self.read_buf);
                self.read_buf = small;
            }
            let n = self
                .io
                .read_buf(&mut self.read_buf)
                .await
                .map_err(|e| self.io_error(e))?;
            if n == 0 {
                return Err(ReplicationError::Closed {
                    dsn: self.dsn.clone(),
                });
            }
        }
    }

    fn parse(&mut self) -> Result<Option<Backend>, ReplicationError> {
        match take_copy_both_response(&mut self.read_buf) {
            None => return Ok(None),
            Some(true) => return Ok(Some(Backend::CopyBoth)),
            Some(false) => {}
        }
        match Message::parse(&mut self.read_buf) {
            Ok(message) => Ok(message.map(Backend::Message)),
            Err(e) => Err(self.protocol_error(e.to_string())),
        }
    }

    /// The next message, which must be an ordinary one (not `W`).
    pub(super) async fn read_message(&mut self) -> Result<Message, ReplicationError> {
        match self.read().await? {
            Backend::Message(message) => Ok(message),
            Backend::CopyBoth => Err(self.protocol_error("unexpected CopyBothResponse".into())),
        }
    }

    /// Sends everything in `write_buf`.
    pub(super) async fn flush(&mut self) -> Result<(), ReplicationError> {
        let result = async {
            self.io.write_all(&self.write_buf).await?;
            self.io.flush().await
        }
        .await;
        self.write_buf.clear();
        result.map_err(|e| self.io_error(e))
    }

    /// Closes the write side (after Terminate).
    pub(super) async fn shutdown(&mut self) {
        let _ = self.io.shutdown().await;
    }

    pub(super) fn io_error(&self, source: std::io::Error) -> ReplicationError {
        ReplicationError::Io {
            dsn: self.dsn.clone(),
            source,
        }
    }

    pub(super) fn protocol_error(&self, message: String) -> ReplicationError {
        ReplicationError::Protocol {
            dsn: self.dsn.clone(),
            message,
        }
    }

    /// An ErrorResponse turned into an error (or a protocol error if its body is malformed).
    pub(super) fn server_error(
        &self,
        body: &postgres_protocol::message::backend::ErrorResponseBody,
    ) -> ReplicationError {
        match ServerError::from_fields(body) {
            Ok(error) => ReplicationError::Server {
                dsn: self.dsn.clone(),
                error: Box::new(error),
            },
            Err(e) => self.protocol_error(format!("malformed ErrorResponse: {e}")),
        }
    }

    /// Reads until ReadyForQuery after an error, so the connection can take the next command;
    /// then returns `error`.
    pub(super) async fn recover<T>(
        &mut self,
        error: ReplicationError,
    ) -> Result<T, ReplicationError> {
        loop {
            match self.read().await? {
                Backend::Message(Message::ReadyForQuery(_)) => return Err(error),
                _ => continue,
            }
        }
    }
}
