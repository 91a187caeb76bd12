//! `numeric` input, typmod rounding and conversion to integers, as PostgreSQL 15 does them.
//!
//! PostgreSQL's numeric has up to 131072 digits before the point and 16383 after, and so does
//! switchyard's (arbitrary precision, see [`crate::transform::numeric`]). The scanner keeps the
//! digits as they were written ([`Written`]) and checks PostgreSQL's limits and a typmod's
//! precision before any big integer is built, so a megabyte of digits is refused cheaply.

use bigdecimal::RoundingMode;
use num_bigint::{BigInt, Sign};
use num_traits::Zero;

use super::error::CastError;
use super::integer::IntWidth;
use super::space::is_pg_space;
use crate::transform::value::Numeric;

/// PostgreSQL refuses exponents at or past `INT_MAX / 2` before anything else.
const MAX_EXPONENT: i64 = i32::MAX as i64 / 2;
use crate::transform::numeric::MAX_DISPLAY_SCALE;
/// Highest power of ten PostgreSQL stores: weight 32767 in base-10000 digits, so 4 * 32768 - 1.
const MAX_DECIMAL_WEIGHT: i64 = 131_071;

/// The words PostgreSQL 15 reads as special values, tried in its order and matched as
/// case-insensitive prefixes (so `Infinity` wins over `inf`, and `infinit` is an error).
const SPECIALS: [(&str, Numeric); 7] = [
    ("nan", Numeric::NaN),
    ("infinity", Numeric::Infinity),
    ("+infinity", Numeric::Infinity),
    ("-infinity", Numeric::NegInfinity),
    ("inf", Numeric::Infinity),
    ("+inf", Numeric::Infinity),
    ("-inf", Numeric::NegInfinity),
];

/// A finite number exactly as written: `int.frac` times ten to the `exponent`, digits unparsed.
pub(super) struct Written<'a> {
    pub negative: bool,
    pub int: &'a [u8],
    pub frac: &'a [u8],
    pub exponent: i64,
}

impl Written<'_> {
    /// Index of the digit just after the decimal point.
    fn point(&self) -> i64 {
        self.int.len() as i64 + self.exponent
    }

    fn first_nonzero(&self) -> Option<i64> {
        let mut all = self.int.iter().chain(self.frac);
        all.position(|d| *d != b'0').map(|i| i as i64)
    }

    /// Digits after the point PostgreSQL keeps: those written, shifted by the exponent.
    fn display_scale(&self) -> i64 {
        (self.frac.len() as i64 - self.exponent).max(0)
    }

    /// Whether PostgreSQL itself refuses the value ("value overflows numeric format").
    pub fn overflows_postgres(&self) -> bool {
        let weight_too_big = self
            .first_nonzero()
            .is_some_and(|first| self.point() - 1 - first > MAX_DECIMAL_WEIGHT);
        self.exponent.abs() >= MAX_EXPONENT
            || self.display_scale() > MAX_DISPLAY_SCALE
            || weight_too_big
    }

    /// The exact value, at its display scale. Leading zeros are skipped, so the big integer
    /// has at most the digits PostgreSQL's limits allow.
    fn value(&self) -> Numeric {
        // int.frac x 10^exponent = (int.frac as an integer) x 10^(exponent - frac.len()).
        let shift = self.exponent - self.frac.len() as i64;
        let scale = (-shift).max(0);
        let Some(first) = self.first_nonzero() else {
            return Numeric::finite(BigInt::zero(), scale);
        };
        let mut digits = Vec::with_capacity(self.int.len() + self.frac.len());
        digits.extend(self.int.iter().chain(self.frac).skip(first as usize));
        let magnitude = BigInt::parse_bytes(&digits, 10).expect("scanned ASCII digits");
        let sign = if self.negative {
            Sign::Minus
        } else {
            Sign::Plus
        };
        let mantissa = BigInt::from_biguint(sign, magnitude.into_parts().1);
        if shift > 0 {
            Numeric::finite(mantissa * ten_to(shift), 0)
        } else {
            Numeric::finite(mantissa, scale)
        }
    }

    /// Whether the value rounded to `scale` places surely has more than `precision` digits:
    /// judged on the written digits, before building a big integer.
    fn surely_exceeds(&self, precision: u32, scale: u32) -> bool {
        let scale = i64::from(scale);
        let first = self.first_nonzero().unwrap_or(self.point() + scale);
        self.point() + scale - first > i64::from(precision)
    }
}

/// Reads `text` as `numeric` or `numeric(precision, scale)`.
pub(super) fn parse(text: &str, typmod: Option<(u32, u32)>) -> Result<Numeric, CastError> {
    let bytes = text.as_bytes();
    let start = bytes.iter().take_while(|b| is_pg_space(**b)).count();
    let rest = &bytes[start..];
    let special = SPECIALS.iter().find(|(word, _)| {
        rest.get(..word.len())
            .is_some_and(|r| r.eq_ignore_ascii_case(word.as_bytes()))
    });
    let syntax = || CastError::invalid_syntax("numeric", text);
    if let Some((word, value)) = special {
        if !rest[word.len()..].iter().all(|b| is_pg_space(*b)) {
            return Err(syntax());
        }
        return apply_typmod(value.clone(), typmod);
    }
    let (written, end) = scan(rest).ok_or_else(syntax)?;
    if written.exponent.abs() >= MAX_EXPONENT {
        return Err(overflows_format());
    }
    if !rest[end..].iter().all(|b| is_pg_space(*b)) {
        return Err(syntax());
    }
    // PostgreSQL checks its storage limits before the typmod, so `1e-20000` is an error even
    // for a numeric(5,2) that would round it to zero (measured on 15.18).
    if written.overflows_postgres() {
        return Err(overflows_format());
    }
    if let Some((precision, scale)) = typmod {
        if written.surely_exceeds(precision, scale) {
            return Err(field_overflow(precision, scale));
        }
    }
    let value = written.value();
    match typmod {
        Some((precision, scale)) => round_to_typmod(&value, precision, scale),
        None => Ok(value),
    }
}

/// Scans PostgreSQL's numeric syntax: sign, digits with at most one point (at least one digit),
/// then `e` and an exponent that, as `strtol` reads it, may be preceded by whitespace and a
/// sign. Returns the number and where it ended.
pub(super) fn scan(bytes: &[u8]) -> Option<(Written<'_>, usize)> {
    let digits_from = |at: usize| {
        at + bytes[at..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count()
    };
    let negative = bytes.first() == Some(&b'-');
    let int_start = usize::from(matches!(bytes.first(), Some(b'-' | b'+')));
    let int_end = digits_from(int_start);
    let (frac_start, frac_end) = match bytes.get(int_end) {
        Some(b'.') => (int_end + 1, digits_from(int_end + 1)),
        _ => (int_end, int_end),
    };
    if int_start == int_end && frac_start == frac_end {
        return None;
    }
    let mut written = Written {
        negative,
        int: &bytes[int_start..int_end],
        frac: &bytes[frac_start..frac_end],
        exponent: 0,
    };
    let mut end = frac_end;
    if matches!(bytes.get(end), Some(b'e' | b'E')) {
        let mut at = end + 1;
        at += bytes[at..].iter().take_while(|b| is_pg_space(**b)).count();
        let exponent_negative = bytes.get(at) == Some(&b'-');
        at += usize::from(matches!(bytes.get(at), Some(b'-' | b'+')));
        let exponent_end = digits_from(at);
        if exponent_end == at {
            return None;
        }
        // Saturate: anything this large is refused by the MAX_EXPONENT check anyway.
        let magnitude = bytes[at..exponent_end].iter().fold(0i64, |e, d| {
            e.saturating_mul(10).saturating_add(i64::from(d - b'0'))
        });
        written.exponent = if exponent_negative {
            -magnitude
        } else {
            magnitude
        };
        end = exponent_end;
    }
    Some((written, end))
}

/// Rounds to `scale` places, half away from zero, and checks that the result has at most
/// `precision - scale` digits before the point, as PostgreSQL's `apply_typmod` does.
fn round_to_typmod(value: &Numeric, precision: u32, scale: u32) -> Result<Numeric, CastError> {
    let Numeric::Finite(d) = value else {
        return apply_typmod(value.clone(), Some((precision, scale)));
    };
    let rounded = d.with_scale_round(i64::from(scale), RoundingMode::HalfUp);
    let integer_digits = i64::from(precision) - i64::from(scale);
    if !rounded.is_zero() && rounded.order_of_magnitude() >= integer_digits {
        return Err(field_overflow(precision, scale));
    }
    Ok(Numeric::Finite(rounded))
}

/// Applies a typmod to a value that is already a number (`int::numeric(5,2)`, `x::numeric(5,2)`).
pub(super) fn apply_typmod(
    value: Numeric,
    typmod: Option<(u32, u32)>,
) -> Result<Numeric, CastError> {
    let Some((precision, scale)) = typmod else {
        return Ok(value);
    };
    match value {
        Numeric::NaN => Ok(Numeric::NaN),
        Numeric::Infinity | Numeric::NegInfinity => Err(field_overflow(precision, scale)
            .with_detail(format!(
                "A field with precision {precision}, scale {scale} cannot hold an infinite value."
            ))),
        finite => round_to_typmod(&finite, precision, scale),
    }
}

/// `numeric::smallint` and friends: round half away from zero, then check the range.
pub(super) fn to_int(value: Numeric, width: IntWidth) -> Result<i64, CastError> {
    let name = width.sql_name();
    match value {
        Numeric::NaN => Err(CastError::new(format!("cannot convert NaN to {name}"))),
        Numeric::Infinity | Numeric::NegInfinity => {
            Err(CastError::new(format!("cannot convert infinity to {name}")))
        }
        Numeric::Finite(d) => {
            let whole = d.with_scale_round(0, RoundingMode::HalfUp);
            let (integer, _) = whole.as_bigint_and_scale();
            match i64::try_from(integer.as_ref()) {
                Ok(i) if width.contains(i128::from(i)) => Ok(i),
                _ => Err(CastError::new(format!("{name} out of range"))),
            }
        }
    }
}

fn ten_to(exponent: i64) -> BigInt {
    num_traits::pow(BigInt::from(10u8), exponent as usize)
}

fn overflows_format() -> CastError {
    CastError::new("value overflows numeric format")
}

fn field_overflow(precision: u32, scale: u32) -> CastError {
    let max_digits = i64::from(precision) - i64::from(scale);
    let limit = if max_digits == 0 {
        "1".to_owned()
    } else {
        format!("10^{max_digits}")
    };
    CastError::new("numeric field overflow").with_detail(format!(
        "A field with precision {precision}, scale {scale} must round to an absolute value less than {limit}."
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(text: &str, typmod: Option<(u32, u32)>) -> Result<String, String> {
        parse(text, typmod)
            .map(|n| n.to_string())
            .map_err(|e| e.message().to_owned())
    }

    #[test]
    fn keeps_the_written_scale_shifted_by_the_exponent() {
        assert_eq!(show("1.50", None).unwrap(), "1.50");
        assert_eq!(show("1.50e1", None).unwrap(), "15.0");
        assert_eq!(show("1e3", None).unwrap(), "1000");
        assert_eq!(show("100e-2", None).unwrap(), "1.00");
        assert_eq!(show("-0.00", None).unwrap(), "0.00");
        assert_eq!(show("1e 5", None).unwrap(), "100000");
    }

    #[test]
    fn holds_every_value_postgres_stores() {
        assert_eq!(
            show("79228162514264337593543950336", None).unwrap(),
            "79228162514264337593543950336"
        );
        assert_eq!(
            show("1e-29", None).unwrap(),
            "0.00000000000000000000000000001"
        );
        assert_eq!(show("1e16383", None).unwrap().len(), 16384);
        assert_eq!(show("1e-16383", None).unwrap().len(), 16385);
        assert_eq!(
            show("1e-16384", None).unwrap_err(),
            "value overflows numeric format"
        );
        assert_eq!(
            show("1e131072", None).unwrap_err(),
            "value overflows numeric format"
        );
        assert_eq!(show("0000.000e-3", None).unwrap(), "0.000000");
    }

    #[test]
    fn typmod_rounds_before_checking_precision() {
        assert_eq!(show("999.994", Some((5, 2))).unwrap(), "999.99");
        assert_eq!(
            show("999.995", Some((5, 2))).unwrap_err(),
            "numeric field overflow"
        );
        assert_eq!(show("-0.004", Some((5, 2))).unwrap(), "0.00");
        assert_eq!(show("1e-16383", Some((5, 2))).unwrap(), "0.00");
        assert_eq!(
            show("1e-20000", Some((5, 2))).unwrap_err(),
            "value overflows numeric format"
        );
        assert_eq!(show("0.00099", Some((2, 5))).unwrap(), "0.00099");
        assert_eq!(
            show("0.001", Some((2, 5))).unwrap_err(),
            "numeric field overflow"
        );
        assert_eq!(
            show("1.23456789012345678901234567890123456789", Some((3, 2))).unwrap(),
            "1.23"
        );
    }

    #[test]
    fn field_overflow_detail_names_the_limit() {
        let err = parse("1", Some((3, 3))).unwrap_err();
        assert_eq!(
            err.detail(),
            Some("A field with precision 3, scale 3 must round to an absolute value less than 1.")
        );
        let err = parse("-inf", Some((5, 2))).unwrap_err();
        assert_eq!(err.message(), "numeric field overflow");
    }

    #[test]
    fn typed_values_round_like_text() {
        let d = |s: &str| Numeric::Finite(s.parse().unwrap());
        assert_eq!(
            apply_typmod(d("-2.345"), Some((4, 2))).unwrap().to_string(),
            "-2.35"
        );
        assert_eq!(
            apply_typmod(d("7"), Some((4, 3))).unwrap().to_string(),
            "7.000"
        );
        assert!(apply_typmod(d("10"), Some((4, 3))).is_err());
        assert_eq!(apply_typmod(Numeric::NaN, Some((4, 3))), Ok(Numeric::NaN));
    }
}
