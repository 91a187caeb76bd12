//! The compiled plan: what every command reads. Built only by the compile pass
//! ([`super::compile`]); the transforms' own program ([`crate::transform::program`]) sits inside
//! it, per source.

use std::path::PathBuf;

use crate::pg::ident::TableName;
use crate::transform::eval::ValueMap;
use crate::transform::expr::Expr;
use crate::transform::program::{OutputPlan, SourcePlan, WriteMode};

use super::file::{CutoverSide, Disposition, LegacyNames, OnError, SlotDisposal};
use super::reverse::ReversePlan;

/// A compiled plan.
#[derive(Debug)]
pub struct Plan {
    pub name: String,
    pub path: PathBuf,
    /// SHA-256 of the plan and its SQL files: a backfill refuses to resume under another plan.
    pub checksum: String,
    /// Every checksum that names this same plan: [`Plan::checksum`] and those of the plan text
    /// without its `[reverse]` section, cut in each way an operator may have added it.
    pub accepted_checksums: Vec<String>,
    pub on_error: OnError,
    pub sources: Vec<SourcePlan>,
    pub lookups: Vec<LookupPlan>,
    pub maps: Vec<ValueMap>,
    pub phases: Phases,
    pub cutover: CutoverPlan,
    pub reports: Vec<(String, String)>,
    /// `[reverse]`, when the plan has it: the legacy tables rebuilt from the new ones.
    pub reverse: Option<ReversePlan>,
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
    pub after_backfill: Vec<Stage>,
    pub cutover: Vec<SqlFile>,
    pub rollback: Vec<SqlFile>,
}

impl Phases {
    /// Every after-backfill file in the order a single session runs them: stage by stage, and
    /// in each stage in the plan's order.
    pub fn after_backfill_files(&self) -> impl Iterator<Item = &SqlFile> {
        self.after_backfill.iter().flat_map(|s| &s.files)
    }
}

/// A stage of the after-backfill SQL: its files run at the same time, each on its own session
/// (up to `--jobs` at once), and the next stage starts once all of them committed. A plan that
/// names a file on its own makes a stage of one.
#[derive(Debug, Clone)]
pub struct Stage {
    pub files: Vec<SqlFile>,
}

#[derive(Debug, Clone)]
pub struct SqlFile {
    pub path: PathBuf,
    pub sql: String,
}

impl Plan {
    pub fn slot_name(&self) -> String {
        format!("switchyard_{}", self.name)
    }

    pub fn publication_name(&self) -> String {
        format!("switchyard_{}", self.name)
    }

    /// The reverse stream's slot, on the new tables' server (`cutover --keep-reverse`).
    pub fn reverse_slot_name(&self) -> String {
        format!("switchyard_reverse_{}", self.name)
    }

    /// The publication of the new tables the reverse rules read.
    pub fn reverse_publication_name(&self) -> String {
        format!("switchyard_reverse_{}", self.name)
    }

    /// Every output of the plan in its plan-wide order ([`OutputPlan::number`]), with the
    /// index of the source feeding it.
    pub fn outputs(&self) -> impl Iterator<Item = (usize, &OutputPlan)> {
        self.sources
            .iter()
            .enumerate()
            .flat_map(|(i, s)| s.outputs.iter().map(move |o| (i, o)))
    }

    /// Whether the backfill writes `output` on each worker's second connection, batch by batch
    /// in short transactions of its own: insert-if-absent outputs, unless an upsert output
    /// writes the same table. Such an upsert's rows sit uncommitted in the chunk's transaction,
    /// and an insert of the same key on the other connection would wait for that transaction,
    /// which waits for the worker waiting for the insert: no server sees that cycle, and the
    /// backfill hangs. Those outputs stay in the chunk's transaction, as before.
    pub fn writes_apart(&self, output: &OutputPlan) -> bool {
        output.mode == WriteMode::InsertIfAbsent
            && !self
                .outputs()
                .any(|(_, o)| o.mode == WriteMode::Upsert && o.table == output.table)
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

impl Plan {
    /// Whether `recorded` (a migration's `plan_checksum`) is this plan's: the same plan text
    /// and SQL files, reverse rules aside.
    pub fn has_checksum(&self, recorded: &str) -> bool {
        self.accepted_checksums.iter().any(|c| c == recorded)
    }
}
