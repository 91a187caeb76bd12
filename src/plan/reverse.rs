//! `[reverse]` compiled: how each legacy table is rebuilt from the new tables, for a reverse
//! stream after the cutover (issue: rollback that loses nothing).
//!
//! The expressions stay SQL text: PostgreSQL evaluates them on the target, over the output
//! table's row, in one generated `SELECT` per legacy table ([`ReverseTable::select`]). They may
//! read other tables (the name behind a lookup id, the legacy key behind a uuid) through scalar
//! subqueries, which switchyard's own evaluator does not offer. This pass checks what the plan
//! alone can tell: every legacy table is a source, every `from` one of its outputs, the key is
//! the source's key, and every output is either read back or ignored. `check` prepares the
//! `SELECT`s against the target and compares them with the legacy catalog
//! (`crate::cutover::reverse_rules`).

use std::borrow::Cow;

use toml::Spanned;

use crate::pg::ident::{quote_ident, TableName};
use crate::transform::program::SourcePlan;

use super::diagnostics::Collector;
use super::file::{ReverseFile, ReverseTableFile};

/// The reverse rules of a plan.
#[derive(Debug, Default)]
pub struct ReversePlan {
    /// Output tables with no legacy home.
    pub ignored: Vec<TableName>,
    pub tables: Vec<ReverseTable>,
}

/// The rows of output table `from` that belong to legacy table `table`.
#[derive(Debug)]
pub struct ReverseTable {
    /// Where the rule sits in the plan file, for messages: `reverse.tables[1]`.
    pub field: String,
    /// The legacy table (a plan source), and its index in [`super::Plan::sources`].
    pub table: TableName,
    pub source: usize,
    pub from: TableName,
    pub when: Option<String>,
    /// Legacy key columns and their expressions, in the source's key order.
    pub key: Vec<(String, String)>,
    pub sequence: Option<String>,
    /// The other legacy columns and their expressions, as written.
    pub columns: Vec<(String, String)>,
}

impl ReverseTable {
    /// Every legacy column this rule writes with its expression: the key first.
    pub fn all_columns(&self) -> impl Iterator<Item = &(String, String)> {
        self.key.iter().chain(&self.columns)
    }

    /// `SELECT <expr> AS <legacy column>, ... FROM <from> WHERE <when>`, each expression in
    /// parentheses so that an operator in one cannot bind to its neighbour's text. The caller
    /// adds its own conditions after `extra_condition` (`true` for none).
    pub fn select(&self, extra_condition: &str) -> String {
        let columns: Vec<String> = self
            .all_columns()
            .map(|(column, expr)| format!("({expr}) AS {}", quote_ident(column)))
            .collect();
        format!(
            "SELECT {} FROM {} AS {} WHERE ({}) AND ({extra_condition})",
            columns.join(", "),
            self.from.quoted(),
            quote_ident(&self.from.name),
            self.when.as_deref().unwrap_or("true"),
        )
    }
}

/// Compiles `[reverse]` against the compiled sources; problems go to `diags`.
pub(super) fn compile(
    diags: &mut Collector<'_>,
    f: &ReverseFile,
    sources: &[SourcePlan],
    source_schema: &str,
    target_schema: &str,
) -> ReversePlan {
    let ignored: Vec<TableName> = f
        .ignore
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let table = TableName::in_plan(t.get_ref(), None, target_schema);
            if !sources
                .iter()
                .any(|s| s.outputs.iter().any(|o| o.table == table))
            {
                diags.at(
                    t.span().start,
                    format!("reverse.ignore[{i}]"),
                    format!("{table} is not an output table of the plan"),
                );
            }
            table
        })
        .collect();
    let tables: Vec<ReverseTable> = f
        .tables
        .iter()
        .enumerate()
        .filter_map(|(i, t)| table(diags, i, t, sources, source_schema, target_schema))
        .collect();
    // Every output either feeds a legacy table back or is ignored knowingly: an output left
    // out would be writes the rollback silently does not bring back.
    let anchor = f
        .tables
        .first()
        .map(|t| t.table.span().start)
        .or_else(|| f.ignore.first().map(|t| t.span().start))
        .unwrap_or(0);
    let mut seen: Vec<&TableName> = Vec::new();
    for output in sources.iter().flat_map(|s| &s.outputs) {
        if seen.contains(&&output.table) {
            continue;
        }
        seen.push(&output.table);
        if !ignored.contains(&output.table) && !tables.iter().any(|t| t.from == output.table) {
            diags.at(
                anchor,
                "reverse",
                format!(
                    "output table {} is neither read back by a [[reverse.tables]] entry nor in reverse.ignore: writes to it after the cutover would not reach the legacy tables",
                    output.table
                ),
            );
        }
    }
    ReversePlan { ignored, tables }
}

fn table(
    diags: &mut Collector<'_>,
    i: usize,
    t: &ReverseTableFile,
    sources: &[SourcePlan],
    source_schema: &str,
    target_schema: &str,
) -> Option<ReverseTable> {
    let field = format!("reverse.tables[{i}]");
    let legacy = TableName::in_plan(t.table.get_ref(), None, source_schema);
    let Some(index) = sources.iter().position(|s| s.table == legacy) else {
        diags.at(
            t.table.span().start,
            format!("{field}.table"),
            format!("{legacy} is not a source of the plan: the reverse rules write the legacy tables the plan reads"),
        );
        return None;
    };
    let source = &sources[index];
    let from = TableName::in_plan(t.from.get_ref(), None, target_schema);
    if !source.outputs.iter().any(|o| o.table == from) {
        diags.at(
            t.from.span().start,
            format!("{field}.from"),
            format!("{from} is not an output of source {legacy}"),
        );
    }
    let written: Vec<&String> = t.key.keys().collect();
    if written.len() != source.key.len() || source.key.iter().any(|k| !t.key.contains_key(k)) {
        diags.at(
            t.table.span().start,
            format!("{field}.key"),
            format!(
                "the key must give exactly the source's key columns ({}), found ({})",
                source.key.join(", "),
                written
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
    for (column, expr) in &t.columns {
        if t.key.contains_key(column) {
            diags.at(
                expr.span().start,
                format!("{field}.columns.{column}"),
                "a key column is given in `key`, not in `columns`",
            );
        }
    }
    for (name, expr) in t
        .key
        .iter()
        .map(|(c, e)| (format!("{field}.key.{c}"), e))
        .chain(
            t.columns
                .iter()
                .map(|(c, e)| (format!("{field}.columns.{c}"), e)),
        )
        .chain(t.when.iter().map(|e| (format!("{field}.when"), e)))
    {
        if expr.get_ref().trim().is_empty() {
            diags.at(expr.span().start, name, "an empty expression");
        }
    }
    let text = |e: &Spanned<String>| e.get_ref().clone();
    Some(ReverseTable {
        field,
        table: legacy,
        source: index,
        from,
        when: t.when.as_ref().map(text),
        // In the source's key order, whatever order the file has.
        key: source
            .key
            .iter()
            .filter_map(|k| t.key.get(k).map(|e| (k.clone(), text(e))))
            .collect(),
        sequence: t.sequence.as_ref().map(text),
        columns: t
            .columns
            .iter()
            .map(|(c, e)| (c.clone(), text(e)))
            .collect(),
    })
}

/// The plan text its checksum covers: all of it, less `[reverse]`. A migration whose plan gets
/// reverse rules after its backfill (the usual order: they matter from the cutover on) keeps
/// its checksum, so `follow` and `--resume` do not refuse it. A plan without them is checksummed
/// as written, byte for byte, as before reverse rules existed.
pub(super) fn checksummed_text(text: &str) -> Cow<'_, str> {
    let Ok(mut document) = text.parse::<toml_edit::DocumentMut>() else {
        return Cow::Borrowed(text);
    };
    if document.remove("reverse").is_none() {
        return Cow::Borrowed(text);
    }
    Cow::Owned(document.to_string())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::plan::Plan;

    const FORWARD: &str = r#"name = "demo"
[[sources]]
table = "legacy"
key = ["id"]
[[sources.outputs]]
table = "items"
key = ["id"]
[sources.outputs.columns]
id = "id"
title = "title"
[[sources.outputs]]
table = "owners"
key = ["email"]
mode = "insert_if_absent"
[sources.outputs.columns]
email = "owner"
"#;

    fn errors(reverse: &str) -> Vec<String> {
        let text = format!("{FORWARD}{reverse}");
        match Plan::parse(Path::new("p.toml"), &text) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn the_seed_reads_every_legacy_table_back_in_key_order() {
        let plan = crate::plan::seed_plan();
        let reverse = plan.reverse.as_ref().expect("the seed has reverse rules");
        let names: Vec<String> = reverse
            .tables
            .iter()
            .map(|t| format!("{} <- {}", t.table.name, t.from.name))
            .collect();
        assert_eq!(
            names,
            [
                "company_projects <- projects",
                "company_services <- projects",
                "vortex_items <- tasks",
                "vortex_items <- sub_tasks"
            ]
        );
        let first = &reverse.tables[0];
        assert_eq!(first.key, [("id".to_owned(), "legacy_id".to_owned())]);
        assert_eq!(first.sequence.as_deref(), Some("company_projects_id_seq"));
        let select = first.select("id = ANY($1)");
        assert!(
            select.starts_with(r#"SELECT (legacy_id) AS "id", ((SELECT t.company_id"#),
            "{select}"
        );
        assert!(
            select.ends_with(
                r#"FROM "public"."projects" AS "projects" WHERE (legacy_table = 'company_projects') AND (id = ANY($1))"#
            ),
            "{select}"
        );
    }

    #[test]
    fn reverse_rules_are_left_out_of_the_checksum() {
        let plan = crate::plan::seed_plan();
        let text = std::fs::read_to_string(&plan.path).unwrap();
        let forward = &text[..text
            .find("\n# ─── reverse")
            .expect("the seed's reverse section")];
        // The text checksummed is the plan as it was before the section was added.
        assert!(
            super::checksummed_text(&text) == forward,
            "the cut text differs"
        );
        let without = Plan::parse(&plan.path, forward).unwrap();
        assert!(without.reverse.is_none());
        assert_eq!(plan.checksum, without.checksum);
        // Anything else still counts.
        let changed = Plan::parse(&plan.path, &format!("{forward}# a comment\n")).unwrap();
        assert_ne!(plan.checksum, changed.checksum);
    }

    #[test]
    fn a_complete_rule_set_compiles() {
        let found = errors(
            r#"[reverse]
ignore = ["owners"]
[[reverse.tables]]
table = "legacy"
from = "items"
key = { id = "id" }
[reverse.tables.columns]
title = "title"
"#,
        );
        assert!(found.is_empty(), "{found:#?}");
    }

    #[test]
    fn each_mistake_is_named_with_its_line_and_field() {
        let found = errors(
            r#"[reverse]
ignore = ["nowhere"]
[[reverse.tables]]
table = "legacy"
from = "owners"
key = { id = "id", uid = "id" }
[reverse.tables.columns]
id = "id"
title = " "
[[reverse.tables]]
table = "elsewhere"
from = "items"
key = { id = "id" }
columns = {}
"#,
        );
        let expected = [
            "p.toml:18:11: reverse.ignore[0]: public.nowhere is not an output table of the plan",
            "p.toml:20:9: reverse.tables[0].key: the key must give exactly the source's key columns (id), found (id, uid)",
            "p.toml:24:6: reverse.tables[0].columns.id: a key column is given in `key`, not in `columns`",
            "p.toml:25:9: reverse.tables[0].columns.title: an empty expression",
            "p.toml:27:9: reverse.tables[1].table: public.elsewhere is not a source of the plan",
            "p.toml:20:9: reverse: output table public.items is neither read back by a [[reverse.tables]] entry nor in reverse.ignore",
        ];
        for e in expected {
            assert!(
                found.iter().any(|f| f.starts_with(e)),
                "missing {e:?} in {found:#?}"
            );
        }
        assert_eq!(found.len(), expected.len(), "{found:#?}");
    }
}
