//! TupleData: the column values of one row in Insert, Update and Delete.
//!
//! Each column is NULL, a value in text or binary form, or `'u'`: "unchanged TOASTed value, the
//! actual value is not sent". PostgreSQL stores large values out of line (TOAST); when an
//! UPDATE leaves such a value alone, the WAL record holds only a pointer to it, and logical
//! decoding cannot read the TOAST table as of that point, so pgoutput says "unchanged" instead.
//! The applier must leave that target column untouched, never write it as NULL. Under REPLICA
//! IDENTITY FULL the old tuple (`O`) carries the value in full, while the new tuple still says
//! `'u'`:
//!
//! ```text
//!   UPDATE ledger SET note = 'audited'          (big is TOASTed, REPLICA IDENTITY FULL)
//!   U  O [t:"1", t:"opened", t:<2,100 bytes>]   N [t:"1", t:"audited", u]
//! ```
//!
//! Values are slices of the received payload (`Bytes`), not copies.
//!
//! <https://www.postgresql.org/docs/15/protocol-logicalrep-message-formats.html>

use bytes::Bytes;

use super::error::DecodeError;
use super::reader::Reader;

/// Column kind: NULL.
pub const COLUMN_NULL: u8 = b'n';
/// Column kind: an unchanged TOASTed value, not sent.
pub const COLUMN_UNCHANGED_TOAST: u8 = b'u';
/// Column kind: Int32 length, then the value in text format (`typoutput`).
pub const COLUMN_TEXT: u8 = b't';
/// Column kind: Int32 length, then the value in binary format (`typsend`), with `binary 'true'`.
pub const COLUMN_BINARY: u8 = b'b';

/// Marks the new tuple of Insert and Update.
pub const NEW_TUPLE_TAG: u8 = b'N';
/// Marks an old tuple holding the replica identity key's columns.
pub const KEY_TUPLE_TAG: u8 = b'K';
/// Marks an old tuple holding every column (REPLICA IDENTITY FULL).
pub const OLD_TUPLE_TAG: u8 = b'O';

/// The smallest column on the wire: its kind byte alone (`n` or `u`).
const MIN_COLUMN_LEN: usize = 1;

/// One row's columns, in the order of the Relation's columns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TupleData {
    pub columns: Vec<TupleColumn>,
}

/// One column of a [`TupleData`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TupleColumn {
    /// `n`
    Null,
    /// `u`: keep the target's current value.
    UnchangedToast,
    /// `t`: the type's text output, in the connection's client encoding.
    Text(Bytes),
    /// `b`: the type's binary send format.
    Binary(Bytes),
}

/// The old row of an Update or Delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OldTuple {
    /// `K`: the key columns' values. Observed on PostgreSQL 15: the tuple still has every
    /// column, with NULL for those outside the key.
    Key(TupleData),
    /// `O`: every column (REPLICA IDENTITY FULL), TOASTed values included.
    Full(TupleData),
}

impl OldTuple {
    pub fn tuple(&self) -> &TupleData {
        match self {
            OldTuple::Key(tuple) | OldTuple::Full(tuple) => tuple,
        }
    }
}

impl TupleData {
    /// Reads Int16 column count, then the columns.
    pub(super) fn read(reader: &mut Reader) -> Result<TupleData, DecodeError> {
        let count = reader.i16("TupleData column count")?;
        let count = reader.count(count.into(), MIN_COLUMN_LEN, "TupleData column count")?;
        let mut columns = Vec::with_capacity(count);
        for _ in 0..count {
            let column = match reader.u8("TupleData column kind")? {
                COLUMN_NULL => TupleColumn::Null,
                COLUMN_UNCHANGED_TOAST => TupleColumn::UnchangedToast,
                COLUMN_TEXT => TupleColumn::Text(reader.counted_bytes("TupleData text value")?),
                COLUMN_BINARY => {
                    TupleColumn::Binary(reader.counted_bytes("TupleData binary value")?)
                }
                kind => {
                    return Err(DecodeError::UnknownColumnKind {
                        message: reader.message(),
                        kind: char::from(kind),
                    })
                }
            };
            columns.push(column);
        }
        Ok(TupleData { columns })
    }
}

/// Reads the tag byte that must introduce the new tuple (`N`), then the tuple.
pub(super) fn read_new_tuple(reader: &mut Reader) -> Result<TupleData, DecodeError> {
    read_new_tuple_after(reader.u8("new tuple tag")?, reader)
}

/// Reads the new tuple whose tag byte has already been read.
pub(super) fn read_new_tuple_after(tag: u8, reader: &mut Reader) -> Result<TupleData, DecodeError> {
    if tag != NEW_TUPLE_TAG {
        return Err(DecodeError::UnexpectedTupleTag {
            message: reader.message(),
            expected: "N (new tuple)",
            found: char::from(tag),
        });
    }
    TupleData::read(reader)
}

/// Reads an old tuple whose tag byte has already been read, `None` when the tag is not `K`/`O`.
pub(super) fn read_old_tuple_after(
    tag: u8,
    reader: &mut Reader,
) -> Result<Option<OldTuple>, DecodeError> {
    Ok(match tag {
        KEY_TUPLE_TAG => Some(OldTuple::Key(TupleData::read(reader)?)),
        OLD_TUPLE_TAG => Some(OldTuple::Full(TupleData::read(reader)?)),
        _ => None,
    })
}
