//! A source table named twice (`t`, `public.t`, `schema = "public"` beside `table = "t"`) is
//! refused when the plan loads: each source is one slot relation, one chunk list and one key
//! space, so a second entry would copy every row twice into the same chunk rows and key. One
//! source with several `[[sources.outputs]]` does what the second entry meant.

use crate::pg::ident::TableName;

use super::diagnostics::{line_column, Collector};

/// Reports each source whose table (after resolving the default schema) an earlier source
/// already names; `tables[i]` is source `i`'s table and `offsets[i]` where it is written.
pub(super) fn check(
    diags: &mut Collector<'_>,
    tables: &[&TableName],
    offsets: &[usize],
    text: &str,
) {
    for (j, table) in tables.iter().enumerate() {
        if let Some(i) = tables[..j].iter().position(|t| t == table) {
            let (line, _) = line_column(text, offsets[i]);
            diags.at(
                offsets[j],
                format!("sources[{j}].table"),
                format!(
                    "names {table} again, as sources[{i}] does (line {line}): read a table once, and give that source several [[sources.outputs]]"
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::plan::Plan;

    #[test]
    fn a_table_named_twice_in_any_spelling_is_refused_at_its_line() {
        let source = |table: &str| {
            format!(
                "[[sources]]\n{table}\nkey = [\"id\"]\n[[sources.outputs]]\ntable = \"out\"\nkey = [\"id\"]\n[sources.outputs.columns]\nid = \"id\"\n"
            )
        };
        let text = format!(
            "name = \"demo\"\n{}{}{}{}",
            source("table = \"t\""),
            source("table = \"public.t\""),
            source("schema = \"public\"\ntable = \"t\""),
            source("table = \"other.t\""),
        );
        let errors = Plan::parse(Path::new("p.toml"), &text).unwrap_err().0;
        let shown: Vec<String> = errors.iter().map(|d| d.to_string()).collect();
        assert_eq!(shown.len(), 2, "{shown:#?}");
        assert!(
            shown[0].starts_with(
                "p.toml:11:9: sources[1].table: names public.t again, as sources[0] does (line 3)"
            ),
            "{shown:#?}"
        );
        assert!(
            shown[1].starts_with("p.toml:20:9: sources[2].table:"),
            "{shown:#?}"
        );
    }
}
