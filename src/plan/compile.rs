//! The compile pass: the parsed plan file ([`super::file`]) becomes the compiled [`Plan`], every
//! expression compiled once ([`super::compile_expr`]) into the transform's program
//! ([`crate::transform::program`]). Problems are collected, never returned early, so that the
//! DBA sees all of them with file, line and field.

use std::collections::HashMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::pg::ident::TableName;
use crate::transform::eval::ValueMap;
use crate::transform::expr::Expr;
use crate::transform::program::{OutputPlan, SourcePlan};
use crate::transform::value::Value;

use super::compile_expr::{canonical_sql, compile, Names};
use super::compiled::{CutoverPlan, Dependents, LookupPlan, Phases, Plan, SqlFile, Stage};
use super::diagnostics::Collector;
use super::file::{self, Disposition, StageFile};
use super::{duplicate_sources, reverse, transaction_control};

/// One compile pass over a parsed plan file: every problem goes to `diags`, and compiling goes
/// on after one so that all are reported together.
pub(super) struct Compile<'d, 'a> {
    pub(super) diags: &'d mut Collector<'a>,
    /// The plan file's directory: SQL files are named relative to it.
    pub(super) dir: &'a Path,
    /// The plan-wide number the next output gets ([`OutputPlan::number`]).
    pub(super) next_output: usize,
}

impl Compile<'_, '_> {
    pub(super) fn plan(mut self, path: &Path, text: &str, f: file::PlanFile) -> Plan {
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
        // The SQL files' bytes, hashed after each form of the plan text below.
        let mut checksum = Vec::new();
        let phases = Phases {
            before_backfill: self.sql_files(
                "phases.before_backfill",
                &f.phases.before_backfill,
                &mut checksum,
            ),
            after_backfill: self.stages(
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
        // SHA-256 of the plan text and its SQL files; the plan text as it may have been before
        // `[reverse]` was added counts as the same plan (see `reverse::forward_texts`).
        let checksums: Vec<String> = reverse::forward_texts(text)
            .iter()
            .map(|t| {
                let mut hash = Sha256::new();
                hash.update(t.as_bytes());
                hash.update(&checksum);
                format!("{:x}", hash.finalize())
            })
            .collect();
        let reverse = f
            .reverse
            .as_ref()
            .map(|r| reverse::compile(self.diags, r, &sources, &f.source_schema, &f.target_schema));
        Plan {
            name,
            path: path.to_path_buf(),
            checksum: checksums[0].clone(),
            accepted_checksums: checksums,
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
            reverse,
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
        checksum: &mut Vec<u8>,
    ) -> Vec<SqlFile> {
        paths
            .iter()
            .filter_map(|p| self.sql_file(field, p.span().start, p.get_ref(), checksum))
            .collect()
    }

    fn sql_file(
        &mut self,
        field: &str,
        at: usize,
        name: &str,
        checksum: &mut Vec<u8>,
    ) -> Option<SqlFile> {
        let path = self.dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(sql) => {
                checksum.extend_from_slice(sql.as_bytes());
                Some(SqlFile { path, sql })
            }
            Err(e) => {
                self.diags
                    .at(at, field, format!("cannot read {}: {e}", path.display()));
                None
            }
        }
    }

    /// `phases.after_backfill`: each entry a stage, a file alone or a list run together.
    fn stages(
        &mut self,
        field: &str,
        stages: &[toml::Spanned<StageFile>],
        checksum: &mut Vec<u8>,
    ) -> Vec<Stage> {
        let mut out = Vec::new();
        for stage in stages {
            let files = match stage.get_ref() {
                StageFile::One(name) => self
                    .sql_file(field, stage.span().start, name, checksum)
                    .into_iter()
                    .collect(),
                StageFile::Together(names) => {
                    if names.is_empty() {
                        self.diags.at(
                            stage.span().start,
                            field,
                            "a stage lists no file: name the files that run together, or remove the []",
                        );
                    }
                    for (i, name) in names.iter().enumerate() {
                        if names[..i].iter().any(|n| n.get_ref() == name.get_ref()) {
                            self.diags.at(
                                name.span().start,
                                field,
                                format!(
                                    "{} is listed twice in one stage: it would run on two sessions at once",
                                    name.get_ref()
                                ),
                            );
                        }
                    }
                    self.sql_files(field, names, checksum)
                }
            };
            out.push(Stage { files });
        }
        out
    }

    /// SQL files switchyard runs inside a transaction of its own: refused if they would end
    /// it. Not in the checksum: they do not change what is copied, and a dry run that finds a
    /// mistake in them must not force a new backfill.
    fn in_transaction(&mut self, field: &str, paths: &[toml::Spanned<String>]) -> Vec<SqlFile> {
        let files = self.sql_files(field, paths, &mut Vec::new());
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
                    (Some(text), Some(e)) if e.is_plain_sql() => canonical_sql(text.get_ref()),
                    _ => None,
                };
                self.next_output += 1;
                OutputPlan {
                    number: self.next_output - 1,
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
        SourcePlan::new(
            TableName::in_plan(s.table.get_ref(), s.schema.as_deref(), source_schema),
            key,
            columns,
            derived,
            outputs,
        )
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
