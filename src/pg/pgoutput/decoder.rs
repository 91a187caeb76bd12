//! The stateful decoder for one replication stream: it remembers whether a streamed chunk is
//! open, which decides whether change messages carry a leading xid.
//!
//! With `streaming 'true'` (protocol 2) a transaction bigger than `logical_decoding_work_mem`
//! is sent while it is still running, in chunks, and only its end says commit or abort:
//!
//! ```text
//!   S(xid, first)  Y R I I I ... M  E      changes carry the (sub)transaction's xid
//!   B  R I  C                              other transactions, no xid, between chunks
//!   S(xid)  I I I ...               E
//!   A(xid, subxid)                         a rolled-back subtransaction: drop its changes
//!   c(xid, commit_lsn, end_lsn)            or A(xid, xid): drop them all
//! ```
//!
//! Stream Start and Stream Stop never nest, and Begin, Commit, Stream Commit and Stream Abort
//! only come between chunks (observed on PostgreSQL 15, and how pgoutput's callbacks are
//! ordered), so the decoder rejects them inside a chunk: seeing one means a Stream Stop was
//! lost and every xid read since is suspect.
//!
//! <https://www.postgresql.org/docs/15/protocol-logicalrep-message-formats.html>

use bytes::Bytes;

use super::error::DecodeError;
use super::message::{
    LogicalReplicationMessage, BEGIN_TAG, COMMIT_TAG, STREAM_ABORT_TAG, STREAM_COMMIT_TAG,
};

/// Decodes the pgoutput messages of one replication stream, in order. Start a new one for each
/// START_REPLICATION: a stream never begins inside a chunk.
#[derive(Clone, Debug, Default)]
pub struct Decoder {
    /// The xid of the open streamed chunk, between Stream Start and Stream Stop.
    open_stream: Option<u32>,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Inside a streamed chunk: the xid of its transaction.
    pub fn open_stream(&self) -> Option<u32> {
        self.open_stream
    }

    /// Decodes the next message of the stream and tracks Stream Start / Stream Stop. On error
    /// the state is unchanged.
    pub fn decode(&mut self, data: Bytes) -> Result<LogicalReplicationMessage, DecodeError> {
        if let (Some(open_xid), Some(&tag)) = (self.open_stream, data.first()) {
            let outside_only = match tag {
                BEGIN_TAG => Some("Begin"),
                COMMIT_TAG => Some("Commit"),
                STREAM_COMMIT_TAG => Some("Stream Commit"),
                STREAM_ABORT_TAG => Some("Stream Abort"),
                _ => None,
            };
            if let Some(message) = outside_only {
                return Err(DecodeError::NotAllowedInStream { message, open_xid });
            }
        }
        let message = LogicalReplicationMessage::decode(data, self.open_stream.is_some())?;
        match (&message, self.open_stream) {
            (LogicalReplicationMessage::StreamStart(start), Some(open_xid)) => {
                return Err(DecodeError::NestedStreamStart {
                    open_xid,
                    xid: start.xid,
                })
            }
            (LogicalReplicationMessage::StreamStart(start), None) => {
                self.open_stream = Some(start.xid)
            }
            (LogicalReplicationMessage::StreamStop, None) => {
                return Err(DecodeError::StreamStopOutsideStream)
            }
            (LogicalReplicationMessage::StreamStop, Some(_)) => self.open_stream = None,
            _ => {}
        }
        Ok(message)
    }
}
