//! The whitespace PostgreSQL's input functions skip around a value.

/// C's `isspace` in the server's locale for single bytes, which is what PostgreSQL's input
/// functions skip: unlike `u8::is_ascii_whitespace` it includes vertical tab.
pub(super) fn is_pg_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

/// `text` without the leading and trailing bytes PostgreSQL's input functions skip.
pub(super) fn trim_pg_space(text: &str) -> &str {
    text.trim_matches(|c: char| c.is_ascii() && is_pg_space(c as u8))
}
