//! The compiled program the transforms run: per source table, the columns a row carries, the
//! derives and the outputs, with the analyses the hot path asks of them.
//!
//! `crate::plan` builds these from the TOML (its compile pass is the only producer); the
//! runtime (transform, sink, source, pipeline) reads them and never the TOML mirror. The
//! analyses are computed here, next to the shapes they read, so that a change to the
//! expression tree and to what depends on its shape land in one file.

use serde::Deserialize;

use crate::pg::ident::TableName;

use super::expr::Expr;

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

/// One output table fed by a source: which rows go there (`when`) and one expression per
/// output column.
#[derive(Debug)]
pub struct OutputPlan {
    /// Where this output sits among all outputs of the plan, counted across sources in plan
    /// order (0, 1, ...): it indexes the writers, the staging tables and the apply batch.
    pub number: usize,
    pub table: TableName,
    pub key: Vec<String>,
    pub mode: WriteMode,
    pub when: Option<Expr>,
    /// `when` as written, when PostgreSQL can evaluate it on the source table itself (it
    /// reads source columns only, through no switchyard function; see [`Expr::is_plain_sql`]):
    /// the cutover counts the source rows an output should hold with it.
    pub when_sql: Option<String>,
    pub columns: Vec<String>,
    pub exprs: Vec<Expr>,
    /// Where each key column sits in `columns`, resolved once (a key column without an
    /// expression is a plan error).
    pub key_positions: Vec<usize>,
}

/// How an output follows its source rows.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteMode {
    /// The output row mirrors its source row: inserted, updated and deleted with it.
    #[default]
    Upsert,
    /// Derived rows shared by many source rows (teams, members): inserted once, never updated
    /// or deleted by a source change.
    InsertIfAbsent,
}

impl SourcePlan {
    /// Builds a source's program; `memo_columns` is computed from the derives.
    pub fn new(
        table: TableName,
        key: Vec<String>,
        columns: Vec<String>,
        derived: Vec<(String, Expr)>,
        outputs: Vec<OutputPlan>,
    ) -> SourcePlan {
        let memo_columns = memo_columns(&derived, key.len());
        SourcePlan {
            table,
            key,
            columns,
            derived,
            memo_columns,
            outputs,
        }
    }

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
