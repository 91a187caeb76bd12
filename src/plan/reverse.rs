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
    /// parentheses so that an operator in one cannot bind to its neighbour's text, and ended by
    /// a line break so that a trailing `--` comment ends with it. Plan load refuses expressions
    /// whose parentheses do not balance, so none can close its own early. The caller adds its
    /// own conditions as `extra_condition` (`true` for none).
    pub fn select(&self, extra_condition: &str) -> String {
        self.select_over(&self.from.quoted(), &[], false, extra_condition)
    }

    /// [`Self::select`] over `relation` (any FROM item: the output table, or a subquery giving
    /// its columns), which the expressions see under the output table's name; `leading`
    /// columns (SQL over that name) come first, and with `as_text` every expression is cast to
    /// text, as the reverse stream carries them to the legacy side.
    pub fn select_over(
        &self,
        relation: &str,
        leading: &[String],
        as_text: bool,
        extra_condition: &str,
    ) -> String {
        let cast = if as_text { "::text" } else { "" };
        let columns: Vec<String> = leading
            .iter()
            .cloned()
            .chain(
                self.all_columns()
                    .map(|(column, expr)| format!("({expr}\n){cast} AS {}", quote_ident(column))),
            )
            .collect();
        format!(
            "SELECT {} FROM {relation} AS {} WHERE ({}\n) AND ({extra_condition})",
            columns.join(", "),
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
    let compiled: Vec<(usize, ReverseTable)> = f
        .tables
        .iter()
        .enumerate()
        .filter_map(|(i, t)| {
            table(diags, i, t, sources, source_schema, target_schema).map(|rule| (i, rule))
        })
        .collect();
    // Rules that read one output share its rows out by `when`: without one, a rule would
    // claim rows another writes elsewhere.
    for (i, rule) in &compiled {
        let sharing = compiled.iter().filter(|(_, t)| t.from == rule.from).count();
        if sharing > 1 && rule.when.is_none() {
            diags.at(
                f.tables[*i].from.span().start,
                format!("reverse.tables[{i}].when"),
                format!(
                    "{sharing} rules read {}: each needs a `when` saying which of its rows it takes",
                    rule.from
                ),
            );
        }
    }
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
        if !ignored.contains(&output.table) && !compiled.iter().any(|(_, t)| t.from == output.table)
        {
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
    ReversePlan {
        ignored,
        tables: compiled.into_iter().map(|(_, rule)| rule).collect(),
    }
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
        } else if !balanced(expr.get_ref()) {
            diags.at(
                expr.span().start,
                name,
                "its parentheses do not balance (outside quotes): an expression may not close the parentheses switchyard puts around it",
            );
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

/// The plan text as it was before its `[reverse]` section was added, in every way it may have
/// been added; the first is the one a new migration records. A plan without the section is
/// only its own text, byte for byte, as before reverse rules existed.
///
/// Operators add reverse rules late (they matter from the cutover on), and `follow`,
/// `--resume` and `--join` refuse a plan whose checksum changed, so the section must not count.
/// The cut works on lines, not on a re-serialized document, so line endings, a byte-order mark
/// and every other comment stay as written. Which comment lines around the section belong to it
/// is a guess, so each way is tried: above its first header none, the comment block right
/// above it (and one blank line above that), or every blank and comment line; at its end, the
/// blank and comment lines kept (they belong to what follows) or cut. A `reverse` key written
/// inline at the top of the file is cut by toml_edit as one more way.
pub(super) fn forward_texts(text: &str) -> Vec<Cow<'_, str>> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let is_reverse: Vec<bool> = {
        let mut inside = false;
        lines
            .iter()
            .map(|line| {
                if let Some(name) = header(line) {
                    inside = name == "reverse" || name.starts_with("reverse.");
                }
                inside
            })
            .collect()
    };
    let mut texts: Vec<Cow<'_, str>> = Vec::new();
    if is_reverse.iter().any(|r| *r) {
        for trailing in [false, true] {
            for above in [Above::None, Above::CommentBlock, Above::All] {
                texts.push(Cow::Owned(cut(&lines, &is_reverse, above, trailing)));
            }
        }
    }
    if let Ok(mut document) = text.parse::<toml_edit::DocumentMut>() {
        if document.remove("reverse").is_some() {
            texts.push(Cow::Owned(document.to_string()));
        }
    }
    if texts.is_empty() {
        texts.push(Cow::Borrowed(text));
    }
    texts
}

/// Which lines above a section's first header go with it.
#[derive(Clone, Copy, PartialEq)]
enum Above {
    None,
    /// The comment lines right above it, and one blank line above those.
    CommentBlock,
    /// Every blank and comment line above it.
    All,
}

fn cut(lines: &[&str], is_reverse: &[bool], above: Above, trailing: bool) -> String {
    let quiet = |line: &str| {
        let t = line.trim();
        t.is_empty() || t.starts_with('#')
    };
    let mut drop = is_reverse.to_vec();
    let mut i = 0;
    while i < lines.len() {
        if !is_reverse[i] {
            i += 1;
            continue;
        }
        let start = i;
        while i < lines.len() && is_reverse[i] {
            i += 1;
        }
        // Blank and comment lines at the end of a section belong to what follows it, or to it.
        if !trailing {
            let mut end = i;
            while end > start + 1 && quiet(lines[end - 1]) {
                end -= 1;
                drop[end] = false;
            }
        }
        let mut first = start;
        match above {
            Above::None => {}
            Above::CommentBlock => {
                while first > 0 && lines[first - 1].trim().starts_with('#') {
                    first -= 1;
                }
                if first > 0 && lines[first - 1].trim().is_empty() {
                    first -= 1;
                }
            }
            Above::All => {
                while first > 0 && quiet(lines[first - 1]) {
                    first -= 1;
                }
            }
        }
        drop[first..start].iter_mut().for_each(|d| *d = true);
    }
    lines
        .iter()
        .zip(&drop)
        .filter(|(_, d)| !**d)
        .map(|(l, _)| *l)
        .collect()
}

/// Whether `sql`'s parentheses balance, never closing more than are open, outside string
/// literals, quoted identifiers and `--` comments.
fn balanced(sql: &str) -> bool {
    let mut depth = 0i32;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                // Doubled quotes inside are two literals back to back: the same balance.
                for d in chars.by_ref() {
                    if d == c {
                        break;
                    }
                }
            }
            '-' if chars.peek() == Some(&'-') => {
                for d in chars.by_ref() {
                    if d == '\n' {
                        break;
                    }
                }
            }
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            _ => {}
        }
    }
    depth == 0
}

/// The table a header line opens (`[a.b]`, `[[a.b]]`), without spaces; `None` for other lines.
fn header(line: &str) -> Option<String> {
    let t = line.trim_start().trim_start_matches('\u{feff}');
    let inner = t.strip_prefix('[')?;
    let inner = inner.strip_prefix('[').unwrap_or(inner);
    let name = &inner[..inner.find(']')?];
    // A line of a multi-line array (`["a.sql", "b.sql"],`) is no header.
    if name.contains(',') || name.contains('"') && !name.starts_with('"') {
        return None;
    }
    Some(name.chars().filter(|c| !c.is_whitespace()).collect())
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
            select.starts_with("SELECT (legacy_id\n) AS \"id\", ((SELECT t.company_id"),
            "{select}"
        );
        assert!(
            select.ends_with(
                "FROM \"public\".\"projects\" AS \"projects\" WHERE (legacy_table = 'company_projects'\n) AND (id = ANY($1))"
            ),
            "{select}"
        );
    }

    #[test]
    fn the_seed_with_its_reverse_rules_is_the_seed_without_them() {
        let plan = crate::plan::seed_plan();
        let text = std::fs::read_to_string(&plan.path).unwrap();
        let forward = &text[..text
            .find("\n# ─── reverse")
            .expect("the seed's reverse section")];
        let without = Plan::parse(&plan.path, forward).unwrap();
        assert!(without.reverse.is_none());
        assert!(plan.has_checksum(&without.checksum));
        // Anything else still counts.
        let changed = Plan::parse(&plan.path, &format!("{forward}# a comment\n")).unwrap();
        assert!(!plan.has_checksum(&changed.checksum));
    }

    #[test]
    fn reverse_rules_are_left_out_of_the_checksum_however_they_are_added() {
        const RULES: &str = "[reverse]\nignore = [\"owners\"]\n[[reverse.tables]]\ntable = \"legacy\"\nfrom = \"items\"\nkey = { id = \"id\" }\n[reverse.tables.columns]\ntitle = \"title\"\n";
        let path = Path::new("p.toml");
        let befores = [
            FORWARD.to_owned(),
            format!("{FORWARD}# end of plan\n"),
            format!("{FORWARD}\n"),
            format!("\u{feff}{FORWARD}"),
            FORWARD.replace('\n', "\r\n"),
        ];
        for before in &befores {
            let recorded = Plan::parse(path, before).unwrap().checksum;
            let nl = if before.contains("\r\n") {
                "\r\n"
            } else {
                "\n"
            };
            let rules = RULES.replace('\n', nl);
            let afters = [
                format!("{before}{rules}"),
                format!("{before}{nl}# ─── the way back ───{nl}# more words{nl}{rules}"),
                format!("{before}{rules}{nl}# trailing words{nl}"),
                before.replacen("[[sources]]", &format!("{rules}[[sources]]"), 1),
                before.replacen(
                    "[[sources]]",
                    &format!("# about the sources{nl}{rules}[[sources]]"),
                    1,
                ),
            ];
            for after in &afters {
                let plan = Plan::parse(path, after).unwrap();
                assert!(plan.reverse.is_some(), "{after:?}");
                assert!(
                    plan.has_checksum(&recorded),
                    "adding the rules changed the checksum of {before:?}: {after:?}"
                );
            }
            let edited = before.replacen("title = \"title\"", "title = \"upper(title)\"", 1);
            let plan = Plan::parse(path, &format!("{edited}{rules}")).unwrap();
            assert!(!plan.has_checksum(&recorded), "a forward change counts");
        }
    }

    #[test]
    fn parentheses_must_balance_outside_quotes_and_comments() {
        for ok in [
            "a",
            "(SELECT x FROM t WHERE y = ')')",
            "f(\"odd)name\") -- a comment (with ( in it",
            "'it''s (' || b",
        ] {
            assert!(super::balanced(ok), "{ok}");
        }
        for bad in ["a) OR (true", "name), (1", "(a", "f(')'"] {
            assert!(!super::balanced(bad), "{bad}");
        }
    }

    #[test]
    fn rules_sharing_an_output_each_need_a_when() {
        let found = errors(
            r#"[reverse]
ignore = ["owners"]
[[reverse.tables]]
table = "legacy"
from = "items"
key = { id = "id" }
columns = { title = "title" }
[[reverse.tables]]
table = "legacy"
from = "items"
when = "title IS NULL"
key = { id = "id" }
columns = { title = "title) OR (true" }
"#,
        );
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(
            found[0].contains("reverse.tables[1].columns.title: its parentheses do not balance"),
            "{found:#?}"
        );
        assert!(found[1].starts_with("p.toml:21:8: reverse.tables[0].when: 2 rules read public.items: each needs a `when`"), "{found:#?}");
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
