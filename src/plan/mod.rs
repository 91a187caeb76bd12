//! The migration plan: a TOML file in `transforms/` plus the SQL files its phases run.
//!
//! [`Plan::load`] reads the file ([`file`]), checks it and compiles every expression once
//! ([`compile_expr`]); the hot path only ever sees the compiled [`Plan`]. All problems are
//! reported together, each with file, line, column and field ([`diagnostics`]).

pub(crate) mod compile_expr;
pub mod diagnostics;
mod duplicate_sources;
pub mod file;
mod keywords;
mod transaction_control;

#[cfg(test)]
mod never_panics;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::pg::ident::TableName;
use crate::transform::eval::ValueMap;
use crate::transform::expr::Expr;
use crate::transform::value::Value;
use compile_expr::{canonical_sql, compile, Names};
use diagnostics::{Collector, PlanErrors};
pub use file::{CutoverSide, Disposition, LegacyNames, OnError, SlotDisposal, WriteMode};

/// A compiled plan.
#[derive(Debug)]
pub struct Plan {
    pub name: String,
    pub path: PathBuf,
    /// SHA-256 of the plan and its SQL files: a backfill refuses to resume under another plan.
    pub checksum: String,
    pub on_error: OnError,
    pub sources: Vec<SourcePlan>,
    pub lookups: Vec<LookupPlan>,
    pub maps: Vec<ValueMap>,
    pub phases: Phases,
    pub cutover: CutoverPlan,
    pub reports: Vec<(String, String)>,
    pub target_schema: String,
}

/// One source table and what becomes of its rows.
#[derive(Debug)]
pub struct SourcePlan {
    pub table: TableName,
    pub key: Vec<String>,
    /// The source columns the plan reads, in the order rows carry them (key columns first).
    pub columns: Vec<String>,
    pub derived: Vec<(String, Expr)>,
    /// For each derive, the one non-key source column it depends on (through other derives
    /// too), when it has exactly one and no lookup: such derives are memoized per input.
    pub memo_columns: Vec<Option<usize>>,
    pub outputs: Vec<OutputPlan>,
}

#[derive(Debug)]
pub struct OutputPlan {
    pub table: TableName,
    pub key: Vec<String>,
    pub mode: WriteMode,
    pub when: Option<Expr>,
    /// `when` as written, when PostgreSQL can evaluate it on the source table itself (it
    /// reads source columns only, through no switchyard function): the cutover counts the
    /// source rows an output should hold with it.
    pub when_sql: Option<String>,
    pub columns: Vec<String>,
    pub exprs: Vec<Expr>,
    /// Where each key column sits in `columns`, resolved once (a key column without an
    /// expression is a plan error).
    pub key_positions: Vec<usize>,
}

#[derive(Debug)]
pub struct LookupPlan {
    pub name: String,
    pub table: TableName,
    pub id_column: String,
    pub value_column: String,
}

/// How the cutover ends the migration (see `crate::cutover`).
#[derive(Debug, Clone, Copy, Default)]
pub struct CutoverPlan {
    pub side: CutoverSide,
    pub slot: SlotDisposal,
    pub dependents: Dependents,
    /// As the plan declares it; [`CutoverPlan::legacy_names`] applies the default.
    pub declared_legacy_names: Option<LegacyNames>,
}

impl CutoverPlan {
    /// What the legacy names must be after the cutover SQL: as declared, else `views` with one
    /// database (the swap puts compatibility views in their place) and `unchanged` with two
    /// (the legacy tables stay, made read-only by switchyard).
    pub fn legacy_names(&self, same_database: bool) -> LegacyNames {
        self.declared_legacy_names.unwrap_or(if same_database {
            LegacyNames::Views
        } else {
            LegacyNames::Unchanged
        })
    }
}

/// `[cutover.dependents]` compiled: what the cutover does with each kind of object bound to a
/// legacy table. `Carry` is accepted only where it has one meaning:
/// - `views`: views over a legacy table are re-created from their definition, so that they
///   read the object that takes the legacy name (the compatibility view);
/// - `grants`: privileges granted on a legacy table are granted on what takes its name and on
///   the new tables it feeds.
///
/// For `policies`, `cutover_sql` means the plan's cutover SQL writes the equivalent
/// row-level security policies on the new tables, and the cutover proves they exist.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dependents {
    pub foreign_keys: Disposition,
    pub views: Disposition,
    pub materialized_views: Disposition,
    pub functions: Disposition,
    pub triggers: Disposition,
    pub rules: Disposition,
    pub publications: Disposition,
    pub grants: Disposition,
    pub policies: Disposition,
}

#[derive(Debug, Default)]
pub struct Phases {
    pub before_backfill: Vec<SqlFile>,
    pub after_backfill: Vec<SqlFile>,
    pub cutover: Vec<SqlFile>,
    pub rollback: Vec<SqlFile>,
}

#[derive(Debug, Clone)]
pub struct SqlFile {
    pub path: PathBuf,
    pub sql: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanLoadError {
    #[error("cannot read plan {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Invalid(#[from] PlanErrors),
}

impl SourcePlan {
    /// Whether an output's key is computed from the source key columns alone (directly or
    /// through derives). Deletes and moves find output rows that way, since an old key tuple
    /// carries nothing else.
    pub fn key_from_source_key(&self, output: &OutputPlan) -> bool {
        let mut only_key = true;
        let mut visit = |e: &Expr| {
            e.walk(&mut |node| match node {
                Expr::Column(c) if *c >= self.key.len() => only_key = false,
                Expr::Derived(d) if !self.derived_from_key(*d) => only_key = false,
                _ => {}
            })
        };
        for &position in &output.key_positions {
            visit(&output.exprs[position]);
        }
        only_key
    }

    fn derived_from_key(&self, d: usize) -> bool {
        let mut only_key = true;
        self.derived[d].1.walk(&mut |node| match node {
            Expr::Column(c) if *c >= self.key.len() => only_key = false,
            Expr::Derived(e) if *e < d && !self.derived_from_key(*e) => only_key = false,
            _ => {}
        });
        only_key
    }
}

impl Plan {
    pub fn load(path: &Path) -> Result<Plan, PlanLoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| PlanLoadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Plan::parse(path, &text)?)
    }

    /// Compiles plan text; `path` names the file in diagnostics and anchors the SQL files.
    pub fn parse(path: &Path, text: &str) -> Result<Plan, PlanErrors> {
        let mut diags = Collector::new(path, text);
        let parsed: file::PlanFile = match toml::from_str(text) {
            Ok(p) => p,
            Err(e) => {
                let offset = e.span().map_or(0, |s| s.start);
                diags.at(offset, "plan", e.message().to_owned());
                return Err(PlanErrors(diags.found));
            }
        };
        let plan = Compile {
            diags: &mut diags,
            dir: path.parent().unwrap_or(Path::new(".")),
        }
        .plan(path, text, parsed);
        if diags.found.is_empty() {
            Ok(plan)
        } else {
            Err(PlanErrors(diags.found))
        }
    }

    pub fn slot_name(&self) -> String {
        format!("switchyard_{}", self.name)
    }

    pub fn publication_name(&self) -> String {
        format!("switchyard_{}", self.name)
    }

    /// Every distinct output table, in plan order.
    pub fn output_tables(&self) -> Vec<&TableName> {
        let mut out: Vec<&TableName> = Vec::new();
        for o in self.sources.iter().flat_map(|s| &s.outputs) {
            if !out.contains(&&o.table) {
                out.push(&o.table);
            }
        }
        out
    }
}

struct Compile<'d, 'a> {
    diags: &'d mut Collector<'a>,
    dir: &'a Path,
}

impl Compile<'_, '_> {
    fn plan(mut self, path: &Path, text: &str, f: file::PlanFile) -> Plan {
        let name = f.name.get_ref().clone();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            self.diags.at(
                f.name.span().start,
                "name",
                "a plan name is lower-case letters, digits and '_' (it names the slot and publication)",
            );
        }
        let lookup_names: Vec<String> = f.lookups.keys().cloned().collect();
        let map_names: Vec<String> = f.maps.keys().cloned().collect();
        let lookups = f
            .lookups
            .iter()
            .map(|(n, l)| LookupPlan {
                name: n.clone(),
                table: TableName::in_plan(
                    l.table.as_deref().unwrap_or(n),
                    l.schema.as_deref(),
                    &f.target_schema,
                ),
                id_column: l.id.clone(),
                value_column: l.value.clone(),
            })
            .collect();
        let maps = f.maps.iter().map(|(n, m)| self.map(n, m)).collect();
        let mut checksum = Sha256::new();
        checksum.update(text.as_bytes());
        let phases = Phases {
            before_backfill: self.sql_files(
                "phases.before_backfill",
                &f.phases.before_backfill,
                &mut checksum,
            ),
            after_backfill: self.sql_files(
                "phases.after_backfill",
                &f.phases.after_backfill,
                &mut checksum,
            ),
            cutover: self.in_transaction("phases.cutover", &f.phases.cutover),
            rollback: self.in_transaction("phases.rollback", &f.phases.rollback),
        };
        let sources = f
            .sources
            .iter()
            .enumerate()
            .map(|(i, s)| {
                self.source(
                    i,
                    s,
                    &f.source_schema,
                    &f.target_schema,
                    &lookup_names,
                    &map_names,
                )
            })
            .collect::<Vec<SourcePlan>>();
        duplicate_sources::check(
            self.diags,
            &sources.iter().map(|s| &s.table).collect::<Vec<_>>(),
            &f.sources
                .iter()
                .map(|s| s.table.span().start)
                .collect::<Vec<_>>(),
            text,
        );
        Plan {
            name,
            path: path.to_path_buf(),
            checksum: format!("{:x}", checksum.finalize()),
            on_error: f.on_error,
            sources,
            lookups,
            maps,
            phases,
            cutover: CutoverPlan {
                side: f.cutover.side,
                slot: f.cutover.slot,
                dependents: self.dependents(&f.cutover.dependents),
                declared_legacy_names: f.cutover.legacy_names,
            },
            reports: f.reports.into_iter().collect(),
            target_schema: f.target_schema,
        }
    }

    /// Compiles `[cutover.dependents]`, refusing `carry` where it has no meaning.
    fn dependents(&mut self, f: &file::DependentsFile) -> Dependents {
        let mut kind = |name: &str, value: &Option<toml::Spanned<Disposition>>, carries: bool| {
            let Some(v) = value else {
                return Disposition::Refuse;
            };
            if *v.get_ref() == Disposition::Carry && !carries {
                self.diags.at(
                    v.span().start,
                    format!("cutover.dependents.{name}"),
                    format!(
                        "switchyard cannot carry {name} over to the new tables: use \"cutover_sql\" (the plan's cutover SQL deals with them; the cutover proves it), \"warn\" or \"refuse\""
                    ),
                );
            }
            *v.get_ref()
        };
        Dependents {
            foreign_keys: kind("foreign_keys", &f.foreign_keys, false),
            views: kind("views", &f.views, true),
            materialized_views: kind("materialized_views", &f.materialized_views, false),
            functions: kind("functions", &f.functions, false),
            triggers: kind("triggers", &f.triggers, false),
            rules: kind("rules", &f.rules, false),
            publications: kind("publications", &f.publications, false),
            grants: kind("grants", &f.grants, true),
            policies: kind("policies", &f.policies, false),
        }
    }

    fn map(&mut self, name: &str, m: &file::MapFile) -> ValueMap {
        let mut entries = HashMap::new();
        for (k, v) in &m.values {
            entries.insert(
                k.clone(),
                self.toml_value(&format!("maps.{name}.values.{k}"), v),
            );
        }
        let default = match &m.default {
            Some(v) => self.toml_value(&format!("maps.{name}.default"), v),
            None => Value::Null,
        };
        ValueMap {
            name: name.to_owned(),
            entries,
            default,
        }
    }

    fn toml_value(&mut self, field: &str, v: &toml::Value) -> Value<'static> {
        match v {
            toml::Value::String(s) => Value::Text(s.clone().into()),
            toml::Value::Integer(i) => Value::Int(*i),
            toml::Value::Boolean(b) => Value::Bool(*b),
            // The shortest decimal that reads back as the same double: what the DBA wrote.
            toml::Value::Float(x) if x.is_finite() => {
                let numeric = crate::transform::cast::CastType::Numeric { typmod: None };
                crate::transform::cast::cast(Value::Text(x.to_string().into()), &numeric)
                    .unwrap_or(Value::Null)
            }
            toml::Value::Float(_) => Value::Null,
            _ => {
                self.diags.push(
                    1,
                    1,
                    field,
                    "a map value is a string, an integer, a number or a boolean",
                );
                Value::Null
            }
        }
    }

    fn sql_files(
        &mut self,
        field: &str,
        paths: &[toml::Spanned<String>],
        checksum: &mut Sha256,
    ) -> Vec<SqlFile> {
        let mut out = Vec::new();
        for p in paths {
            let path = self.dir.join(p.get_ref());
            match std::fs::read_to_string(&path) {
                Ok(sql) => {
                    checksum.update(sql.as_bytes());
                    out.push(SqlFile { path, sql });
                }
                Err(e) => self.diags.at(
                    p.span().start,
                    field,
                    format!("cannot read {}: {e}", path.display()),
                ),
            }
        }
        out
    }

    /// SQL files switchyard runs inside a transaction of its own: refused if they would end
    /// it. Not in the checksum: they do not change what is copied, and a dry run that finds a
    /// mistake in them must not force a new backfill.
    fn in_transaction(&mut self, field: &str, paths: &[toml::Spanned<String>]) -> Vec<SqlFile> {
        let files = self.sql_files(field, paths, &mut Sha256::new());
        for (f, p) in files.iter().zip(paths) {
            if let Some((line, word)) = transaction_control::find(&f.sql) {
                self.diags.at(
                    p.span().start,
                    field,
                    format!(
                        "{}:{line}: {word} would end the transaction switchyard runs this file in (the cutover's, which holds the write lock); remove it",
                        f.path.display()
                    ),
                );
            }
        }
        files
    }

    fn source(
        &mut self,
        index: usize,
        s: &file::SourceFile,
        source_schema: &str,
        target_schema: &str,
        lookups: &[String],
        maps: &[String],
    ) -> SourcePlan {
        let field = format!("sources[{index}]");
        if s.key.is_empty() {
            self.diags.at(
                s.table.span().start,
                format!("{field}.key"),
                "a source needs its key columns",
            );
        }
        let key: Vec<String> = s.key.iter().map(|k| k.get_ref().clone()).collect();
        // Key columns come first so that a row's key is always at the same positions.
        let mut columns = key.clone();
        let mut derived_names: Vec<String> = Vec::new();
        let mut derived = Vec::new();
        for (name, expr) in &s.derive {
            let e = self.expr(
                &format!("{field}.derive.{name}"),
                expr,
                &mut columns,
                &derived_names,
                lookups,
                maps,
            );
            derived_names.push(name.clone());
            derived.push((name.clone(), e));
        }
        if s.outputs.is_empty() {
            self.diags.at(
                s.table.span().start,
                format!("{field}.outputs"),
                "a source needs at least one output",
            );
        }
        let outputs = s
            .outputs
            .iter()
            .enumerate()
            .map(|(j, o)| {
                let field = format!("{field}.outputs[{j}]");
                let when = o.when.as_ref().map(|w| {
                    self.expr(
                        &format!("{field}.when"),
                        w,
                        &mut columns,
                        &derived_names,
                        lookups,
                        maps,
                    )
                });
                let mut names = Vec::new();
                let mut exprs = Vec::new();
                for (col, expr) in &o.columns {
                    let e = self.expr(
                        &format!("{field}.columns.{col}"),
                        expr,
                        &mut columns,
                        &derived_names,
                        lookups,
                        maps,
                    );
                    names.push(col.clone());
                    exprs.push(e);
                }
                for k in &o.key {
                    if !o.columns.contains_key(k.get_ref()) {
                        self.diags.at(
                            k.span().start,
                            format!("{field}.key"),
                            format!("key column {} has no expression in columns", k.get_ref()),
                        );
                    }
                }
                let key_positions = o
                    .key
                    .iter()
                    .filter_map(|k| names.iter().position(|c| c == k.get_ref()))
                    .collect();
                let when_sql = match (&o.when, &when) {
                    (Some(text), Some(e)) if plain_sql(e) => canonical_sql(text.get_ref()),
                    _ => None,
                };
                OutputPlan {
                    table: TableName::in_plan(
                        o.table.get_ref(),
                        o.schema.as_deref(),
                        target_schema,
                    ),
                    key: o.key.iter().map(|k| k.get_ref().clone()).collect(),
                    key_positions,
                    mode: o.mode,
                    when,
                    when_sql,
                    columns: names,
                    exprs,
                }
            })
            .collect();
        let memo_columns = memo_columns(&derived, key.len());
        SourcePlan {
            table: TableName::in_plan(s.table.get_ref(), s.schema.as_deref(), source_schema),
            key,
            columns,
            derived,
            memo_columns,
            outputs,
        }
    }

    fn expr(
        &mut self,
        field: &str,
        text: &toml::Spanned<String>,
        columns: &mut Vec<String>,
        derived: &[String],
        lookups: &[String],
        maps: &[String],
    ) -> Expr {
        let mut names = Names {
            columns,
            derived,
            lookups,
            maps,
        };
        match compile(text.get_ref(), &mut names) {
            Ok(e) => e,
            Err(errors) => {
                for (at, message) in errors {
                    self.diags.inside(&text.span(), at, field, message);
                }
                Expr::Literal(Value::Null)
            }
        }
    }
}

/// Which derives depend on exactly one non-key column (key columns come first in the row and
/// are unique, so remembering their derives would only cost memory).
fn memo_columns(derived: &[(String, Expr)], key_count: usize) -> Vec<Option<usize>> {
    let mut single: Vec<Option<usize>> = Vec::with_capacity(derived.len());
    for (_, expr) in derived {
        let mut column = None;
        let mut memoizable = true;
        expr.walk(&mut |node| match node {
            Expr::Column(c) => match column {
                None => column = Some(*c),
                Some(existing) if existing == *c => {}
                Some(_) => memoizable = false,
            },
            Expr::Derived(d) => match (single[*d], column) {
                (Some(c), None) => column = Some(c),
                (Some(c), Some(existing)) if c == existing => {}
                _ => memoizable = false,
            },
            Expr::Lookup { .. } => memoizable = false,
            _ => {}
        });
        single.push(column.filter(|c| memoizable && *c >= key_count));
    }
    single
}

/// Whether PostgreSQL can evaluate `e` as written: no derived value, no switchyard function.
fn plain_sql(e: &Expr) -> bool {
    let mut plain = true;
    e.walk(&mut |node| {
        if matches!(
            node,
            Expr::Derived(_) | Expr::UuidV5 { .. } | Expr::Map { .. } | Expr::Lookup { .. }
        ) {
            plain = false;
        }
    });
    plain
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_plan_reports_every_error_with_file_line_and_field() {
        let text = r#"name = "demo"
[[sources]]
table = "t"
key = ["id"]
[sources.derive]
a = "lowr(x)"
[[sources.outputs]]
table = "o"
key = ["id"]
when = "a ="
[sources.outputs.columns]
id = "lookup('missing', a)"
"#;
        let errors = Plan::parse(Path::new("p.toml"), text).unwrap_err().0;
        let rendered: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 3, "{rendered:#?}");
        assert_eq!(
            rendered[0],
            "p.toml:6:6: sources[0].derive.a: unknown function lowr"
        );
        assert!(rendered[1].starts_with("p.toml:10:"), "{}", rendered[1]);
        assert!(rendered[1].contains("sources[0].outputs[0].when: syntax error"));
        assert!(
            rendered[2].starts_with("p.toml:12:14: sources[0].outputs[0].columns.id:"),
            "{}",
            rendered[2]
        );
    }

    #[test]
    fn an_unknown_field_is_refused_with_its_line() {
        let errors = Plan::parse(Path::new("p.toml"), "name = \"x\"\nsourcez = []\n")
            .unwrap_err()
            .0;
        assert_eq!(errors.len(), 1);
        assert_eq!((errors[0].line, errors[0].column), (2, 1));
        assert!(
            errors[0].message.contains("sourcez"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn an_output_key_must_come_from_the_source_key_for_deletes_to_find_it() {
        let text = r#"name = "demo"
[[sources]]
table = "t"
key = ["id"]
[sources.derive]
ident = "uuid_v5('url', 't:' || id)"
label = "lower(name)"
[[sources.outputs]]
table = "by_id"
key = ["id"]
[sources.outputs.columns]
id = "ident"
name = "name"
[[sources.outputs]]
table = "by_name"
key = ["label"]
[sources.outputs.columns]
label = "label"
"#;
        let plan = Plan::parse(Path::new("p.toml"), text).unwrap();
        let source = &plan.sources[0];
        assert!(source.key_from_source_key(&source.outputs[0]));
        assert!(!source.key_from_source_key(&source.outputs[1]));
    }

    #[test]
    fn a_schema_field_takes_the_table_literally_and_quoted_identifiers_name_any_column() {
        let text = r#"name = "demo"
[[sources]]
schema = 'Odd "Schema"'
table = 'dotted.name'
key = ["Id"]
[[sources.outputs]]
schema = "tgt"
table = 'My "Out"'
key = ["Key"]
[sources.outputs.columns]
"Key" = '"Id"'
"select" = '"select"'
'Their "Col"' = '"My ""Col"""'
"#;
        let plan = Plan::parse(Path::new("p.toml"), text).unwrap();
        let source = &plan.sources[0];
        assert_eq!(source.table.quoted(), r#""Odd ""Schema"""."dotted.name""#);
        assert_eq!(source.columns, ["Id", "select", r#"My "Col""#]);
        assert_eq!(source.outputs[0].table.quoted(), r#""tgt"."My ""Out""""#);
        assert_eq!(
            source.outputs[0].columns,
            ["Key", "select", r#"Their "Col""#]
        );
    }

    #[test]
    fn a_reserved_word_unquoted_or_a_bad_schema_is_refused_with_its_line() {
        let text = r#"name = "demo"
[[sources]]
table = "t"
key = ["id"]
[[sources.outputs]]
table = "o"
key = ["id"]
[sources.outputs.columns]
id = "id"
x = "select"
"#;
        let errors = Plan::parse(Path::new("p.toml"), text).unwrap_err().0;
        let rendered = errors[0].to_string();
        assert!(
            rendered.starts_with("p.toml:10:")
                && rendered.contains("sources[0].outputs[0].columns.x: select is a reserved word")
                && rendered.contains(r#"write the column quoted, "select""#),
            "{rendered}"
        );
        let errors = Plan::parse(
            Path::new("p.toml"),
            "name = \"demo\"\n[[sources]]\nschema = 3\ntable = \"t\"\nkey = [\"id\"]\n",
        )
        .unwrap_err()
        .0;
        assert_eq!(errors[0].line, 3, "{}", errors[0]);
    }

    #[test]
    fn carry_is_refused_for_a_kind_switchyard_cannot_carry_and_unset_kinds_refuse() {
        let text =
            "name = \"x\"\n[cutover.dependents]\nviews = \"carry\"\nforeign_keys = \"carry\"\n";
        let errors = Plan::parse(Path::new("p.toml"), text).unwrap_err().0;
        let rendered: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 1, "{rendered:#?}");
        assert!(
            rendered[0].starts_with("p.toml:4:16: cutover.dependents.foreign_keys: switchyard cannot carry foreign_keys")
                && rendered[0].contains("\"cutover_sql\""),
            "{}",
            rendered[0]
        );
        let plan = Plan::parse(Path::new("p.toml"), "name = \"x\"\n").unwrap();
        assert_eq!(plan.cutover.dependents.foreign_keys, Disposition::Refuse);
        assert_eq!(plan.cutover.dependents.views, Disposition::Refuse);
    }
}
