//! `json` and `jsonb` input: validates the text by PostgreSQL 15's JSON grammar and keeps it as
//! written (the target normalizes `jsonb` itself).
//!
//! PostgreSQL's grammar is RFC 8259's: no trailing commas, no `NaN`, no leading zeros, only
//! space, tab, newline and carriage return between tokens, and control characters escaped in
//! strings. `jsonb` additionally decodes every string and number, so it also refuses:
//! - `\u0000` ("unsupported Unicode escape sequence": text cannot hold NUL),
//! - a `\u` high surrogate not followed by a `\u` low surrogate, or a lone low surrogate,
//! - numbers `numeric` cannot hold ("value overflows numeric format").
//!
//! Duplicate keys are valid in both (`jsonb` keeps the last). The validator is a loop over
//! bytes with an explicit nesting stack, not recursion, so hostile input cannot overflow the
//! stack, and it refuses nesting deeper than [`MAX_NESTING`].

use super::error::CastError;
use super::numeric::{scan, Written};

/// Deepest nesting accepted. PostgreSQL's parser recurses and fails with "stack depth limit
/// exceeded" somewhere between 10,000 and 20,000 levels under the default 2MB
/// `max_stack_depth` (measured on 15.18), so anything deeper may not load into the target.
const MAX_NESTING: usize = 10_000;
/// Nesting levels tracked without allocating; deeper documents spill to the heap.
const INLINE_NESTING_WORDS: usize = 4;

/// Which input function's rules apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum JsonFlavor {
    Json,
    Jsonb,
}

pub(super) fn validate(text: &str, flavor: JsonFlavor) -> Result<(), CastError> {
    Validator {
        bytes: text.as_bytes(),
        at: 0,
        flavor,
        nesting: Nesting::default(),
    }
    .run()
}

/// What the grammar allows next.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    Value,
    ValueOrArrayEnd,
    KeyOrObjectEnd,
    Key,
    Colon,
    CommaOrEnd,
}

struct Validator<'a> {
    bytes: &'a [u8],
    at: usize,
    flavor: JsonFlavor,
    nesting: Nesting,
}

impl Validator<'_> {
    fn run(mut self) -> Result<(), CastError> {
        let mut expect = Expect::Value;
        loop {
            self.at += self.bytes[self.at..]
                .iter()
                .take_while(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
                .count();
            let Some(&byte) = self.bytes.get(self.at) else {
                return match (expect, self.nesting.depth) {
                    (Expect::CommaOrEnd, 0) => Ok(()),
                    _ => Err(syntax("The input string ended unexpectedly.")),
                };
            };
            expect = match (expect, byte) {
                (Expect::ValueOrArrayEnd, b']') | (Expect::KeyOrObjectEnd, b'}') => {
                    self.nesting.pop();
                    self.at += 1;
                    Expect::CommaOrEnd
                }
                (Expect::Value | Expect::ValueOrArrayEnd, _) => self.value(byte)?,
                (Expect::Key | Expect::KeyOrObjectEnd, b'"') => {
                    self.string()?;
                    Expect::Colon
                }
                (Expect::Colon, b':') => {
                    self.at += 1;
                    Expect::Value
                }
                (Expect::CommaOrEnd, b',') if self.nesting.depth > 0 => {
                    self.at += 1;
                    if self.nesting.in_object() {
                        Expect::Key
                    } else {
                        Expect::Value
                    }
                }
                (Expect::CommaOrEnd, b']')
                    if self.nesting.depth > 0 && !self.nesting.in_object() =>
                {
                    self.nesting.pop();
                    self.at += 1;
                    Expect::CommaOrEnd
                }
                (Expect::CommaOrEnd, b'}') if self.nesting.in_object() => {
                    self.nesting.pop();
                    self.at += 1;
                    Expect::CommaOrEnd
                }
                _ => return Err(self.unexpected()),
            };
        }
    }

    /// Reads a value starting with `byte`; a container is only opened here.
    fn value(&mut self, byte: u8) -> Result<Expect, CastError> {
        match byte {
            b'{' | b'[' => {
                if self.nesting.depth >= MAX_NESTING {
                    return Err(CastError::new(format!(
                        "JSON nested deeper than {MAX_NESTING} levels is not supported by switchyard"
                    )));
                }
                self.nesting.push(byte == b'{');
                self.at += 1;
                return Ok(if byte == b'{' {
                    Expect::KeyOrObjectEnd
                } else {
                    Expect::ValueOrArrayEnd
                });
            }
            b'"' => self.string()?,
            b'-' | b'0'..=b'9' => self.number()?,
            _ => {
                let word = ["true", "false", "null"]
                    .into_iter()
                    .find(|w| self.bytes[self.at..].starts_with(w.as_bytes()))
                    .ok_or_else(|| self.unexpected())?;
                self.at += word.len();
            }
        }
        // PostgreSQL lexes a token as a whole run of letters and digits: `truex`, `1x` are bad.
        if self.bytes.get(self.at).is_some_and(|b| is_token_byte(*b)) {
            return Err(self.unexpected());
        }
        Ok(Expect::CommaOrEnd)
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn number(&mut self) -> Result<(), CastError> {
        let start = self.at;
        let digits = |from: usize| {
            self.bytes[from..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count()
        };
        let mut at = start + usize::from(self.bytes[start] == b'-');
        let int_digits = digits(at);
        let leading_zero = int_digits > 1 && self.bytes[at] == b'0';
        if int_digits == 0 || leading_zero {
            return Err(self.unexpected());
        }
        at += int_digits;
        if self.bytes.get(at) == Some(&b'.') {
            let frac_digits = digits(at + 1);
            if frac_digits == 0 {
                return Err(self.unexpected());
            }
            at += 1 + frac_digits;
        }
        if matches!(self.bytes.get(at), Some(b'e' | b'E')) {
            at += 1 + usize::from(matches!(self.bytes.get(at + 1), Some(b'+' | b'-')));
            let exponent_digits = digits(at);
            if exponent_digits == 0 {
                return Err(self.unexpected());
            }
            at += exponent_digits;
        }
        if self.flavor == JsonFlavor::Jsonb {
            // jsonb stores the number as numeric, whose input function reads the same text.
            let overflows = scan(&self.bytes[start..at])
                .is_some_and(|(written, _)| Written::overflows_postgres(&written));
            if overflows {
                return Err(CastError::new("value overflows numeric format"));
            }
        }
        self.at = at;
        Ok(())
    }

    /// A string starting at the opening quote.
    fn string(&mut self) -> Result<(), CastError> {
        let jsonb = self.flavor == JsonFlavor::Jsonb;
        // A high surrogate seen in jsonb, which must be followed at once by a low one.
        let mut pending_high = false;
        let mut at = self.at + 1;
        loop {
            let Some(&byte) = self.bytes.get(at) else {
                return Err(syntax("The input string ended unexpectedly."));
            };
            let escape = byte == b'\\' && self.bytes.get(at + 1) == Some(&b'u');
            if jsonb && pending_high && !escape {
                return Err(syntax(
                    "Unicode low surrogate must follow a high surrogate.",
                ));
            }
            match byte {
                b'"' => break,
                b'\\' => match self.bytes.get(at + 1) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => at += 2,
                    Some(b'u') => {
                        let code =
                            self.bytes
                                .get(at + 2..at + 6)
                                .and_then(hex4)
                                .ok_or_else(|| {
                                    syntax("\"\\u\" must be followed by four hexadecimal digits.")
                                })?;
                        at += 6;
                        if jsonb {
                            pending_high = check_jsonb_escape(code, pending_high)?;
                        }
                    }
                    _ => return Err(syntax("Escape sequence is invalid.")),
                },
                0..=0x1f => {
                    return Err(syntax(format!(
                        "Character with value 0x{byte:02x} must be escaped."
                    )))
                }
                _ => at += 1,
            }
        }
        self.at = at + 1;
        Ok(())
    }

    fn unexpected(&self) -> CastError {
        let rest = String::from_utf8_lossy(&self.bytes[self.at..]);
        let token: String = match rest.chars().next() {
            Some(c) if c.is_ascii_alphanumeric() || c == '-' || !c.is_ascii() => rest
                .chars()
                .take_while(|c| {
                    !c.is_ascii() || c.is_ascii_alphanumeric() || matches!(c, '-' | '+' | '.' | '_')
                })
                .collect(),
            Some(c) => c.to_string(),
            None => String::new(),
        };
        syntax(format!("Token \"{token}\" is invalid."))
    }
}

/// jsonb's rules for a `\u` escape; returns whether a high surrogate is now pending.
fn check_jsonb_escape(code: u16, pending_high: bool) -> Result<bool, CastError> {
    match code {
        0xD800..=0xDBFF if pending_high => Err(syntax(
            "Unicode high surrogate must not follow a high surrogate.",
        )),
        0xD800..=0xDBFF => Ok(true),
        0xDC00..=0xDFFF if !pending_high => Err(syntax(
            "Unicode low surrogate must follow a high surrogate.",
        )),
        0xDC00..=0xDFFF => Ok(false),
        _ if pending_high => Err(syntax(
            "Unicode low surrogate must follow a high surrogate.",
        )),
        0 => Err(CastError::new("unsupported Unicode escape sequence")
            .with_detail("\\u0000 cannot be converted to text.")),
        _ => Ok(false),
    }
}

fn hex4(digits: &[u8]) -> Option<u16> {
    digits.iter().try_fold(0u16, |code, d| {
        let value = (*d as char).to_digit(16)?;
        Some(code << 4 | value as u16)
    })
}

/// Bytes PostgreSQL's JSON lexer reads as part of a word: letters, digits, `_`, non-ASCII.
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte >= 0x80
}

fn syntax(detail: impl Into<String>) -> CastError {
    CastError::new("invalid input syntax for type json").with_detail(detail)
}

/// Whether each open container is an object, as a bit stack.
#[derive(Default)]
struct Nesting {
    depth: usize,
    inline: [u64; INLINE_NESTING_WORDS],
    spill: Vec<u64>,
}

impl Nesting {
    fn push(&mut self, object: bool) {
        let (word, bit) = (self.depth / 64, self.depth % 64);
        if word >= INLINE_NESTING_WORDS + self.spill.len() {
            self.spill.push(0);
        }
        let slot = self.word_mut(word);
        *slot = (*slot & !(1 << bit)) | (u64::from(object) << bit);
        self.depth += 1;
    }

    fn pop(&mut self) {
        self.depth -= 1;
    }

    fn in_object(&self) -> bool {
        let Some(top) = self.depth.checked_sub(1) else {
            return false;
        };
        let word = match top / 64 {
            w if w < INLINE_NESTING_WORDS => self.inline[w],
            w => self.spill[w - INLINE_NESTING_WORDS],
        };
        word >> (top % 64) & 1 == 1
    }

    fn word_mut(&mut self, word: usize) -> &mut u64 {
        match word.checked_sub(INLINE_NESTING_WORDS) {
            None => &mut self.inline[word],
            Some(spilled) => &mut self.spill[spilled],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str, flavor: JsonFlavor) -> bool {
        validate(text, flavor).is_ok()
    }

    #[test]
    fn accepts_rfc_8259_documents() {
        for text in [
            r#"{"a": [1, -0, 2.5e-3, 1E+5, true, false, null, "x\"\\\/\b\f\n\r\t\u00e9"]}"#,
            "  \t\n\r[]  ",
            "{}",
            "\"é\u{7f}\"",
            r#"{"a":1,"a":2}"#,
            "0",
        ] {
            assert!(ok(text, JsonFlavor::Json), "{text}");
            assert!(ok(text, JsonFlavor::Jsonb), "{text}");
        }
    }

    #[test]
    fn rejects_what_postgres_rejects() {
        for text in [
            "",
            " ",
            "[1,]",
            "{\"a\":1,}",
            "01",
            "1.",
            ".5",
            "-",
            "1.e5",
            "NaN",
            "tru",
            "nulls",
            "[1 2]",
            "{1:2}",
            "{\"a\" 1}",
            "\"a\tb\"",
            "\"\\x\"",
            "\"\\u00zz\"",
            "1é",
            "\x0c1",
            "[",
            "]",
            "{\"a\"}",
            "[}",
            "{]",
            "\"",
            "[1]]",
        ] {
            assert!(!ok(text, JsonFlavor::Json), "{text:?}");
        }
    }

    #[test]
    fn jsonb_refuses_nul_and_broken_surrogates_json_keeps_them() {
        for text in [
            r#""\u0000""#,
            r#""\ud800""#,
            r#""\udc00""#,
            r#""\ud83d x""#,
            r#""\ud83d\ud83d""#,
        ] {
            assert!(ok(text, JsonFlavor::Json), "{text}");
            assert!(!ok(text, JsonFlavor::Jsonb), "{text}");
        }
        assert!(ok(r#""\ud83d\ude00""#, JsonFlavor::Jsonb));
        assert_eq!(
            validate(r#""\u0000""#, JsonFlavor::Jsonb)
                .unwrap_err()
                .message(),
            "unsupported Unicode escape sequence"
        );
    }

    #[test]
    fn jsonb_refuses_numbers_numeric_cannot_hold() {
        assert!(ok("1e131071", JsonFlavor::Jsonb));
        assert!(!ok("1e131072", JsonFlavor::Jsonb));
        assert!(!ok("[1e-16384]", JsonFlavor::Jsonb));
        assert!(ok("[1e-16384]", JsonFlavor::Json));
    }

    #[test]
    fn nesting_is_tracked_past_the_inline_words() {
        let depth = 300;
        let doc = format!("{}1{}", "[{\"k\":".repeat(depth), "}]".repeat(depth));
        assert!(ok(&doc, JsonFlavor::Jsonb));
        let crossed = format!("{}1{}", "[{\"k\":".repeat(depth), "]}".repeat(depth));
        assert!(!ok(&crossed, JsonFlavor::Json));
    }

    #[test]
    fn refuses_nesting_beyond_the_limit() {
        let at_limit = format!("{}{}", "[".repeat(MAX_NESTING), "]".repeat(MAX_NESTING));
        assert!(ok(&at_limit, JsonFlavor::Json));
        let beyond = format!("[{at_limit}]");
        let err = validate(&beyond, JsonFlavor::Json).unwrap_err();
        assert!(err.message().contains("not supported by switchyard"));
    }
}
