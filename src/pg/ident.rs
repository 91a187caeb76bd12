//! Quoting of identifiers and literals: every name that reaches SQL goes through here, so no
//! statement is ever built by pasting user text.

use std::fmt;

/// `"name"` with embedded quotes doubled, as `quote_ident` would (always quoted, so reserved
/// words, mixed case and unicode need no special case).
pub fn quote_ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// `'text'` with embedded quotes doubled; used only where a statement cannot take a parameter
/// (utility commands such as `CREATE PUBLICATION` options).
pub fn quote_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    if text.contains('\\') {
        out.push('E');
    }
    out.push('\'');
    for c in text.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A schema-qualified table name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableName {
    pub schema: String,
    pub name: String,
}

impl TableName {
    /// Parses `table` or `schema.table`; the default schema applies to bare names. Names are taken
    /// literally (no case folding): a plan names tables as they are spelled in the catalog.
    pub fn parse(text: &str, default_schema: &str) -> TableName {
        match text.split_once('.') {
            Some((schema, name)) => TableName {
                schema: schema.to_owned(),
                name: name.to_owned(),
            },
            None => TableName {
                schema: default_schema.to_owned(),
                name: text.to_owned(),
            },
        }
    }

    /// A table as a plan names it: with an explicit `schema`, `table` is the name taken
    /// literally (it may hold dots); without, it is parsed as by [`TableName::parse`].
    pub fn in_plan(table: &str, schema: Option<&str>, default_schema: &str) -> TableName {
        match schema {
            Some(schema) => TableName {
                schema: schema.to_owned(),
                name: table.to_owned(),
            },
            None => TableName::parse(table, default_schema),
        }
    }

    /// The quoted form for SQL text.
    pub fn quoted(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }
}

/// Displays as `schema.table`, unquoted, for messages.
impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_quotes_in_identifiers() {
        assert_eq!(quote_ident(r#"we"ird name"#), r#""we""ird name""#);
    }

    #[test]
    fn escapes_quotes_and_backslashes_in_literals() {
        assert_eq!(quote_literal(r"it's \ here"), r"E'it''s \\ here'");
        assert_eq!(quote_literal("plain"), "'plain'");
    }

    #[test]
    fn bare_table_names_take_the_default_schema() {
        assert_eq!(TableName::parse("t", "public").quoted(), r#""public"."t""#);
        assert_eq!(TableName::parse("s.T", "public").to_string(), "s.T");
    }
}
