//! PostgreSQL's COPY text format, both directions, with no I/O.
//!
//! A row is one line ended by `\n`; fields are separated by `\t`; `\N` is NULL; a backslash
//! escapes `\\`, `\t`, `\n`, `\r` and a few others (see [COPY's file formats]). Fields without a
//! backslash are borrowed as they are, which is the common case and keeps the backfill's per-row
//! work free of allocation.
//!
//! [COPY's file formats]: https://www.postgresql.org/docs/15/sql-copy.html#id-1.9.3.55.9.2

use std::borrow::Cow;

use memchr::{memchr, memchr3};

/// A field of a COPY text line: NULL, or its still-escaped bytes.
pub type RawField<'a> = Option<&'a [u8]>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CopyTextError {
    #[error("COPY line has {found} fields, expected {expected}")]
    FieldCount { expected: usize, found: usize },
    #[error("COPY field is not valid UTF-8")]
    NotUtf8,
    #[error("COPY field ends with a lone backslash")]
    TrailingBackslash,
}

/// Splits one line (with or without its trailing `\n`) into raw fields, reusing `out`.
pub fn split_line<'a>(line: &'a [u8], out: &mut Vec<RawField<'a>>) {
    out.clear();
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let mut rest = line;
    loop {
        let end = memchr(b'\t', rest).unwrap_or(rest.len());
        let field = &rest[..end];
        out.push(if field == b"\\N" { None } else { Some(field) });
        if end == rest.len() {
            break;
        }
        rest = &rest[end + 1..];
    }
}

/// Splits a buffer of whole lines into lines (each without its `\n`).
///
/// An empty line is a row: a one-column row whose value is `''` (a text key, say) is sent as a
/// bare `\n`. Only the empty piece after the buffer's final `\n` is not a line.
pub fn lines(buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = buf.strip_suffix(b"\n").unwrap_or(buf);
    (!buf.is_empty())
        .then(|| body.split(|b| *b == b'\n'))
        .into_iter()
        .flatten()
}

/// Decodes one raw field into text, borrowing when there is nothing to unescape.
pub fn decode_field(raw: &[u8]) -> Result<Cow<'_, str>, CopyTextError> {
    let Some(first) = memchr(b'\\', raw) else {
        return std::str::from_utf8(raw)
            .map(Cow::Borrowed)
            .map_err(|_| CopyTextError::NotUtf8);
    };
    let mut out = Vec::with_capacity(raw.len());
    out.extend_from_slice(&raw[..first]);
    let mut i = first;
    while i < raw.len() {
        // Runs without a backslash are copied whole: a long text with a few escaped newlines
        // costs a few copies, not a loop per byte.
        let run = memchr(b'\\', &raw[i..]).unwrap_or(raw.len() - i);
        out.extend_from_slice(&raw[i..i + run]);
        i += run;
        if i == raw.len() {
            break;
        }
        let Some(&next) = raw.get(i + 1) else {
            return Err(CopyTextError::TrailingBackslash);
        };
        i += 2;
        match next {
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(0x0b),
            b'0'..=b'7' => {
                // Up to three octal digits, as COPY FROM reads them.
                let mut value = u32::from(next - b'0');
                for _ in 0..2 {
                    match raw.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            value = value * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(value as u8);
            }
            b'x' => {
                let mut value = 0u32;
                let mut digits = 0;
                while digits < 2 {
                    match raw.get(i).and_then(|d| (*d as char).to_digit(16)) {
                        Some(d) => {
                            value = value * 16 + d;
                            i += 1;
                            digits += 1;
                        }
                        None => break,
                    }
                }
                if digits == 0 {
                    out.push(b'x');
                } else {
                    out.push(value as u8);
                }
            }
            other => out.push(other),
        }
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| CopyTextError::NotUtf8)
}

/// Appends `value` to a COPY text line, escaping what COPY FROM would otherwise misread.
pub fn encode_field(value: &str, out: &mut Vec<u8>) {
    let bytes = value.as_bytes();
    let mut start = 0;
    while let Some(pos) = find_special(&bytes[start..]) {
        let at = start + pos;
        out.extend_from_slice(&bytes[start..at]);
        out.extend_from_slice(match bytes[at] {
            b'\\' => b"\\\\",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            _ => b"\\r",
        });
        start = at + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

fn find_special(bytes: &[u8]) -> Option<usize> {
    let a = memchr3(b'\\', b'\t', b'\n', bytes);
    let b = memchr(b'\r', bytes);
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The NULL marker of the text format.
pub const NULL: &[u8] = b"\\N";

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn splits_fields_and_recognizes_null() {
        let mut out = Vec::new();
        split_line(b"1\t\\N\t\tx\n", &mut out);
        assert_eq!(
            out,
            vec![Some(&b"1"[..]), None, Some(&b""[..]), Some(&b"x"[..])]
        );
    }

    #[test]
    fn a_backslash_n_inside_text_is_not_null() {
        let mut out = Vec::new();
        split_line(b"\\\\N", &mut out);
        assert_eq!(decode_field(out[0].unwrap()).unwrap(), "\\N");
    }

    #[test]
    fn decodes_escapes_like_copy_from() {
        assert_eq!(
            decode_field(b"a\\tb\\nc\\\\d\\101\\x41").unwrap(),
            "a\tb\nc\\dAA"
        );
    }

    #[test]
    fn an_empty_line_is_a_row_of_one_empty_field() {
        // COPY of a one-column table holding '' and 'x': the '' row must not vanish.
        assert_eq!(lines(b"\nx\n\n").collect::<Vec<_>>(), [&b""[..], b"x", b""]);
        assert_eq!(lines(b"a\nb").collect::<Vec<_>>(), [&b"a"[..], b"b"]);
        assert_eq!(lines(b"").count(), 0);
    }

    #[test]
    fn borrows_fields_without_escapes() {
        assert!(matches!(decode_field(b"plain").unwrap(), Cow::Borrowed(_)));
    }

    proptest! {
        #[test]
        fn encode_then_decode_is_identity(s in "\\PC*|[\\t\\n\\r\\\\a-z]*") {
            let mut buf = Vec::new();
            encode_field(&s, &mut buf);
            let mut fields = Vec::new();
            split_line(&buf, &mut fields);
            prop_assert_eq!(fields.len(), 1);
            prop_assert_eq!(decode_field(fields[0].unwrap()).unwrap(), s);
        }

        #[test]
        fn decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_field(&bytes);
        }

        /// The short version of the `copy_text` fuzz target: any buffer, read as COPY output.
        #[test]
        fn reading_any_buffer_never_panics(
            bytes in proptest::collection::vec(
                prop_oneof![any::<u8>(), proptest::sample::select(&b"\\\t\nNx0"[..])],
                0..128,
            ),
        ) {
            let mut fields = Vec::new();
            for line in lines(&bytes) {
                split_line(line, &mut fields);
                for raw in fields.iter().flatten() {
                    let _ = decode_field(raw);
                }
            }
        }

        /// Rows of text or NULL fields, written as COPY lines and read back, are unchanged:
        /// empty rows, empty fields, `\\N` as text and NULL all keep their meaning.
        #[test]
        fn rows_encode_then_decode_is_identity(
            rows in proptest::collection::vec(
                proptest::collection::vec(
                    proptest::option::of("\\PC*|[\\t\\n\\r\\\\N]*"),
                    1..4,
                ),
                0..6,
            ),
        ) {
            let mut buf = Vec::new();
            for row in &rows {
                for (i, field) in row.iter().enumerate() {
                    if i > 0 {
                        buf.push(b'\t');
                    }
                    match field {
                        Some(value) => encode_field(value, &mut buf),
                        None => buf.extend_from_slice(NULL),
                    }
                }
                buf.push(b'\n');
            }
            let mut decoded = Vec::new();
            let mut raw = Vec::new();
            for line in lines(&buf) {
                split_line(line, &mut raw);
                let row: Vec<Option<String>> = raw
                    .iter()
                    .map(|f| f.map(|f| decode_field(f).unwrap().into_owned()))
                    .collect();
                decoded.push(row);
            }
            prop_assert_eq!(decoded, rows);
        }
    }
}
