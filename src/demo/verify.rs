//! Compares the target with the expected result of the seed migration, computed on the source
//! by the plain SQL migration (`transforms/legacy_to_projects/expected.sql`): an independent
//! implementation of the same rules, so the code under test never grades itself.
//!
//! Rows whose source changed after the backfill's snapshot can be excluded by key: the copy
//! holds their old version until the WAL consumer applies the change.

use std::collections::{BTreeMap, BTreeSet};

use futures_util::StreamExt;
use tokio_postgres::Client;

/// One output table: how to read it from the target and from `expected`, keyed by the legacy
/// row it came from. Lookup ids differ between the two (identity order), so both sides show
/// lookup names.
struct Comparison {
    table: &'static str,
    /// Which legacy table the key column refers to, for exclusions.
    legacy_table: Option<&'static str>,
    target: &'static str,
    expected: &'static str,
}

const COMPARISONS: &[Comparison] = &[
    Comparison {
        table: "projects",
        legacy_table: None,
        target:
            "SELECT legacy_table || ':' || legacy_id, p.id, team_id, kind, p.name, s.name, status,
                        owner_email, budget, start_date, created_at, updated_at, attributes
                   FROM projects p LEFT JOIN project_stages s ON s.id = p.stage_id",
        expected: "SELECT legacy_table || ':' || legacy_id, id, team_id, kind, name, stage, status,
                          owner_email, budget, start_date, created_at, updated_at, attributes
                     FROM expected.projects",
    },
    Comparison {
        table: "tasks",
        legacy_table: Some("vortex_items"),
        target: "SELECT legacy_id::text, t.id, project_id, title, s.name, priority, assignee_email,
                        due_date, description, created_at, updated_at
                   FROM tasks t LEFT JOIN task_statuses s ON s.id = t.status_id",
        expected: "SELECT legacy_id::text, id, project_id, title, status, priority, assignee_email,
                          due_date, description, created_at, updated_at
                     FROM expected.tasks",
    },
    Comparison {
        table: "sub_tasks",
        legacy_table: Some("vortex_items"),
        target: "SELECT legacy_id::text, t.id, task_id, title, s.name, priority, assignee_email,
                        due_date, description, created_at, updated_at
                   FROM sub_tasks t LEFT JOIN task_statuses s ON s.id = t.status_id",
        expected: "SELECT legacy_id::text, id, task_id, title, status, priority, assignee_email,
                          due_date, description, created_at, updated_at
                     FROM expected.sub_tasks",
    },
    Comparison {
        table: "teams",
        legacy_table: None,
        target: "SELECT company_id::text, id, name FROM teams",
        expected: "SELECT company_id::text, id, name FROM expected.teams",
    },
    Comparison {
        table: "team_members",
        legacy_table: None,
        target: "SELECT team_id || ' ' || email, team_id, email FROM team_members",
        expected: "SELECT team_id || ' ' || email, team_id, email FROM expected.team_members",
    },
    Comparison {
        table: "project_stages",
        legacy_table: None,
        target: "SELECT name, name FROM project_stages",
        expected: "SELECT name, name FROM expected.project_stages",
    },
    Comparison {
        table: "task_statuses",
        legacy_table: None,
        target: "SELECT name, name FROM task_statuses",
        expected: "SELECT name, name FROM expected.task_statuses",
    },
];

/// Source rows to leave out of the comparison: `(legacy table, id)`.
#[derive(Debug, Default, Clone)]
pub struct Exclusions {
    pub keys: BTreeSet<(String, i64)>,
}

impl Exclusions {
    fn excludes(&self, c: &Comparison, key: &str) -> bool {
        if self.keys.is_empty() {
            return false;
        }
        match c.legacy_table {
            Some(table) => key
                .parse()
                .is_ok_and(|id| self.keys.contains(&(table.to_owned(), id))),
            None => key
                .split_once(':')
                .and_then(|(t, id)| Some((t.to_owned(), id.parse().ok()?)))
                .is_some_and(|k| self.keys.contains(&k)),
        }
    }
}

/// What the comparison found for one table.
#[derive(Debug, Clone, Default)]
pub struct TableReport {
    pub table: &'static str,
    pub equal: usize,
    pub excluded: usize,
    /// Keys the expected result has and the target does not.
    pub missing: Vec<String>,
    /// Keys the target has and the expected result does not.
    pub extra: Vec<String>,
    /// Keys present on both sides with different values.
    pub different: Vec<String>,
}

impl TableReport {
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.extra.is_empty() && self.different.is_empty()
    }
}

/// Compares every output table; `source` must hold schema `expected`.
pub async fn compare(
    source: &Client,
    target: &Client,
    exclusions: &Exclusions,
) -> Result<Vec<TableReport>, tokio_postgres::Error> {
    let mut reports = Vec::new();
    for c in COMPARISONS {
        let want = keyed_rows(source, c.expected).await?;
        let got = keyed_rows(target, c.target).await?;
        let mut report = TableReport {
            table: c.table,
            ..TableReport::default()
        };
        for (key, row) in &want {
            if exclusions.excludes(c, key) {
                report.excluded += 1;
                continue;
            }
            match got.get(key) {
                None => report.missing.push(key.clone()),
                Some(r) if r != row => report.different.push(key.clone()),
                Some(_) => report.equal += 1,
            }
        }
        report.extra = got
            .keys()
            .filter(|k| !want.contains_key(*k) && !exclusions.excludes(c, k))
            .cloned()
            .collect();
        reports.push(report);
    }
    Ok(reports)
}

/// The rows of `query` (first column the key) as COPY text, in a UTC session so that both
/// sides print timestamps alike.
async fn keyed_rows(
    client: &Client,
    query: &str,
) -> Result<BTreeMap<String, String>, tokio_postgres::Error> {
    client
        .batch_execute("SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY'")
        .await?;
    let stream = client
        .copy_out(&format!("COPY ({query}) TO STDOUT"))
        .await?;
    futures_util::pin_mut!(stream);
    let mut text = Vec::new();
    while let Some(chunk) = stream.next().await {
        text.extend_from_slice(&chunk?);
    }
    Ok(String::from_utf8_lossy(&text)
        .lines()
        .map(|line| match line.split_once('\t') {
            Some((key, rest)) => (key.to_owned(), rest.to_owned()),
            None => (line.to_owned(), String::new()),
        })
        .collect())
}
