//! Finds statements that would end a transaction, in SQL files switchyard runs inside a
//! transaction of its own (the cutover's, which holds the write lock): a `COMMIT` there would
//! release the lock before the swap is complete, and a `BEGIN` would be ignored with a warning.
//!
//! A small lexer, not a parser: it only needs to know where statements start, so it skips
//! comments and quoted text (single, double and dollar quotes, the bodies of `DO` blocks and
//! functions included) and looks at each statement's first words.

/// The first statement of `sql` that controls the transaction: its 1-based line and keyword.
pub fn find(sql: &str) -> Option<(usize, String)> {
    let b = sql.as_bytes();
    let mut i = 0;
    let mut line = 1;
    let mut at_start = true;
    while i < b.len() {
        let c = b[i];
        match c {
            b'\n' => {
                line += 1;
                i += 1;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        line += usize::from(b[i] == b'\n');
                        i += 1;
                    }
                }
            }
            b'\'' | b'"' => {
                at_start = false;
                i += 1;
                while i < b.len() && b[i] != c {
                    line += usize::from(b[i] == b'\n');
                    i += 1;
                }
                i += 1;
            }
            b'$' => {
                at_start = false;
                let tag_end = b[i + 1..]
                    .iter()
                    .position(|&x| !(x.is_ascii_alphanumeric() || x == b'_'))
                    .map(|p| i + 1 + p);
                match tag_end {
                    Some(e) if b[e] == b'$' => {
                        let tag = &sql[i..=e];
                        let body = e + 1;
                        let close = sql[body..].find(tag).map_or(b.len(), |p| body + p);
                        line += sql[i..close].matches('\n').count();
                        i = (close + tag.len()).min(b.len());
                    }
                    _ => i += 1,
                }
            }
            b';' => {
                at_start = true;
                i += 1;
            }
            c if c.is_ascii_whitespace() => i += 1,
            c if at_start && c.is_ascii_alphabetic() => {
                at_start = false;
                let word = |from: usize| {
                    let end = b[from..]
                        .iter()
                        .position(|x| !x.is_ascii_alphabetic())
                        .map_or(b.len(), |p| from + p);
                    (sql[from..end].to_ascii_uppercase(), end)
                };
                let (first, end) = word(i);
                let rest = sql[end..].trim_start();
                let second = rest
                    .split(|ch: char| !ch.is_ascii_alphabetic())
                    .next()
                    .unwrap_or("")
                    .to_ascii_uppercase();
                let ends = match first.as_str() {
                    "BEGIN" | "START" | "COMMIT" | "END" | "ABORT" => true,
                    "ROLLBACK" => second != "TO",
                    _ => false,
                };
                if ends {
                    return Some((line, first));
                }
                i = end;
            }
            _ => {
                at_start = false;
                i += 1;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_between_statements_is_found_with_its_line() {
        assert_eq!(
            find("-- swap\nALTER TABLE a RENAME TO b;\ncommit;\n"),
            Some((3, "COMMIT".to_owned()))
        );
        assert_eq!(find("BEGIN;\nSELECT 1;"), Some((1, "BEGIN".to_owned())));
    }

    #[test]
    fn begin_inside_a_do_block_or_a_string_is_not_transaction_control() {
        let sql = "DO $swap$\nBEGIN\n  IF true THEN RETURN; END IF;\nEND\n$swap$;\nSELECT 'commit; begin';\n/* COMMIT; */ SELECT 1;";
        assert_eq!(find(sql), None);
    }

    #[test]
    fn rollback_to_a_savepoint_is_allowed() {
        assert_eq!(find("SAVEPOINT s; ROLLBACK TO s; RELEASE s;"), None);
    }

    #[test]
    fn the_seed_cutover_and_rollback_files_pass() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/transforms/legacy_to_projects/"
        );
        for file in ["cutover.sql", "rollback.sql"] {
            let sql = std::fs::read_to_string(format!("{dir}{file}")).unwrap();
            assert_eq!(find(&sql), None, "{file}");
        }
    }
}
