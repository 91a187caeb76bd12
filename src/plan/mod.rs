//! The migration plan: a TOML file in `transforms/` plus the SQL files its phases run.
//!
//! [`Plan::load`] reads the file ([`file`]), checks it and compiles every expression once
//! ([`compile_expr`]); the hot path only ever sees the compiled [`Plan`]. All problems are
//! reported together, each with file, line, column and field ([`diagnostics`]).

mod compile;
pub(crate) mod compile_expr;
pub mod diagnostics;
mod duplicate_sources;
pub mod file;
mod keywords;
mod transaction_control;

#[cfg(test)]
mod never_panics;

use std::path::{Path, PathBuf};

use crate::pg::ident::TableName;
use crate::transform::eval::ValueMap;
use crate::transform::expr::Expr;
use crate::transform::program::{OutputPlan, SourcePlan};
use compile::Compile;
use diagnostics::{Collector, PlanErrors};
pub use file::{CutoverSide, Disposition, LegacyNames, OnError, SlotDisposal};

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
    #[error("cannot read plan {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Invalid(#[from] PlanErrors),
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
            next_output: 0,
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

    /// Every output of the plan in its plan-wide order ([`OutputPlan::number`]), with the
    /// index of the source feeding it.
    pub fn outputs(&self) -> impl Iterator<Item = (usize, &OutputPlan)> {
        self.sources
            .iter()
            .enumerate()
            .flat_map(|(i, s)| s.outputs.iter().map(move |o| (i, o)))
    }

    /// The lookup tables the rows of source table `table` go through (its derives, output
    /// columns and `when`), each once, in the order first met.
    pub fn lookup_tables_of(&self, table: &TableName) -> Vec<TableName> {
        let mut used: Vec<usize> = Vec::new();
        let mut visit = |e: &Expr| {
            e.walk(&mut |node| {
                if let Expr::Lookup { lookup, .. } = node {
                    if !used.contains(lookup) {
                        used.push(*lookup);
                    }
                }
            })
        };
        for s in self.sources.iter().filter(|s| &s.table == table) {
            s.derived.iter().for_each(|(_, e)| visit(e));
            for o in &s.outputs {
                o.exprs.iter().for_each(&mut visit);
                o.when.iter().for_each(&mut visit);
            }
        }
        used.iter()
            .map(|i| self.lookups[*i].table.clone())
            .collect()
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

/// The seed plan of `transforms/legacy_to_projects`, for unit tests anywhere in the crate.
#[cfg(test)]
pub(crate) fn seed_plan() -> Plan {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("transforms/legacy_to_projects/plan.toml");
    Plan::load(&path).unwrap()
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
    fn outputs_are_numbered_once_across_sources_in_plan_order() {
        let plan = seed_plan();
        let numbered: Vec<(usize, usize)> = plan.outputs().map(|(s, o)| (s, o.number)).collect();
        let expected: Vec<(usize, usize)> = plan
            .sources
            .iter()
            .enumerate()
            .flat_map(|(s, source)| source.outputs.iter().map(move |_| s))
            .enumerate()
            .map(|(number, s)| (s, number))
            .collect();
        assert_eq!(numbered, expected);
        assert!(plan.sources.len() > 1 && numbered.len() > plan.sources.len());
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
