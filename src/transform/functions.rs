//! The strict text functions of plan expressions, with PostgreSQL's semantics (1-based
//! positions counted in characters, `trim` removing spaces only, `regexp_replace` replacing the
//! first match unless the `g` flag is given, `upper`/`lower` as the source's ctype maps case:
//! see [`super::case_map`]).

use std::borrow::Cow;

use regex::Regex;

use super::case_map::{self, current, Case};
use super::eval_error::EvalError;
use super::expr::Function;
use super::value::text_of;
use super::value::Value;

/// Calls a strict function on non-NULL arguments (the caller has checked the count).
pub(super) fn call_strict(f: Function, args: Vec<Value<'_>>) -> Result<Value<'_>, EvalError> {
    let mut args = args.into_iter();
    let mut next_text = || text_of(args.next().expect("argument count checked at compile"));
    Ok(match f {
        Function::Lower => Value::Text(case_map::convert(current(), Case::Lower, next_text())?),
        Function::Upper => Value::Text(case_map::convert(current(), Case::Upper, next_text())?),
        Function::Btrim | Function::Ltrim | Function::Rtrim => {
            let input = next_text();
            let chars = args.next().map(text_of);
            let set = chars.as_deref().unwrap_or(" ");
            Value::Text(trim(input, set, f))
        }
        Function::Replace => {
            let input = next_text();
            let from = next_text();
            let to = next_text();
            if from.is_empty() || !input.contains(from.as_ref()) {
                Value::Text(input)
            } else {
                Value::Text(Cow::Owned(input.replace(from.as_ref(), &to)))
            }
        }
        Function::Substring => {
            let input = next_text();
            let start = int_arg(args.next())?;
            let count = args.next().map(|v| int_arg(Some(v))).transpose()?;
            Value::Text(substring(input, start, count)?)
        }
        Function::Length => Value::Int(next_text().chars().count() as i64),
        Function::Concat
        | Function::Coalesce
        | Function::Nullif
        | Function::Greatest
        | Function::Least => unreachable!("non-strict functions are evaluated by eval"),
    })
}

fn trim<'a>(text: Cow<'a, str>, set: &str, f: Function) -> Cow<'a, str> {
    let in_set = |c: char| set.contains(c);
    let range = {
        let s: &str = &text;
        let trimmed = match f {
            Function::Ltrim => s.trim_start_matches(in_set),
            Function::Rtrim => s.trim_end_matches(in_set),
            _ => s.trim_matches(in_set),
        };
        let start = trimmed.as_ptr() as usize - s.as_ptr() as usize;
        start..start + trimmed.len()
    };
    slice(text, range)
}

/// A sub-slice that stays borrowed when the input was borrowed.
fn slice(text: Cow<'_, str>, range: std::ops::Range<usize>) -> Cow<'_, str> {
    match text {
        Cow::Borrowed(s) => Cow::Borrowed(&s[range]),
        Cow::Owned(s) if range.start == 0 && range.end == s.len() => Cow::Owned(s),
        Cow::Owned(s) => Cow::Owned(s[range].to_owned()),
    }
}

fn int_arg(v: Option<Value<'_>>) -> Result<i64, EvalError> {
    match v {
        Some(Value::Int(i)) => Ok(i),
        Some(other) => match super::cast::cast(other, &super::cast::CastType::Int8)? {
            Value::Int(i) => Ok(i),
            _ => Err(EvalError::new("expected an integer argument")),
        },
        None => Err(EvalError::new("missing argument")),
    }
}

/// `substring(text from start for count)`: positions before 1 still count towards `count`.
fn substring(
    text: Cow<'_, str>,
    start: i64,
    count: Option<i64>,
) -> Result<Cow<'_, str>, EvalError> {
    if count.is_some_and(|c| c < 0) {
        return Err(EvalError::new("negative substring length not allowed"));
    }
    let first = start.max(1);
    let end = match count {
        Some(c) => start.saturating_add(c),
        None => i64::MAX,
    };
    if end <= first {
        return Ok(Cow::Borrowed(""));
    }
    let byte_at = |pos: i64| {
        text.char_indices()
            .nth((pos - 1) as usize)
            .map_or(text.len(), |(i, _)| i)
    };
    let from = byte_at(first);
    let to = if end == i64::MAX {
        text.len()
    } else {
        byte_at(end)
    };
    Ok(slice(text.clone(), from..to.max(from)))
}

/// `regexp_replace` with PostgreSQL's replacement syntax (`\1`..`\9` and `&`).
pub(super) fn regexp_replace<'a>(
    input: Cow<'a, str>,
    pattern: &Regex,
    replacement: &str,
    global: bool,
) -> Value<'a> {
    if !pattern.is_match(&input) {
        return Value::Text(input);
    }
    let rust_replacement = rust_replacement(replacement);
    let out = if global {
        pattern.replace_all(&input, rust_replacement.as_ref())
    } else {
        pattern.replace(&input, rust_replacement.as_ref())
    };
    Value::Text(Cow::Owned(out.into_owned()))
}

/// Translates PostgreSQL's replacement syntax into the `regex` crate's, as `replace_text_regexp`
/// reads it: `\1`..`\9` and `\&` insert a group and the whole match, `\\` one backslash; any
/// other backslash and every `&` are literal. `$` is escaped for the `regex` crate.
fn rust_replacement(pg: &str) -> Cow<'_, str> {
    if !pg.contains(['\\', '$']) {
        return Cow::Borrowed(pg);
    }
    let mut out = String::with_capacity(pg.len() + 8);
    let mut chars = pg.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek().copied()) {
            ('$', _) => out.push_str("$$"),
            ('\\', Some(d @ '1'..='9')) => {
                chars.next();
                out.push_str("${");
                out.push(d);
                out.push('}');
            }
            ('\\', Some('&')) => {
                chars.next();
                out.push_str("${0}");
            }
            ('\\', Some('\\')) => {
                chars.next();
                out.push('\\');
            }
            (c, _) => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(v: Value<'_>) -> String {
        v.to_string()
    }

    #[test]
    fn trim_removes_spaces_only_and_borrows() {
        let out = trim(Cow::Borrowed("  a b\t "), " ", Function::Btrim);
        assert_eq!(out, "a b\t");
        assert!(matches!(out, Cow::Borrowed(_)));
    }

    #[test]
    fn substring_counts_positions_before_one() {
        assert_eq!(substring(Cow::Borrowed("hello"), 0, Some(3)).unwrap(), "he");
        assert_eq!(substring(Cow::Borrowed("héllo"), 2, Some(2)).unwrap(), "él");
        assert_eq!(substring(Cow::Borrowed("hello"), 4, None).unwrap(), "lo");
        assert_eq!(substring(Cow::Borrowed("hello"), 9, None).unwrap(), "");
    }

    #[test]
    fn regexp_replace_uses_postgres_back_references() {
        let re = Regex::new("(a)(b)").unwrap();
        // Captured from PostgreSQL 15.18: a bare `&` is literal, `\&` is the whole match.
        let out = regexp_replace(Cow::Borrowed("xaby ab"), &re, r"[\2\1&$]", false);
        assert_eq!(text(out), "x[ba&$]y ab");
        let out = regexp_replace(Cow::Borrowed("xaby"), &re, r"\&\0\\", false);
        assert_eq!(text(out), r"xab\0\y");
        let all = regexp_replace(Cow::Borrowed("xaby ab"), &re, "-", true);
        assert_eq!(text(all), "x-y -");
    }
}
