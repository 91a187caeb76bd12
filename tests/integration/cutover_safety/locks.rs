//! The swap's own locks (issue 18, kind 3): the cutover looks for what conflicts with the
//! ACCESS EXCLUSIVE lock its swap takes, takes that lock itself bounded by --lock-timeout, names
//! whoever is in the way, runs the swap in a dry run too, refuses a --lock-timeout at or above
//! deadlock_timeout, and warns about physical standbys. Same-database layout: one cluster, the
//! new tables next to the legacy ones, the seed plan.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard::demo::cluster::Cluster;
use tokio_postgres::Client;

use crate::support::{cluster, seed_plan, seeded_source};

/// One cluster, one database holding the legacy tables and (after the backfill) the new ones.
struct SameDatabase {
    cluster: Cluster,
    db: Client,
    url: String,
    plan: PathBuf,
}

impl SameDatabase {
    async fn start() -> SameDatabase {
        SameDatabase::start_with(seed_plan()).await
    }

    async fn start_with(plan: PathBuf) -> SameDatabase {
        let cluster = cluster();
        let db = seeded_source(&cluster, "legacy", 0.01).await;
        let url = cluster.url("legacy");
        let me = SameDatabase {
            cluster,
            db,
            url,
            plan,
        };
        let (ok, out) = me.switchyard(&["backfill", "--no-follow"]).await;
        assert!(ok, "{out}");
        me
    }

    /// Runs `switchyard <args> --plan <seed> --source <url> --target <url>` to completion.
    async fn switchyard(&self, args: &[&str]) -> (bool, String) {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(args)
            .args(["--plan", self.plan.to_str().unwrap()])
            .args(["--source", &self.url, "--target", &self.url])
            .output()
            .await
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    async fn cutover(&self, extra: &[&str]) -> (bool, String) {
        let mut args = vec!["cutover"];
        args.extend_from_slice(extra);
        self.switchyard(&args).await
    }

    async fn session(&self, application_name: &str) -> Client {
        let c = self.cluster.connect("legacy").await.unwrap();
        c.batch_execute(&format!("SET application_name = '{application_name}'"))
            .await
            .unwrap();
        c
    }

    /// Nothing was swapped: the legacy names are tables, no compatibility view exists, the
    /// migration is not cut over.
    async fn assert_nothing_swapped(&self) {
        for t in ["company_projects", "company_services", "vortex_items"] {
            let kind: String = self
                .db
                .query_one(
                    "SELECT relkind::text FROM pg_class WHERE oid = $1::text::regclass",
                    &[&t],
                )
                .await
                .unwrap()
                .get(0);
            assert_eq!(kind, "r", "{t} is still a table");
        }
        let legacy: i64 = self
            .db
            .query_one(
                "SELECT count(*) FROM pg_class WHERE relname LIKE '%\\_legacy'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(legacy, 0, "nothing was renamed");
        let status: String = self
            .db
            .query_one("SELECT status FROM switchyard.migrations", &[])
            .await
            .unwrap()
            .get(0);
        assert_ne!(status, "cut_over");
    }

    /// `last_value` of every sequence, by name.
    async fn sequences(&self) -> Vec<(String, Option<i64>)> {
        self.db
            .query(
                "SELECT schemaname || '.' || sequencename, last_value FROM pg_sequences ORDER BY 1",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    }
}

/// The application meanwhile: SELECTs and writes on the legacy tables, one at a time, each
/// timed; `stop` ends it and yields the slowest read and the slowest write.
struct Application {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(Duration, Duration)>,
}

impl Application {
    async fn start(s: &SameDatabase) -> Application {
        let app = s.session("the application").await;
        // A session that waits longer than this for a lock fails the test rather than hangs.
        app.batch_execute("SET lock_timeout = '20s'").await.unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let (mut read, mut write) = (Duration::ZERO, Duration::ZERO);
            while !stopped.load(Ordering::Relaxed) {
                let started = Instant::now();
                app.batch_execute("SELECT count(*) FROM company_projects WHERE id < 50")
                    .await
                    .unwrap();
                read = read.max(started.elapsed());
                let started = Instant::now();
                app.batch_execute("UPDATE vortex_items SET title = title WHERE id = 3")
                    .await
                    .unwrap();
                write = write.max(started.elapsed());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (read, write)
        });
        Application { stop, task }
    }

    async fn stop(self) -> (Duration, Duration) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_reader_is_named_and_never_queued_behind_by_the_cutover_or_its_dry_run() {
    let s = SameDatabase::start().await;
    let report = s.session("monthly report").await;
    report
        .batch_execute("BEGIN; SELECT count(*) FROM company_projects")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let app = Application::start(&s).await;
    for dry_run in [true, false] {
        let mut args = vec!["--lock-timeout", "200ms", "--lock-attempts", "3"];
        if dry_run {
            args.push("--dry-run");
        }
        let (ok, out) = s.cutover(&args).await;
        assert!(!ok, "{out}");
        assert!(out.contains("not granted in 3 attempts"), "{out}");
        for named in [
            "application \"monthly report\"",
            "idle in transaction",
            "AccessShareLock on company_projects",
            "SELECT count(*) FROM company_projects",
            "not queued",
        ] {
            assert!(out.contains(named), "{named} in: {out}");
        }
        assert!(
            !out.contains("--max-blocked"),
            "a reader is no reason for a larger window: {out}"
        );
    }
    let (read, write) = app.stop().await;
    assert!(read < Duration::from_millis(400), "reads waited {read:?}");
    assert!(
        write < Duration::from_millis(400),
        "writes waited {write:?}"
    );
    s.assert_nothing_swapped().await;

    // Once the report ends its transaction, the cutover goes through.
    report.batch_execute("COMMIT").await.unwrap();
    let (ok, out) = s.cutover(&["--lock-timeout", "200ms"]).await;
    assert!(ok, "{out}");
    assert!(
        out.contains("strongest lock on the legacy tables: ACCESS EXCLUSIVE"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reader_arriving_under_the_write_lock_fails_the_swap_lock_which_is_retried_and_named() {
    let s = SameDatabase::start().await;
    let before = s.sequences().await;
    let app = Application::start(&s).await;
    // Opens a reader as soon as the cutover holds the write lock (EXCLUSIVE lets it in), and
    // leaves it idle in its transaction: the swap's ACCESS EXCLUSIVE cannot be granted.
    let watcher = s.session("lock watcher").await;
    let late = s.session("late report").await;
    let inject = tokio::spawn(async move {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let held: bool = watcher
                .query_one(
                    "SELECT EXISTS (SELECT FROM pg_locks l JOIN pg_stat_activity a USING (pid)
                                     WHERE l.granted AND l.mode = 'ExclusiveLock'
                                       AND l.relation = 'company_projects'::regclass
                                       AND a.application_name LIKE 'switchyard cutover%')",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if held {
                late.batch_execute("BEGIN; SELECT id FROM company_projects LIMIT 1")
                    .await
                    .unwrap();
                return late;
            }
            assert!(Instant::now() < deadline, "the cutover never took the lock");
        }
    });
    let (ok, out) = s
        .cutover(&[
            "--lock-timeout",
            "300ms",
            "--lock-attempts",
            "3",
            "--verify",
        ])
        .await;
    let late = inject.await.unwrap();
    let (read, write) = app.stop().await;
    assert!(!ok, "{out}");
    for said in [
        "lock attempt 1: the write lock was granted, but the swap's ACCESS EXCLUSIVE lock was not within --lock-timeout (300ms)",
        "application \"late report\"",
        "AccessShareLock on company_projects",
        "rolled back",
        "not granted in 3 attempts",
    ] {
        assert!(out.contains(said), "{said} in: {out}");
    }
    assert!(!out.contains("--max-blocked"), "{out}");
    // Reads waited only for the swap's lock request; writes for the window (the fence, the
    // counts, verify) plus that.
    assert!(read < Duration::from_millis(900), "reads waited {read:?}");
    assert!(write < Duration::from_secs(3), "writes waited {write:?}");
    s.assert_nothing_swapped().await;
    assert_eq!(s.sequences().await, before, "no sequence moved");
    late.batch_execute("COMMIT").await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lock_timeout_not_below_deadlock_timeout_is_refused_before_any_lock() {
    let s = SameDatabase::start().await;
    for lock_timeout in ["1s", "5s"] {
        let (ok, out) = s
            .cutover(&["--dry-run", "--lock-timeout", lock_timeout])
            .await;
        assert!(!ok, "{out}");
        for said in [
            "is not below the source's deadlock_timeout (1s)",
            "refused before taking any lock",
            "deadlock detected",
            "Use a --lock-timeout below 1s",
            "raise deadlock_timeout",
        ] {
            assert!(out.contains(said), "{said} in: {out}");
        }
        assert!(
            !out.contains("consumer caught up"),
            "refused before anything else: {out}"
        );
    }
    s.assert_nothing_swapped().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_runs_the_swap_times_it_and_changes_nothing() {
    let s = SameDatabase::start().await;
    // A sequence behind its column: the real cutover would move it, the dry run must not.
    s.db.batch_execute(
        "INSERT INTO project_stages (name) VALUES ('dry run a'), ('dry run b');
         SELECT setval(pg_get_serial_sequence('project_stages', 'id'), 1)",
    )
    .await
    .unwrap();
    let before = s.sequences().await;
    let (ok, out) = s.cutover(&["--dry-run", "--json"]).await;
    assert!(ok, "{out}");
    let report: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["committed"], false);
    assert_eq!(report["swap_lock"], "ACCESS EXCLUSIVE");
    let steps: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    for step in ["swap_lock", "sequences", "cutover_sql", "commit"] {
        assert!(steps.contains(&step), "{step} timed in {steps:?}");
    }
    let moved = report["sequences"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["sequence"].as_str().unwrap().contains("project_stages"))
        .expect("project_stages' sequence is reported");
    assert_eq!(moved["moved"], true, "{moved}");
    assert!(moved["value"].as_i64().unwrap() > 1, "{moved}");
    s.assert_nothing_swapped().await;
    assert_eq!(s.sequences().await, before, "setval never ran");

    let (ok, out) = s.cutover(&["--dry-run"]).await;
    assert!(ok, "{out}");
    assert!(out.contains("the plan's cutover SQL"), "{out}");
    assert!(out.contains("the swap ran and was rolled back"), "{out}");
    s.assert_nothing_swapped().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_physical_standby_is_named_in_the_warning_of_check_and_the_cutover() {
    let s = SameDatabase::start().await;
    let standby = Cluster::standby_of(&s.cluster).expect("start a hot standby");
    let replica = standby.connect("legacy").await.unwrap();
    let in_recovery: bool = replica
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(in_recovery);
    // The walsender serving it, by the name pg_basebackup -R gave it.
    let name: String =
        s.db.query_one(
            "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'",
            &[],
        )
        .await
        .unwrap()
        .get(0);

    let (ok, out) = s.switchyard(&["check"]).await;
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("physical standby {name:?}")),
        "{name} in: {out}"
    );
    assert!(out.contains("max_standby_streaming_delay"), "{out}");

    let (ok, out) = s.cutover(&["--dry-run", "--json"]).await;
    assert!(ok, "{out}");
    let report: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let standbys = report["standbys"].as_array().unwrap();
    assert_eq!(standbys.len(), 1, "only the physical standby: {standbys:?}");
    assert_eq!(standbys[0]["application_name"], name.as_str());
    assert_eq!(standbys[0]["primary_max_standby_streaming_delay"], "30s");
    let warning = standbys[0]["warning"].as_str().unwrap();
    for said in [
        "replays the swap's ACCESS EXCLUSIVE lock on public.company_projects",
        "the primary's is 30s; the standby's own setting decides",
        "hot_standby_feedback",
    ] {
        assert!(warning.contains(said), "{said} in: {warning}");
    }

    let (ok, out) = s.cutover(&["--dry-run"]).await;
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("WARNING: physical standby {name:?}")),
        "{out}"
    );
    s.assert_nothing_swapped().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reader_that_then_writes_behind_the_write_lock_is_never_made_a_deadlock_victim() {
    let s = SameDatabase::start().await;
    // Under the write lock, a transaction reads (ACCESS SHARE, granted) then writes (queued
    // behind the cutover): the swap's ACCESS EXCLUSIVE would close a cycle, so it is not asked.
    let watcher = s.session("lock watcher").await;
    let app = s.session("read then write").await;
    let inject = tokio::spawn(async move {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let held: bool = watcher
                .query_one(
                    "SELECT EXISTS (SELECT FROM pg_locks l JOIN pg_stat_activity a USING (pid)
                                     WHERE l.granted AND l.mode = 'ExclusiveLock'
                                       AND l.relation = 'company_projects'::regclass
                                       AND a.application_name LIKE 'switchyard cutover%')",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if held {
                app.batch_execute("BEGIN; SELECT id FROM company_projects LIMIT 1")
                    .await
                    .unwrap();
                let started = Instant::now();
                let wrote = app
                    .batch_execute("UPDATE company_projects SET name = name WHERE id = 1")
                    .await;
                let waited = started.elapsed();
                app.batch_execute("COMMIT").await.unwrap();
                return (wrote, waited);
            }
            assert!(Instant::now() < deadline, "the cutover never took the lock");
        }
    });
    let (ok, out) = s
        .cutover(&[
            "--lock-timeout",
            "900ms",
            "--lock-attempts",
            "1",
            "--verify",
        ])
        .await;
    let (wrote, waited) = inject.await.unwrap();
    assert!(!ok, "{out}");
    for said in [
        "application \"read then write\"",
        "and waits for the cutover's lock",
        "not granted in 1 attempts",
    ] {
        assert!(out.contains(said), "{said} in: {out}");
    }
    wrote.expect("the application's write went through, no deadlock");
    assert!(
        waited < Duration::from_secs(3),
        "the write waited {waited:?}"
    );
    s.assert_nothing_swapped().await;
}

/// A copy of the seed plan's folder whose `plan.toml` and `cutover.sql` are changed; removed
/// on drop.
struct PlanCopy(PathBuf);

impl PlanCopy {
    fn new(edit_plan: impl Fn(String) -> String, cutover_sql: &str) -> PlanCopy {
        let seed = seed_plan();
        let from = seed.parent().unwrap();
        let dir = std::env::temp_dir().join(format!(
            "switchyard-locks-plan-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
        }
        let plan = std::fs::read_to_string(dir.join("plan.toml")).unwrap();
        std::fs::write(dir.join("plan.toml"), edit_plan(plan)).unwrap();
        std::fs::write(dir.join("cutover.sql"), cutover_sql).unwrap();
        PlanCopy(dir)
    }

    fn plan(&self) -> PathBuf {
        self.0.join("plan.toml")
    }
}

/// Whether the side-target test's swap created its table.
async fn probe(db: &Client) -> bool {
    db.query_one("SELECT to_regclass('swap_probe') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0)
}

impl Drop for PlanCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_side_target_the_dry_run_runs_the_targets_swap_and_rolls_it_back() {
    let copy = PlanCopy::new(
        // This swap only creates a probe table: the legacy names stay what they are.
        |plan| {
            plan.replace(
                "side = \"source\"",
                "side = \"target\"\nlegacy_names = \"unchanged\"",
            )
        },
        "CREATE TABLE swap_probe (ran_at timestamptz DEFAULT now());\nINSERT INTO swap_probe DEFAULT VALUES;\n",
    );
    let s = SameDatabase::start_with(copy.plan()).await;
    let (ok, out) = s.cutover(&["--dry-run", "--json"]).await;
    assert!(ok, "{out}");
    let report: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(report["dry_run"], true);
    assert_eq!(
        report["swap_lock"], "EXCLUSIVE",
        "the swap runs on the target: the source keeps the write lock only"
    );
    assert!(
        report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["step"] == "cutover_sql"),
        "{report}"
    );
    assert!(!probe(&s.db).await, "the target's swap was rolled back");
    s.assert_nothing_swapped().await;

    let (ok, out) = s.cutover(&[]).await;
    assert!(ok, "{out}");
    assert!(
        probe(&s.db).await,
        "the real cutover committed the target's swap"
    );
}
