//! The WAL consumer's view of the replication stream: decoded pgoutput messages, with the
//! standby status protocol handled underneath.
//!
//! Feedback rules (see research notes): report `flush` = the end LSN of the last source commit
//! the target has durably applied, never more; answer a keepalive at once only when the server
//! asks; otherwise report on a timer. When nothing is in flight, advance `flush` to a
//! keepalive's `wal_end`, or the server keeps pinging (a keepalive storm) and the slot keeps
//! WAL it no longer needs.

use std::time::{Duration, Instant};

use crate::pg::conninfo::ConnInfo;
use crate::pg::lsn::Lsn;
use crate::pg::pgoutput::{Decoder, LogicalReplicationMessage};
use crate::pg::replication_message::ReplicationMessage;
use crate::source::replication::{ReplicationConnection, ReplicationError, ReplicationStream};

/// How often the position is reported without being asked; well under the server's
/// `wal_sender_timeout` (60 s by default).
pub const STATUS_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum WalStreamError {
    #[error(transparent)]
    Replication(#[from] ReplicationError),
    #[error("decoding pgoutput at {lsn}")]
    Decode {
        lsn: Lsn,
        #[source]
        source: crate::pg::pgoutput::DecodeError,
    },
}

/// What the consumer gets from the stream.
#[derive(Debug)]
pub enum WalEvent {
    Message {
        message: LogicalReplicationMessage,
        wal_start: Lsn,
        /// The message's size as received, which its decoded values share (no copy).
        bytes: usize,
    },
    /// A keepalive between transactions: the server has sent every change up to `wal_end`
    /// (its WAL end when it sent the keepalive). Nothing more is open, so once the consumer
    /// has applied what it received, everything up to `wal_end` is done; whether it may be
    /// *confirmed* is the consumer's call (see `crate::pipeline::confirm`).
    CaughtUp { wal_end: Lsn },
    /// Nothing arrived for the idle interval.
    Idle,
    /// The server ended the stream.
    Ended,
}

pub struct WalStream {
    stream: ReplicationStream,
    decoder: Decoder,
    /// What the target has durably applied.
    flushed: Lsn,
    /// The end of the last Commit received, or the WAL end of a keepalive since.
    received_commit: Lsn,
    in_transaction: bool,
    last_status: Instant,
}

impl WalStream {
    /// Starts streaming the slot from `start` (the server resumes at the slot's confirmed
    /// position if that is later) with pgoutput protocol 1 and logical messages.
    pub async fn start(
        info: &ConnInfo,
        slot: &str,
        publication: &str,
        start: Lsn,
    ) -> Result<WalStream, WalStreamError> {
        let connection = ReplicationConnection::connect(info).await?;
        WalStream::start_on(connection, slot, publication, start).await
    }

    /// As [`WalStream::start`], on a connection already open: the one that created a
    /// temporary slot, which no other connection may stream.
    pub async fn start_on(
        connection: ReplicationConnection,
        slot: &str,
        publication: &str,
        start: Lsn,
    ) -> Result<WalStream, WalStreamError> {
        let publications = format!("\"{}\"", publication.replace('"', "\"\""));
        let stream = connection
            .start_logical_replication(
                slot,
                start,
                &[
                    ("proto_version", "1"),
                    ("publication_names", &publications),
                    ("messages", "true"),
                ],
            )
            .await?;
        Ok(WalStream {
            stream,
            decoder: Decoder::new(),
            flushed: start,
            received_commit: start,
            in_transaction: false,
            last_status: Instant::now(),
        })
    }

    /// The next decoded message, or `Idle` after `idle` without one.
    pub async fn next(&mut self, idle: Duration) -> Result<WalEvent, WalStreamError> {
        let deadline = Instant::now() + idle;
        loop {
            if self.last_status.elapsed() >= STATUS_INTERVAL {
                self.send_status(false).await?;
            }
            let wait = deadline
                .saturating_duration_since(Instant::now())
                .min(STATUS_INTERVAL);
            let message = match tokio::time::timeout(wait, self.stream.next_message()).await {
                Err(_) if Instant::now() >= deadline => return Ok(WalEvent::Idle),
                Err(_) => continue,
                Ok(message) => message?,
            };
            match message {
                None => return Ok(WalEvent::Ended),
                Some(ReplicationMessage::PrimaryKeepalive(k)) => {
                    if k.reply_requested {
                        self.send_status(false).await?;
                    }
                    if !self.in_transaction && k.wal_end > self.received_commit {
                        self.received_commit = k.wal_end;
                        return Ok(WalEvent::CaughtUp { wal_end: k.wal_end });
                    }
                }
                Some(ReplicationMessage::XLogData(x)) => {
                    let bytes = x.data.len();
                    let message =
                        self.decoder
                            .decode(x.data)
                            .map_err(|source| WalStreamError::Decode {
                                lsn: x.wal_start,
                                source,
                            })?;
                    match &message {
                        LogicalReplicationMessage::Begin(_) => self.in_transaction = true,
                        LogicalReplicationMessage::Commit(c) => {
                            self.in_transaction = false;
                            self.received_commit = c.end_lsn;
                        }
                        _ => {}
                    }
                    return Ok(WalEvent::Message {
                        message,
                        wal_start: x.wal_start,
                        bytes,
                    });
                }
            }
        }
    }

    /// Records that the target committed everything up to `lsn` and tells the server.
    pub async fn flushed(&mut self, lsn: Lsn) -> Result<(), WalStreamError> {
        self.flushed = self.flushed.max(lsn);
        self.send_status(false).await
    }

    async fn send_status(&mut self, reply: bool) -> Result<(), WalStreamError> {
        self.stream
            .send_status(self.flushed, self.flushed, self.flushed, reply)
            .await?;
        self.last_status = Instant::now();
        Ok(())
    }

    /// Ends the stream cleanly (CopyDone) and closes the connection.
    pub async fn close(self) -> Result<(), WalStreamError> {
        let connection = self.stream.finish().await?;
        connection.close().await?;
        Ok(())
    }
}

impl crate::error::Classify for WalStreamError {
    fn class(&self) -> crate::error::ErrorClass {
        match self {
            WalStreamError::Replication(r) => r.class(),
            // The stream sent bytes that are not pgoutput: they would be sent again.
            WalStreamError::Decode { .. } => crate::error::ErrorClass::Definite,
        }
    }
}
