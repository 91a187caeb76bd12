//! `date`, `timestamp` and `timestamptz` input: the ISO 8601 subset of what PostgreSQL 15's
//! `date_in` / `timestamp_in` / `timestamptz_in` accept, with their exact results, under
//! `DateStyle = 'ISO, MDY'` and `TimeZone = 'UTC'`.
//!
//! Accepted (letters in any case, whitespace as C's `isspace` around every part, numeric fields
//! of any length as PostgreSQL's `strtoint` reads them, so `2024-0003-01` is March 1st):
//!
//! ```text
//!   YYYY-MM-DD | YYYYMMDD                  year of 3+ digits; as one number, 7 to 13 digits
//!                                          of which the last four are month and day
//!   [ (space | T) HH:MM[:SS[.fraction]] ]  24:00:00 and second 60 roll over like PostgreSQL;
//!                                          the fraction is rounded to microseconds as
//!                                          PostgreSQL rounds it
//!   [ ±HH | ±HHMM | ±HMM | ±HH:MM[:SS] | Z | ZULU | UTC | UT | GMT ]
//!   [ BC | AD ]
//!   infinity | -infinity | epoch
//! ```
//!
//! A zone sets the instant of a `timestamptz` (no zone means UTC) and, as in PostgreSQL, is
//! checked but ignored by `date` and `timestamp`; a `date` ignores the time of day too.
//!
//! Refused, although PostgreSQL accepts them, because their meaning depends on the session or
//! on the clock, or because they are rarely worth the risk of a subtly different result (the
//! message says "date format not supported by switchyard ... (use ISO 8601)"):
//! - years of one or two digits (`24-03-01`) and `MM/DD/YYYY`, `DD.MM.YYYY`: read by DateStyle,
//! - month and weekday names (`March 1, 2024`, `Fri 2024-03-01`), day-of-year `2024-061`,
//!   Julian days `J2460371`, `YYMMDD`, compact times `T1200`,
//! - time zone names and abbreviations other than the UTC ones (`Europe/Paris`, `EST`), POSIX
//!   zones (`b5c`), offsets with a space after the sign, and a `-` offset glued to a date,
//! - `MM:SS.fraction` (PostgreSQL's reading of `12:34.5`), empty fields (`12::00`, `+02:`),
//!   three-digit months (a day of the year to PostgreSQL), `AM`/`PM`, `allballs`, other
//!   separators (`2024-03-01,12:00`), parts in another order or repeated (`BC` before the
//!   time, two zones), `epoch`/`infinity` combined with anything,
//! - `now`, `today`, `tomorrow`, `yesterday`: refused with their own message, since each run of
//!   the migration would compute another value.

use super::error::CastError;
use super::space::trim_pg_space;
use crate::transform::temporal::{
    days_from_civil, days_in_month, Date, Timestamp, USECS_PER_DAY, USECS_PER_SEC,
};

/// Largest zone offset PostgreSQL accepts, in hours (`MAX_TZDISP_HOUR`).
const MAX_ZONE_HOURS: u64 = 15;
/// Digits of a date written as one number (`20240301`): PostgreSQL takes the last four as month
/// and day and the rest as the year; six would be a two-digit year, more than thirteen would
/// overflow its `atoi`.
const RUN_TOGETHER_DATE_MIN_DIGITS: usize = 7;
const RUN_TOGETHER_DATE_MAX_DIGITS: usize = 13;
/// Fraction digits read exactly; longer fractions go through a double like PostgreSQL's.
const EXACT_FRACTION_DIGITS: usize = 6;
/// Zone names that mean UTC in PostgreSQL's default `timezone_abbreviations`.
const UTC_NAMES: [&str; 5] = ["z", "zulu", "utc", "ut", "gmt"];
/// Inputs PostgreSQL resolves against the clock.
const CLOCK_WORDS: [&str; 4] = ["now", "today", "tomorrow", "yesterday"];
const ACCEPTED_FORMS: &str = "switchyard reads YYYY-MM-DD or YYYYMMDD, optionally followed by \
    [ |T]HH:MM[:SS[.ffffff]], a zone (+HH, +HH:MM, +HHMM, Z, UTC, GMT) and BC; or infinity, \
    -infinity, epoch";

pub(super) fn parse_date(text: &str) -> Result<Date, CastError> {
    let fields = match parse(text, "date")? {
        Parsed::Infinity => return Ok(Date::INFINITY),
        Parsed::NegInfinity => return Ok(Date::NEG_INFINITY),
        Parsed::Epoch => return Ok(Date::UNIX_EPOCH),
        Parsed::Fields(fields) => fields,
    };
    Date::from_ymd(fields.year, fields.month, fields.day)
        .ok_or_else(|| CastError::about_input("date out of range", text))
}

pub(super) fn parse_timestamp(text: &str) -> Result<Timestamp, CastError> {
    parse_instant(text, "timestamp", false)
}

pub(super) fn parse_timestamptz(text: &str) -> Result<Timestamp, CastError> {
    parse_instant(text, "timestamp with time zone", true)
}

fn parse_instant(text: &str, type_name: &str, zoned: bool) -> Result<Timestamp, CastError> {
    let fields = match parse(text, type_name)? {
        Parsed::Infinity => return Ok(Timestamp::INFINITY),
        Parsed::NegInfinity => return Ok(Timestamp::NEG_INFINITY),
        Parsed::Epoch => return Ok(Timestamp::UNIX_EPOCH),
        Parsed::Fields(fields) => fields,
    };
    let offset = if zoned {
        fields.zone_seconds * USECS_PER_SEC
    } else {
        0
    };
    let days = days_from_civil(fields.year, fields.month, fields.day);
    Timestamp::from_days_and_time(days, fields.time_us - offset)
        .ok_or_else(|| CastError::about_input("timestamp out of range", text))
}

enum Parsed {
    Infinity,
    NegInfinity,
    Epoch,
    Fields(Fields),
}

/// A validated date with time and zone: year is astronomical (0 is 1 BC), `time_us` may be a
/// full day (`24:00:00`), `zone_seconds` is east of UTC.
struct Fields {
    year: i64,
    month: u32,
    day: u32,
    time_us: i64,
    zone_seconds: i64,
}

/// Why the text was not read, before it is worded for the type at hand.
enum Failure {
    /// Outside the accepted grammar: PostgreSQL may or may not read it.
    Unsupported,
    FieldRange,
    ZoneRange,
}

fn parse(text: &str, type_name: &str) -> Result<Parsed, CastError> {
    let trimmed = trim_pg_space(text);
    for (word, special) in [
        ("infinity", Parsed::Infinity),
        ("-infinity", Parsed::NegInfinity),
        ("epoch", Parsed::Epoch),
    ] {
        if trimmed.eq_ignore_ascii_case(word) {
            return Ok(special);
        }
    }
    let mut cursor = Cursor {
        bytes: trimmed.as_bytes(),
        at: 0,
    };
    fields(&mut cursor)
        .map(Parsed::Fields)
        .map_err(|failure| match failure {
            Failure::FieldRange => {
                CastError::about_input("date/time field value out of range", text)
            }
            Failure::ZoneRange => {
                CastError::about_input("time zone displacement out of range", text)
            }
            Failure::Unsupported => unsupported(text, type_name),
        })
}

/// The message for text outside the grammar: garbage gets PostgreSQL's own words, clock words
/// and other date-like text a message that names the fix.
fn unsupported(text: &str, type_name: &str) -> CastError {
    let mut words = text
        .split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| !w.is_empty());
    if let Some(word) = words.find(|w| CLOCK_WORDS.iter().any(|c| c.eq_ignore_ascii_case(w))) {
        return CastError::about_input(
            &format!(
                "date/time value \"{word}\" depends on the current time, which switchyard refuses"
            ),
            text,
        )
        .with_detail("a migration must compute the same value every time it reads a row");
    }
    if !text.bytes().any(|b| b.is_ascii_alphanumeric()) {
        return CastError::invalid_syntax(type_name, text);
    }
    CastError::new(format!(
        "date format not supported by switchyard: {} (use ISO 8601)",
        super::error::Quoted(text)
    ))
    .with_detail(ACCEPTED_FORMS)
}

/// The grammar in the module docs, on text already trimmed of surrounding whitespace.
fn fields(cursor: &mut Cursor<'_>) -> Result<Fields, Failure> {
    let (year, month, day) = date(cursor)?;
    let space = cursor.skip_space();
    let separator_t = matches!(cursor.peek(), Some(b'T' | b't'))
        && cursor.bytes[cursor.at + 1..]
            .iter()
            .find(|b| !super::space::is_pg_space(**b))
            .is_some_and(u8::is_ascii_digit);
    let time_us = if separator_t {
        cursor.at += 1;
        cursor.skip_space();
        Some(time(cursor)?)
    } else if space > 0 && cursor.peek().is_some_and(|b| b.is_ascii_digit()) {
        Some(time(cursor)?)
    } else {
        None
    };
    let space_before_zone = cursor.skip_space() > 0 || (time_us.is_none() && space > 0);
    let mut zone_seconds = 0;
    let mut bc = false;
    match cursor.peek() {
        // `2024-03-01-05` is one malformed date to PostgreSQL, so a `-` zone right after a date
        // needs a space.
        Some(sign @ (b'+' | b'-')) if sign == b'+' || time_us.is_some() || space_before_zone => {
            zone_seconds = zone_offset(cursor)?;
            bc = era(cursor)?;
        }
        Some(b) if b.is_ascii_alphabetic() => {
            let word = cursor.word();
            if UTC_NAMES
                .iter()
                .any(|z| z.as_bytes().eq_ignore_ascii_case(word))
            {
                bc = era(cursor)?;
            } else {
                bc = era_word(word)?;
            }
        }
        _ => {}
    }
    cursor.skip_space();
    if cursor.peek().is_some() {
        return Err(Failure::Unsupported);
    }
    // PostgreSQL's ValidateDate: years count from 1 in AD/BC notation and fit an int.
    let year = i64::try_from(year)
        .ok()
        .filter(|y| (1..=i64::from(i32::MAX)).contains(y));
    let year = year.ok_or(Failure::FieldRange)?;
    let year = if bc { 1 - year } else { year };
    let month = u32::try_from(month).ok().filter(|m| (1..=12).contains(m));
    let month = month.ok_or(Failure::FieldRange)?;
    let day = u32::try_from(day)
        .ok()
        .filter(|d| (1..=days_in_month(year, month)).contains(d));
    let day = day.ok_or(Failure::FieldRange)?;
    Ok(Fields {
        year,
        month,
        day,
        time_us: time_us.unwrap_or(0),
        zone_seconds,
    })
}

/// `Y-M-D` with a year of three or more digits, or `Y..YMMDD` run together as one number of
/// 7 to 13 digits: year, month, day, unchecked. PostgreSQL reads each field with `strtoint`, so
/// leading zeros are fine (`2024-0003-01`), except that a three-digit month is a day of the year.
fn date(cursor: &mut Cursor<'_>) -> Result<(u64, u64, u64), Failure> {
    let first = cursor.digits();
    if cursor.eat(b'-') {
        let month = cursor.digits();
        if first.len() < 3 || month.is_empty() || month.len() == 3 || !cursor.eat(b'-') {
            return Err(Failure::Unsupported);
        }
        let day = cursor.digits();
        if day.is_empty() {
            return Err(Failure::Unsupported);
        }
        Ok((number(first), number(month), number(day)))
    } else if (RUN_TOGETHER_DATE_MIN_DIGITS..=RUN_TOGETHER_DATE_MAX_DIGITS).contains(&first.len()) {
        let (year, month_day) = first.split_at(first.len() - 4);
        let (month, day) = month_day.split_at(2);
        Ok((number(year), number(month), number(day)))
    } else {
        Err(Failure::Unsupported)
    }
}

/// `H:M[:S[.fraction]]` in microseconds, range-checked like PostgreSQL's `DecodeTime` and
/// `time_overflows`: up to 24:00:00 exactly, second 60 allowed.
fn time(cursor: &mut Cursor<'_>) -> Result<i64, Failure> {
    let field = |cursor: &mut Cursor<'_>| {
        let digits = cursor.digits();
        (!digits.is_empty())
            .then(|| number(digits))
            .ok_or(Failure::Unsupported)
    };
    let hour = field(cursor)?;
    if !cursor.eat(b':') {
        return Err(Failure::Unsupported);
    }
    let minute = field(cursor)?;
    let (second, fraction_us) = if cursor.eat(b':') {
        let second = field(cursor)?;
        let fraction_us = if cursor.peek() == Some(b'.') {
            let start = cursor.at;
            cursor.at += 1;
            let digits = cursor.digits();
            fraction_micros(&cursor.bytes[start..cursor.at], digits)
        } else {
            0
        };
        (second, fraction_us)
    } else {
        (0, 0)
    };
    if matches!(cursor.peek(), Some(b':' | b'.')) {
        return Err(Failure::Unsupported);
    }
    if hour > 24 || minute > 59 || second > 60 {
        return Err(Failure::FieldRange);
    }
    let whole = (hour * 3600 + minute * 60 + second) as i64 * USECS_PER_SEC;
    let total = whole + fraction_us;
    if total > USECS_PER_DAY {
        return Err(Failure::FieldRange);
    }
    Ok(total)
}

/// Microseconds of a fraction `.ddd`: PostgreSQL computes `rint(strtod(".ddd") * 1000000)`, so
/// beyond six digits the double's rounding decides, ties to even, and that is copied here.
fn fraction_micros(with_point: &[u8], digits: &[u8]) -> i64 {
    if digits.len() <= EXACT_FRACTION_DIGITS {
        let scale = 10i64.pow((EXACT_FRACTION_DIGITS - digits.len()) as u32);
        return number(digits) as i64 * scale;
    }
    let text = std::str::from_utf8(with_point).unwrap_or(".0");
    let fraction: f64 = text.parse().unwrap_or(0.0);
    (fraction * USECS_PER_SEC as f64).round_ties_even() as i64
}

/// `±H[:M[:S]]` or `±HMM` / `±HHMM` (three or more digits run together), as seconds east of
/// UTC, the way PostgreSQL's `DecodeTimezone` reads them.
fn zone_offset(cursor: &mut Cursor<'_>) -> Result<i64, Failure> {
    let sign = if cursor.eat(b'-') { -1 } else { 1 };
    cursor.eat(b'+');
    let field = |cursor: &mut Cursor<'_>| {
        let digits = cursor.digits();
        (!digits.is_empty())
            .then(|| number(digits))
            .ok_or(Failure::Unsupported)
    };
    let leading = cursor.digits();
    let (hours, minutes, seconds) = if leading.is_empty() {
        return Err(Failure::Unsupported);
    } else if cursor.eat(b':') {
        let minutes = field(cursor)?;
        let seconds = if cursor.eat(b':') { field(cursor)? } else { 0 };
        (number(leading), minutes, seconds)
    } else if leading.len() >= 3 {
        let run = number(leading);
        (run / 100, run % 100, 0)
    } else {
        (number(leading), 0, 0)
    };
    // PostgreSQL's zone token also swallows these; anything of the kind is not ours to read.
    if matches!(cursor.peek(), Some(b':' | b'.' | b'-')) {
        return Err(Failure::Unsupported);
    }
    if hours > MAX_ZONE_HOURS || minutes > 59 || seconds > 59 {
        return Err(Failure::ZoneRange);
    }
    Ok(sign * (hours * 3600 + minutes * 60 + seconds) as i64)
}

/// An optional `BC` or `AD` after optional whitespace; `true` for BC.
fn era(cursor: &mut Cursor<'_>) -> Result<bool, Failure> {
    cursor.skip_space();
    match cursor.peek() {
        Some(b) if b.is_ascii_alphabetic() => era_word(cursor.word()),
        _ => Ok(false),
    }
}

fn era_word(word: &[u8]) -> Result<bool, Failure> {
    if word.eq_ignore_ascii_case(b"bc") {
        Ok(true)
    } else if word.eq_ignore_ascii_case(b"ad") {
        Ok(false)
    } else {
        Err(Failure::Unsupported)
    }
}

/// Decimal value of ASCII digits, saturating (callers range-check).
fn number(digits: &[u8]) -> u64 {
    digits.iter().fold(0u64, |n, d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    })
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        let matched = self.peek() == Some(byte);
        self.at += usize::from(matched);
        matched
    }

    /// Skips whitespace and says how much there was.
    fn skip_space(&mut self) -> usize {
        self.run(super::space::is_pg_space).len()
    }

    fn digits(&mut self) -> &'a [u8] {
        self.run(|b| b.is_ascii_digit())
    }

    fn word(&mut self) -> &'a [u8] {
        self.run(|b| b.is_ascii_alphabetic())
    }

    fn run(&mut self, class: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.at;
        let length = self.bytes[start..]
            .iter()
            .take_while(|b| class(**b))
            .count();
        self.at += length;
        &self.bytes[start..self.at]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tz(text: &str) -> String {
        let mut out = String::new();
        let t = parse_timestamptz(text).unwrap();
        use std::fmt::Write;
        write!(out, "{}", crate::transform::value::Value::TimestampTz(t)).unwrap();
        out
    }

    #[test]
    fn zone_offsets_shift_timestamptz_only() {
        assert_eq!(tz("2024-03-01 12:34:56+02"), "2024-03-01 10:34:56+00");
        assert_eq!(tz("2024-03-01T12:34:56-05:30"), "2024-03-01 18:04:56+00");
        assert_eq!(tz("2024-03-01 12:00:00+0230"), "2024-03-01 09:30:00+00");
        assert_eq!(tz("2024-03-01 12:00:00+15:59:59"), "2024-02-29 20:00:01+00");
        assert_eq!(tz("2024-03-01 12:00 utc"), "2024-03-01 12:00:00+00");
        assert_eq!(
            parse_timestamp("2024-03-01 12:00+02").unwrap(),
            parse_timestamp("2024-03-01 12:00").unwrap()
        );
    }

    #[test]
    fn fractions_round_like_postgres_doubles() {
        assert_eq!(
            tz("2024-03-01 12:34:56.1234565"),
            "2024-03-01 12:34:56.123456+00"
        );
        assert_eq!(
            tz("2024-03-01 12:34:56.1234575"),
            "2024-03-01 12:34:56.123458+00"
        );
        assert_eq!(tz("2024-03-01 23:59:59.9999999"), "2024-03-02 00:00:00+00");
        assert_eq!(tz("2024-03-01 12:00:00."), "2024-03-01 12:00:00+00");
    }

    #[test]
    fn dates_ignore_time_and_zone_but_check_them() {
        let day = parse_date("2024-03-01").unwrap();
        assert_eq!(parse_date("2024-03-01 24:00:00+15").unwrap(), day);
        assert!(parse_date("2024-03-01 24:00:01").is_err());
        assert!(parse_date("2024-03-01 12:00+16").is_err());
    }

    #[test]
    fn clock_words_are_refused_with_their_own_message() {
        for text in [
            "now",
            " today ",
            "Tomorrow",
            "yesterday 12:00",
            "2024-03-01 now",
        ] {
            let err = parse_timestamptz(text).unwrap_err();
            assert!(
                err.message().contains("depends on the current time"),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn other_formats_name_the_fix() {
        for text in [
            "03/01/2024",
            "March 1 2024",
            "24-03-01",
            "2024-03-01 12:00 Europe/Paris",
        ] {
            let err = parse_date(text).unwrap_err();
            assert!(err.message().ends_with("(use ISO 8601)"), "{text}: {err}");
        }
        assert_eq!(
            parse_date("").unwrap_err().message(),
            r#"invalid input syntax for type date: """#
        );
    }
}
