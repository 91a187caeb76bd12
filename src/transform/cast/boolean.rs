//! `boolean` input as PostgreSQL's `boolin` reads it: `t`/`true`/`yes`/`on`/`1` and
//! `f`/`false`/`no`/`off`/`0`, any case, any unique prefix, surrounding whitespace skipped.

use super::error::CastError;
use super::space::trim_pg_space;

pub(super) fn parse(text: &str) -> Result<bool, CastError> {
    let word = trim_pg_space(text);
    let prefix_of = |full: &str| {
        !word.is_empty()
            && word.len() <= full.len()
            && full[..word.len()].eq_ignore_ascii_case(word)
    };
    let value = match word.as_bytes().first().map(u8::to_ascii_lowercase) {
        Some(b't') if prefix_of("true") => Some(true),
        Some(b'y') if prefix_of("yes") => Some(true),
        Some(b'f') if prefix_of("false") => Some(false),
        Some(b'n') if prefix_of("no") => Some(false),
        // `o` alone could be `on` or `off`, so PostgreSQL wants at least two letters.
        Some(b'o') if word.len() >= 2 && prefix_of("on") => Some(true),
        Some(b'o') if word.len() >= 2 && prefix_of("off") => Some(false),
        Some(b'1') if word.len() == 1 => Some(true),
        Some(b'0') if word.len() == 1 => Some(false),
        _ => None,
    };
    value.ok_or_else(|| CastError::invalid_syntax("boolean", text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_unique_prefixes_in_any_case() {
        for yes in ["t", "TR", "tRuE", "y", "YES", "on", "1", " on\t"] {
            assert_eq!(parse(yes), Ok(true), "{yes}");
        }
        for no in ["f", "FALSE", "n", "No", "of", "OFF", "0"] {
            assert_eq!(parse(no), Ok(false), "{no}");
        }
    }

    #[test]
    fn rejects_ambiguous_and_overlong_words() {
        for bad in ["o", "", " ", "truee", "01", "2", "yess", "t r u e", "é"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
