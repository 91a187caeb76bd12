//! COPY text format for the generated rows, and the date and timestamp text the legacy columns
//! hold. Hand-written because the generator writes millions of fields: each goes straight into
//! the batch buffer with no intermediate `String`.
//!
//! See <https://www.postgresql.org/docs/15/sql-copy.html#id-1.9.3.55.9.2> for the format.

use std::fmt::{self, Write as _};

use bytes::BytesMut;

/// Writes COPY text format: tab-separated fields, `\N` for NULL, backslash escapes.
pub(super) struct CopyRow {
    pub(super) buf: BytesMut,
}

impl CopyRow {
    /// A field that needs escaping (any text).
    pub(super) fn text(&mut self, value: Option<&str>) -> &mut Self {
        match value {
            None => self.buf.extend_from_slice(b"\\N\t"),
            Some(text) => {
                for &byte in text.as_bytes() {
                    match byte {
                        b'\\' => self.buf.extend_from_slice(b"\\\\"),
                        b'\t' => self.buf.extend_from_slice(b"\\t"),
                        b'\n' => self.buf.extend_from_slice(b"\\n"),
                        b'\r' => self.buf.extend_from_slice(b"\\r"),
                        _ => self.buf.extend_from_slice(&[byte]),
                    }
                }
                self.buf.extend_from_slice(b"\t");
            }
        }
        self
    }

    /// A field whose text has no special characters (numbers, dates).
    pub(super) fn plain(&mut self, value: fmt::Arguments<'_>) -> &mut Self {
        let _ = self.buf.write_fmt(value);
        self.buf.extend_from_slice(b"\t");
        self
    }

    pub(super) fn null(&mut self) -> &mut Self {
        self.text(None)
    }

    /// Replace the last field's tab by the row's newline.
    pub(super) fn end(&mut self) {
        let last = self.buf.len() - 1;
        self.buf[last] = b'\n';
    }
}

/// Days since 1970-01-01, shown as `YYYY-MM-DD`.
pub(super) struct Date(pub(super) i64);

/// Seconds since 1970-01-01 00:00:00, shown as `YYYY-MM-DD HH:MM:SS`.
pub(super) struct DateTime(pub(super) i64);

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Howard Hinnant's civil_from_days.
        let z = self.0 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        write!(f, "{year:04}-{month:02}-{day:02}")
    }
}

impl fmt::Display for DateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.rem_euclid(86_400);
        write!(
            f,
            "{} {:02}:{:02}:{:02}",
            Date(self.0.div_euclid(86_400)),
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_format_like_postgres() {
        assert_eq!(Date(0).to_string(), "1970-01-01");
        assert_eq!(Date(19_782).to_string(), "2024-02-29");
        assert_eq!(
            DateTime(1_546_300_800 + 3_661).to_string(),
            "2019-01-01 01:01:01"
        );
    }

    #[test]
    fn copy_text_escapes_specials_and_nulls() {
        let mut row = CopyRow {
            buf: BytesMut::new(),
        };
        row.text(Some("a\\b\tc\nd\re"))
            .null()
            .plain(format_args!("7"))
            .end();
        assert_eq!(&row.buf[..], b"a\\\\b\\tc\\nd\\re\t\\N\t7\n");
    }
}
