//! The demo's last act: the cutover started a reverse stream; the new application writes the
//! new tables; `switchyard rollback` gives the legacy tables back with those writes in them.
//!
//! ```text
//!  writes on the new tables ─> reverse consumer ─> rollback (writes blocked, fence)
//!    ─> each write read back from the legacy tables
//! ```
//! The row-for-row proof against an independent oracle is `tests/integration/reverse_stream.rs`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_postgres::Client;

use crate::cli::{Connections, PlanArg, RollbackArgs};
use crate::pg::conninfo::ConnInfo;
use crate::pipeline::reverse;
use crate::plan::Plan;

/// One write of the new application after the cutover, and how the legacy side shows it.
struct Write {
    what: &'static str,
    /// Run first, when the write needs a row of its own (a new lookup value).
    before: Option<&'static str>,
    /// On the new tables; returns the legacy id it touched, if the row had one.
    sql: &'static str,
    /// On the legacy tables, with that id as `$1` when the write returned one: true when the
    /// write came back.
    check: &'static str,
}

const WRITES: [Write; 5] = [
    Write {
        what: "a project renamed",
        before: None,
        sql: "UPDATE projects SET name = 'renamed after the cutover', updated_at = now()
               WHERE id = (SELECT id FROM projects WHERE legacy_table = 'company_projects'
                            ORDER BY legacy_id LIMIT 1)
              RETURNING legacy_id",
        check: "SELECT name = 'renamed after the cutover' FROM company_projects WHERE id = $1",
    },
    Write {
        what: "a new project, without a legacy id (allocated from company_projects_id_seq)",
        before: None,
        sql: "INSERT INTO projects (id, legacy_table, legacy_id, team_id, kind, name, status,
                                    created_at, updated_at)
              SELECT gen_random_uuid(), 'company_projects', NULL, team_id, 'project',
                     'created after the cutover', 'active', now(), now()
                FROM projects WHERE team_id IS NOT NULL LIMIT 1
              RETURNING legacy_id",
        check: "SELECT count(*) = 1 FROM company_projects WHERE name = 'created after the cutover'",
    },
    Write {
        what: "a task under the new project",
        before: None,
        sql: "INSERT INTO tasks (id, legacy_id, project_id, title, created_at, updated_at)
              SELECT gen_random_uuid(), NULL, id, 'a task of the new project', now(), now()
                FROM projects WHERE name = 'created after the cutover'
              RETURNING legacy_id",
        check: "SELECT count(*) = 1 FROM vortex_items v JOIN company_projects p ON p.id = v.project_id
                 WHERE v.title = 'a task of the new project' AND p.name = 'created after the cutover'",
    },
    Write {
        what: "a task moved to a status never seen before",
        before: Some(
            "INSERT INTO task_statuses (name) VALUES ('blocked by legal') ON CONFLICT DO NOTHING",
        ),
        sql: "UPDATE tasks SET status_id = (SELECT id FROM task_statuses WHERE name = 'blocked by legal')
               WHERE id = (SELECT id FROM tasks ORDER BY legacy_id LIMIT 1)
              RETURNING legacy_id",
        check: "SELECT status = 'blocked by legal' FROM vortex_items WHERE id = $1",
    },
    Write {
        what: "a sub-task deleted",
        before: None,
        sql: "DELETE FROM sub_tasks WHERE id = (SELECT id FROM sub_tasks ORDER BY legacy_id LIMIT 1)
              RETURNING legacy_id",
        check: "SELECT NOT EXISTS (SELECT FROM vortex_items WHERE id = $1)",
    },
];

/// Runs the round trip; `Ok(true)` when every write is back in the legacy tables.
pub async fn run(
    plan: &Arc<Plan>,
    plan_path: &Path,
    (source_url, target_url): (&str, &str),
    (source, target): (&Client, &Client),
) -> anyhow::Result<bool> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let consumer = {
        let (plan, source, target) = (
            Arc::clone(plan),
            ConnInfo::parse(source_url)?,
            ConnInfo::parse(target_url)?,
        );
        tokio::spawn(async move {
            reverse::run(plan, &target, &source, stopped, &|line| {
                println!("   {line}")
            })
            .await
        })
    };
    // The consumer is alive once it recorded a heartbeat (rollback refuses before that).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while crate::lag::reverse(source, target, &plan.name)
        .await?
        .is_none_or(|lag| lag.stale)
    {
        anyhow::ensure!(
            std::time::Instant::now() < deadline && !consumer.is_finished(),
            "the reverse consumer did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut ids = Vec::new();
    for w in &WRITES {
        if let Some(before) = w.before {
            target.batch_execute(before).await?;
        }
        let id: Option<i64> = target
            .query_opt(w.sql, &[])
            .await
            .with_context(|| format!("the new application's write: {}", w.what))?
            .and_then(|r| r.get(0));
        ids.push(id);
        println!("   new application: {}", w.what);
    }
    println!("== switchyard rollback, through the reverse stream");
    let rolled_back = super::super::rollback::run(RollbackArgs {
        plan: PlanArg {
            plan: plan_path.to_owned(),
        },
        connections: Connections {
            source: source_url.to_owned(),
            target: target_url.to_owned(),
        },
        yes: false,
        max_blocked: Duration::from_secs(5),
        lock_timeout: Duration::from_millis(500),
        lock_attempts: 10,
    })
    .await;
    let ended = tokio::time::timeout(Duration::from_secs(10), consumer).await;
    let _ = stop.send(true);
    rolled_back?;
    match ended {
        Ok(joined) => {
            joined??;
        }
        Err(_) => anyhow::bail!("the reverse consumer did not stop after the rollback"),
    }
    println!("== each write, read back from the legacy tables");
    let mut clean = true;
    for (w, id) in WRITES.iter().zip(ids) {
        let back: Option<bool> = match id {
            Some(id) => source.query_opt(w.check, &[&id]).await?,
            None => source.query_opt(w.check, &[]).await?,
        }
        .and_then(|r| r.get(0));
        let back = back == Some(true);
        clean &= back;
        println!(
            "   {:<78} {}",
            w.what,
            if back { "back" } else { "NOT BACK" }
        );
    }
    Ok(clean)
}
