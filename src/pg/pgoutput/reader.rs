//! A bounds-checked cursor over one pgoutput payload: the only place that touches the bytes.
//!
//! Every read checks what is left first and returns [`DecodeError::Truncated`] instead of
//! panicking (`bytes::Buf` getters panic on short input). Slices are split off the payload's
//! `Bytes` without copying. Counts read from the wire are checked against the bytes left before
//! anything is allocated for them, so a hostile count cannot make the decoder reserve gigabytes.

use bytes::{Buf, Bytes};

use super::error::DecodeError;
use crate::pg::lsn::Lsn;
use crate::pg::replication_message::PgTimestamp;

pub(super) struct Reader {
    buf: Bytes,
    /// The protocol name of the message being read, for errors.
    message: &'static str,
}

impl Reader {
    pub(super) fn new(buf: Bytes, message: &'static str) -> Reader {
        Reader { buf, message }
    }

    pub(super) fn message(&self) -> &'static str {
        self.message
    }

    fn need(&self, len: usize, field: &'static str) -> Result<(), DecodeError> {
        if self.buf.len() < len {
            return Err(DecodeError::Truncated {
                message: self.message,
                field,
                need: len,
                remaining: self.buf.len(),
            });
        }
        Ok(())
    }

    pub(super) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        self.need(1, field)?;
        Ok(self.buf.get_u8())
    }

    pub(super) fn i16(&mut self, field: &'static str) -> Result<i16, DecodeError> {
        self.need(2, field)?;
        Ok(self.buf.get_i16())
    }

    pub(super) fn i32(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        self.need(4, field)?;
        Ok(self.buf.get_i32())
    }

    /// An Int32 that the protocol uses for oids and xids, which are unsigned.
    pub(super) fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        self.need(4, field)?;
        Ok(self.buf.get_u32())
    }

    pub(super) fn lsn(&mut self, field: &'static str) -> Result<Lsn, DecodeError> {
        self.need(8, field)?;
        Ok(Lsn(self.buf.get_u64()))
    }

    pub(super) fn timestamp(&mut self, field: &'static str) -> Result<PgTimestamp, DecodeError> {
        self.need(8, field)?;
        Ok(PgTimestamp(self.buf.get_i64()))
    }

    /// A NUL-terminated String (names, the message prefix), which must be UTF-8.
    pub(super) fn string(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let Some(end) = memchr::memchr(0, &self.buf) else {
            return Err(DecodeError::Unterminated {
                message: self.message,
                field,
            });
        };
        let text = std::str::from_utf8(&self.buf[..end])
            .map_err(|_| DecodeError::NotUtf8 {
                message: self.message,
                field,
            })?
            .to_owned();
        self.buf.advance(end + 1);
        Ok(text)
    }

    /// An Int32 length, then that many bytes, shared with the payload.
    pub(super) fn counted_bytes(&mut self, field: &'static str) -> Result<Bytes, DecodeError> {
        let length = self.i32(field)?;
        let len = usize::try_from(length).map_err(|_| DecodeError::NegativeLength {
            message: self.message,
            field,
            length,
        })?;
        self.need(len, field)?;
        Ok(self.buf.split_to(len))
    }

    /// Checks a count read from the wire: not negative, and `count` entries of at least
    /// `min_entry_len` bytes each fit in what is left. Returns it as a safe capacity.
    pub(super) fn count(
        &self,
        count: i64,
        min_entry_len: usize,
        field: &'static str,
    ) -> Result<usize, DecodeError> {
        let fits = usize::try_from(count)
            .ok()
            .filter(|&n| n.saturating_mul(min_entry_len) <= self.buf.len());
        fits.ok_or(DecodeError::BadCount {
            message: self.message,
            field,
            count,
            remaining: self.buf.len(),
        })
    }

    /// Ends the message: every byte must have been read.
    pub(super) fn finish(self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                message: self.message,
                count: self.buf.len(),
            })
        }
    }

    pub(super) fn remaining(&self) -> usize {
        self.buf.len()
    }
}
