//! The new application's writes after a cutover, on the new tables: new projects and services,
//! tasks and sub-tasks under old and new parents, status changes (to new statuses too), renames,
//! budgets, deletes, moves, some of them in multi-statement transactions. Every write that
//! returned Ok is acknowledged and recorded in a [`Model`]; the load stops at the first write
//! refused as read-only (the rollback's triggers) or when told to.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use super::model::{Known, Model, Output};

/// The pause between two writes: a few hundred writes in ten seconds, enough to interleave
/// with every step of the reverse consumer's life without flooding a 2-core machine.
const PAUSE: Duration = Duration::from_millis(25);

/// How the load ended.
pub enum Ending {
    /// A write was refused with SQLSTATE 25006 (read_only_sql_transaction).
    ReadOnly(String),
    /// Told to stop.
    Stopped,
    /// Any other error: the test fails with it.
    Failed(String),
}

impl std::fmt::Display for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ending::ReadOnly(err) => write!(f, "at a write refused as read-only: {err}"),
            Ending::Stopped => write!(f, "when told to stop"),
            Ending::Failed(err) => write!(f, "at an error: {err}"),
        }
    }
}

pub struct LoadReport {
    pub ending: Ending,
    pub model: Model,
    pub acked: usize,
}

/// The running load.
pub struct Load {
    handle: JoinHandle<LoadReport>,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
}

impl Load {
    /// Reads what the application knows of the new tables, then writes until stopped.
    pub async fn start(client: Client, seed: u64) -> Load {
        let model = Model::read(&client).await;
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicUsize::new(0));
        let mut writer = Writer {
            client,
            model,
            rng: Rng(seed),
            serial: 0,
            acked: acked.clone(),
        };
        let should_stop = stop.clone();
        let handle = tokio::spawn(async move {
            let ending = loop {
                if should_stop.load(Ordering::Relaxed) {
                    break Ending::Stopped;
                }
                match writer.write_one().await {
                    Ok(()) => {
                        writer.acked.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(err) if err.code() == Some(&SqlState::READ_ONLY_SQL_TRANSACTION) => {
                        break Ending::ReadOnly(format!("{err:?}"));
                    }
                    Err(err) => break Ending::Failed(format!("{err:?}")),
                }
                tokio::time::sleep(PAUSE).await;
            };
            LoadReport {
                ending,
                acked: writer.acked.load(Ordering::Relaxed),
                model: writer.model,
            }
        });
        Load {
            handle,
            stop,
            acked,
        }
    }

    /// Waits until `count` writes were acknowledged; fails if the load ended before.
    pub async fn wait_acked(&self, count: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while self.acked.load(Ordering::Relaxed) < count {
            assert!(
                !self.handle.is_finished(),
                "the load ended after {} acknowledged writes, before {count}",
                self.acked.load(Ordering::Relaxed)
            );
            assert!(
                std::time::Instant::now() < deadline,
                "the load did not reach {count} acknowledged writes"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for the load to end by itself (at its first refused write).
    pub async fn ended(self) -> LoadReport {
        let stop = self.stop.clone();
        match tokio::time::timeout(Duration::from_secs(30), self.handle).await {
            Ok(report) => report.expect("the load task"),
            Err(_) => {
                stop.store(true, Ordering::Relaxed);
                panic!("the load still writes 30 s after the rollback: the new tables take writes");
            }
        }
    }
}

/// A small deterministic generator (xorshift64*), so a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

struct Writer {
    client: Client,
    model: Model,
    rng: Rng,
    serial: u64,
    acked: Arc<AtomicUsize>,
}

const PROJECT_STATUSES: [&str; 4] = ["active", "on_hold", "archived", "unknown"];

impl Writer {
    /// A name no legacy row and no other write has, so a row can be found by it.
    fn fresh_name(&mut self, what: &str) -> String {
        self.serial += 1;
        format!("reverse stream {what} {}", self.serial)
    }

    async fn write_one(&mut self) -> Result<(), tokio_postgres::Error> {
        match self.rng.below(100) {
            0..=9 => self.insert_project().await,
            10..=21 => self.insert_task().await,
            22..=33 => self.insert_sub_task().await,
            34..=43 => self.set_status().await,
            44..=48 => self.set_new_status().await,
            49..=58 => self.rename().await,
            59..=64 => self.set_budget().await,
            65..=70 => self.delete_sub_task().await,
            71..=75 => self.delete_task().await,
            76..=80 => self.move_sub_task().await,
            81..=85 => self.move_task().await,
            86..=88 => self.demote_task().await,
            _ => self.insert_project_tree().await,
        }
    }

    fn project_values(&mut self) -> (Output, String, String, Option<i16>, &'static str, String) {
        let output = if self.rng.below(3) == 0 {
            Output::CompanyService
        } else {
            Output::CompanyProject
        };
        let name = self.fresh_name("project");
        let team = self.rng.pick(&self.model.teams).clone();
        let stage = (self.rng.below(4) > 0).then(|| *self.rng.pick(&self.model.stages));
        let status = *self.rng.pick(&PROJECT_STATUSES);
        let budget = format!(
            "{}.{:02}",
            1200 + self.rng.below(90_000),
            self.rng.below(100)
        );
        (output, name, team, stage, status, budget)
    }

    const INSERT_PROJECT: &'static str = "INSERT INTO projects (id, legacy_table, legacy_id, team_id, kind, name, stage_id, status, owner_email, budget, start_date, created_at, updated_at, attributes)
         VALUES (gen_random_uuid(), $1, NULL, $2::text::uuid, $3, $4, $5, $6, 'Owner.Of.' || $4 || '@Example.com', $7::text::numeric,
                 CASE WHEN $1 = 'company_projects' THEN current_date + 7 END, now(), now(),
                 CASE WHEN $1 = 'company_projects' THEN jsonb_build_object('written_by', 'the new application') END)
         RETURNING id::text";

    async fn insert_project(&mut self) -> Result<(), tokio_postgres::Error> {
        let (output, name, team, stage, status, budget) = self.project_values();
        let kind = if output == Output::CompanyService {
            "service"
        } else {
            "project"
        };
        let row = self
            .client
            .query_one(
                Self::INSERT_PROJECT,
                &[
                    &output.legacy_table(),
                    &team,
                    &kind,
                    &name,
                    &stage,
                    &status,
                    &budget,
                ],
            )
            .await?;
        let mut known = Known::new(output, None);
        known.set_name(name);
        known.budget = Some(budget);
        self.model.add(row.get(0), known);
        Ok(())
    }

    const INSERT_TASK: &'static str = "INSERT INTO tasks (id, legacy_id, project_id, title, status_id, priority, assignee_email, due_date, description, created_at, updated_at)
         VALUES (gen_random_uuid(), NULL, $1::text::uuid, $2, $3, $4, 'Someone@Example.com', current_date + 3, 'written after the cutover', now(), now())
         RETURNING id::text";

    const INSERT_SUB_TASK: &'static str = "INSERT INTO sub_tasks (id, legacy_id, task_id, title, status_id, priority, assignee_email, due_date, description, created_at, updated_at)
         VALUES (gen_random_uuid(), NULL, $1::text::uuid, $2, $3, $4, NULL, NULL, NULL, now(), now())
         RETURNING id::text";

    fn item_values(&mut self, what: &str) -> (String, (i16, String), Option<i16>) {
        let title = self.fresh_name(what);
        let status = self.rng.pick(&self.model.statuses).clone();
        let priority = (self.rng.below(5) > 0).then(|| 1 + self.rng.below(4) as i16);
        (title, status, priority)
    }

    async fn insert_task(&mut self) -> Result<(), tokio_postgres::Error> {
        let project = self.rng.pick(&self.model.projects).clone();
        let (title, status, priority) = self.item_values("task");
        let row = self
            .client
            .query_one(Self::INSERT_TASK, &[&project, &title, &status.0, &priority])
            .await?;
        self.model
            .add_item(row.get(0), Output::Task, title, status.1, project);
        Ok(())
    }

    async fn insert_sub_task(&mut self) -> Result<(), tokio_postgres::Error> {
        let task = self.rng.pick(&self.model.tasks).clone();
        let (title, status, priority) = self.item_values("sub-task");
        let row = self
            .client
            .query_one(
                Self::INSERT_SUB_TASK,
                &[&task, &title, &status.0, &priority],
            )
            .await?;
        self.model
            .add_item(row.get(0), Output::SubTask, title, status.1, task);
        Ok(())
    }

    /// A new project, a task under it and a sub-task under that, and a rename of an old task,
    /// in one transaction.
    async fn insert_project_tree(&mut self) -> Result<(), tokio_postgres::Error> {
        let (_, name, team, stage, status, budget) = self.project_values();
        let (task_title, task_status, priority) = self.item_values("task");
        let (sub_title, sub_status, _) = self.item_values("sub-task");
        let renamed = self.rng.pick(&self.model.tasks).clone();
        let new_title = self.fresh_name("renamed task");
        let tx = self.client.transaction().await?;
        let project: String = tx
            .query_one(
                Self::INSERT_PROJECT,
                &[
                    &"company_projects",
                    &team,
                    &"project",
                    &name,
                    &stage,
                    &status,
                    &budget,
                ],
            )
            .await?
            .get(0);
        let task: String = tx
            .query_one(
                Self::INSERT_TASK,
                &[&project, &task_title, &task_status.0, &priority],
            )
            .await?
            .get(0);
        let sub_task: String = tx
            .query_one(
                Self::INSERT_SUB_TASK,
                &[&task, &sub_title, &sub_status.0, &priority],
            )
            .await?
            .get(0);
        expect_one(
            tx.execute(
                "UPDATE tasks SET title = $2, updated_at = now() WHERE id = $1::text::uuid",
                &[&renamed, &new_title],
            )
            .await?,
        );
        tx.commit().await?;
        let mut known = Known::new(Output::CompanyProject, None);
        known.set_name(name);
        known.budget = Some(budget);
        self.model.add(project.clone(), known);
        self.model.add_item(
            task.clone(),
            Output::Task,
            task_title,
            task_status.1,
            project,
        );
        self.model
            .add_item(sub_task, Output::SubTask, sub_title, sub_status.1, task);
        self.model.get(&renamed).set_name(new_title);
        Ok(())
    }

    /// A task or a sub-task, old or new, alive.
    fn some_item(&mut self) -> (String, Output) {
        if self.rng.below(2) == 0 || self.model.sub_tasks.is_empty() {
            (self.rng.pick(&self.model.tasks).clone(), Output::Task)
        } else {
            (
                self.rng.pick(&self.model.sub_tasks).clone(),
                Output::SubTask,
            )
        }
    }

    async fn set_status(&mut self) -> Result<(), tokio_postgres::Error> {
        let (id, output) = self.some_item();
        let (status_id, status) = self.rng.pick(&self.model.statuses).clone();
        let sql = format!(
            "UPDATE {} SET status_id = $2, updated_at = now() WHERE id = $1::text::uuid",
            output.table()
        );
        expect_one(self.client.execute(&sql, &[&id, &status_id]).await?);
        self.model.get(&id).status = Some(status);
        Ok(())
    }

    /// A status never seen before: its lookup row first, in a statement of its own, then the
    /// item; in one transaction or in two.
    async fn set_new_status(&mut self) -> Result<(), tokio_postgres::Error> {
        let (id, output) = self.some_item();
        let status = self.fresh_name("status");
        let insert = "INSERT INTO task_statuses (name) VALUES ($1) RETURNING id";
        let update = format!(
            "UPDATE {} SET status_id = $2, updated_at = now() WHERE id = $1::text::uuid",
            output.table()
        );
        if self.rng.below(2) == 0 {
            let tx = self.client.transaction().await?;
            let status_id: i16 = tx.query_one(insert, &[&status]).await?.get(0);
            expect_one(tx.execute(&update, &[&id, &status_id]).await?);
            tx.commit().await?;
            self.model.statuses.push((status_id, status.clone()));
        } else {
            let status_id: i16 = self.client.query_one(insert, &[&status]).await?.get(0);
            self.model.statuses.push((status_id, status.clone()));
            expect_one(self.client.execute(&update, &[&id, &status_id]).await?);
        }
        self.model.get(&id).status = Some(status);
        Ok(())
    }

    /// A new title for a task or sub-task, or a new name for a project, old or new.
    async fn rename(&mut self) -> Result<(), tokio_postgres::Error> {
        let (id, table, column) = if self.rng.below(3) == 0 {
            (
                self.rng.pick(&self.model.projects).clone(),
                "projects",
                "name",
            )
        } else {
            let (id, output) = self.some_item();
            (id, output.table(), "title")
        };
        let name = self.fresh_name("renamed");
        let sql = format!(
            "UPDATE {table} SET {column} = $2, updated_at = now() WHERE id = $1::text::uuid"
        );
        expect_one(self.client.execute(&sql, &[&id, &name]).await?);
        self.model.get(&id).set_name(name);
        Ok(())
    }

    /// A new budget for a project, old or new (a service's comes back as its monthly fee).
    async fn set_budget(&mut self) -> Result<(), tokio_postgres::Error> {
        let id = self.rng.pick(&self.model.projects).clone();
        let budget = format!("{}.{:02}", 12 * self.rng.below(10_000), self.rng.below(100));
        expect_one(
            self.client
                .execute(
                    "UPDATE projects SET budget = $2::text::numeric, updated_at = now() WHERE id = $1::text::uuid",
                    &[&id, &budget],
                )
                .await?,
        );
        self.model.get(&id).budget = Some(budget);
        Ok(())
    }

    async fn delete_sub_task(&mut self) -> Result<(), tokio_postgres::Error> {
        if self.model.sub_tasks.is_empty() {
            return self.insert_sub_task().await;
        }
        let id = self.rng.pick(&self.model.sub_tasks).clone();
        expect_one(
            self.client
                .execute("DELETE FROM sub_tasks WHERE id = $1::text::uuid", &[&id])
                .await?,
        );
        self.model.delete(&id);
        Ok(())
    }

    /// A task with its sub-tasks (every one, the load's or not), sub-tasks first, in one
    /// transaction. Keeps a few tasks alive for the other writes.
    async fn delete_task(&mut self) -> Result<(), tokio_postgres::Error> {
        if self.model.tasks.len() < 10 {
            return self.insert_task().await;
        }
        let id = self.rng.pick(&self.model.tasks).clone();
        let tx = self.client.transaction().await?;
        let gone = tx
            .query(
                "DELETE FROM sub_tasks WHERE task_id = $1::text::uuid RETURNING id::text, legacy_id",
                &[&id],
            )
            .await?;
        expect_one(
            tx.execute("DELETE FROM tasks WHERE id = $1::text::uuid", &[&id])
                .await?,
        );
        tx.commit().await?;
        for row in gone {
            let sub_task: String = row.get(0);
            self.model.learn(&sub_task, Output::SubTask, row.get(1));
            self.model.delete(&sub_task);
        }
        self.model.delete(&id);
        Ok(())
    }

    /// A sub-task moved under another task, old or new.
    async fn move_sub_task(&mut self) -> Result<(), tokio_postgres::Error> {
        if self.model.sub_tasks.is_empty() {
            return self.insert_sub_task().await;
        }
        let id = self.rng.pick(&self.model.sub_tasks).clone();
        let task = self.rng.pick(&self.model.tasks).clone();
        expect_one(
            self.client
                .execute(
                    "UPDATE sub_tasks SET task_id = $2::text::uuid, updated_at = now() WHERE id = $1::text::uuid",
                    &[&id, &task],
                )
                .await?,
        );
        self.model.get(&id).parent = Some(task);
        Ok(())
    }

    /// A task moved under another task, as its sub-task, keeping its legacy id: in one
    /// transaction the sub-task is inserted first and the task deleted last (the order in
    /// which replaying each change's values would delete the row just written), its own
    /// sub-tasks moved under the new parent in between.
    async fn demote_task(&mut self) -> Result<(), tokio_postgres::Error> {
        let old: Vec<String> = self
            .model
            .tasks
            .iter()
            .filter(|t| self.model.rows[*t].legacy_id.is_some())
            .cloned()
            .collect();
        if old.len() < 10 {
            return self.move_task().await;
        }
        let id = self.rng.pick(&old).clone();
        let parent = self.rng.pick(&self.model.tasks).clone();
        if parent == id {
            return self.move_task().await;
        }
        let tx = self.client.transaction().await?;
        let new: String = tx
            .query_one(
                "INSERT INTO sub_tasks (id, legacy_id, task_id, title, status_id, priority,
                                        assignee_email, due_date, description, created_at, updated_at)
                 SELECT gen_random_uuid(), legacy_id, $2::text::uuid, title, status_id, priority,
                        assignee_email, due_date, description, created_at, now()
                   FROM tasks WHERE id = $1::text::uuid
                 RETURNING id::text",
                &[&id, &parent],
            )
            .await?
            .get(0);
        let moved = tx
            .query(
                "UPDATE sub_tasks SET task_id = $2::text::uuid, updated_at = now()
                  WHERE task_id = $1::text::uuid RETURNING id::text, legacy_id",
                &[&id, &parent],
            )
            .await?;
        expect_one(
            tx.execute("DELETE FROM tasks WHERE id = $1::text::uuid", &[&id])
                .await?,
        );
        tx.commit().await?;
        for row in moved {
            let sub_task: String = row.get(0);
            self.model.learn(&sub_task, Output::SubTask, row.get(1));
            self.model.get(&sub_task).parent = Some(parent.clone());
        }
        self.model.demote(&id, new, parent);
        Ok(())
    }

    /// A task moved under another project, old or new, a service's included.
    async fn move_task(&mut self) -> Result<(), tokio_postgres::Error> {
        let id = self.rng.pick(&self.model.tasks).clone();
        let project = self.rng.pick(&self.model.projects).clone();
        expect_one(
            self.client
                .execute(
                    "UPDATE tasks SET project_id = $2::text::uuid, updated_at = now() WHERE id = $1::text::uuid",
                    &[&id, &project],
                )
                .await?,
        );
        self.model.get(&id).parent = Some(project);
        Ok(())
    }
}

fn expect_one(rows: u64) {
    assert_eq!(
        rows, 1,
        "the load's model is out of step with the new tables"
    );
}
