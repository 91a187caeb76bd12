use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use switchyard::demo::cluster::Cluster;
use switchyard::demo::write_load::{WriteLoad, WriteLoadOptions};
use tokio_postgres::Client;

use crate::support::{
    assert_target_matches_expected, cluster, compute_expected, seed_plan, seeded_source, wait_for,
    wait_until_applied,
};

/// A source and a target cluster with a backfilled migration and its consumer running.
pub(crate) struct Following {
    pub source_cluster: Cluster,
    pub target_cluster: Cluster,
    pub source: Client,
    pub target: Client,
    pub consumer: Child,
}

/// A source cluster seeded at `scale` and a target cluster with an empty database `app`.
pub(crate) async fn seeded_pair(scale: f64) -> (Cluster, Cluster, Client, Client) {
    let (source_cluster, target_cluster) = (cluster(), cluster());
    let source = seeded_source(&source_cluster, "legacy", scale).await;
    target_cluster.create_database("app").await.unwrap();
    let target = target_cluster.connect("app").await.unwrap();
    (source_cluster, target_cluster, source, target)
}

impl Following {
    /// Runs switchyard with `args` (a backfill, which goes on following, or a follow).
    fn run(
        (source_cluster, target_cluster, source, target): (Cluster, Cluster, Client, Client),
        args: &[&str],
    ) -> Following {
        let consumer = spawn(args, &source_cluster, &target_cluster);
        Following {
            source_cluster,
            target_cluster,
            source,
            target,
            consumer,
        }
    }

    /// Seeds the source, then runs `backfill` until it follows.
    pub async fn start(scale: f64) -> Following {
        let mut f = Following::run(seeded_pair(scale).await, &["backfill", "--jobs", "2"]);
        f.wait_for(
            "SELECT coalesce((SELECT status = 'following' FROM switchyard.migrations), false)",
        )
        .await;
        f
    }

    /// Waits on the target until `condition` holds, failing if the consumer exits.
    pub async fn wait_for(&mut self, condition: &str) {
        wait_for(&self.target, condition, &mut self.consumer).await;
    }

    /// Waits until the consumer has applied everything the source has written so far.
    pub(crate) async fn catch_up(&mut self) {
        wait_until_applied(
            &self.source,
            "switchyard_legacy_to_projects",
            &mut self.consumer,
        )
        .await;
    }

    /// Recomputes the expected result from the source as it is now and compares.
    pub async fn assert_converged(&mut self) {
        self.catch_up().await;
        compute_expected(&self.source).await;
        assert_target_matches_expected(&self.source, &self.target).await;
    }

    /// Terminates the walsender of the consumer's slot on the source.
    pub(crate) async fn terminate_walsender(&self) {
        self.source
            .batch_execute(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE active_pid IS NOT NULL",
            )
            .await
            .unwrap();
    }

    /// Terminates every switchyard session on the target.
    pub(crate) async fn terminate_target_sessions(&self) {
        self.target
            .batch_execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'switchyard%'",
            )
            .await
            .unwrap();
    }

    /// Waits for the consumer to exit on its own and returns its stderr.
    fn exit_message(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.consumer.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the consumer did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut err = String::new();
        use std::io::Read;
        self.consumer
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        err
    }
}

impl Drop for Following {
    fn drop(&mut self) {
        let _ = self.consumer.kill();
        let _ = self.consumer.wait();
    }
}

fn spawn(args: &[&str], source: &Cluster, target: &Cluster) -> Child {
    let plan = seed_plan();
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        // Consumers under test apply through two lanes (the default is one): the parallel
        // path gets every convergence test; `--apply-jobs` given wins.
        .env("SWITCHYARD_APPLY_JOBS", "2")
        .args([
            "--plan",
            plan.to_str().unwrap(),
            "--source",
            &source.url("legacy"),
            "--target",
            &target.url("app"),
        ])
        .env("SWITCHYARD_LOG", "switchyard=debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_during_backfill_and_follow_converge() {
    let pair = seeded_pair(0.02).await;
    let load = WriteLoad::start(
        &pair.0.url("legacy"),
        WriteLoadOptions {
            target_rate: Some(400.0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut f = Following::run(pair, &["backfill", "--jobs", "2"]);
    f.wait_for("SELECT coalesce((SELECT changes_applied > 200 FROM switchyard.migrations), false)")
        .await;
    let report = load.stop().await.unwrap();
    assert!(
        report.counts.committed() > 200,
        "the load kept writing: {:?}",
        report.counts
    );
    f.assert_converged().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_follow_then_restart_loses_and_doubles_nothing() {
    let mut f = Following::start(0.01).await;
    let load = WriteLoad::start(
        &f.source_cluster.url("legacy"),
        WriteLoadOptions {
            target_rate: Some(500.0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    f.wait_for("SELECT changes_applied > 100 FROM switchyard.migrations")
        .await;
    f.consumer.kill().unwrap(); // SIGKILL, mid-stream
    f.consumer.wait().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await; // the load goes on meanwhile
    f.consumer = spawn(&["follow"], &f.source_cluster, &f.target_cluster);
    f.wait_for("SELECT coalesce(heartbeat_at > now() - interval '2 seconds', false) FROM switchyard.migrations").await;
    load.stop().await.unwrap();
    f.assert_converged().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unchanged_toasted_body_keeps_its_value() {
    let mut f = Following::start(0.002).await;
    let id: i64 = f
        .source
        .query_one(
            "UPDATE vortex_items SET body = (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 200) g)
              WHERE id = (SELECT min(id) FROM vortex_items WHERE parent_item_id IS NULL) RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    f.catch_up().await;
    // Only the status changes: the WAL record carries the body as "unchanged TOAST".
    f.source
        .execute(
            "UPDATE vortex_items SET status = 'done' WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    f.catch_up().await;
    let row = f.target.query_one("SELECT length(description), s.name FROM tasks t JOIN task_statuses s ON s.id = t.status_id WHERE legacy_id = $1", &[&id]).await.unwrap();
    assert_eq!(
        row.get::<_, Option<i32>>(0),
        Some(6400),
        "the body is kept, not nulled"
    );
    assert_eq!(row.get::<_, String>(1), "done");
    f.assert_converged().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_row_moves_between_tasks_and_sub_tasks() {
    let mut f = Following::start(0.002).await;
    let ids: Vec<i64> = f
        .source
        .query(
            "SELECT id FROM vortex_items WHERE parent_item_id IS NULL ORDER BY id LIMIT 2",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    f.source
        .execute(
            "UPDATE vortex_items SET parent_item_id = $1 WHERE id = $2",
            &[&ids[0], &ids[1]],
        )
        .await
        .unwrap();
    f.catch_up().await;
    let counts = |table: &'static str| format!("SELECT count(*) FROM {table} WHERE legacy_id = $1");
    let in_tasks: i64 = f
        .target
        .query_one(&counts("tasks"), &[&ids[1]])
        .await
        .unwrap()
        .get(0);
    let in_sub_tasks: i64 = f
        .target
        .query_one(&counts("sub_tasks"), &[&ids[1]])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        (in_tasks, in_sub_tasks),
        (0, 1),
        "gaining a parent moves it to sub_tasks"
    );
    f.source
        .execute(
            "UPDATE vortex_items SET parent_item_id = NULL WHERE id = $1",
            &[&ids[1]],
        )
        .await
        .unwrap();
    f.catch_up().await;
    let in_tasks: i64 = f
        .target
        .query_one(&counts("tasks"), &[&ids[1]])
        .await
        .unwrap()
        .get(0);
    let in_sub_tasks: i64 = f
        .target
        .query_one(&counts("sub_tasks"), &[&ids[1]])
        .await
        .unwrap()
        .get(0);
    assert_eq!((in_tasks, in_sub_tasks), (1, 0), "losing it moves it back");
    f.assert_converged().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_change_deletes_the_old_target_row() {
    let mut f = Following::start(0.002).await;
    let id: i64 = f
        .source
        .query_one(
            "SELECT min(id) FROM vortex_items WHERE parent_item_id IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    f.source
        .execute(
            "UPDATE vortex_items SET id = id + 1000000000000 WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    f.catch_up().await;
    let old: i64 = f
        .target
        .query_one("SELECT count(*) FROM tasks WHERE legacy_id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    let new: i64 = f
        .target
        .query_one(
            "SELECT count(*) FROM tasks WHERE legacy_id = $1",
            &[&(id + 1_000_000_000_000)],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!((old, new), (0, 1));
    f.assert_converged().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_status_value_creates_a_lookup_row() {
    let mut f = Following::start(0.002).await;
    f.source
        .execute("UPDATE vortex_items SET status = ' Blocked_By-Vendor ' WHERE id = (SELECT min(id) FROM vortex_items)", &[])
        .await
        .unwrap();
    f.catch_up().await;
    let found: i64 = f
        .target
        .query_one(
            "SELECT count(*) FROM task_statuses WHERE name = 'blocked by vendor'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(found, 1);
    f.assert_converged().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transaction_larger_than_the_memory_budget_is_applied_whole() {
    let mut f = Following::start(0.05).await;
    // One source transaction rewriting 50k rows with their ~200-byte bodies: more than the
    // consumer's group budget, so it is flushed in parts into one target transaction.
    let updated = f
        .source
        .execute(
            "UPDATE vortex_items SET title = title || ' (bulk)', body = coalesce(body, '') || 'x'",
            &[],
        )
        .await
        .unwrap();
    assert!(updated >= 50_000);
    f.assert_converged().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn truncate_of_a_source_table_stops_the_consumer() {
    let mut f = Following::start(0.002).await;
    f.source
        .batch_execute("TRUNCATE company_services")
        .await
        .unwrap();
    let err = f.exit_message();
    assert!(
        err.contains("TRUNCATE of source table public.company_services"),
        "{err}"
    );
    assert!(!f.consumer.wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn ddl_dropping_a_column_the_plan_reads_stops_the_consumer() {
    let mut f = Following::start(0.002).await;
    f.source
        .batch_execute("ALTER TABLE vortex_items DROP COLUMN due; UPDATE vortex_items SET status = 'done' WHERE id = (SELECT min(id) FROM vortex_items)")
        .await
        .unwrap();
    let err = f.exit_message();
    assert!(
        err.contains("DDL on source table public.vortex_items: column due is gone"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalidated_slot_stops_the_consumer_with_the_fix() {
    use switchyard::demo::cluster::ClusterOptions;
    let source_cluster = Cluster::start(
        ClusterOptions::default()
            .with_setting("max_slot_wal_keep_size", "1MB")
            .with_setting("max_wal_size", "32MB"),
    )
    .unwrap();
    let target_cluster = cluster();
    let source = seeded_source(&source_cluster, "legacy", 0.002).await;
    target_cluster.create_database("app").await.unwrap();
    crate::support::backfill(
        &source_cluster.url("legacy"),
        &target_cluster.url("app"),
        &[],
    );
    // With the consumer stopped, write and checkpoint past max_slot_wal_keep_size.
    for _ in 0..4 {
        source
            .batch_execute("UPDATE vortex_items SET body = coalesce(body, '') || 'x'; SELECT pg_switch_wal(); CHECKPOINT;")
            .await
            .unwrap();
    }
    let lost: String = source
        .query_one("SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'switchyard_legacy_to_projects'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(lost, "lost", "the test needs an invalidated slot");
    let mut consumer = spawn(&["follow"], &source_cluster, &target_cluster);
    let status = consumer.wait().unwrap();
    let mut err = String::new();
    use std::io::Read;
    consumer
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!status.success());
    // Not only PostgreSQL's own "has been invalidated": the cause and the fix.
    assert!(
        err.contains("max_slot_wal_keep_size exceeded") && err.contains("switchyard abort"),
        "{err}"
    );
    let target = target_cluster.connect("app").await.unwrap();
    let (state, message): (String, Option<String>) = target
        .query_one("SELECT status, message FROM switchyard.migrations", &[])
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(state, "stopped", "{message:?}");
    assert!(message.unwrap().contains("max_slot_wal_keep_size"));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_the_consumer_cleanly_and_follow_resumes() {
    let mut f = Following::start(0.002).await;
    f.source
        .execute(
            "UPDATE vortex_items SET status = 'done' WHERE id = (SELECT min(id) FROM vortex_items)",
            &[],
        )
        .await
        .unwrap();
    f.catch_up().await;
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(f.consumer.id() as i32, libc::SIGTERM) };
    let status = f.consumer.wait().unwrap();
    assert!(status.success(), "a clean stop exits 0: {status}");
    let active: bool = f
        .source
        .query_one("SELECT active FROM pg_replication_slots WHERE slot_name = 'switchyard_legacy_to_projects'", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!active, "the stream was ended, the slot released");
    f.source
        .execute(
            "UPDATE vortex_items SET status = 'todo' WHERE id = (SELECT min(id) FROM vortex_items)",
            &[],
        )
        .await
        .unwrap();
    f.consumer = spawn(&["follow"], &f.source_cluster, &f.target_cluster);
    f.assert_converged().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn resume_then_follow_converges_with_writes_between_the_crash_and_the_resume() {
    let (source_cluster, target_cluster, source, target) = seeded_pair(0.02).await;
    // One row stalls its chunk (see the backfill's resume test): kill with work left to do.
    let stalled: i64 = source
        .query_one(
            "SELECT max(id) / 2 FROM vortex_items WHERE parent_item_id IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    crate::support::stall_tasks(&target, stalled, 50).await;
    let load = WriteLoad::start(
        &source_cluster.url("legacy"),
        WriteLoadOptions {
            target_rate: Some(300.0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut consumer = spawn(
        &["backfill", "--jobs", "2"],
        &source_cluster,
        &target_cluster,
    );
    wait_for(
        &target,
        "SELECT count(*) > 0 AND count(*) FILTER (WHERE status = 'done') >= count(*) - 2 FROM switchyard.chunks",
        &mut consumer,
    )
    .await;
    consumer.kill().unwrap(); // SIGKILL mid-backfill, the load still writing
    consumer.wait().unwrap();
    crate::support::lift_stall(&target).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut f = Following::run(
        (source_cluster, target_cluster, source, target),
        &["backfill", "--resume", "--jobs", "2"],
    );
    f.wait_for("SELECT coalesce((SELECT status = 'following' FROM switchyard.migrations), false)")
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await; // the load goes on while it follows
    load.stop().await.unwrap();
    f.wait_for("SELECT applied_lsn >= consistent_lsn FROM switchyard.migrations")
        .await;
    f.assert_converged().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_consumer_reconnects_after_its_sessions_are_terminated() {
    let mut f = Following::start(0.005).await;
    f.source
        .batch_execute("UPDATE vortex_items SET title = title || ' (before)' WHERE id % 7 = 0")
        .await
        .unwrap();
    f.assert_converged().await;
    f.terminate_walsender().await;
    f.terminate_target_sessions().await;
    f.source
        .batch_execute("UPDATE vortex_items SET title = title || ' (after)' WHERE id % 5 = 0; DELETE FROM vortex_items WHERE id % 11 = 0")
        .await
        .unwrap();
    f.assert_converged().await;
    assert!(
        f.consumer.try_wait().unwrap().is_none(),
        "the consumer reconnected instead of exiting"
    );
}
