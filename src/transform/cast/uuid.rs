//! `uuid` input as PostgreSQL's `uuid_in` reads it: 32 hex digits in either case, optionally
//! in braces, with a single hyphen allowed after any group of four digits. No whitespace.

use ::uuid::Uuid;

use super::error::CastError;

/// Hex digits per optional-hyphen group.
const GROUP_DIGITS: usize = 4;

pub(super) fn parse(text: &str) -> Result<Uuid, CastError> {
    read(text.as_bytes())
        .map(Uuid::from_bytes)
        .ok_or_else(|| CastError::invalid_syntax("uuid", text))
}

fn read(bytes: &[u8]) -> Option<[u8; 16]> {
    let (braced, mut rest) = match bytes.split_first() {
        Some((b'{', rest)) => (true, rest),
        _ => (false, bytes),
    };
    let mut uuid = [0u8; 16];
    for (index, byte) in uuid.iter_mut().enumerate() {
        let (pair, tail) = rest.split_first_chunk::<2>()?;
        *byte = hex_value(pair[0])? << 4 | hex_value(pair[1])?;
        rest = tail;
        let group_done = (index + 1) * 2 % GROUP_DIGITS == 0;
        if group_done && index < 15 {
            rest = rest.strip_prefix(b"-").unwrap_or(rest);
        }
    }
    if braced {
        rest = rest.strip_prefix(b"}")?;
    }
    rest.is_empty().then_some(uuid)
}

fn hex_value(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|v| v as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANONICAL: &str = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";

    #[test]
    fn accepts_postgres_spellings() {
        for text in [
            CANONICAL,
            "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
            "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
            "a0eebc999c0b4ef8bb6d6bb9bd380a11",
            "a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11",
        ] {
            assert_eq!(parse(text).unwrap().to_string(), CANONICAL, "{text}");
        }
    }

    #[test]
    fn rejects_misplaced_hyphens_braces_and_spaces() {
        for text in [
            "a0eebc99--9c0b-4ef8-bb6d-6bb9bd380a11",
            "a0eeb-c99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11-",
            "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
            " a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1",
            "",
        ] {
            assert!(parse(text).is_err(), "{text}");
        }
    }
}
