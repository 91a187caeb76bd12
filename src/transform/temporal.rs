//! date and timestamp values with PostgreSQL's own representation (filled in by cast work).
use std::fmt;

/// Days since 2000-01-01; `i32::MIN` is -infinity and `i32::MAX` is infinity, as in PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date(pub i32);

/// Microseconds since 2000-01-01 00:00:00; `i64::MIN` / `i64::MAX` are -infinity / infinity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl fmt::Display for Date {
    fn fmt(&self, _f: &mut fmt::Formatter<'_>) -> fmt::Result {
        todo!()
    }
}

impl Timestamp {
    pub fn fmt_without_zone(&self, _f: &mut fmt::Formatter<'_>) -> fmt::Result {
        todo!()
    }
    pub fn fmt_utc(&self, _f: &mut fmt::Formatter<'_>) -> fmt::Result {
        todo!()
    }
}
