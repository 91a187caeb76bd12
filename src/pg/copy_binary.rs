//! PostgreSQL's binary COPY format, writing side, with no I/O.
//!
//! A stream is a header, tuples, and a trailer. A tuple is an int16 field count, then per field
//! an int32 length (-1 for NULL) and the bytes of the type's *send* representation, which the
//! target's *receive* function reads back (docs: "COPY", section "Binary Format"). All integers
//! are in network byte order.
//!
//! Binary input skips the target's text input functions, which dominate COPY's cost for uuid,
//! timestamptz, date and numeric columns (`research/copy-formats.md`: 1.6-1.7x for the seed
//! migration's output rows). It has a price: the writer must produce exactly the bytes the
//! receive function expects, so only the types in [`BinaryType`] are written this way.

/// Signature, flags (no OIDs) and an empty header extension.
pub const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// The field count -1 that ends the data.
pub const TRAILER: &[u8] = &[0xff, 0xff];

/// A column type whose receive format switchyard writes, named by that format. Domains are
/// written as their base type (PostgreSQL's `domain_recv` calls the base type's receive
/// function, then checks the domain's constraints, as the text input does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryType {
    /// `boolrecv`: one byte, 0 or 1.
    Bool,
    /// `int2recv`, `int4recv`, `int8recv`.
    Int2,
    Int4,
    Int8,
    /// `numeric_recv`: ndigits, weight, sign, dscale as int16, then base-10000 digits; the
    /// column's typmod is applied by the receive function as by the input function.
    Numeric,
    /// `textrecv`, `varcharrecv`, `bpcharrecv`, `enum_recv`: the characters in the client
    /// encoding, converted and checked (length, label) like text input.
    Text,
    /// `uuid_recv`: 16 bytes.
    Uuid,
    /// `date_recv`: int32 days since 2000-01-01, `INT32_MIN`/`MAX` for -/+infinity.
    Date,
    /// `timestamp_recv`, `timestamptz_recv`: int64 microseconds since 2000-01-01 00:00 (UTC for
    /// timestamptz), `INT64_MIN`/`MAX` for -/+infinity.
    Timestamp,
    TimestampTz,
    /// `json_recv`: the text.
    Json,
    /// `jsonb_recv`: version byte 1, then the text.
    Jsonb,
}

impl BinaryType {
    /// The receive format of a base type, from `pg_type`: `name` is `typname` when the type is
    /// in `pg_catalog`, `typtype` is `'e'` for enums. `None` for every other type (arrays,
    /// composites, ranges, extension types, float, time, interval...): those columns are
    /// written as text, by the server's input function.
    pub fn of_catalog_type(name: Option<&str>, typtype: u8) -> Option<BinaryType> {
        if typtype == b'e' {
            return Some(BinaryType::Text);
        }
        Some(match name? {
            "bool" => BinaryType::Bool,
            "int2" => BinaryType::Int2,
            "int4" => BinaryType::Int4,
            "int8" => BinaryType::Int8,
            "numeric" => BinaryType::Numeric,
            "text" | "varchar" | "bpchar" => BinaryType::Text,
            "uuid" => BinaryType::Uuid,
            "date" => BinaryType::Date,
            "timestamp" => BinaryType::Timestamp,
            "timestamptz" => BinaryType::TimestampTz,
            "json" => BinaryType::Json,
            "jsonb" => BinaryType::Jsonb,
            _ => return None,
        })
    }
}

/// Starts a tuple of `fields` fields.
pub fn begin_tuple(buf: &mut Vec<u8>, fields: u16) {
    buf.extend_from_slice(&fields.to_be_bytes());
}

/// A NULL field.
pub fn null(buf: &mut Vec<u8>) {
    buf.extend_from_slice(&(-1i32).to_be_bytes());
}

/// A field holding `bytes`.
pub fn bytes(buf: &mut Vec<u8>, bytes: &[u8]) {
    length(buf, bytes.len());
    buf.extend_from_slice(bytes);
}

/// The length word of a field of `len` bytes. PostgreSQL refuses fields over 1 GB anyway, so a
/// longer one is cut to a length the server rejects rather than wrapped to a wrong one.
pub fn length(buf: &mut Vec<u8>, len: usize) {
    let len = i32::try_from(len).unwrap_or(i32::MAX);
    buf.extend_from_slice(&len.to_be_bytes());
}

pub fn int2(buf: &mut Vec<u8>, v: i16) {
    length(buf, 2);
    buf.extend_from_slice(&v.to_be_bytes());
}

pub fn int4(buf: &mut Vec<u8>, v: i32) {
    length(buf, 4);
    buf.extend_from_slice(&v.to_be_bytes());
}

pub fn int8(buf: &mut Vec<u8>, v: i64) {
    length(buf, 8);
    buf.extend_from_slice(&v.to_be_bytes());
}

/// A `numeric` field from its parts (see `numeric_send` in `src/backend/utils/adt/numeric.c`).
/// `sign` is one of the `NUMERIC_*` constants; `digits` are base-10000, most significant first,
/// without leading or trailing zero digits.
pub fn numeric(buf: &mut Vec<u8>, weight: i16, sign: u16, dscale: u16, digits: &[i16]) {
    length(buf, 8 + 2 * digits.len());
    buf.extend_from_slice(&(digits.len() as u16).to_be_bytes());
    buf.extend_from_slice(&weight.to_be_bytes());
    buf.extend_from_slice(&sign.to_be_bytes());
    buf.extend_from_slice(&dscale.to_be_bytes());
    for d in digits {
        buf.extend_from_slice(&d.to_be_bytes());
    }
}

/// `numeric` signs, as `numeric.c` names them.
pub const NUMERIC_POS: u16 = 0x0000;
pub const NUMERIC_NEG: u16 = 0x4000;
pub const NUMERIC_NAN: u16 = 0xC000;
pub const NUMERIC_PINF: u16 = 0xD000;
pub const NUMERIC_NINF: u16 = 0xF000;

/// The version byte `jsonb_send` writes before the text.
pub const JSONB_VERSION: u8 = 1;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_the_documented_signature_flags_and_extension() {
        assert_eq!(&HEADER[..11], b"PGCOPY\n\xff\r\n\0");
        assert_eq!(HEADER.len(), 11 + 4 + 4);
        assert!(HEADER[11..].iter().all(|b| *b == 0));
    }

    #[test]
    fn fields_are_length_prefixed_in_network_order() {
        let mut buf = Vec::new();
        begin_tuple(&mut buf, 3);
        null(&mut buf);
        int4(&mut buf, 258);
        bytes(&mut buf, b"ab");
        assert_eq!(
            buf,
            [0, 3, 255, 255, 255, 255, 0, 0, 0, 4, 0, 0, 1, 2, 0, 0, 0, 2, b'a', b'b']
        );
    }

    #[test]
    fn only_known_receive_formats_are_chosen() {
        assert_eq!(
            BinaryType::of_catalog_type(Some("varchar"), b'b'),
            Some(BinaryType::Text)
        );
        assert_eq!(
            BinaryType::of_catalog_type(None, b'e'),
            Some(BinaryType::Text)
        );
        for other in ["float8", "_int4", "interval", "name", "char", "citext"] {
            assert_eq!(
                BinaryType::of_catalog_type(Some(other), b'b'),
                None,
                "{other}"
            );
        }
        assert_eq!(BinaryType::of_catalog_type(None, b'b'), None);
    }
}
