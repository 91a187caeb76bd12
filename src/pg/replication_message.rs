//! The framing inside the CopyData messages of a streaming-replication connection.
//!
//! Once `START_REPLICATION` has switched the connection into CopyBoth mode, every CopyData
//! payload starts with a one-byte tag of its own: the server sends `w` (XLogData: a piece of WAL,
//! here one pgoutput message) and `k` (primary keepalive), and the client answers with `r`
//! (standby status update), which is how the slot learns what it may forget. This module turns
//! those payloads into values and back. It does no I/O, so it is tested without a server; the
//! pgoutput message inside XLogData is left as bytes for the decoder one layer up.
//!
//! It also reads the CopyBothResponse (`W`) that opens the stream, because postgres-protocol's
//! `Message::parse` does not know that message and fails on it.
//!
//! <https://www.postgresql.org/docs/15/protocol-replication.html#PROTOCOL-REPLICATION-XLOGDATA>

use std::error::Error;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};

use crate::pg::lsn::Lsn;

/// Tag of XLogData (server to client).
pub const XLOG_DATA_TAG: u8 = b'w';
/// Tag of a primary keepalive (server to client).
pub const PRIMARY_KEEPALIVE_TAG: u8 = b'k';
/// Tag of a standby status update (client to server).
pub const STANDBY_STATUS_UPDATE_TAG: u8 = b'r';

/// XLogData header after the tag: wal_start, wal_end, send_time (three 8-byte fields).
const XLOG_DATA_HEADER_LEN: usize = 24;
/// Keepalive body after the tag: wal_end, send_time, reply_requested.
const PRIMARY_KEEPALIVE_LEN: usize = 17;
/// A status update is tag + write + flush + apply + client_time + reply_requested.
pub const STANDBY_STATUS_UPDATE_LEN: usize = 34;

/// Tag of CopyBothResponse, the server's answer to START_REPLICATION.
pub const COPY_BOTH_RESPONSE_TAG: u8 = b'W';
/// A backend message's Int32 length counts itself.
const MESSAGE_LENGTH_LEN: usize = 4;

/// Seconds from the Unix epoch to PostgreSQL's epoch, 2000-01-01 00:00:00 UTC, in which the
/// protocol counts its timestamps.
pub const PG_EPOCH_UNIX_SECS: i64 = 946_684_800;

/// Microseconds since 2000-01-01 00:00:00 UTC: the protocol's clock for send and reply times.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PgTimestamp(pub i64);

impl PgTimestamp {
    /// Converts microseconds since the Unix epoch.
    pub fn from_unix_micros(micros: i64) -> PgTimestamp {
        PgTimestamp(micros - PG_EPOCH_UNIX_SECS * 1_000_000)
    }
}

/// Travels as a `timestamptz` parameter in its binary form, which is this same count, so SQL
/// takes it as it is instead of adding microseconds to an epoch.
impl ToSql for PgTimestamp {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        postgres_protocol::types::timestamp_to_sql(self.0, out);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::TIMESTAMPTZ
    }

    to_sql_checked!();
}

/// One message from the server inside CopyBoth.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplicationMessage {
    /// A piece of WAL; for a logical slot, exactly one output-plugin message.
    XLogData(XLogData),
    /// The server's heartbeat, also its way to ask for a status update.
    PrimaryKeepalive(PrimaryKeepalive),
}

/// `w`: WAL data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XLogData {
    /// Where this message's WAL starts; `0/0` for messages not tied to a record (Relation).
    pub wal_start: Lsn,
    /// The server's current end of WAL when it sent this.
    pub wal_end: Lsn,
    pub send_time: PgTimestamp,
    /// The output plugin's message (for pgoutput: `B`, `R`, `I`, `C`, ...).
    pub data: Bytes,
}

/// `k`: primary keepalive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrimaryKeepalive {
    /// The server's current end of WAL.
    pub wal_end: Lsn,
    pub send_time: PgTimestamp,
    /// The server wants a status update now, or it will time the client out.
    pub reply_requested: bool,
}

/// `r`: what the client has written, flushed and applied. The server keeps WAL from `flush`
/// onwards for the slot (`confirmed_flush_lsn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StandbyStatusUpdate {
    pub write: Lsn,
    pub flush: Lsn,
    pub apply: Lsn,
    pub client_time: PgTimestamp,
    /// Ask the server to answer with a keepalive at once.
    pub reply_requested: bool,
}

/// A CopyData payload that is not a well-formed replication message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicationMessageError {
    #[error("empty replication message")]
    Empty,
    #[error("unknown replication message tag {tag:?}")]
    UnknownTag { tag: char },
    #[error("replication message {tag:?} is {len} bytes, shorter than its {need}-byte header")]
    Truncated { tag: char, len: usize, need: usize },
}

impl ReplicationMessage {
    /// Decodes one CopyData payload received in CopyBoth mode. The XLogData body shares
    /// `payload`'s buffer; nothing is copied.
    pub fn decode(mut payload: Bytes) -> Result<ReplicationMessage, ReplicationMessageError> {
        if payload.is_empty() {
            return Err(ReplicationMessageError::Empty);
        }
        let tag = payload.get_u8();
        let need = match tag {
            XLOG_DATA_TAG => XLOG_DATA_HEADER_LEN,
            PRIMARY_KEEPALIVE_TAG => PRIMARY_KEEPALIVE_LEN,
            _ => return Err(ReplicationMessageError::UnknownTag { tag: tag as char }),
        };
        if payload.len() < need {
            return Err(ReplicationMessageError::Truncated {
                tag: tag as char,
                len: payload.len() + 1,
                need: need + 1,
            });
        }
        Ok(match tag {
            XLOG_DATA_TAG => ReplicationMessage::XLogData(XLogData {
                wal_start: Lsn(payload.get_u64()),
                wal_end: Lsn(payload.get_u64()),
                send_time: PgTimestamp(payload.get_i64()),
                data: payload,
            }),
            _ => ReplicationMessage::PrimaryKeepalive(PrimaryKeepalive {
                wal_end: Lsn(payload.get_u64()),
                send_time: PgTimestamp(payload.get_i64()),
                reply_requested: payload.get_u8() != 0,
            }),
        })
    }
}

/// Takes a complete CopyBothResponse off the front of `buf`: `Some(true)` when one was there and
/// has been consumed, `Some(false)` when `buf` starts with another message, `None` when the
/// buffer holds only part of it. Its body (overall format, per-column formats) says nothing a
/// replication client needs, so it is skipped. A length shorter than the length field itself is
/// left to `Message::parse`, which rejects it: skipping it would read the rest of the length
/// field as the next message.
pub fn take_copy_both_response(buf: &mut BytesMut) -> Option<bool> {
    match buf.first() {
        None => return None,
        Some(&tag) if tag != COPY_BOTH_RESPONSE_TAG => return Some(false),
        Some(_) => {}
    }
    let len = u32::from_be_bytes(buf.get(1..5)?.try_into().ok()?) as usize;
    if len < MESSAGE_LENGTH_LEN {
        return Some(false);
    }
    if buf.len() < len + 1 {
        return None;
    }
    buf.advance(len + 1);
    Some(true)
}

impl StandbyStatusUpdate {
    /// Appends the 34-byte payload; the caller wraps it in CopyData.
    pub fn encode(&self, buf: &mut BytesMut) {
        buf.reserve(STANDBY_STATUS_UPDATE_LEN);
        buf.put_u8(STANDBY_STATUS_UPDATE_TAG);
        buf.put_u64(self.write.0);
        buf.put_u64(self.flush.0);
        buf.put_u64(self.apply.0);
        buf.put_i64(self.client_time.0);
        buf.put_u8(u8::from(self.reply_requested));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_travels_as_binary_timestamptz() {
        let t = PgTimestamp(0x0003_03d1_09c9_2ef2);
        let mut out = BytesMut::new();
        t.to_sql_checked(&Type::TIMESTAMPTZ, &mut out).unwrap();
        assert_eq!(&out[..], &t.0.to_be_bytes());
        assert!(t.to_sql_checked(&Type::FLOAT8, &mut out).is_err());
    }

    #[test]
    fn decodes_xlog_data_without_copying_the_body() {
        let mut raw = BytesMut::new();
        raw.put_u8(b'w');
        raw.put_u64(0x1_0000_0010);
        raw.put_u64(0x1_0000_0020);
        raw.put_i64(42);
        raw.put_slice(b"Bbody");
        let raw = raw.freeze();
        let body_ptr = raw[25..].as_ptr();
        let ReplicationMessage::XLogData(x) = ReplicationMessage::decode(raw).unwrap() else {
            panic!("not XLogData");
        };
        assert_eq!(x.wal_start.to_string(), "1/10");
        assert_eq!(x.wal_end.to_string(), "1/20");
        assert_eq!(x.send_time, PgTimestamp(42));
        assert_eq!(&x.data[..], b"Bbody");
        assert_eq!(x.data.as_ptr(), body_ptr);
    }

    #[test]
    fn decodes_keepalive() {
        let mut raw = BytesMut::new();
        raw.put_u8(b'k');
        raw.put_u64(7);
        raw.put_i64(-1);
        raw.put_u8(1);
        let msg = ReplicationMessage::decode(raw.freeze()).unwrap();
        assert_eq!(
            msg,
            ReplicationMessage::PrimaryKeepalive(PrimaryKeepalive {
                wal_end: Lsn(7),
                send_time: PgTimestamp(-1),
                reply_requested: true,
            })
        );
    }

    #[test]
    fn rejects_short_unknown_and_empty_payloads() {
        assert_eq!(
            ReplicationMessage::decode(Bytes::new()),
            Err(ReplicationMessageError::Empty)
        );
        assert_eq!(
            ReplicationMessage::decode(Bytes::from_static(b"x123")),
            Err(ReplicationMessageError::UnknownTag { tag: 'x' })
        );
        assert_eq!(
            ReplicationMessage::decode(Bytes::from_static(&[b'k', 0, 0, 0])),
            Err(ReplicationMessageError::Truncated {
                tag: 'k',
                len: 4,
                need: 18
            })
        );
        // An XLogData with an empty body is legal framing.
        assert!(ReplicationMessage::decode(Bytes::from(vec![b'w'; 25])).is_ok());
    }

    #[test]
    fn encodes_status_update_in_network_order() {
        let mut buf = BytesMut::new();
        StandbyStatusUpdate {
            write: Lsn(1),
            flush: Lsn(2),
            apply: Lsn(3),
            client_time: PgTimestamp(4),
            reply_requested: true,
        }
        .encode(&mut buf);
        assert_eq!(buf.len(), STANDBY_STATUS_UPDATE_LEN);
        assert_eq!(buf[0], b'r');
        assert_eq!(&buf[1..9], &1u64.to_be_bytes());
        assert_eq!(&buf[9..17], &2u64.to_be_bytes());
        assert_eq!(&buf[17..25], &3u64.to_be_bytes());
        assert_eq!(&buf[25..33], &4i64.to_be_bytes());
        assert_eq!(buf[33], 1);
    }

    #[test]
    fn takes_copy_both_response_only_when_complete() {
        // W, length 7 (itself + format + ncols=0), then the start of a CopyData.
        let mut buf = BytesMut::from(&[b'W', 0, 0, 0, 7, 0, 0, 0, b'd'][..]);
        assert_eq!(
            take_copy_both_response(&mut BytesMut::from(&buf[..6])),
            None
        );
        assert_eq!(take_copy_both_response(&mut buf), Some(true));
        assert_eq!(&buf[..], b"d");
        assert_eq!(take_copy_both_response(&mut buf), Some(false));
        assert_eq!(take_copy_both_response(&mut BytesMut::new()), None);
    }

    proptest::proptest! {
        /// The short version of the `replication_message` fuzz target.
        #[test]
        fn any_payload_decodes_or_fails_without_panicking(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            tag in proptest::sample::select(&b"wkW"[..]),
        ) {
            let mut tagged = vec![tag];
            tagged.extend_from_slice(&bytes);
            for payload in [bytes, tagged] {
                let _ = ReplicationMessage::decode(Bytes::from(payload.clone()));
                let mut buf = BytesMut::from(&payload[..]);
                while take_copy_both_response(&mut buf) == Some(true) {}
            }
        }

        #[test]
        fn xlog_data_decodes_to_what_was_framed(
            wal_start: u64,
            wal_end: u64,
            send_time: i64,
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        ) {
            let mut raw = BytesMut::new();
            raw.put_u8(XLOG_DATA_TAG);
            raw.put_u64(wal_start);
            raw.put_u64(wal_end);
            raw.put_i64(send_time);
            raw.put_slice(&data);
            let expected = ReplicationMessage::XLogData(XLogData {
                wal_start: Lsn(wal_start),
                wal_end: Lsn(wal_end),
                send_time: PgTimestamp(send_time),
                data: Bytes::from(data),
            });
            proptest::prop_assert_eq!(ReplicationMessage::decode(raw.freeze()), Ok(expected));
        }
    }

    #[test]
    fn a_copy_both_response_shorter_than_its_length_field_is_not_skipped() {
        for len in 0..4_u8 {
            let mut buf = BytesMut::from(&[b'W', 0, 0, 0, len, 0, 0, 0, 0][..]);
            assert_eq!(
                take_copy_both_response(&mut buf),
                Some(false),
                "length {len}"
            );
            assert_eq!(buf.len(), 9, "length {len}");
        }
    }

    #[test]
    fn converts_unix_time_to_pg_epoch() {
        assert_eq!(
            PgTimestamp::from_unix_micros(PG_EPOCH_UNIX_SECS * 1_000_000 + 5),
            PgTimestamp(5)
        );
    }
}
