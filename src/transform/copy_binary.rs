//! Output values in PostgreSQL's binary COPY format, straight from the transform's values.
//!
//! A field is written in binary only when the bytes are exactly what the target's input
//! function would have made of the text form: a typed value of the column's type is encoded as
//! it is; text (a source column passed through, an expression without a cast) is read by this
//! crate's own copy of the input function ([`super::cast`]) first. When that copy refuses the
//! text, or is narrower than PostgreSQL's (see `cast`), the field is [`NotExact`]: the caller
//! sends the row as text instead, and the target's input function decides, as it always did.

use std::borrow::Cow;
use std::io::Write;

use num_bigint::BigInt;
use num_traits::{Signed, ToPrimitive, Zero};

use crate::pg::copy_binary::{self as wire, BinaryType};

use super::cast::{cast, CastType};
use super::value::{Numeric, Value};

/// How one output's rows are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowFormat {
    /// COPY text lines.
    Text,
    /// Binary tuples, one [`BinaryType`] per output column in plan order.
    Binary(Box<[BinaryType]>),
}

impl RowFormat {
    pub fn is_binary(&self) -> bool {
        matches!(self, RowFormat::Binary(_))
    }
}

/// The value cannot be written in binary with the certainty that the target would read its text
/// the same way; the row goes as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotExact;

/// Appends `v` as one binary field of a column of type `ty`.
pub fn encode_field(v: &Value<'_>, ty: BinaryType, buf: &mut Vec<u8>) -> Result<(), NotExact> {
    use BinaryType as T;
    match (ty, v) {
        (_, Value::Null) => wire::null(buf),
        (T::Text | T::Json, Value::Text(t) | Value::Json(t)) => wire::bytes(buf, t.as_bytes()),
        (T::Jsonb, Value::Text(t) | Value::Json(t)) => {
            wire::length(buf, 1 + t.len());
            buf.push(wire::JSONB_VERSION);
            buf.extend_from_slice(t.as_bytes());
        }
        // The output function's text, which is what text COPY sent.
        (T::Text | T::Json | T::Jsonb, other) => {
            let at = buf.len();
            wire::length(buf, 0);
            if ty == T::Jsonb {
                buf.push(wire::JSONB_VERSION);
            }
            let _ = write!(buf, "{other}");
            let len = buf.len() - at - 4;
            buf[at..at + 4].copy_from_slice(&(len as i32).to_be_bytes());
        }
        (T::Bool, Value::Bool(b)) => {
            wire::length(buf, 1);
            buf.push(u8::from(*b));
        }
        (T::Int2, Value::Int(i)) => wire::int2(buf, i16::try_from(*i).map_err(|_| NotExact)?),
        (T::Int4, Value::Int(i)) => wire::int4(buf, i32::try_from(*i).map_err(|_| NotExact)?),
        (T::Int8, Value::Int(i)) => wire::int8(buf, *i),
        (T::Numeric, Value::Numeric(n)) => numeric(n, buf)?,
        (T::Numeric, Value::Int(i)) => numeric(&Numeric::from_i64(*i), buf)?,
        (T::Uuid, Value::Uuid(u)) => wire::bytes(buf, u.as_bytes()),
        (T::Date, Value::Date(d)) => wire::int4(buf, d.0),
        // Every switchyard session runs with TimeZone = UTC, where a timestamp's text read as
        // timestamptz (and the reverse, whose zone timestamp input ignores) keeps its
        // microseconds.
        (T::Timestamp | T::TimestampTz, Value::Timestamp(t) | Value::TimestampTz(t)) => {
            wire::int8(buf, t.0)
        }
        // Text, or a value of another type whose text the target would have read: read it
        // here as the column's input function would.
        (_, other) => {
            let text = match other {
                Value::Text(t) => Cow::Borrowed(t.as_ref()),
                other => Cow::Owned(other.to_string()),
            };
            let typed = cast(Value::Text(text), &cast_type(ty)).map_err(|_| NotExact)?;
            if matches!(typed, Value::Text(_)) {
                return Err(NotExact);
            }
            encode_field(&typed, ty, buf)?;
        }
    }
    Ok(())
}

/// The cast whose input function matches the column's receive format (text-like types never
/// get here).
fn cast_type(ty: BinaryType) -> CastType {
    match ty {
        BinaryType::Bool => CastType::Bool,
        BinaryType::Int2 => CastType::Int2,
        BinaryType::Int4 => CastType::Int4,
        BinaryType::Int8 => CastType::Int8,
        BinaryType::Numeric => CastType::Numeric { typmod: None },
        BinaryType::Uuid => CastType::Uuid,
        BinaryType::Date => CastType::Date,
        BinaryType::Timestamp => CastType::Timestamp,
        BinaryType::TimestampTz => CastType::TimestampTz,
        BinaryType::Text | BinaryType::Json | BinaryType::Jsonb => CastType::Text,
    }
}

/// Decimal digits per base-10000 digit (`DEC_DIGITS` in `numeric.c`).
const DEC_DIGITS: usize = 4;

/// `numeric_send`'s layout of a value: the decimal digits of the mantissa regrouped in fours
/// around the point, the weight counting base-10000 digits before it, the display scale as is.
fn numeric(n: &Numeric, buf: &mut Vec<u8>) -> Result<(), NotExact> {
    let special = match n {
        Numeric::NaN => wire::NUMERIC_NAN,
        Numeric::Infinity => wire::NUMERIC_PINF,
        Numeric::NegInfinity => wire::NUMERIC_NINF,
        Numeric::Finite(d) => return finite_numeric(d, buf),
    };
    wire::numeric(buf, 0, special, 0, &[]);
    Ok(())
}

fn finite_numeric(d: &bigdecimal::BigDecimal, buf: &mut Vec<u8>) -> Result<(), NotExact> {
    // Borrowed: no copy of the digits per value.
    let (mut mantissa, mut scale) = d.as_bigint_and_scale();
    if scale < 0 {
        *mantissa.to_mut() *= BigInt::from(10).pow(scale.unsigned_abs() as u32);
        scale = 0;
    }
    let dscale = u16::try_from(scale)
        .ok()
        .filter(|s| *s <= 0x3FFF)
        .ok_or(NotExact)?;
    let sign = if mantissa.is_negative() {
        wire::NUMERIC_NEG
    } else {
        wire::NUMERIC_POS
    };
    if mantissa.is_zero() {
        wire::numeric(buf, 0, wire::NUMERIC_POS, dscale, &[]);
        return Ok(());
    }
    let mut small = [0u8; 39];
    let owned;
    let decimal: &[u8] = match mantissa.magnitude().to_u128() {
        Some(m) => digits_of(m, &mut small),
        None => {
            owned = mantissa.magnitude().to_string();
            owned.as_bytes()
        }
    };
    // Pad with zeros on the left until the digits before the point fill whole groups, and on
    // the right until the digits after it do.
    let int_len = decimal.len() as i64 - scale;
    let lead = (DEC_DIGITS as i64 - int_len.rem_euclid(DEC_DIGITS as i64)) % DEC_DIGITS as i64;
    let padded = lead as usize + decimal.len();
    let trail = (DEC_DIGITS - padded % DEC_DIGITS) % DEC_DIGITS;
    let digit = |i: usize| -> i16 {
        match i.checked_sub(lead as usize) {
            Some(j) if j < decimal.len() => i16::from(decimal[j] - b'0'),
            _ => 0,
        }
    };
    let groups = (padded + trail) / DEC_DIGITS;
    let group = |g: usize| -> i16 {
        (0..DEC_DIGITS).fold(0, |acc, k| acc * 10 + digit(g * DEC_DIGITS + k))
    };
    let first = (0..groups).find(|g| group(*g) != 0).ok_or(NotExact)?;
    let last = (0..groups).rev().find(|g| group(*g) != 0).ok_or(NotExact)?;
    let weight = (int_len + lead) / DEC_DIGITS as i64 - 1 - first as i64;
    let weight = i16::try_from(weight).map_err(|_| NotExact)?;
    let ndigits = last - first + 1;
    wire::length(buf, 8 + 2 * ndigits);
    buf.extend_from_slice(&(ndigits as u16).to_be_bytes());
    buf.extend_from_slice(&weight.to_be_bytes());
    buf.extend_from_slice(&sign.to_be_bytes());
    buf.extend_from_slice(&dscale.to_be_bytes());
    for g in first..=last {
        buf.extend_from_slice(&group(g).to_be_bytes());
    }
    Ok(())
}

/// The decimal digits of `m` (> 0), in `out`, without an allocation.
fn digits_of(mut m: u128, out: &mut [u8; 39]) -> &[u8] {
    let mut at = out.len();
    while m > 0 {
        at -= 1;
        out[at] = b'0' + (m % 10) as u8;
        m /= 10;
    }
    &out[at..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(v: Value<'_>, ty: BinaryType) -> Result<Vec<u8>, NotExact> {
        let mut buf = Vec::new();
        encode_field(&v, ty, &mut buf)?;
        let len = i32::from_be_bytes(buf[..4].try_into().unwrap());
        assert_eq!(len as usize, buf.len() - 4, "length word");
        Ok(buf[4..].to_vec())
    }

    fn numeric_of(text: &str) -> (u16, i16, u16, u16, Vec<i16>) {
        let v = cast(Value::text(text), &CastType::Numeric { typmod: None }).unwrap();
        let b = field(v, BinaryType::Numeric).unwrap();
        let word = |i: usize| u16::from_be_bytes([b[2 * i], b[2 * i + 1]]);
        let digits = (4..b.len() / 2).map(|i| word(i) as i16).collect();
        (word(0), word(1) as i16, word(2), word(3), digits)
    }

    /// Expected layouts are `numeric_send`'s, as PostgreSQL 15 prints them for
    /// `SELECT numeric_send(x)`.
    #[test]
    fn numerics_are_grouped_in_base_10000_around_the_point() {
        assert_eq!(numeric_of("0"), (0, 0, 0, 0, vec![]));
        assert_eq!(numeric_of("0.00"), (0, 0, 0, 2, vec![]));
        assert_eq!(numeric_of("1"), (1, 0, 0, 0, vec![1]));
        assert_eq!(numeric_of("12500.01"), (3, 1, 0, 2, vec![1, 2500, 100]));
        assert_eq!(
            numeric_of("-12500.01"),
            (3, 1, 0x4000, 2, vec![1, 2500, 100])
        );
        assert_eq!(numeric_of("0.005"), (1, -1, 0, 3, vec![50]));
        assert_eq!(numeric_of("0.000005"), (1, -2, 0, 6, vec![500]));
        assert_eq!(numeric_of("10000"), (1, 1, 0, 0, vec![1]));
        assert_eq!(numeric_of("10000.0000"), (1, 1, 0, 4, vec![1]));
        assert_eq!(
            numeric_of("123456789.123456789"),
            (6, 2, 0, 9, vec![1, 2345, 6789, 1234, 5678, 9000])
        );
        let big = format!("{}.5", "9".repeat(60));
        let (n, weight, _, dscale, digits) = numeric_of(&big);
        assert_eq!((n as usize, weight, dscale), (digits.len(), 14, 1));
        assert_eq!(digits[0], 9999);
        assert_eq!(*digits.last().unwrap(), 5000);
        assert_eq!(numeric_of("NaN").2, 0xC000);
        assert_eq!(numeric_of("-Infinity").2, 0xF000);
    }

    #[test]
    fn text_is_read_by_the_input_function_or_left_to_the_target() {
        let ts = field(Value::text("2000-01-01 00:00:01"), BinaryType::TimestampTz).unwrap();
        assert_eq!(ts, 1_000_000i64.to_be_bytes());
        let date = field(Value::text("1999-12-31"), BinaryType::Date).unwrap();
        assert_eq!(date, (-1i32).to_be_bytes());
        assert_eq!(
            field(Value::text(" 42 "), BinaryType::Int8).unwrap(),
            42i64.to_be_bytes()
        );
        let u = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
        let parsed = uuid::Uuid::parse_str(u).unwrap();
        assert_eq!(
            field(Value::text(u), BinaryType::Uuid).unwrap(),
            parsed.as_bytes()
        );
        // Refused here: the target's own input function gets the text.
        assert_eq!(field(Value::text("12a"), BinaryType::Int4), Err(NotExact));
        assert_eq!(
            field(Value::text("March 3, 2024"), BinaryType::Date),
            Err(NotExact)
        );
        assert_eq!(field(Value::Int(70_000), BinaryType::Int2), Err(NotExact));
        assert_eq!(
            field(Value::Numeric(Numeric::from_i64(3)), BinaryType::Int4).unwrap(),
            3i32.to_be_bytes()
        );
    }

    #[test]
    fn text_types_get_the_output_functions_text() {
        assert_eq!(field(Value::Bool(true), BinaryType::Text).unwrap(), b"t");
        assert_eq!(field(Value::Int(-7), BinaryType::Text).unwrap(), b"-7");
        assert_eq!(
            field(Value::text("{\"a\":1}"), BinaryType::Jsonb).unwrap(),
            b"\x01{\"a\":1}"
        );
        assert_eq!(
            field(Value::text("tab\there"), BinaryType::Text).unwrap(),
            b"tab\there"
        );
        let mut buf = Vec::new();
        encode_field(&Value::Null, BinaryType::Uuid, &mut buf).unwrap();
        assert_eq!(buf, (-1i32).to_be_bytes());
    }
}
