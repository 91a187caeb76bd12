//! The short version of the `plan_parse` fuzz target: arbitrary plan text, and arbitrary
//! expressions made of the tokens plans use, give a plan or diagnostics, never a panic.

use std::path::Path;

use proptest::prelude::*;

use super::Plan;

/// Tokens of the SQL subset plans use, plus some the compiler must refuse.
const TOKENS: &[&str] = &[
    "(",
    ")",
    ",",
    "'x'",
    "''",
    "'url'",
    "'stages'",
    "'status'",
    "'[-_\\s]+'",
    "'g'",
    "0",
    "1",
    "-2",
    "1.5",
    "1e309",
    "99999999999999999999999999999",
    "id",
    "name",
    "first",
    "Name",
    "\"Name\"",
    "a.b",
    "||",
    "+",
    "-",
    "*",
    "/",
    "%",
    "=",
    "<>",
    "<",
    ">=",
    "::",
    "numeric",
    "numeric(14,2)",
    "numeric(99999999999)",
    "date",
    "timestamptz",
    "int",
    "text",
    "jsonb",
    "lower",
    "upper",
    "trim",
    "nullif",
    "coalesce",
    "replace",
    "regexp_replace",
    "uuid_v5",
    "lookup",
    "map",
    "now",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "IS",
    "NOT",
    "NULL",
    "AND",
    "OR",
    "IN",
    "BETWEEN",
    "LIKE",
    "DISTINCT",
    "FROM",
    "CAST",
    "AS",
    "TRUE",
    "SELECT",
    "$1",
    "[",
    "]",
    "->>",
    "~",
];

fn expression() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::collection::vec(proptest::sample::select(TOKENS), 0..24)
            .prop_map(|tokens| tokens.join(" ")),
        "\\PC{0,40}",
        // Deep nesting must be refused, not overflow the stack.
        (1..2000_usize).prop_map(|depth| format!("{}1{}", "(".repeat(depth), ")".repeat(depth))),
        // Long operator chains parse without recursion but make a deep tree.
        (1..2000_usize).prop_map(|length| vec!["name"; length].join(" || ")),
    ]
}

/// `text` as a TOML string, escaped by the toml crate itself.
fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

fn plan_around(expression: &str) -> String {
    let e = toml_string(expression);
    format!(
        "name = \"props\"\n[lookups.stages]\n[maps.status]\nvalues = {{ \"a\" = 1 }}\n\
         [[sources]]\ntable = \"t\"\nkey = [\"id\"]\n[sources.derive]\nfirst = {e}\n\
         [[sources.outputs]]\ntable = \"o\"\nkey = [\"id\"]\nwhen = {e}\n\
         [sources.outputs.columns]\nid = \"id\"\nvalue = {e}\n"
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_expression_compiles_or_is_diagnosed(expression in expression()) {
        let _ = Plan::parse(Path::new("/nonexistent/props.toml"), &plan_around(&expression));
    }

    #[test]
    fn any_plan_text_compiles_or_is_diagnosed(text in "[\\[\\]=\"' a-z_.{},\\n0-9]{0,200}") {
        let _ = Plan::parse(Path::new("/nonexistent/props.toml"), &text);
    }
}
