//! What a column default's text (as `pg_get_expr` prints it) says about the sequences it
//! draws from, beyond what `pg_depend` records.
//!
//! `nextval('s')` and `nextval('s'::regclass)` store a regclass constant, which PostgreSQL
//! records as a dependency on the sequence: the catalog names those. `nextval('s'::text)` (or
//! a name built at run time) stores only text, resolved at each call: no dependency exists,
//! so the name is read from the text here, and a call whose argument is not a constant is
//! reported as one the cutover cannot place.

use regex::Regex;
use std::sync::OnceLock;

/// The sequence calls found in one default.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DefaultCalls {
    /// Names given as text constants (`nextval('s'::text)`), to resolve like PostgreSQL does
    /// at insert time (`'s'::regclass` under the search path).
    pub by_name: Vec<String>,
    /// Whether some `nextval(...)` takes an argument that is no constant at all.
    pub computed: bool,
}

/// `nextval('<literal>'::<type>)` as `pg_get_expr` prints it; `''` inside the literal is a
/// quote.
fn constant_call() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"(?i)\bnextval\('((?:[^']|'')*)'::([a-z ]+)\)").expect("a valid pattern")
    })
}

fn any_call() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"(?i)\bnextval\s*\(").expect("a valid pattern"))
}

/// Reads the `nextval` calls of a default's text.
pub fn calls(default: &str) -> DefaultCalls {
    let mut found = DefaultCalls::default();
    let mut constant = 0;
    for c in constant_call().captures_iter(default) {
        constant += 1;
        // A regclass constant is in pg_depend; anything else is a name resolved per call.
        if c[2].trim() != "regclass" {
            found.by_name.push(c[1].replace("''", "'"));
        }
    }
    found.computed = any_call().find_iter(default).count() > constant;
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regclass_constants_are_left_to_the_catalog() {
        assert_eq!(
            calls("nextval('invoice_no_seq'::regclass)"),
            DefaultCalls::default()
        );
        assert_eq!(
            calls("('INV-'::text || nextval('billing.\"Inv\"'::regclass))"),
            DefaultCalls::default()
        );
    }

    #[test]
    fn text_names_are_read_and_computed_arguments_flagged() {
        assert_eq!(
            calls("nextval('o''neil_seq'::text)").by_name,
            vec!["o'neil_seq".to_owned()]
        );
        assert_eq!(
            calls("nextval(('s'::character varying)::regclass)"),
            DefaultCalls {
                by_name: vec![],
                computed: true
            }
        );
        assert!(calls("nextval(current_setting('app.seq'::text))").computed);
        assert!(!calls("now()").computed);
    }
}
