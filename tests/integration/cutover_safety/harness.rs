//! The seed migration in its same-database layout (one database is source and target), with
//! the seed plan or a copy of its folder whose `[cutover.dependents]` or `cutover.sql` a test
//! changes. The copy lives in the cluster's directory, removed with it.

use std::path::PathBuf;

use switchyard::demo::cluster::Cluster;
use tokio_postgres::Client;

use crate::support::{cluster, repo, run_command, seed_plan, seeded_source};

pub struct SameDatabase {
    pub cluster: Cluster,
    pub db: Client,
    pub url: String,
    pub plan: PathBuf,
}

impl SameDatabase {
    /// Legacy tables seeded at a small scale, then `setup` run on them; the seed plan.
    pub async fn new(setup: &str) -> SameDatabase {
        let cluster = cluster();
        let db = seeded_source(&cluster, "legacy", 0.01).await;
        db.batch_execute(setup).await.expect("the test's setup SQL");
        let url = cluster.url("legacy");
        SameDatabase {
            cluster,
            db,
            url,
            plan: seed_plan(),
        }
    }

    /// Switches to a copy of the seed plan's folder whose `[cutover.dependents]` lines in
    /// `settings` (`("foreign_keys", "cutover_sql")`) are set as given. Before the backfill:
    /// the plan file is part of the backfill's checksum.
    pub fn with_dependents(&mut self, settings: &[(&str, &str)]) {
        let from = repo().join("transforms/legacy_to_projects");
        let to = self.cluster.dir().join("plan");
        std::fs::create_dir_all(&to).unwrap();
        for entry in std::fs::read_dir(&from).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
        let path = to.join("plan.toml");
        let mut text = std::fs::read_to_string(&path).unwrap();
        for (kind, value) in settings {
            let line = text
                .lines()
                .find(|l| l.starts_with(&format!("{kind} = ")))
                .unwrap_or_else(|| panic!("the seed plan has a line for {kind}"))
                .to_owned();
            text = text.replace(&line, &format!("{kind} = \"{value}\""));
        }
        std::fs::write(&path, text).unwrap();
        self.plan = path;
    }

    /// Appends `sql` to the copy's seed `cutover.sql` (after the swap); a copy made by
    /// [`SameDatabase::with_dependents`] first.
    pub fn with_cutover_sql(&self, sql: &str) {
        assert_ne!(self.plan, seed_plan(), "with_dependents first");
        let seed =
            std::fs::read_to_string(repo().join("transforms/legacy_to_projects/cutover.sql"))
                .unwrap();
        let path = self.plan.with_file_name("cutover.sql");
        std::fs::write(path, format!("{seed}\n{sql}\n")).unwrap();
    }

    /// `switchyard <command> <extra>` against the one database: (success, stdout + stderr).
    pub fn run(&self, command: &str, extra: &[&str]) -> (bool, String) {
        let out = run_command(command, &self.plan, &self.url, &self.url, extra);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// The backfill, without the consumer (the cutover runs one itself); must succeed.
    pub fn backfill(&self) {
        let (ok, out) = self.run("backfill", &["--jobs", "2", "--no-follow"]);
        assert!(ok, "backfill failed:\n{out}");
    }

    /// `pg_class.relkind` of what `name` resolves to: `r` a table, `v` a view.
    pub async fn relkind(&self, name: &str) -> String {
        self.db
            .query_one(
                "SELECT relkind::text FROM pg_class WHERE oid = $1::text::regclass",
                &[&name],
            )
            .await
            .unwrap()
            .get(0)
    }

    /// The migration's status in `switchyard.migrations`.
    pub async fn status(&self) -> String {
        self.db
            .query_one("SELECT status FROM switchyard.migrations", &[])
            .await
            .unwrap()
            .get(0)
    }
}
