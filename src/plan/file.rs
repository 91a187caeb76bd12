//! The plan file as the DBA writes it: a serde mirror of the TOML, nothing compiled yet.
//!
//! Every field that can be wrong keeps its span so that an error names the line and column.
//! Unknown fields are refused (`deny_unknown_fields`): a typo must not silently do nothing.

use std::collections::BTreeMap;

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;

use crate::transform::program::WriteMode;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanFile {
    pub name: Spanned<String>,
    #[serde(default = "public")]
    pub source_schema: String,
    #[serde(default = "public")]
    pub target_schema: String,
    /// What happens to a row a transform rejects or the target refuses.
    #[serde(default)]
    pub on_error: OnError,
    #[serde(default)]
    pub phases: PhasesFile,
    #[serde(default)]
    pub cutover: CutoverFile,
    #[serde(default)]
    pub lookups: IndexMap<String, LookupFile>,
    #[serde(default)]
    pub maps: IndexMap<String, MapFile>,
    #[serde(default)]
    pub sources: Vec<SourceFile>,
    /// Named SQL queries on the target that return a count to report after the backfill
    /// (orphans and the like); a non-zero count is reported, not an error.
    #[serde(default)]
    pub reports: IndexMap<String, String>,
    /// How the new tables map back onto the legacy ones, for a reverse stream after the cutover
    /// (not built yet: `check` validates them). Left out of the plan's checksum: rules added
    /// after the backfill change nothing it did.
    pub reverse: Option<ReverseFile>,
}

fn public() -> String {
    "public".to_owned()
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// The row goes to `switchyard.dead_letters` with its key and the reason; the run goes on.
    #[default]
    DeadLetter,
    /// The run stops at the first bad row, with its key and the reason.
    Stop,
}

/// SQL files (paths relative to the plan) run at each step of a migration.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhasesFile {
    #[serde(default)]
    pub before_backfill: Vec<Spanned<String>>,
    /// Stages run one after another; the files of one stage run at the same time.
    #[serde(default)]
    pub after_backfill: Vec<Spanned<StageFile>>,
    #[serde(default)]
    pub cutover: Vec<Spanned<String>>,
    #[serde(default)]
    pub rollback: Vec<Spanned<String>>,
}

/// One entry of `phases.after_backfill`: a file, which is a stage of its own, or a list of
/// files that run at the same time, each on its own session.
#[derive(Debug)]
pub enum StageFile {
    One(String),
    Together(Vec<Spanned<String>>),
}

impl<'de> Deserialize<'de> for StageFile {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = StageFile;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a file name, or a list of file names that run at the same time")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<StageFile, E> {
                Ok(StageFile::One(v.to_owned()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<StageFile, A::Error> {
                let mut files = Vec::new();
                while let Some(file) = seq.next_element::<Spanned<String>>()? {
                    files.push(file);
                }
                Ok(StageFile::Together(files))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// How the cutover ends the migration.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CutoverFile {
    #[serde(default)]
    pub side: CutoverSide,
    #[serde(default)]
    pub slot: SlotDisposal,
    /// What the cutover does with each kind of object bound to a legacy table.
    #[serde(default)]
    pub dependents: DependentsFile,
    /// What each legacy name is once the cutover SQL ran; the cutover proves it before the
    /// commit. Unset: `views` with one database, `unchanged` with two.
    pub legacy_names: Option<LegacyNames>,
}

/// What the cutover SQL promises to make of the legacy tables' names (`[cutover]
/// legacy_names`). The cutover checks it under the lock, after the SQL and before the commit,
/// and rolls back when it does not hold: a swap that matched nothing must not pass for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LegacyNames {
    /// Each legacy name is a view (the compatibility view over the new tables), no longer the
    /// legacy table. The default with one database.
    Views,
    /// Each legacy name resolves to nothing (the SQL renamed or dropped the legacy tables).
    Gone,
    /// Each legacy name is still the legacy table. The default with two servers, where
    /// switchyard makes the legacy tables read-only instead.
    Unchanged,
}

impl LegacyNames {
    /// The plan's word for it, as written in `[cutover] legacy_names`.
    pub fn as_str(self) -> &'static str {
        match self {
            LegacyNames::Views => "views",
            LegacyNames::Gone => "gone",
            LegacyNames::Unchanged => "unchanged",
        }
    }
}

/// `[cutover.dependents]`: one disposition per kind of object bound to a legacy table (by OID,
/// or by name in a function body). Unset kinds are refused: nothing bound to a legacy table is
/// left behind without the plan saying so.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DependentsFile {
    pub foreign_keys: Option<Spanned<Disposition>>,
    pub views: Option<Spanned<Disposition>>,
    pub materialized_views: Option<Spanned<Disposition>>,
    pub functions: Option<Spanned<Disposition>>,
    pub triggers: Option<Spanned<Disposition>>,
    pub rules: Option<Spanned<Disposition>>,
    pub publications: Option<Spanned<Disposition>>,
    pub grants: Option<Spanned<Disposition>>,
    pub policies: Option<Spanned<Disposition>>,
}

/// What the cutover does with one kind of object bound to a legacy table.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    /// `check` reports an error and the cutover refuses (before the lock) while such an
    /// object exists: remove it, or choose another disposition.
    #[default]
    Refuse,
    /// Reported by `check` and the cutover, then left as it is.
    Warn,
    /// The plan's cutover SQL deals with it (drops it, re-points it, re-creates it); the
    /// cutover re-reads the catalog after that SQL, before the commit, and rolls back when one
    /// is still bound to a legacy table (or, for policies, when the new tables have none).
    CutoverSql,
    /// switchyard carries it over to the new tables; only for kinds where that has one
    /// meaning (see `crate::plan::Dependents`).
    Carry,
}

/// Where `phases.cutover` runs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CutoverSide {
    /// In the transaction that holds the write lock on the source tables: the swap commits
    /// atomically with the lock's release (renames, compatibility views, read-only triggers).
    #[default]
    Source,
    /// In a target transaction committed just before the source lock is released.
    Target,
}

/// What happens to the replication slot and publication once the cutover committed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlotDisposal {
    /// Dropped: the source no longer retains WAL for the migration.
    #[default]
    Drop,
    /// Kept (for a reverse or audit consumer); the operator drops it later.
    Keep,
}

/// A lookup table: `lookup('<name>', value)` returns the id of `value`, inserting it when new.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupFile {
    /// Defaults to the lookup's name.
    pub table: Option<String>,
    /// The table's schema, when `table` must be taken literally: a name holding a dot, or a
    /// schema other than the plan's default. Without it `table` is `name` or `schema.name`.
    pub schema: Option<String>,
    #[serde(default = "id")]
    pub id: String,
    #[serde(default = "name")]
    pub value: String,
}

fn id() -> String {
    "id".to_owned()
}

fn name() -> String {
    "name".to_owned()
}

/// A value map: `map('<name>', value)` returns the entry for the value's text, else `default`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapFile {
    pub values: BTreeMap<String, toml::Value>,
    /// Omitted means NULL.
    pub default: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceFile {
    pub table: Spanned<String>,
    /// The table's schema, when `table` must be taken literally: a name holding a dot, or a
    /// schema other than the plan's default. Without it `table` is `name` or `schema.name`.
    pub schema: Option<String>,
    /// The source's key columns (its primary key or replica identity).
    pub key: Vec<Spanned<String>>,
    /// Named expressions computed once per row, usable by name in later derives and outputs.
    #[serde(default)]
    pub derive: IndexMap<String, Spanned<String>>,
    #[serde(default)]
    pub outputs: Vec<OutputFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputFile {
    pub table: Spanned<String>,
    /// The table's schema, when `table` must be taken literally: a name holding a dot, or a
    /// schema other than the plan's default. Without it `table` is `name` or `schema.name`.
    pub schema: Option<String>,
    pub key: Vec<Spanned<String>>,
    #[serde(default)]
    pub mode: WriteMode,
    /// Only rows for which this holds go to this output (routes a split).
    pub when: Option<Spanned<String>>,
    pub columns: IndexMap<String, Spanned<String>>,
}

/// `[reverse]`: one entry per legacy table and the output tables with no legacy home.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReverseFile {
    /// Output tables the reverse direction leaves alone (`teams`, `team_members`).
    #[serde(default)]
    pub ignore: Vec<Spanned<String>>,
    #[serde(default)]
    pub tables: Vec<ReverseTableFile>,
}

/// `[[reverse.tables]]`: the rows of one output table that feed one legacy table. Every
/// expression is SQL over that output table's row, evaluated by PostgreSQL on the target.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReverseTableFile {
    /// The legacy table: one of the plan's sources.
    pub table: Spanned<String>,
    /// The output table that feeds it: one of that source's outputs.
    pub from: Spanned<String>,
    /// Which of the output's rows belong to this legacy table (a split merged back).
    pub when: Option<Spanned<String>>,
    /// Each legacy key column and the expression giving it; NULL for a row the new
    /// application created, whose legacy key comes from `sequence`.
    pub key: IndexMap<String, Spanned<String>>,
    /// The legacy table's sequence, for keys of rows that have none yet.
    pub sequence: Option<Spanned<String>>,
    /// Every other legacy column the reverse direction writes, and its expression.
    pub columns: IndexMap<String, Spanned<String>>,
}
