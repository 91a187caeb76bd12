//! `date` and `timestamp` values in PostgreSQL's own representation, so that a value read from
//! one cluster and written to another is the same number, and its text is what PostgreSQL prints.
//!
//! Both count from 2000-01-01 (PostgreSQL's epoch) on the proleptic Gregorian calendar, with
//! astronomical years internally (year 0 is 1 BC) and the extreme integers standing for
//! `-infinity` and `infinity`. The calendar arithmetic is the days-from-civil method by Howard
//! Hinnant (<https://howardhinnant.github.io/date_algorithms.html>) in `i64`, which covers
//! PostgreSQL's whole range without overflow checks. Output follows `DateStyle = ISO` and, for
//! `timestamptz`, `TimeZone = UTC`: see
//! <https://www.postgresql.org/docs/15/datatype-datetime.html#DATATYPE-DATETIME-OUTPUT>.

use std::fmt;

pub const USECS_PER_SEC: i64 = 1_000_000;
pub const USECS_PER_MINUTE: i64 = 60 * USECS_PER_SEC;
pub const USECS_PER_HOUR: i64 = 60 * USECS_PER_MINUTE;
pub const USECS_PER_DAY: i64 = 24 * USECS_PER_HOUR;

/// Days from 0000-03-01 to 1970-01-01 in the days-from-civil method.
const CIVIL_TO_UNIX_DAYS: i64 = 719_468;
/// Days from 1970-01-01 to 2000-01-01, PostgreSQL's epoch.
const UNIX_TO_POSTGRES_DAYS: i64 = 10_957;
/// Days in a 400-year Gregorian cycle.
const DAYS_PER_ERA: i64 = 146_097;

/// Days since 2000-01-01; `i32::MIN` is -infinity and `i32::MAX` is infinity, as in PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date(pub i32);

/// Microseconds since 2000-01-01 00:00:00; `i64::MIN` / `i64::MAX` are -infinity / infinity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Date {
    pub const NEG_INFINITY: Date = Date(i32::MIN);
    pub const INFINITY: Date = Date(i32::MAX);
    /// 4714-11-24 BC, Julian day 0: the first date PostgreSQL accepts.
    pub const MIN: Date = Date(-2_451_545);
    /// 5874897-12-31, the last date PostgreSQL accepts (Julian day 2147483493).
    pub const MAX: Date = Date(2_145_031_948);
    /// 1970-01-01, what the input `epoch` means.
    pub const UNIX_EPOCH: Date = Date(-(UNIX_TO_POSTGRES_DAYS as i32));

    /// The date of an astronomical year (0 is 1 BC), month and day, or `None` when the day does
    /// not exist in that month or the date is outside PostgreSQL's range.
    pub fn from_ymd(year: i64, month: u32, day: u32) -> Option<Date> {
        if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
            return None;
        }
        Date::from_days(days_from_civil(year, month, day))
    }

    /// The date `days` after 2000-01-01, if PostgreSQL's `date` can hold it.
    pub fn from_days(days: i64) -> Option<Date> {
        (i64::from(Date::MIN.0)..=i64::from(Date::MAX.0))
            .contains(&days)
            .then_some(Date(days as i32))
    }

    pub fn is_finite(self) -> bool {
        self != Date::NEG_INFINITY && self != Date::INFINITY
    }

    /// Astronomical year (0 is 1 BC), month and day of a finite date.
    pub fn to_ymd(self) -> (i64, u32, u32) {
        civil_from_days(i64::from(self.0))
    }

    /// Midnight at the start of this date, keeping infinities; `None` past the timestamp range.
    pub fn to_timestamp(self) -> Option<Timestamp> {
        match self {
            Date::NEG_INFINITY => Some(Timestamp::NEG_INFINITY),
            Date::INFINITY => Some(Timestamp::INFINITY),
            Date(days) => Timestamp::from_days_and_time(i64::from(days), 0),
        }
    }
}

impl Timestamp {
    pub const NEG_INFINITY: Timestamp = Timestamp(i64::MIN);
    pub const INFINITY: Timestamp = Timestamp(i64::MAX);
    /// 4714-11-24 00:00:00 BC, the first timestamp PostgreSQL accepts.
    pub const MIN: Timestamp = Timestamp(-211_813_488_000_000_000);
    /// 294277-01-01 00:00:00, the first timestamp past PostgreSQL's range.
    pub const END: Timestamp = Timestamp(9_223_371_331_200_000_000);
    /// 1970-01-01 00:00:00, what the input `epoch` means.
    pub const UNIX_EPOCH: Timestamp = Timestamp(-UNIX_TO_POSTGRES_DAYS * USECS_PER_DAY);

    /// The timestamp `time_us` microseconds after the start of the day `days` after 2000-01-01,
    /// or `None` outside PostgreSQL's range. `time_us` may exceed a day (input `24:00:00`).
    pub fn from_days_and_time(days: i64, time_us: i64) -> Option<Timestamp> {
        let micros = days.checked_mul(USECS_PER_DAY)?.checked_add(time_us)?;
        Timestamp::from_micros(micros)
    }

    /// `micros` since 2000-01-01 if it lies in PostgreSQL's finite range.
    pub fn from_micros(micros: i64) -> Option<Timestamp> {
        (Timestamp::MIN.0..Timestamp::END.0)
            .contains(&micros)
            .then_some(Timestamp(micros))
    }

    pub fn is_finite(self) -> bool {
        self != Timestamp::NEG_INFINITY && self != Timestamp::INFINITY
    }

    /// The date this timestamp falls on, keeping infinities.
    pub fn date(self) -> Date {
        match self {
            Timestamp::NEG_INFINITY => Date::NEG_INFINITY,
            Timestamp::INFINITY => Date::INFINITY,
            // Every finite timestamp's day fits the date range, which is wider.
            Timestamp(micros) => Date(micros.div_euclid(USECS_PER_DAY) as i32),
        }
    }

    /// `timestamp` output: `2024-03-01 12:34:56.5`, `0044-03-15 12:00:00 BC`, `infinity`.
    pub fn fmt_without_zone(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_iso(f, "")
    }

    /// `timestamptz` output under `TimeZone = UTC`: `2024-03-01 12:34:56+00`.
    pub fn fmt_utc(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_iso(f, "+00")
    }

    fn fmt_iso(&self, f: &mut fmt::Formatter<'_>, zone: &str) -> fmt::Result {
        match *self {
            Timestamp::NEG_INFINITY => return f.write_str("-infinity"),
            Timestamp::INFINITY => return f.write_str("infinity"),
            _ => {}
        }
        let days = self.0.div_euclid(USECS_PER_DAY);
        let time = self.0.rem_euclid(USECS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        write_ymd(f, year, month, day)?;
        let (hour, minute) = (
            time / USECS_PER_HOUR,
            time % USECS_PER_HOUR / USECS_PER_MINUTE,
        );
        let (second, micros) = (
            time % USECS_PER_MINUTE / USECS_PER_SEC,
            time % USECS_PER_SEC,
        );
        write!(f, " {hour:02}:{minute:02}:{second:02}")?;
        if micros != 0 {
            // PostgreSQL prints six digits and then drops the trailing zeros.
            let (mut digits, mut width) = (micros, 6);
            while digits % 10 == 0 {
                digits /= 10;
                width -= 1;
            }
            write!(f, ".{digits:0width$}")?;
        }
        f.write_str(zone)?;
        write_era(f, year)
    }
}

/// `date` output: `2024-03-01`, `0044-03-15 BC`, `infinity`.
impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Date::NEG_INFINITY => f.write_str("-infinity"),
            Date::INFINITY => f.write_str("infinity"),
            date => {
                let (year, month, day) = date.to_ymd();
                write_ymd(f, year, month, day)?;
                write_era(f, year)
            }
        }
    }
}

/// Writes `YYYY-MM-DD` with the year as written in AD/BC notation, padded to four digits.
fn write_ymd(f: &mut fmt::Formatter<'_>, year: i64, month: u32, day: u32) -> fmt::Result {
    let written_year = if year > 0 { year } else { 1 - year };
    write!(f, "{written_year:04}-{month:02}-{day:02}")
}

fn write_era(f: &mut fmt::Formatter<'_>, year: i64) -> fmt::Result {
    if year <= 0 {
        f.write_str(" BC")?;
    }
    Ok(())
}

/// Gregorian leap years on astronomical numbering (1 BC, year 0, is a leap year).
pub fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// Days in `month` (1 to 12) of the astronomical `year`.
pub fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 2000-01-01 of a valid astronomical year, month and day, even outside the range of
/// [`Date`] (a timestamp's zone offset can carry it back in).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    // Count years from March so that the leap day ends the year.
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month_from_march = i64::from((month + 9) % 12);
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * DAYS_PER_ERA + day_of_era - CIVIL_TO_UNIX_DAYS - UNIX_TO_POSTGRES_DAYS
}

/// Astronomical year, month and day of the day `days` after 2000-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let days = days + UNIX_TO_POSTGRES_DAYS + CIVIL_TO_UNIX_DAYS;
    let era = days.div_euclid(DAYS_PER_ERA);
    let day_of_era = days.rem_euclid(DAYS_PER_ERA);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = ((month_from_march + 2) % 12 + 1) as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct WithoutZone(Timestamp);
    impl fmt::Display for WithoutZone {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.0.fmt_without_zone(f)
        }
    }
    struct Utc(Timestamp);
    impl fmt::Display for Utc {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.0.fmt_utc(f)
        }
    }

    #[test]
    fn postgres_epoch_is_day_zero() {
        assert_eq!(Date::from_ymd(2000, 1, 1), Some(Date(0)));
        assert_eq!(Date(0).to_ymd(), (2000, 1, 1));
        assert_eq!(Date::from_ymd(1970, 1, 1), Some(Date::UNIX_EPOCH));
    }

    #[test]
    fn range_ends_match_postgres() {
        assert_eq!(Date::MIN.to_ymd(), (-4713, 11, 24));
        assert_eq!(Date::MAX.to_ymd(), (5_874_897, 12, 31));
        assert_eq!(Date::from_ymd(-4713, 11, 23), None);
        assert_eq!(Date::from_ymd(5_874_898, 1, 1), None);
        assert_eq!(Date::MIN.to_timestamp(), Some(Timestamp::MIN));
        assert_eq!(Date::from_ymd(294_277, 1, 1).unwrap().to_timestamp(), None);
        assert_eq!(
            Timestamp(Timestamp::END.0 - 1).date().to_ymd(),
            (294_276, 12, 31)
        );
        assert_eq!(Timestamp::END.date().to_ymd(), (294_277, 1, 1));
    }

    #[test]
    fn days_round_trip_across_the_whole_range() {
        let step = 997; // prime, so every month and weekday offset is visited
        for days in (Date::MIN.0..=Date::MAX.0)
            .step_by(step)
            .chain([Date::MAX.0])
        {
            let (year, month, day) = Date(days).to_ymd();
            assert_eq!(Date::from_ymd(year, month, day), Some(Date(days)));
        }
    }

    #[test]
    fn leap_days_follow_the_proleptic_gregorian_calendar() {
        assert!(Date::from_ymd(2000, 2, 29).is_some());
        assert!(Date::from_ymd(1900, 2, 29).is_none());
        assert!(Date::from_ymd(0, 2, 29).is_some(), "1 BC is a leap year");
        assert!(Date::from_ymd(-1, 2, 29).is_none());
        assert!(Date::from_ymd(2024, 4, 31).is_none());
    }

    #[test]
    fn dates_print_like_datestyle_iso() {
        assert_eq!(
            Date::from_ymd(2024, 3, 1).unwrap().to_string(),
            "2024-03-01"
        );
        assert_eq!(
            Date::from_ymd(-43, 3, 15).unwrap().to_string(),
            "0044-03-15 BC"
        );
        assert_eq!(
            Date::from_ymd(0, 1, 1).unwrap().to_string(),
            "0001-01-01 BC"
        );
        assert_eq!(
            Date::from_ymd(12345, 1, 1).unwrap().to_string(),
            "12345-01-01"
        );
        assert_eq!(Date::INFINITY.to_string(), "infinity");
        assert_eq!(Date::NEG_INFINITY.to_string(), "-infinity");
    }

    #[test]
    fn timestamps_print_fractions_without_trailing_zeros() {
        let noon = Date::from_ymd(2024, 3, 1)
            .unwrap()
            .to_timestamp()
            .unwrap()
            .0
            + 12 * USECS_PER_HOUR
            + 34 * USECS_PER_MINUTE
            + 56 * USECS_PER_SEC;
        assert_eq!(
            WithoutZone(Timestamp(noon)).to_string(),
            "2024-03-01 12:34:56"
        );
        assert_eq!(
            WithoutZone(Timestamp(noon + 500_000)).to_string(),
            "2024-03-01 12:34:56.5"
        );
        assert_eq!(
            Utc(Timestamp(noon + 123_000)).to_string(),
            "2024-03-01 12:34:56.123+00"
        );
        assert_eq!(
            Utc(Timestamp(noon + 1)).to_string(),
            "2024-03-01 12:34:56.000001+00"
        );
    }

    #[test]
    fn timestamps_before_2000_and_bc_print_like_postgres() {
        assert_eq!(
            WithoutZone(Timestamp(-1)).to_string(),
            "1999-12-31 23:59:59.999999"
        );
        assert_eq!(Utc(Timestamp::MIN).to_string(), "4714-11-24 00:00:00+00 BC");
        assert_eq!(WithoutZone(Timestamp::INFINITY).to_string(), "infinity");
        assert_eq!(Utc(Timestamp::NEG_INFINITY).to_string(), "-infinity");
    }

    #[test]
    fn timestamp_dates_floor_towards_the_past() {
        assert_eq!(Timestamp(-1).date(), Date(-1));
        assert_eq!(Timestamp(0).date(), Date(0));
        assert_eq!(Timestamp::INFINITY.date(), Date::INFINITY);
    }
}
