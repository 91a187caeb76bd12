//! The value a transform expression produces.
//!
//! Source rows arrive as text (COPY text format in the backfill, pgoutput text tuples in the
//! follow), so a column reference borrows its text and only casts build typed values. Typed
//! values exist so that comparisons, arithmetic and routing behave as PostgreSQL's would, and so
//! that a value rejected by a cast is caught here, with a reason, instead of by the target.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;

use uuid::Uuid;

pub use super::numeric::Numeric;
use super::temporal::{Date, Timestamp};

/// One evaluated value. `Text` borrows from the source row when it can.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    /// smallint, integer and bigint: the cast checks the range, arithmetic is done in i64.
    Int(i64),
    Numeric(Numeric),
    Text(Cow<'a, str>),
    Date(Date),
    Timestamp(Timestamp),
    /// Microseconds since 2000-01-01 00:00:00 UTC.
    TimestampTz(Timestamp),
    Uuid(Uuid),
    /// Validated JSON text, kept as the source wrote it; the target normalizes jsonb itself.
    Json(Cow<'a, str>),
}

impl<'a> Value<'a> {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn text(s: &'a str) -> Self {
        Value::Text(Cow::Borrowed(s))
    }

    /// Detaches the value from the row it borrows from.
    pub fn into_owned(self) -> Value<'static> {
        match self {
            Value::Null => Value::Null,
            Value::Bool(b) => Value::Bool(b),
            Value::Int(i) => Value::Int(i),
            Value::Numeric(n) => Value::Numeric(n),
            Value::Text(t) => Value::Text(Cow::Owned(t.into_owned())),
            Value::Date(d) => Value::Date(d),
            Value::Timestamp(t) => Value::Timestamp(t),
            Value::TimestampTz(t) => Value::TimestampTz(t),
            Value::Uuid(u) => Value::Uuid(u),
            Value::Json(j) => Value::Json(Cow::Owned(j.into_owned())),
        }
    }

    /// The name of the value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Int(_) => "integer",
            Value::Numeric(_) => "numeric",
            Value::Text(_) => "text",
            Value::Date(_) => "date",
            Value::Timestamp(_) => "timestamp",
            Value::TimestampTz(_) => "timestamptz",
            Value::Uuid(_) => "uuid",
            Value::Json(_) => "jsonb",
        }
    }

    /// SQL comparison: `None` when either side is NULL or the types do not compare.
    pub fn sql_cmp(&self, other: &Value<'_>) -> Option<Ordering> {
        use Value::*;
        match (self, other) {
            (Null, _) | (_, Null) => None,
            (Bool(a), Bool(b)) => Some(a.cmp(b)),
            (Int(a), Int(b)) => Some(a.cmp(b)),
            (Int(a), Numeric(b)) => Some(super::numeric::cmp_int(b, *a).reverse()),
            (Numeric(a), Int(b)) => Some(super::numeric::cmp_int(a, *b)),
            (Numeric(a), Numeric(b)) => Some(a.cmp(b)),
            (Text(a), Text(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
            (Date(a), Date(b)) => Some(a.cmp(b)),
            (Timestamp(a), Timestamp(b)) | (TimestampTz(a), TimestampTz(b)) => Some(a.cmp(b)),
            (Uuid(a), Uuid(b)) => Some(a.cmp(b)),
            (Json(a), Json(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }
}

/// Formats the value as PostgreSQL's output function would, which is also what its input
/// function reads back: this is the text written into COPY and into apply statements.
impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => Ok(()),
            Value::Bool(true) => f.write_str("t"),
            Value::Bool(false) => f.write_str("f"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Numeric(n) => write!(f, "{n}"),
            Value::Text(t) | Value::Json(t) => f.write_str(t),
            Value::Date(d) => write!(f, "{d}"),
            Value::Timestamp(t) => t.fmt_without_zone(f),
            Value::TimestampTz(t) => t.fmt_utc(f),
            Value::Uuid(u) => write!(f, "{}", u.hyphenated()),
        }
    }
}

/// The text form of a non-NULL value, borrowed when it already is text.
pub(crate) fn text_of(v: Value<'_>) -> Cow<'_, str> {
    match v {
        Value::Text(t) | Value::Json(t) => t,
        Value::Int(i) => Cow::Owned(i.to_string()),
        other => Cow::Owned(other.to_string()),
    }
}
