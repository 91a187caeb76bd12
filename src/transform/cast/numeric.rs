//! `numeric` input, typmod rounding and conversion to integers, as PostgreSQL 15 does them.
//!
//! PostgreSQL's numeric has up to 131072 digits before the point and 16383 after; switchyard
//! holds finite values in a `rust_decimal::Decimal` (a 96-bit integer and a scale of at most
//! 28), which covers money-like columns. A value PostgreSQL would store but the decimal cannot
//! hold *exactly, with the same number of decimal places* is refused with a message saying so,
//! never rounded silently.
//!
//! The parser never builds the number digit by digit into a bignum: it keeps the digits as they
//! were written ([`Written`]) and reads only the few it needs, so even a megabyte of digits is
//! judged without allocating.

use rust_decimal::{Decimal, RoundingStrategy};

use super::error::{CastError, Quoted};
use super::integer::IntWidth;
use super::is_pg_space;
use crate::transform::value::Numeric;

/// Largest magnitude of a `Decimal`'s integer part: 2^96 - 1.
const MAX_MANTISSA: u128 = (1 << 96) - 1;
/// Digits a `u128` always holds (10^38 < 2^128), enough to see that a mantissa is too big.
const U128_SAFE_DIGITS: i64 = 38;
/// PostgreSQL refuses exponents at or past `INT_MAX / 2` before anything else.
const MAX_EXPONENT: i64 = i32::MAX as i64 / 2;
/// Most digits after the point PostgreSQL stores (`NUMERIC_DSCALE_MAX`).
const MAX_DISPLAY_SCALE: i64 = 0x3FFF;
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
    /// The `index`th digit of `int` followed by `frac`; zero outside them.
    fn digit(&self, index: i64) -> u8 {
        let Ok(index) = usize::try_from(index) else {
            return 0;
        };
        let digit = match index.checked_sub(self.int.len()) {
            None => self.int[index],
            Some(in_frac) => self.frac.get(in_frac).copied().unwrap_or(b'0'),
        };
        digit - b'0'
    }

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

    /// The digits from `first` up to `scale` places after the point as one integer, rounded
    /// half away from zero on the next digit; `None` when that takes more than a `u128` holds.
    fn mantissa_at_scale(&self, first: i64, scale: i64) -> Option<u128> {
        let end = self.point() + scale;
        if end - first > U128_SAFE_DIGITS {
            return None;
        }
        let kept = (first..end).fold(0u128, |m, i| m * 10 + u128::from(self.digit(i)));
        Some(kept + u128::from(self.digit(end) >= 5))
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
        return apply_typmod(*value, typmod);
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
    let too_big = || too_big_for_decimal(text);
    match typmod {
        Some((precision, scale)) => round_to_typmod(&written, precision, scale, too_big),
        None => {
            let scale = written.display_scale();
            let first = written.first_nonzero().unwrap_or(written.point() + scale);
            let mantissa = written.mantissa_at_scale(first, scale);
            decimal(written.negative, mantissa, scale).ok_or_else(too_big)
        }
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
fn round_to_typmod(
    written: &Written<'_>,
    precision: u32,
    scale: u32,
    too_big: impl Fn() -> CastError,
) -> Result<Numeric, CastError> {
    let scale_i64 = i64::from(scale);
    let first = written
        .first_nonzero()
        .unwrap_or(written.point() + scale_i64);
    // With the leading digit nonzero, this many digits mean at least 10^(digits - 1).
    if written.point() + scale_i64 - first > i64::from(precision) {
        return Err(field_overflow(precision, scale));
    }
    let mantissa = written.mantissa_at_scale(first, scale_i64);
    if mantissa.is_some_and(|m| {
        10u128
            .checked_pow(precision)
            .is_some_and(|limit| m >= limit)
    }) {
        return Err(field_overflow(precision, scale));
    }
    decimal(written.negative, mantissa, scale_i64).ok_or_else(too_big)
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
        Numeric::Finite(d) => {
            // Spell the decimal's integer out as digits and round those, like text input.
            let mut buffer = [0u8; 40];
            let digits = ascii_digits(d.mantissa().unsigned_abs(), &mut buffer);
            let written = Written {
                negative: d.is_sign_negative(),
                int: digits,
                frac: &[],
                exponent: -i64::from(d.scale()),
            };
            round_to_typmod(&written, precision, scale, || {
                too_big_for_decimal(&d.to_string())
            })
        }
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
            let whole = d.round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero);
            let integer = whole.mantissa() / 10i128.pow(whole.scale());
            match i64::try_from(integer) {
                Ok(i) if width.contains(integer) => Ok(i),
                _ => Err(CastError::new(format!("{name} out of range"))),
            }
        }
    }
}

/// A decimal of `mantissa` at `scale`, if it fits; zero is never negative, as in PostgreSQL.
fn decimal(negative: bool, mantissa: Option<u128>, scale: i64) -> Option<Numeric> {
    let mantissa = mantissa.filter(|m| *m <= MAX_MANTISSA)?;
    let scale = u32::try_from(scale)
        .ok()
        .filter(|s| *s <= Decimal::MAX_SCALE)?;
    let signed = if negative {
        -(mantissa as i128)
    } else {
        mantissa as i128
    };
    Some(Numeric::Finite(Decimal::from_i128_with_scale(
        signed, scale,
    )))
}

/// Writes `value`'s decimal digits into `buffer` and returns them.
fn ascii_digits(mut value: u128, buffer: &mut [u8; 40]) -> &[u8] {
    let mut start = buffer.len();
    loop {
        start -= 1;
        buffer[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            return &buffer[start..];
        }
    }
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

fn too_big_for_decimal(text: &str) -> CastError {
    CastError::new(format!(
        "numeric value does not fit switchyard's 28-digit decimal: {}",
        Quoted(text)
    ))
    .with_detail(
        "switchyard holds numeric values as 96-bit decimals: at most 28 digits after the point \
         and an absolute value below 79228162514264337593543950336; cast to a numeric(p,s) \
         that fits, or keep the column as text",
    )
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
    fn refuses_what_the_decimal_cannot_hold_exactly() {
        assert_eq!(
            show("79228162514264337593543950335", None).unwrap(),
            "79228162514264337593543950335"
        );
        for text in [
            "79228162514264337593543950336",
            "1e-29",
            "1.00000000000000000000000000000",
        ] {
            let message = show(text, None).unwrap_err();
            assert!(
                message.contains("does not fit switchyard's 28-digit"),
                "{text}: {message}"
            );
        }
        assert_eq!(
            show("1e131072", None).unwrap_err(),
            "value overflows numeric format"
        );
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
