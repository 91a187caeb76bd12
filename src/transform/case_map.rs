//! `upper` and `lower` as the *source database* computes them.
//!
//! PostgreSQL 15 with the libc provider maps case through the database's `LC_CTYPE`
//! (`str_toupper` / `str_tolower` in `src/backend/utils/adt/formatting.c`):
//!
//! ```text
//!   LC_CTYPE C or POSIX   pg_toupper() per byte: ASCII letters only, 'é' stays 'é'
//!   any other (UTF8)      char2wchar -> towupper() per code point -> wchar2char
//! ```
//!
//! The second is a *simple*, one code point to one code point mapping from glibc's tables, not
//! Unicode's full mapping that Rust's `str::to_uppercase` applies: `upper('Straße')` is
//! `STRAßE`, `lower('ΣΑΣ')` is `σασ` (no final sigma), `lower('İ')` is `i`. switchyard carries
//! the mapping glibc 2.36's `C.UTF-8` applies, captured from PostgreSQL itself ([`c_utf8`]).
//!
//! Which mapping applies is a property of the source database, read once per process from
//! `pg_database` by the commands that transform rows ([`set`]). Until then, and for a ctype
//! switchyard has no table for, only text whose letters are all ASCII is mapped (every libc
//! ctype but the Turkic ones agrees on those); other text is refused with a reason, so a row is
//! dead-lettered rather than written with a case PostgreSQL would not have produced.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU8, Ordering};

use super::eval_error::EvalError;

mod c_utf8;

/// The case mapping of the source database's `LC_CTYPE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CaseMapping {
    /// `C` or `POSIX`: ASCII letters only (`pg_toupper`).
    Ascii = 0,
    /// glibc's `C.UTF-8`: the captured table.
    CUtf8 = 1,
    /// Not read yet, or a ctype without a table: ASCII text only, other text refused.
    AsciiOnly = 2,
    /// A Turkic ctype (dotted and dotless i) or the ICU provider: every call refused.
    Refuse = 3,
}

/// The mapping of this process's source database; see [`set`].
static CURRENT: AtomicU8 = AtomicU8::new(CaseMapping::AsciiOnly as u8);

/// Records the source database's mapping; called once a command has read it.
pub fn set(mapping: CaseMapping) {
    CURRENT.store(mapping as u8, Ordering::Relaxed);
}

/// The mapping in force for this process.
pub fn current() -> CaseMapping {
    match CURRENT.load(Ordering::Relaxed) {
        0 => CaseMapping::Ascii,
        1 => CaseMapping::CUtf8,
        2 => CaseMapping::AsciiOnly,
        _ => CaseMapping::Refuse,
    }
}

impl CaseMapping {
    /// The mapping for `pg_database.datctype` under `datlocprovider` (`c` libc, `i` ICU).
    pub fn for_ctype(ctype: &str, provider: &str) -> CaseMapping {
        let language = ctype.split(['_', '.', '@']).next().unwrap_or("");
        match ctype {
            _ if provider != "c" => CaseMapping::Refuse,
            "C" | "POSIX" => CaseMapping::Ascii,
            "C.UTF-8" | "C.utf8" => CaseMapping::CUtf8,
            _ if matches!(language, "tr" | "az") => CaseMapping::Refuse,
            _ => CaseMapping::AsciiOnly,
        }
    }

    /// Whether `lower`/`upper` give PostgreSQL's answer for every text.
    pub fn is_exact(self) -> bool {
        matches!(self, CaseMapping::Ascii | CaseMapping::CUtf8)
    }
}

/// Which way a letter's case goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    Upper,
    Lower,
}

impl Case {
    fn ascii(self, b: u8) -> u8 {
        match self {
            Case::Upper => b.to_ascii_uppercase(),
            Case::Lower => b.to_ascii_lowercase(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Case::Upper => "upper",
            Case::Lower => "lower",
        }
    }
}

/// `upper(text)` or `lower(text)` under `mapping`; unchanged text stays borrowed.
pub fn convert<'a>(
    mapping: CaseMapping,
    case: Case,
    text: Cow<'a, str>,
) -> Result<Cow<'a, str>, EvalError> {
    if mapping == CaseMapping::Refuse {
        return Err(EvalError::new(format!(
            "{}() under the source database's collation provider or ctype (ICU, or a Turkic \
             locale) is not computed by switchyard; compute it in the target or in a view",
            case.name()
        )));
    }
    if text.is_ascii() || mapping == CaseMapping::Ascii {
        let changes = |b: &u8| b.is_ascii() && case.ascii(*b) != *b;
        if !text.as_bytes().iter().any(changes) {
            return Ok(text);
        }
        let mut bytes = text.into_owned().into_bytes();
        bytes.iter_mut().for_each(|b| *b = case.ascii(*b));
        return Ok(Cow::Owned(
            String::from_utf8(bytes).expect("ASCII mapped to ASCII"),
        ));
    }
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let mapped = match lookup(c) {
            Some(_) if c.is_ascii() => char::from(case.ascii(c as u8)),
            None => c,
            Some(_) if mapping == CaseMapping::AsciiOnly => {
                return Err(EvalError::new(format!(
                    "{}() of {c:?} depends on the source database's LC_CTYPE, which is not C, \
                     POSIX or C.UTF-8 (the ctypes switchyard carries the case tables of)",
                    case.name()
                )));
            }
            Some((upper, lower)) => match case {
                Case::Upper => upper,
                Case::Lower => lower,
            },
        };
        out.push(mapped);
    }
    Ok(Cow::Owned(out))
}

/// `(towupper(c), towlower(c))` under `C.UTF-8`, for a letter either changes.
fn lookup(c: char) -> Option<(char, char)> {
    if c.is_ascii() {
        let b = c as u8;
        let (upper, lower) = (b.to_ascii_uppercase(), b.to_ascii_lowercase());
        return (upper != lower).then_some((char::from(upper), char::from(lower)));
    }
    let at = c_utf8::TABLE
        .binary_search_by_key(&u32::from(c), |entry| entry.0)
        .ok()?;
    let (_, upper, lower) = c_utf8::TABLE[at];
    let char_of = |cp: u32| char::from_u32(cp).expect("the table holds code points");
    Some((char_of(upper), char_of(lower)))
}
