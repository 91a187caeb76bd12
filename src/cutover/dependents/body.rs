//! Where a function body names a table, and whether it writes it: a light scan of the body's
//! identifiers, no parser. PostgreSQL records no dependency from a `sql` or `plpgsql` body
//! given as a string (only `BEGIN ATOMIC` bodies are parsed at creation and appear in
//! `pg_depend`: <https://www.postgresql.org/docs/15/sql-createfunction.html>), so the name is
//! all there is to go on.
//!
//! Deliberately conservative: string literals and comments are scanned too, so dynamic SQL
//! (`EXECUTE 'INSERT INTO t ...'`) counts, and a name in a comment reports the function
//! rather than missing one.

use serde::Serialize;

/// How a body uses a table it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    Reads,
    /// `INSERT INTO`, `UPDATE [ONLY]`, `DELETE FROM [ONLY]`, `MERGE INTO`, `TRUNCATE [TABLE]`.
    Writes,
}

#[derive(Debug, PartialEq)]
enum Token {
    /// Unquoted identifiers folded to lower case, as PostgreSQL folds them; quoted ones as
    /// written.
    Ident(String),
    Dot,
    Other,
}

fn tokens(body: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_alphabetic() || c == '_' {
            let mut word = c.to_lowercase().to_string();
            while let Some(&n) = chars.peek() {
                if n.is_alphanumeric() || n == '_' || n == '$' {
                    word.extend(n.to_lowercase());
                    chars.next();
                } else {
                    break;
                }
            }
            out.push(Token::Ident(word));
        } else if c == '"' {
            let mut word = String::new();
            while let Some(n) = chars.next() {
                if n == '"' {
                    if chars.peek() == Some(&'"') {
                        chars.next();
                        word.push('"');
                    } else {
                        break;
                    }
                } else {
                    word.push(n);
                }
            }
            out.push(Token::Ident(word));
        } else if c == '.' {
            out.push(Token::Dot);
        } else if c.is_ascii_digit() {
            // A number ends no identifier and starts none: `1.5` must not read as `x.y`.
            while chars.peek().is_some_and(|n| n.is_ascii_alphanumeric()) {
                chars.next();
            }
            out.push(Token::Other);
        } else if !c.is_whitespace() {
            out.push(Token::Other);
        }
    }
    out
}

fn is(t: Option<&Token>, word: &str) -> bool {
    matches!(t, Some(Token::Ident(w)) if w == word)
}

/// How `body` uses table `schema.name`, if it names it: as `name` (any schema: the function's
/// `search_path` decides, so it counts) or as `schema.name`, quoted or not. `None` when it
/// does not name it.
pub fn access(body: &str, schema: &str, name: &str) -> Option<Access> {
    let t = tokens(body);
    let mut found = None;
    for i in 0..t.len() {
        if !matches!(&t[i], Token::Ident(w) if w == name) {
            continue;
        }
        // `x.name`: a table only when x is its schema (else a column, or another schema's
        // table); `name.x` is a column of it, or a function call: still a mention.
        let start = if i >= 1 && t[i - 1] == Token::Dot {
            if i >= 2 && matches!(&t[i - 2], Token::Ident(w) if w == schema) {
                i - 2
            } else {
                continue;
            }
        } else {
            i
        };
        let mut k = start;
        let before = |k: usize| if k == 0 { None } else { t.get(k - 1) };
        if is(before(k), "only") {
            k -= 1;
        }
        let writes = is(before(k), "update")
            || is(before(k), "truncate")
            || (is(before(k), "table") && is(before(k - 1), "truncate"))
            || (is(before(k), "into")
                && (is(before(k - 1), "insert") || is(before(k - 1), "merge")))
            || (is(before(k), "from") && is(before(k - 1), "delete"));
        let this = if writes {
            Access::Writes
        } else {
            Access::Reads
        };
        found = found.max(Some(this));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_reads_and_writes_qualified_or_not() {
        let r = |b: &str| access(b, "public", "vortex_items");
        assert_eq!(r("SELECT count(*) FROM vortex_items"), Some(Access::Reads));
        assert_eq!(
            r("select * from public.Vortex_Items v"),
            Some(Access::Reads)
        );
        assert_eq!(
            r(r#"SELECT 1 FROM "public"."vortex_items""#),
            Some(Access::Reads)
        );
        assert_eq!(
            r("BEGIN INSERT INTO vortex_items (title) VALUES (NEW.x); END"),
            Some(Access::Writes)
        );
        assert_eq!(
            r("update only public.vortex_items set x = 1"),
            Some(Access::Writes)
        );
        assert_eq!(
            r("DELETE FROM vortex_items WHERE id = 1"),
            Some(Access::Writes)
        );
        assert_eq!(
            r("MERGE INTO vortex_items v USING s ON true"),
            Some(Access::Writes)
        );
        assert_eq!(r("TRUNCATE TABLE vortex_items"), Some(Access::Writes));
        assert_eq!(
            r("EXECUTE 'insert into vortex_items values (1)'"),
            Some(Access::Writes),
            "dynamic SQL counts"
        );
        assert_eq!(
            r("SELECT 1 FROM vortex_items; UPDATE vortex_items SET x = 2"),
            Some(Access::Writes),
            "one write makes the function a writer"
        );
    }

    #[test]
    fn ignores_longer_names_other_schemas_and_columns() {
        let r = |b: &str| access(b, "public", "vortex_items");
        assert_eq!(r("SELECT * FROM vortex_items_legacy"), None);
        assert_eq!(r("SELECT * FROM my_vortex_items"), None);
        assert_eq!(r("SELECT * FROM archive.vortex_items"), None);
        assert_eq!(r("SELECT t.vortex_items FROM t"), None);
        assert_eq!(
            r(r#"SELECT * FROM "Vortex_items""#),
            None,
            "quoted names keep their case"
        );
        assert_eq!(r("SELECT 1.5"), None);
    }
}
