//! The cutover's count check: every output table holds as many rows as the source rows that
//! feed it. Run under the lock, when neither side can change any more.
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

use crate::pg::ident::TableName;
use crate::plan::Plan;
use crate::transform::program::WriteMode;

/// What to count.
#[derive(Debug, Clone)]
pub struct CountPlan {
    /// One query per source table, returning one count per entry of `feeds`.
    pub source_queries: Vec<(String, Vec<String>)>,
    /// Target tables whose count is compared, and the query counting them.
    pub target_queries: Vec<(String, String)>,
    /// Outputs left out, with why.
    pub unchecked: Vec<(String, &'static str)>,
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
                source_queries.push((
                    format!(
                        "SELECT {} FROM {}",
                        filters.join(", "),
                        source.table.quoted()
                    ),
                    feeds,
                ));
            }
        }
        CountPlan {
            source_queries,
            target_queries: checked
                .into_iter()
                .map(|(name, table)| (name, format!("SELECT count(*) FROM {}", table.quoted())))
                .collect(),
            unchecked: unchecked.into_iter().collect(),
        }
    }

    /// Expected rows per output table, counted on the source. The queries run concurrently,
    /// one session each, so the slowest table sets the time.
    pub async fn count_source(
        &self,
        sessions: &[Client],
    ) -> Result<BTreeMap<String, i64>, tokio_postgres::Error> {
        let counted = futures_util::future::try_join_all(
            self.source_queries
                .iter()
                .zip(sessions)
                .map(|((sql, _), s)| s.query_one(sql.as_str(), &[])),
        )
        .await?;
        let mut expected = BTreeMap::new();
        for ((_, feeds), row) in self.source_queries.iter().zip(counted) {
            for (i, table) in feeds.iter().enumerate() {
                *expected.entry(table.clone()).or_insert(0) += row.get::<_, i64>(i);
            }
        }
        Ok(expected)
    }

    /// Rows per output table on the target, one session per table.
    pub async fn count_target(
        &self,
        sessions: &[Client],
    ) -> Result<BTreeMap<String, i64>, tokio_postgres::Error> {
        let counted = futures_util::future::try_join_all(
            self.target_queries
                .iter()
                .zip(sessions)
                .map(|((_, sql), s)| s.query_one(sql.as_str(), &[])),
        )
        .await?;
        Ok(self
            .target_queries
            .iter()
            .zip(counted)
            .map(|((table, _), row)| (table.clone(), row.get(0)))
            .collect())
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
        let checked: Vec<&str> = counts
            .target_queries
            .iter()
            .map(|(t, _)| t.as_str())
            .collect();
        assert_eq!(
            checked,
            ["public.projects", "public.sub_tasks", "public.tasks"]
        );
        let unchecked: Vec<&str> = counts.unchecked.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(unchecked, ["public.team_members", "public.teams"]);
        let items = &counts.source_queries[2];
        assert!(
            items.0.contains("FILTER (WHERE (parent_item_id IS NULL))"),
            "{}",
            items.0
        );
        assert_eq!(items.1, ["public.tasks", "public.sub_tasks"]);
    }
}
