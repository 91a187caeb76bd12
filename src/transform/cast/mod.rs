//! Casts with PostgreSQL 15's semantics: text is read by the rules of the type's input function,
//! so a value this layer accepts is one the target would accept, with the same value, and a value
//! it rejects is caught here, with PostgreSQL's reason, before the row reaches the target.
//!
//! ```text
//!   Value::Text --parse (input function)--> Bool Int Numeric Date Timestamp(Tz) Uuid Json
//!   typed value --convert (cast function)--> another type, checked like PostgreSQL's cast
//!   typed value --Display (output function)--> Value::Text
//! ```
//!
//! Where switchyard is deliberately narrower than PostgreSQL, it refuses with its own message
//! instead of guessing: date/time text outside ISO 8601 (the `datetime` module lists what is
//! read and what is refused), numerics that do not fit a 96-bit decimal (`numeric`), and JSON
//! nested deeper than PostgreSQL reliably parses (`json`). Every message that refuses what
//! PostgreSQL would accept names switchyard, so it is never mistaken for bad data.
//!
//! Every parser works on the borrowed text without allocating; only errors and casts *to* text
//! build strings, and text that stays text (or becomes JSON) keeps borrowing the source row.

mod boolean;
mod cast_type;
mod datetime;
mod error;
mod integer;
mod json;
mod numeric;
mod space;
mod uuid;

#[cfg(test)]
mod corpus;

use std::borrow::Cow;

pub use cast_type::CastType;
pub use error::CastError;

use super::temporal::{Date, Timestamp};
use super::value::{Numeric, Value};
use integer::IntWidth;
use json::JsonFlavor;

/// Casts `value` to `to` as `value::to` would in PostgreSQL 15 with `TimeZone = UTC` and
/// `DateStyle = ISO`. NULL stays NULL for every target.
pub fn cast<'a>(value: Value<'a>, to: &CastType) -> Result<Value<'a>, CastError> {
    match value {
        Value::Null => Ok(Value::Null),
        Value::Text(text) => from_text(text, to),
        typed => from_typed(typed, to),
    }
}

/// Text goes through the target type's input function.
fn from_text<'a>(text: Cow<'a, str>, to: &CastType) -> Result<Value<'a>, CastError> {
    Ok(match *to {
        CastType::Text => Value::Text(text),
        CastType::Json => {
            json::validate(&text, JsonFlavor::Json)?;
            Value::Json(text)
        }
        CastType::Jsonb => {
            json::validate(&text, JsonFlavor::Jsonb)?;
            Value::Json(text)
        }
        CastType::Bool => Value::Bool(boolean::parse(&text)?),
        CastType::Int2 => Value::Int(integer::parse(&text, IntWidth::Int2)?),
        CastType::Int4 => Value::Int(integer::parse(&text, IntWidth::Int4)?),
        CastType::Int8 => Value::Int(integer::parse(&text, IntWidth::Int8)?),
        CastType::Numeric { typmod } => Value::Numeric(numeric::parse(&text, typmod)?),
        CastType::Date => Value::Date(datetime::parse_date(&text)?),
        CastType::Timestamp => Value::Timestamp(datetime::parse_timestamp(&text)?),
        CastType::TimestampTz => Value::TimestampTz(datetime::parse_timestamptz(&text)?),
        CastType::Uuid => Value::Uuid(uuid::parse(&text)?),
    })
}

/// Typed values go through PostgreSQL's cast functions; anything to text is the output function.
fn from_typed<'a>(value: Value<'a>, to: &CastType) -> Result<Value<'a>, CastError> {
    use CastType as T;
    Ok(match (value, *to) {
        (value, T::Text) => to_text(value),
        (Value::Bool(b), T::Bool) => Value::Bool(b),
        (Value::Int(i), T::Int2) => Value::Int(integer::check_range(i, IntWidth::Int2)?),
        (Value::Int(i), T::Int4) => Value::Int(integer::check_range(i, IntWidth::Int4)?),
        (Value::Int(i), T::Int8) => Value::Int(i),
        (Value::Int(i), T::Numeric { typmod }) => {
            let value = Numeric::Finite(i.into());
            Value::Numeric(numeric::apply_typmod(value, typmod)?)
        }
        (Value::Numeric(n), T::Int2) => Value::Int(numeric::to_int(n, IntWidth::Int2)?),
        (Value::Numeric(n), T::Int4) => Value::Int(numeric::to_int(n, IntWidth::Int4)?),
        (Value::Numeric(n), T::Int8) => Value::Int(numeric::to_int(n, IntWidth::Int8)?),
        (Value::Numeric(n), T::Numeric { typmod }) => {
            Value::Numeric(numeric::apply_typmod(n, typmod)?)
        }
        (Value::Date(d), T::Date) => Value::Date(d),
        (Value::Date(d), T::Timestamp) => Value::Timestamp(date_to_timestamp(d)?),
        // With TimeZone = UTC, midnight of the date is midnight UTC.
        (Value::Date(d), T::TimestampTz) => Value::TimestampTz(date_to_timestamp(d)?),
        (Value::Timestamp(t) | Value::TimestampTz(t), T::Date) => Value::Date(t.date()),
        // With TimeZone = UTC, local time and UTC are the same microseconds.
        (Value::Timestamp(t) | Value::TimestampTz(t), T::Timestamp) => Value::Timestamp(t),
        (Value::Timestamp(t) | Value::TimestampTz(t), T::TimestampTz) => Value::TimestampTz(t),
        (Value::Uuid(u), T::Uuid) => Value::Uuid(u),
        // A value from a json cast may hold what jsonb refuses (`\u0000`), so check again.
        (Value::Json(j), T::Jsonb) => {
            json::validate(&j, JsonFlavor::Jsonb)?;
            Value::Json(j)
        }
        (Value::Json(j), T::Json) => Value::Json(j),
        (value, to) => return Err(CastError::cannot_cast(value.type_name(), &to.sql_name())),
    })
}

/// The output function's text; borrowed when the value already is text.
fn to_text(value: Value<'_>) -> Value<'_> {
    match value {
        Value::Text(t) | Value::Json(t) => Value::Text(t),
        // `boolean::text` is PostgreSQL's booltext, which spells the words out (`t` is boolout).
        Value::Bool(true) => Value::Text(Cow::Borrowed("true")),
        Value::Bool(false) => Value::Text(Cow::Borrowed("false")),
        other => Value::Text(Cow::Owned(other.to_string())),
    }
}

fn date_to_timestamp(date: Date) -> Result<Timestamp, CastError> {
    date.to_timestamp()
        .ok_or_else(|| CastError::new("date out of range for timestamp"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALL_TYPES: [CastType; 14] = [
        CastType::Bool,
        CastType::Int2,
        CastType::Int4,
        CastType::Int8,
        CastType::Numeric { typmod: None },
        CastType::Numeric {
            typmod: Some((5, 2)),
        },
        CastType::Numeric {
            typmod: Some((2, 5)),
        },
        CastType::Text,
        CastType::Date,
        CastType::Timestamp,
        CastType::TimestampTz,
        CastType::Uuid,
        CastType::Json,
        CastType::Jsonb,
    ];

    fn text_cast(input: &str, to: CastType) -> Result<String, CastError> {
        cast(Value::text(input), &to).map(|v| v.to_string())
    }

    fn typed_cast(value: Value<'static>, to: CastType) -> Result<String, CastError> {
        cast(value, &to).map(|v| v.to_string())
    }

    fn ts(input: &str) -> Timestamp {
        datetime::parse_timestamp(input).unwrap()
    }

    #[test]
    fn null_stays_null_for_every_target() {
        for to in ALL_TYPES {
            assert_eq!(cast(Value::Null, &to), Ok(Value::Null));
        }
    }

    #[test]
    fn text_to_text_and_json_borrow_the_row() {
        let row = String::from("{\"a\": 1}");
        for to in [CastType::Text, CastType::Json, CastType::Jsonb] {
            match cast(Value::text(&row), &to).unwrap() {
                Value::Text(Cow::Borrowed(t)) | Value::Json(Cow::Borrowed(t)) => {
                    assert!(std::ptr::eq(t, row.as_str()))
                }
                other => panic!("{to:?} copied the text: {other:?}"),
            }
        }
    }

    #[test]
    fn integers_convert_to_numeric_and_back_with_rounding() {
        let five_two = CastType::Numeric {
            typmod: Some((5, 2)),
        };
        assert_eq!(typed_cast(Value::Int(42), five_two).unwrap(), "42.00");
        assert_eq!(
            typed_cast(Value::Int(1000), five_two)
                .unwrap_err()
                .message(),
            "numeric field overflow"
        );
        let half = |s: &str| {
            Value::Numeric(Numeric::Finite(
                s.parse::<bigdecimal::BigDecimal>().unwrap(),
            ))
        };
        assert_eq!(typed_cast(half("2.5"), CastType::Int4).unwrap(), "3");
        assert_eq!(typed_cast(half("-2.5"), CastType::Int4).unwrap(), "-3");
        assert_eq!(typed_cast(half("-2.49"), CastType::Int2).unwrap(), "-2");
        assert_eq!(
            typed_cast(half("32767.5"), CastType::Int2)
                .unwrap_err()
                .message(),
            "smallint out of range"
        );
        assert_eq!(
            typed_cast(Value::Numeric(Numeric::NaN), CastType::Int8)
                .unwrap_err()
                .message(),
            "cannot convert NaN to bigint"
        );
        assert_eq!(
            typed_cast(Value::Int(40_000), CastType::Int2)
                .unwrap_err()
                .message(),
            "smallint out of range"
        );
        assert_eq!(
            typed_cast(half("1.005"), five_two).unwrap(),
            "1.01",
            "typmod rounds half away from zero"
        );
    }

    #[test]
    fn typed_values_print_like_their_output_function() {
        let n = Value::Numeric(Numeric::Finite("-1.50".parse().unwrap()));
        assert_eq!(typed_cast(n, CastType::Text).unwrap(), "-1.50");
        assert_eq!(typed_cast(Value::Int(-7), CastType::Text).unwrap(), "-7");
        assert_eq!(
            typed_cast(Value::Bool(true), CastType::Text).unwrap(),
            "true"
        );
        assert_eq!(
            typed_cast(Value::Bool(false), CastType::Text).unwrap(),
            "false"
        );
        let u = Value::Uuid(uuid::parse("A0EEBC999C0B4EF8BB6D6BB9BD380A11").unwrap());
        assert_eq!(
            typed_cast(u, CastType::Text).unwrap(),
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
        );
        let t = Value::TimestampTz(ts("2024-03-01 12:00:00.25"));
        assert_eq!(
            typed_cast(t, CastType::Text).unwrap(),
            "2024-03-01 12:00:00.25+00"
        );
    }

    #[test]
    fn dates_and_timestamps_convert_like_postgres_under_utc() {
        let d = Value::Date(datetime::parse_date("2024-03-01").unwrap());
        assert_eq!(
            typed_cast(d.clone(), CastType::Timestamp).unwrap(),
            "2024-03-01 00:00:00"
        );
        assert_eq!(
            typed_cast(d, CastType::TimestampTz).unwrap(),
            "2024-03-01 00:00:00+00"
        );
        let t = Value::Timestamp(ts("1999-12-31 23:59:59.999999 BC"));
        assert_eq!(
            typed_cast(t.clone(), CastType::Date).unwrap(),
            "1999-12-31 BC"
        );
        assert_eq!(
            typed_cast(t, CastType::TimestampTz).unwrap(),
            "1999-12-31 23:59:59.999999+00 BC"
        );
        let tz = Value::TimestampTz(ts("2024-03-01 12:00:00"));
        assert_eq!(
            typed_cast(tz, CastType::Timestamp).unwrap(),
            "2024-03-01 12:00:00"
        );
        let far = Value::Date(datetime::parse_date("300000-01-01").unwrap());
        assert_eq!(
            typed_cast(far, CastType::Timestamp).unwrap_err().message(),
            "date out of range for timestamp"
        );
        let inf = Value::Date(Date::INFINITY);
        assert_eq!(typed_cast(inf, CastType::Timestamp).unwrap(), "infinity");
        let neg = Value::Timestamp(Timestamp::NEG_INFINITY);
        assert_eq!(typed_cast(neg, CastType::Date).unwrap(), "-infinity");
    }

    #[test]
    fn json_becomes_jsonb_only_when_jsonb_accepts_it() {
        let nul = cast(Value::text(r#""\u0000""#), &CastType::Json).unwrap();
        assert!(cast(nul.clone(), &CastType::Jsonb).is_err());
        assert_eq!(
            typed_cast(nul.into_owned(), CastType::Text).unwrap(),
            r#""\u0000""#
        );
    }

    #[test]
    fn unrelated_types_do_not_cast() {
        let err = typed_cast(Value::Bool(true), CastType::Int4).unwrap_err();
        assert_eq!(err.message(), "cannot cast type boolean to integer");
        assert!(typed_cast(Value::Int(1), CastType::Date).is_err());
        assert!(typed_cast(Value::Int(1), CastType::Uuid).is_err());
    }

    #[test]
    fn text_round_trips_through_every_type() {
        let cases = [
            (CastType::Int2, "-32768"),
            (CastType::Numeric { typmod: None }, "-0.0015"),
            (CastType::Date, "0044-03-15 BC"),
            (CastType::Timestamp, "294276-12-31 23:59:59.999999"),
            (CastType::TimestampTz, "4714-11-24 00:00:00+00 BC"),
            (CastType::Bool, "t"),
            (CastType::Uuid, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        ];
        for (to, text) in cases {
            let value = cast(Value::text(text), &to).unwrap();
            assert_eq!(value.to_string(), text, "{to:?}");
            let again = cast(Value::text(&value.to_string()), &to)
                .unwrap()
                .into_owned();
            assert_eq!(again, value.into_owned());
        }
    }

    #[test]
    fn text_casts_report_postgres_messages() {
        let message = |input: &str, to| text_cast(input, to).unwrap_err().message().to_owned();
        assert_eq!(
            message("12a", CastType::Int4),
            r#"invalid input syntax for type integer: "12a""#
        );
        assert_eq!(
            message("99999", CastType::Int2),
            r#"value "99999" is out of range for type smallint"#
        );
        assert_eq!(
            message("2024-02-30", CastType::Date),
            r#"date/time field value out of range: "2024-02-30""#
        );
        assert_eq!(
            message("March 1, 2024", CastType::Date),
            r#"date format not supported by switchyard: "March 1, 2024" (use ISO 8601)"#
        );
    }

    proptest! {
        #[test]
        fn casting_arbitrary_text_never_panics(input in any::<String>()) {
            for to in ALL_TYPES {
                let _ = cast(Value::text(&input), &to);
            }
        }

        #[test]
        fn casting_date_like_text_never_panics(
            input in "[ \t0-9+:.TZBCtzbc-]{0,40}|[0-9]{1,12}-[0-9]{1,3}-[0-9]{1,3}( [0-9:.]{0,20})?([+-][0-9:]{0,9})?"
        ) {
            for to in [CastType::Date, CastType::Timestamp, CastType::TimestampTz] {
                let _ = cast(Value::text(&input), &to);
            }
        }

        #[test]
        fn casting_number_like_text_never_panics(input in "[ +\\-0-9.eE]{0,60}") {
            for to in ALL_TYPES {
                let _ = cast(Value::text(&input), &to);
            }
        }

        #[test]
        fn casting_json_like_text_never_panics(input in r#"[\[\]{}:,"\\u0-9a-fA-Fetrn .+-]{0,60}"#) {
            for to in [CastType::Json, CastType::Jsonb] {
                let _ = cast(Value::text(&input), &to);
            }
        }
    }
}
