//! `smallint`, `integer` and `bigint` input, as PostgreSQL 15's `pg_strtoint16/32/64` read it:
//! optional surrounding whitespace, an optional sign and decimal digits only (no `_`
//! separators, no hex: those arrived in PostgreSQL 16).

use super::error::CastError;
use super::space::is_pg_space;

/// Which integer type a value must fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IntWidth {
    Int2,
    Int4,
    Int8,
}

impl IntWidth {
    fn min(self) -> i64 {
        match self {
            IntWidth::Int2 => i16::MIN.into(),
            IntWidth::Int4 => i32::MIN.into(),
            IntWidth::Int8 => i64::MIN,
        }
    }

    fn max(self) -> i64 {
        match self {
            IntWidth::Int2 => i16::MAX.into(),
            IntWidth::Int4 => i32::MAX.into(),
            IntWidth::Int8 => i64::MAX,
        }
    }

    pub(super) fn sql_name(self) -> &'static str {
        match self {
            IntWidth::Int2 => "smallint",
            IntWidth::Int4 => "integer",
            IntWidth::Int8 => "bigint",
        }
    }

    pub(super) fn contains(self, value: i128) -> bool {
        (i128::from(self.min())..=i128::from(self.max())).contains(&value)
    }
}

/// Reads `text` as an integer of `width`.
pub(super) fn parse(text: &str, width: IntWidth) -> Result<i64, CastError> {
    let bytes = text.as_bytes();
    let mut at = bytes.iter().take_while(|b| is_pg_space(**b)).count();
    let negative = match bytes.get(at) {
        Some(b'-') => {
            at += 1;
            true
        }
        Some(b'+') => {
            at += 1;
            false
        }
        _ => false,
    };
    if !bytes.get(at).is_some_and(u8::is_ascii_digit) {
        return Err(CastError::invalid_syntax(width.sql_name(), text));
    }
    // Accumulate as a negative number, like PostgreSQL, so that the minimum fits; an overflow is
    // reported as soon as it happens, before any trailing garbage is looked at.
    let mut value: i64 = 0;
    while let Some(digit) = bytes.get(at).filter(|b| b.is_ascii_digit()) {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_sub(i64::from(digit - b'0')))
            .filter(|v| *v >= width.min())
            .ok_or_else(|| out_of_range(width, text))?;
        at += 1;
    }
    if !bytes[at..].iter().all(|b| is_pg_space(*b)) {
        return Err(CastError::invalid_syntax(width.sql_name(), text));
    }
    if negative {
        Ok(value)
    } else if value == width.min() {
        Err(out_of_range(width, text))
    } else {
        Ok(-value)
    }
}

/// An integer cast to a narrower integer type (`int8::int2`).
pub(super) fn check_range(value: i64, width: IntWidth) -> Result<i64, CastError> {
    if width.contains(value.into()) {
        Ok(value)
    } else {
        Err(CastError::new(format!("{} out of range", width.sql_name())))
    }
}

fn out_of_range(width: IntWidth, text: &str) -> CastError {
    CastError::new(format!(
        "value {} is out of range for type {}",
        super::error::Quoted(text),
        width.sql_name()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_width_up_to_its_limits() {
        assert_eq!(parse("-32768", IntWidth::Int2), Ok(-32768));
        assert_eq!(parse("+2147483647", IntWidth::Int4), Ok(i32::MAX.into()));
        assert_eq!(parse("-9223372036854775808", IntWidth::Int8), Ok(i64::MIN));
        assert_eq!(parse("9223372036854775807", IntWidth::Int8), Ok(i64::MAX));
        assert!(parse("9223372036854775808", IntWidth::Int8).is_err());
        assert!(parse("32768", IntWidth::Int2).is_err());
    }

    #[test]
    fn overflow_is_reported_before_trailing_garbage() {
        let err = parse("99999999999x", IntWidth::Int4).unwrap_err();
        assert_eq!(
            err.message(),
            r#"value "99999999999x" is out of range for type integer"#
        );
    }

    #[test]
    fn skips_c_isspace_including_vertical_tab() {
        assert_eq!(parse("\x0b\x0c 7 \r\n", IntWidth::Int2), Ok(7));
        assert!(parse("\u{a0}7", IntWidth::Int2).is_err());
    }
}
