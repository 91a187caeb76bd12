//! What the load knows of the new tables: the rows it may write (a sample of the backfilled
//! ones and every one it created) and, for each, what its acknowledged writes left there.

use std::collections::BTreeMap;

use tokio_postgres::Client;

/// The new table a row is in, and through it the legacy table it goes back to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    CompanyProject,
    CompanyService,
    Task,
    SubTask,
}

impl Output {
    pub fn table(self) -> &'static str {
        match self {
            Output::CompanyProject | Output::CompanyService => "projects",
            Output::Task => "tasks",
            Output::SubTask => "sub_tasks",
        }
    }

    pub fn legacy_table(self) -> &'static str {
        match self {
            Output::CompanyProject => "company_projects",
            Output::CompanyService => "company_services",
            Output::Task | Output::SubTask => "vortex_items",
        }
    }

    /// The legacy column holding the name or title.
    pub fn legacy_name(self) -> &'static str {
        match self {
            Output::CompanyProject => "name",
            Output::CompanyService => "service_name",
            Output::Task | Output::SubTask => "title",
        }
    }
}

/// One row of the new tables, and what the acknowledged writes set in it (`None`: not
/// written by the load).
#[derive(Debug)]
pub struct Known {
    pub output: Output,
    /// `None` for a row the load created.
    pub legacy_id: Option<i64>,
    pub name: Option<String>,
    /// Every name the load gave it, each unique: a deleted row must have none of them.
    pub names: Vec<String>,
    pub budget: Option<String>,
    /// The name of a task's or sub-task's status.
    pub status: Option<String>,
    /// The uuid of a task's project or of a sub-task's task.
    pub parent: Option<String>,
    pub deleted: bool,
}

impl Known {
    pub fn new(output: Output, legacy_id: Option<i64>) -> Known {
        Known {
            output,
            legacy_id,
            name: None,
            names: Vec::new(),
            budget: None,
            status: None,
            parent: None,
            deleted: false,
        }
    }

    pub fn set_name(&mut self, name: String) {
        self.names.push(name.clone());
        self.name = Some(name);
    }

    /// Whether any acknowledged write touched it.
    pub fn written(&self) -> bool {
        self.legacy_id.is_none()
            || self.deleted
            || self.name.is_some()
            || self.budget.is_some()
            || self.status.is_some()
            || self.parent.is_some()
    }
}

pub struct Model {
    /// By uuid (as text).
    pub rows: BTreeMap<String, Known>,
    /// The rows alive, by table: the load picks from these.
    pub projects: Vec<String>,
    pub tasks: Vec<String>,
    pub sub_tasks: Vec<String>,
    pub statuses: Vec<(i16, String)>,
    pub stages: Vec<i16>,
    pub teams: Vec<String>,
}

/// How many backfilled rows of each kind the load may write: enough for every kind of write
/// to hit old rows, few enough that the model stays small.
const OLD_PROJECTS: i64 = 40;
const OLD_SERVICES: i64 = 10;
const OLD_ITEMS: i64 = 100;

impl Model {
    /// A sample of the backfilled rows and the lookup values, read from the new tables.
    pub async fn read(client: &Client) -> Model {
        let mut model = Model {
            rows: BTreeMap::new(),
            projects: Vec::new(),
            tasks: Vec::new(),
            sub_tasks: Vec::new(),
            statuses: Vec::new(),
            stages: Vec::new(),
            teams: Vec::new(),
        };
        let samples = [
            (Output::CompanyProject, format!("SELECT id::text, legacy_id FROM projects WHERE legacy_table = 'company_projects' ORDER BY legacy_id LIMIT {OLD_PROJECTS}")),
            (Output::CompanyService, format!("SELECT id::text, legacy_id FROM projects WHERE legacy_table = 'company_services' ORDER BY legacy_id LIMIT {OLD_SERVICES}")),
            (Output::Task, format!("SELECT id::text, legacy_id FROM tasks ORDER BY legacy_id LIMIT {OLD_ITEMS}")),
            (Output::SubTask, format!("SELECT id::text, legacy_id FROM sub_tasks WHERE task_id IN (SELECT id FROM tasks) ORDER BY legacy_id LIMIT {OLD_ITEMS}")),
        ];
        for (output, sql) in samples {
            for row in client.query(&sql, &[]).await.unwrap() {
                model.add(row.get(0), Known::new(output, Some(row.get(1))));
            }
        }
        for row in client
            .query("SELECT id, name FROM task_statuses ORDER BY id", &[])
            .await
            .unwrap()
        {
            model.statuses.push((row.get(0), row.get(1)));
        }
        for row in client
            .query("SELECT id FROM project_stages ORDER BY id", &[])
            .await
            .unwrap()
        {
            model.stages.push(row.get(0));
        }
        for row in client
            .query(
                "SELECT id::text FROM teams ORDER BY company_id LIMIT 20",
                &[],
            )
            .await
            .unwrap()
        {
            model.teams.push(row.get(0));
        }
        for (what, len) in [
            ("projects", model.projects.len()),
            ("tasks", model.tasks.len()),
            ("sub_tasks", model.sub_tasks.len()),
            ("task_statuses", model.statuses.len()),
            ("project_stages", model.stages.len()),
            ("teams", model.teams.len()),
        ] {
            assert!(len > 0, "the backfill left no {what} for the load to write");
        }
        model
    }

    /// A row alive now.
    pub fn add(&mut self, id: String, known: Known) {
        match known.output {
            Output::CompanyProject | Output::CompanyService => self.projects.push(id.clone()),
            Output::Task => self.tasks.push(id.clone()),
            Output::SubTask => self.sub_tasks.push(id.clone()),
        }
        self.rows.insert(id, known);
    }

    /// A task or sub-task the load created.
    pub fn add_item(
        &mut self,
        id: String,
        output: Output,
        title: String,
        status: String,
        parent: String,
    ) {
        let mut known = Known::new(output, None);
        known.set_name(title);
        known.status = Some(status);
        known.parent = Some(parent);
        self.add(id, known);
    }

    /// A row a write revealed (a sub-task deleted with its task), unless already known.
    pub fn learn(&mut self, id: &str, output: Output, legacy_id: Option<i64>) {
        if !self.rows.contains_key(id) {
            self.add(id.to_string(), Known::new(output, legacy_id));
        }
    }

    pub fn get(&mut self, id: &str) -> &mut Known {
        self.rows.get_mut(id).expect("a row the load knows")
    }

    /// Task `old` became sub-task `new` under task `parent`, keeping what it was written.
    pub fn demote(&mut self, old: &str, new: String, parent: String) {
        let mut known = self.rows.remove(old).expect("a task the load knows");
        self.tasks.retain(|other| other != old);
        known.output = Output::SubTask;
        known.parent = Some(parent);
        self.add(new, known);
    }

    pub fn delete(&mut self, id: &str) {
        let known = self.get(id);
        known.deleted = true;
        let alive = match known.output {
            Output::CompanyProject | Output::CompanyService => &mut self.projects,
            Output::Task => &mut self.tasks,
            Output::SubTask => &mut self.sub_tasks,
        };
        alive.retain(|other| other != id);
    }

    /// How many rows the load created, deleted and changed.
    pub fn summary(&self) -> String {
        let created = self.rows.values().filter(|k| k.legacy_id.is_none()).count();
        let deleted = self.rows.values().filter(|k| k.deleted).count();
        let written = self.rows.values().filter(|k| k.written()).count();
        format!("{written} rows written: {created} created, {deleted} deleted")
    }
}
