//! The cutover's count check: every output table holds as many rows as the source rows that
//! feed it, at the fence under the lock. Neither side is scanned there: both are counted
//! before the lock and carried forward (see [`super::baseline`]); this module holds the
//! queries, a full count and a count of the rows under a set of keys.
//!
//! An output's expected count is the sum, over the sources that write it, of the source rows
//! its `when` lets through (counted by PostgreSQL on the source, so the `when` must be plain
//! SQL over source columns). Outputs that cannot be counted that way are listed as unchecked:
//! `insert_if_absent` outputs (many source rows share one output row, and rows outlive their
//! sources by design) and outputs routed by a `when` that uses derived values or switchyard
//! functions. `switchyard verify` compares those row by row.

use std::collections::BTreeMap;

use serde::Serialize;
use tokio_postgres::Client;

use crate::pg::ident::{quote_ident, TableName};
use crate::plan::Plan;
use crate::transform::program::WriteMode;

/// What to count.
#[derive(Debug, Clone)]
pub struct CountPlan {
    /// One per source table, counting one number per entry of its `feeds`.
    pub source_queries: Vec<SourceCount>,
    /// Output tables whose count is compared (their rows at the fence come from
    /// [`super::baseline::target_at_fence`]).
    pub checked: Vec<String>,
    /// Outputs left out, with why.
    pub unchecked: Vec<(String, &'static str)>,
}

/// The counts one source table feeds.
#[derive(Debug, Clone)]
pub struct SourceCount {
    pub table: TableName,
    /// The select list: one `count(*)`, filtered by the output's `when`, per feed.
    counts: String,
    /// The output tables counted, in the select list's order.
    pub feeds: Vec<String>,
}

impl SourceCount {
    /// Counts the whole table: a scan, in proportion to its size.
    pub fn scan_sql(&self) -> String {
        format!("SELECT {} FROM {}", self.counts, self.table.quoted())
    }

    /// Counts the rows under the keys bound as one `text[]` parameter per key column (in the
    /// order of `key`: name and type): one index lookup per key, whatever the table's size.
    /// The subquery is kept apart (`OFFSET 0`) so the planner cannot turn the lookups into a
    /// hash join over the whole table.
    pub fn lookup_sql(&self, key: &[(String, String)]) -> String {
        let arrays: Vec<String> = (1..=key.len()).map(|i| format!("${i}::text[]")).collect();
        let aliases: Vec<String> = (1..=key.len())
            .map(|i| format!("switchyard_key_{i}"))
            .collect();
        let matches: Vec<String> = key
            .iter()
            .zip(&aliases)
            .map(|((column, ty), alias)| format!("t.{} = k.{alias}::{ty}", quote_ident(column)))
            .collect();
        format!(
            "SELECT {counts} FROM unnest({arrays}) AS k({aliases})
               CROSS JOIN LATERAL (SELECT * FROM {table} t WHERE {matches} OFFSET 0) AS t",
            counts = self.counts,
            arrays = arrays.join(", "),
            aliases = aliases.join(", "),
            table = self.table.quoted(),
            matches = matches.join(" AND "),
        )
    }

    /// Adds the counts of `row` (as `scan_sql` or `lookup_sql` return them) to `into`, each
    /// multiplied by `sign`.
    pub fn add(&self, row: &tokio_postgres::Row, sign: i64, into: &mut BTreeMap<String, i64>) {
        for (i, table) in self.feeds.iter().enumerate() {
            *into.entry(table.clone()).or_insert(0) += sign * row.get::<_, i64>(i);
        }
    }
}

/// One output table's counts.
#[derive(Debug, Clone, Serialize)]
pub struct CountResult {
    pub table: String,
    pub expected: i64,
    pub actual: i64,
}

impl CountPlan {
    pub fn new(plan: &Plan) -> CountPlan {
        let mut unchecked: BTreeMap<String, &'static str> = BTreeMap::new();
        let mut checked: BTreeMap<String, TableName> = BTreeMap::new();
        for source in &plan.sources {
            for output in &source.outputs {
                let name = output.table.to_string();
                if output.mode == WriteMode::InsertIfAbsent {
                    unchecked.insert(name, "insert_if_absent: rows are shared and kept by design");
                } else if output.when.is_some() && output.when_sql.is_none() {
                    unchecked.insert(name, "its `when` is not plain SQL over source columns");
                } else {
                    checked.insert(name, output.table.clone());
                }
            }
        }
        checked.retain(|name, _| !unchecked.contains_key(name));
        let mut source_queries = Vec::new();
        for source in &plan.sources {
            let mut filters = Vec::new();
            let mut feeds = Vec::new();
            for output in &source.outputs {
                let name = output.table.to_string();
                if !checked.contains_key(&name) {
                    continue;
                }
                filters.push(match &output.when_sql {
                    Some(when) => format!("count(*) FILTER (WHERE {when})"),
                    None => "count(*)".to_owned(),
                });
                feeds.push(name);
            }
            if !feeds.is_empty() {
                source_queries.push(SourceCount {
                    table: source.table.clone(),
                    counts: filters.join(", "),
                    feeds,
                });
            }
        }
        CountPlan {
            source_queries,
            checked: checked.into_keys().collect(),
            unchecked: unchecked.into_iter().collect(),
        }
    }

    /// Expected rows per output table, counted on the source by scanning every source
    /// table. The queries run concurrently, one session each, so the slowest table sets the
    /// time.
    pub async fn count_source(
        &self,
        sessions: &[Client],
    ) -> Result<BTreeMap<String, i64>, tokio_postgres::Error> {
        let counted = futures_util::future::try_join_all(
            self.source_queries
                .iter()
                .zip(sessions)
                .map(|(q, s)| async move { s.query_one(q.scan_sql().as_str(), &[]).await }),
        )
        .await?;
        let mut expected = BTreeMap::new();
        for (q, row) in self.source_queries.iter().zip(counted) {
            q.add(&row, 1, &mut expected);
        }
        Ok(expected)
    }
}

/// Pairs expected and actual counts; the second list holds the mismatches.
pub fn compare(
    expected: &BTreeMap<String, i64>,
    actual: &BTreeMap<String, i64>,
) -> (Vec<CountResult>, Vec<CountResult>) {
    let all: Vec<CountResult> = actual
        .iter()
        .map(|(table, a)| CountResult {
            table: table.clone(),
            expected: expected.get(table).copied().unwrap_or(0),
            actual: *a,
        })
        .collect();
    let bad = all
        .iter()
        .filter(|c| c.expected != c.actual)
        .cloned()
        .collect();
    (all, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_plan_counts_upsert_outputs_and_lists_the_rest() {
        let plan = crate::plan::seed_plan();
        let counts = CountPlan::new(&plan);
        let checked: Vec<&str> = counts.checked.iter().map(String::as_str).collect();
        assert_eq!(
            checked,
            ["public.projects", "public.sub_tasks", "public.tasks"]
        );
        let unchecked: Vec<&str> = counts.unchecked.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(unchecked, ["public.team_members", "public.teams"]);
        let items = &counts.source_queries[2];
        assert!(
            items
                .scan_sql()
                .contains("FILTER (WHERE (parent_item_id IS NULL))"),
            "{}",
            items.scan_sql()
        );
        assert_eq!(items.feeds, ["public.tasks", "public.sub_tasks"]);
        let lookup = items.lookup_sql(&[("id".into(), "bigint".into())]);
        assert!(
            lookup.contains("unnest($1::text[]) AS k(switchyard_key_1)")
                && lookup.contains("t.\"id\" = k.switchyard_key_1::bigint OFFSET 0"),
            "{lookup}"
        );
    }
}
