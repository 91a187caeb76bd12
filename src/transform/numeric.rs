//! `numeric` arithmetic exactly as PostgreSQL 15's `numeric.c` does it: exact sums, differences
//! and products, quotients rounded half away from zero at the scale `select_div_scale` picks,
//! and the special values NaN and ±Infinity.
//!
//! Finite values are `bigdecimal::BigDecimal`s whose scale is always PostgreSQL's *display
//! scale* (`dscale`), the number of digits after the point that the output function prints.
//! A 28-digit decimal type cannot hold what PostgreSQL computes (`0.125 * 3 / 7` has 20 digits
//! after the point, a 600-digit value is ordinary), so the representation is arbitrary
//! precision and every rule for a result's scale is PostgreSQL's own.

use std::cmp::Ordering;
use std::fmt;

use bigdecimal::{BigDecimal, RoundingMode};
use num_bigint::{BigInt, Sign};
use num_integer::Integer;
use num_traits::{Signed, Zero};

use super::eval_error::EvalError;

/// A PostgreSQL `numeric`: finite values are arbitrary precision, their scale PostgreSQL's
/// display scale (see this module); the specials exist because PostgreSQL's numeric has
/// them. Finite values compare by value (`1.0 = 1.00`), as in PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Numeric {
    NegInfinity,
    Finite(BigDecimal),
    Infinity,
    /// PostgreSQL sorts NaN above every other numeric, and so do we.
    NaN,
}

impl fmt::Display for Numeric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Numeric::NegInfinity => f.write_str("-Infinity"),
            Numeric::Finite(d) => d.write_plain_string(f),
            Numeric::Infinity => f.write_str("Infinity"),
            Numeric::NaN => f.write_str("NaN"),
        }
    }
}

/// Most digits after the point PostgreSQL stores (`NUMERIC_DSCALE_MAX`).
pub const MAX_DISPLAY_SCALE: i64 = 0x3FFF;
/// A quotient keeps at least this many significant digits (`NUMERIC_MIN_SIG_DIGITS`).
const MIN_SIG_DIGITS: i64 = 16;
/// Decimal digits per base-10000 digit of PostgreSQL's storage (`DEC_DIGITS`).
const DEC_DIGITS: i64 = 4;
/// Largest scale `select_div_scale` picks (`NUMERIC_MAX_DISPLAY_SCALE`).
const MAX_DIV_SCALE: i64 = 1000;
/// Values of 10^131072 and more overflow: PostgreSQL's weight is an int16 counting base-10000
/// digits (`NUMERIC_WEIGHT_MAX` = 32767), so the leading decimal digit is at most 10^131071.
const MAX_DECIMAL_EXPONENT: i64 = 4 * 32768 - 1;

impl Numeric {
    /// A finite value of `mantissa` × 10^-`scale`; `scale` is the display scale (>= 0).
    pub fn finite(mantissa: BigInt, scale: i64) -> Numeric {
        debug_assert!(scale >= 0);
        Numeric::Finite(BigDecimal::new(mantissa, scale))
    }

    /// An integer as a numeric of scale 0 (PostgreSQL's `int8_numeric`).
    pub fn from_i64(i: i64) -> Numeric {
        Numeric::finite(BigInt::from(i), 0)
    }
}

/// PostgreSQL's error when a result's weight does not fit its int16.
pub fn overflow() -> EvalError {
    EvalError::new("value overflows numeric format")
}

fn division_by_zero() -> EvalError {
    EvalError::new("division by zero")
}

/// `numeric_add`: the exact sum, scale `max(dscale1, dscale2)`.
pub fn add(x: &Numeric, y: &Numeric) -> Result<Numeric, EvalError> {
    use Numeric::*;
    match (x, y) {
        (NaN, _) | (_, NaN) => Ok(NaN),
        (Infinity, NegInfinity) | (NegInfinity, Infinity) => Ok(NaN),
        (Infinity, _) | (_, Infinity) => Ok(Infinity),
        (NegInfinity, _) | (_, NegInfinity) => Ok(NegInfinity),
        (Finite(a), Finite(b)) => checked(a + b),
    }
}

/// `numeric_sub`: the exact difference, scale `max(dscale1, dscale2)`.
pub fn sub(x: &Numeric, y: &Numeric) -> Result<Numeric, EvalError> {
    add(x, &negate(y))
}

/// Unary minus (`numeric_uminus`); zero stays unsigned.
pub fn negate(x: &Numeric) -> Numeric {
    match x {
        Numeric::NaN => Numeric::NaN,
        Numeric::Infinity => Numeric::NegInfinity,
        Numeric::NegInfinity => Numeric::Infinity,
        Numeric::Finite(d) => Numeric::Finite(-d),
    }
}

/// `numeric_mul`: the exact product, scale `dscale1 + dscale2`, rounded half away from zero to
/// `NUMERIC_DSCALE_MAX` places when that is more (as `numeric_mul_opt_error` does).
pub fn mul(x: &Numeric, y: &Numeric) -> Result<Numeric, EvalError> {
    use Numeric::*;
    match (x, y) {
        (NaN, _) | (_, NaN) => Ok(NaN),
        (Finite(a), Finite(b)) => {
            let product = a * b;
            if product.fractional_digit_count() > MAX_DISPLAY_SCALE {
                checked(product.with_scale_round(MAX_DISPLAY_SCALE, RoundingMode::HalfUp))
            } else {
                checked(product)
            }
        }
        (Finite(d), inf) | (inf, Finite(d)) => Ok(match d.sign() {
            Sign::NoSign => NaN,
            Sign::Plus => inf.clone(),
            Sign::Minus => negate(inf),
        }),
        (a, b) => Ok(if a == b { Infinity } else { NegInfinity }),
    }
}

/// `numeric_div`: the quotient rounded half away from zero at [`select_div_scale`]'s scale.
pub fn div(x: &Numeric, y: &Numeric) -> Result<Numeric, EvalError> {
    use Numeric::*;
    match (x, y) {
        (NaN, _) | (_, NaN) => Ok(NaN),
        (Infinity | NegInfinity, Infinity | NegInfinity) => Ok(NaN),
        (inf @ (Infinity | NegInfinity), Finite(d)) => match d.sign() {
            Sign::NoSign => Err(division_by_zero()),
            Sign::Plus => Ok(inf.clone()),
            Sign::Minus => Ok(negate(inf)),
        },
        // PostgreSQL returns zero (scale 0) rather than an underflow error.
        (Finite(_), Infinity | NegInfinity) => Ok(Numeric::from_i64(0)),
        (Finite(a), Finite(b)) => {
            if b.is_zero() {
                return Err(division_by_zero());
            }
            let scale = select_div_scale(a, b);
            checked(divide_rounded(a, b, scale))
        }
    }
}

/// `numeric_mod`: `x - y * trunc(x / y)`, the sign of `x`, scale `max(dscale1, dscale2)`.
pub fn modulo(x: &Numeric, y: &Numeric) -> Result<Numeric, EvalError> {
    use Numeric::*;
    match (x, y) {
        (NaN, _) | (_, NaN) => Ok(NaN),
        (Infinity | NegInfinity, Finite(d)) if d.is_zero() => Err(division_by_zero()),
        (Infinity | NegInfinity, _) => Ok(NaN),
        (Finite(_), Infinity | NegInfinity) => Ok(x.clone()),
        (Finite(a), Finite(b)) => {
            if b.is_zero() {
                return Err(division_by_zero());
            }
            let scale = a.fractional_digit_count().max(b.fractional_digit_count());
            let (ma, mb) = (mantissa_at(a, scale), mantissa_at(b, scale));
            Ok(Numeric::finite(ma % mb, scale))
        }
    }
}

/// The result scale of a division, PostgreSQL's `select_div_scale`: enough digits for
/// `NUMERIC_MIN_SIG_DIGITS` significant ones, judged from the base-10000 weight and first
/// base-10000 digit of each operand, and never fewer than either operand's display scale.
pub fn select_div_scale(x: &BigDecimal, y: &BigDecimal) -> i64 {
    let (weight1, first1) = nbase_lead(x);
    let (weight2, first2) = nbase_lead(y);
    let mut qweight = weight1 - weight2;
    if first1 <= first2 {
        qweight -= 1;
    }
    (MIN_SIG_DIGITS - qweight * DEC_DIGITS)
        .max(x.fractional_digit_count())
        .max(y.fractional_digit_count())
        .clamp(0, MAX_DIV_SCALE)
}

/// The weight and value of the first nonzero base-10000 digit, as PostgreSQL stores the value;
/// `(0, 0)` for zero.
fn nbase_lead(d: &BigDecimal) -> (i64, u32) {
    let (mantissa, scale) = d.as_bigint_and_scale();
    if mantissa.is_zero() {
        return (0, 0);
    }
    let digits = mantissa.magnitude().to_str_radix(10);
    // Power of ten of the leading digit, then of the base-10000 digit holding it.
    let exponent = digits.len() as i64 - 1 - scale;
    let weight = exponent.div_euclid(DEC_DIGITS);
    let width = (exponent - weight * DEC_DIGITS + 1) as usize;
    let first = digits
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(width)
        .fold(0u32, |v, b| v * 10 + u32::from(b - b'0'));
    (weight, first)
}

/// `a / b` at `scale` places, rounded half away from zero. PostgreSQL's `div_var` computes
/// digits past `scale` and rounds those, which gives the same as rounding the exact quotient.
fn divide_rounded(a: &BigDecimal, b: &BigDecimal, scale: i64) -> BigDecimal {
    let (ma, sa) = a.as_bigint_and_scale();
    let (mb, sb) = b.as_bigint_and_scale();
    // a / b * 10^scale = ma * 10^(scale + sb - sa) / mb.
    let shift = scale + sb - sa;
    let (numerator, denominator) = if shift >= 0 {
        (ma.as_ref() * ten_to(shift), mb.into_owned())
    } else {
        (ma.into_owned(), mb.as_ref() * ten_to(-shift))
    };
    let (quotient, remainder) = numerator.div_rem(&denominator);
    let twice = remainder.abs() * 2u8;
    let quotient = if twice >= denominator.abs() {
        let away = if numerator.sign() == denominator.sign() {
            1
        } else {
            -1
        };
        quotient + away
    } else {
        quotient
    };
    BigDecimal::new(quotient, scale)
}

/// The value's digits as an integer at `scale` places (`scale` >= its own scale).
fn mantissa_at(d: &BigDecimal, scale: i64) -> BigInt {
    let (m, s) = d.as_bigint_and_scale();
    m.as_ref() * ten_to(scale - s)
}

fn ten_to(exponent: i64) -> BigInt {
    num_traits::pow(BigInt::from(10u8), exponent as usize)
}

/// Refuses a result PostgreSQL cannot store (`make_result`'s weight check).
fn checked(d: BigDecimal) -> Result<Numeric, EvalError> {
    if !d.is_zero() && d.order_of_magnitude() > MAX_DECIMAL_EXPONENT {
        return Err(overflow());
    }
    Ok(Numeric::Finite(d))
}

/// Compares a numeric with an integer without building a numeric for the integer.
pub fn cmp_int(x: &Numeric, i: i64) -> Ordering {
    match x {
        Numeric::NegInfinity => Ordering::Less,
        Numeric::Infinity | Numeric::NaN => Ordering::Greater,
        Numeric::Finite(d) => d.cmp(&BigDecimal::from(i)),
    }
}

#[cfg(test)]
mod tests;
