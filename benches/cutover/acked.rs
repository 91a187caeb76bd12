//! Did the real cutover lose an acknowledged write? Once it commits, the legacy tables are
//! read-only, so the source is final; every write the load saw acknowledged must show in the
//! target as the source now holds it:
//!
//! ```text
//!   acked item insert or update, row still on the source  -> a task or sub-task with that
//!                                                            legacy_id and the same updated_at
//!   acked item delete                                     -> no task or sub-task with it
//!   acked project update                                  -> its project, same updated_at
//! ```
//!
//! `updated_at` is what each of the mix's writes sets (`now()`), and the plan copies it
//! unchanged (the legacy `timestamp` is UTC, the new `timestamptz` the same instant), so an
//! update the consumer dropped shows as an older value. Both sides are compared in
//! microseconds since the epoch.

use std::collections::{BTreeMap, BTreeSet};

use switchyard::demo::write_load::{AckedWrite, WriteKind};
use tokio_postgres::Client;

/// What the check found.
pub struct AckedCheck {
    /// Distinct rows the acknowledged writes touched, by what is expected of them.
    pub rows_present: usize,
    pub rows_deleted: usize,
    pub projects: usize,
    /// Rows whose acknowledged write the target does not show.
    pub lost: usize,
    /// A few of them, for the report.
    pub examples: Vec<String>,
}

impl AckedCheck {
    pub fn line(&self) -> String {
        let verdict = if self.lost == 0 {
            "none lost".to_string()
        } else {
            format!("{} LOST, e.g. {}", self.lost, self.examples.join(", "))
        };
        format!(
            "acknowledged writes: {} items present, {} items deleted, {} projects checked: {verdict}",
            self.rows_present, self.rows_deleted, self.projects
        )
    }
}

/// Microseconds since the epoch of `updated_at`, by id, for the ids given.
async fn updated_at(db: &Client, sql: &str, ids: &[i64]) -> BTreeMap<i64, i64> {
    db.query(sql, &[&ids])
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

const MICROS: &str = "(extract(epoch FROM updated_at) * 1000000)::int8";

pub async fn check(source: &Client, target: &Client, acked: &[AckedWrite]) -> AckedCheck {
    let ids = |kinds: &[WriteKind]| -> Vec<i64> {
        let set: BTreeSet<i64> = acked
            .iter()
            .filter(|w| kinds.contains(&w.kind))
            .map(|w| w.id)
            .collect();
        set.into_iter().collect()
    };
    let items = ids(&[
        WriteKind::InsertItem,
        WriteKind::InsertSubTask,
        WriteKind::UpdateItem,
        WriteKind::DeleteItem,
    ]);
    let projects = ids(&[WriteKind::UpdateProject]);

    let on_source = updated_at(
        source,
        &format!("SELECT id, {MICROS} FROM vortex_items WHERE id = ANY($1)"),
        &items,
    )
    .await;
    let on_target = updated_at(
        target,
        &format!(
            "SELECT legacy_id, {MICROS} FROM tasks WHERE legacy_id = ANY($1)
             UNION ALL SELECT legacy_id, {MICROS} FROM sub_tasks WHERE legacy_id = ANY($1)"
        ),
        &items,
    )
    .await;
    let mut lost = Vec::new();
    for id in &items {
        match (on_source.get(id), on_target.get(id)) {
            (Some(s), Some(t)) if s == t => {}
            (None, None) => {}
            (s, t) => lost.push(format!("item {id} (source {s:?}, target {t:?})")),
        }
    }
    let projects_source = updated_at(
        source,
        &format!("SELECT id, {MICROS} FROM company_projects WHERE id = ANY($1)"),
        &projects,
    )
    .await;
    let projects_target = updated_at(
        target,
        &format!(
            "SELECT legacy_id, {MICROS} FROM projects
              WHERE legacy_table = 'company_projects' AND legacy_id = ANY($1)"
        ),
        &projects,
    )
    .await;
    for id in &projects {
        if projects_source.get(id) != projects_target.get(id) {
            lost.push(format!(
                "project {id} (source {:?}, target {:?})",
                projects_source.get(id),
                projects_target.get(id)
            ));
        }
    }
    AckedCheck {
        rows_present: on_source.len(),
        rows_deleted: items.len() - on_source.len(),
        projects: projects.len(),
        lost: lost.len(),
        examples: lost.into_iter().take(3).collect(),
    }
}
