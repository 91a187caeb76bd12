use std::time::{Duration, Instant};

use switchyard::demo::write_load::{WriteKind, WriteLoad, WriteLoadOptions};
use tokio_postgres::Client;

use crate::follow::Following;
use crate::support::{
    assert_target_matches_expected, cluster, compute_expected, seed_plan, seeded_source,
};

/// Runs `switchyard <args> --plan <seed> --source <source> --target <target>` to completion.
async fn switchyard(args: &[&str], source: &str, target: &str) -> (bool, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .args(["--plan", seed_plan().to_str().unwrap()])
        .args(["--source", source, "--target", target])
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

impl Following {
    async fn cutover(&self, extra: &[&str]) -> (bool, String) {
        let mut args = vec!["cutover"];
        args.extend_from_slice(extra);
        switchyard(
            &args,
            &self.source_cluster.url("legacy"),
            &self.target_cluster.url("app"),
        )
        .await
    }

    /// Nothing was cut over: the migration is still following, its slot is there, the
    /// consumer runs and changes still flow.
    async fn assert_still_following(&mut self) {
        assert_eq!(self.status().await, "following");
        assert!(slot_exists(&self.source).await);
        assert!(
            self.consumer.try_wait().unwrap().is_none(),
            "the consumer still runs"
        );
        self.assert_converged().await;
    }

    async fn status(&self) -> String {
        self.target
            .query_one("SELECT status FROM switchyard.migrations", &[])
            .await
            .unwrap()
            .get(0)
    }
}

async fn slot_exists(source: &Client) -> bool {
    source
        .query_one(
            "SELECT EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = 'switchyard_legacy_to_projects')",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// What `name` is now: `r` a table, `v` a view.
async fn relkind(db: &Client, name: &str) -> String {
    db.query_one(
        "SELECT relkind::text FROM pg_class WHERE oid = $1::text::regclass",
        &[&name],
    )
    .await
    .unwrap()
    .get(0)
}

/// One write on a legacy table, on a session that waits at most `lock_timeout` for a lock.
async fn write_once(source: &Client) -> Result<(), tokio_postgres::Error> {
    source
        .batch_execute(
            "SET lock_timeout = '2s'; UPDATE vortex_items SET title = title || '.' WHERE id = 1; RESET lock_timeout",
        )
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn cutover_under_a_write_load_loses_no_acknowledged_write_and_rolls_back() {
    let f = Following::start(0.02).await;
    let load = WriteLoad::start(
        &f.source_cluster.url("legacy"),
        WriteLoadOptions {
            target_rate: Some(300.0),
            record_acks: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (ok, out) = f.cutover(&["--max-blocked", "5s"]).await;
    assert!(ok, "{out}");
    assert!(out.contains("cutover committed"), "{out}");
    assert!(out.contains("Writes blocked for"), "{out}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let report = load.stop().await.unwrap();
    assert!(
        report.counts.committed() > 100,
        "the load ran: {:?}",
        report.counts
    );
    assert_eq!(f.status().await, "cut_over");

    // The legacy tables refuse writes now: nothing can land on the old side.
    let refused = write_once(&f.source).await.unwrap_err();
    assert!(
        refused.to_string().contains("read-only") || format!("{refused:?}").contains("read-only"),
        "{refused:?}"
    );
    // The consumer stopped by itself and the slot is gone.
    let deadline = Instant::now() + Duration::from_secs(30);
    while slot_exists(&f.source).await {
        assert!(Instant::now() < deadline, "the slot was not dropped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Every acknowledged write is in the target: it equals the transformed (frozen) source.
    compute_expected(&f.source).await;
    assert_target_matches_expected(&f.source, &f.target).await;
    let ids: Vec<i64> = report
        .acked
        .iter()
        .filter(|w| matches!(w.kind, WriteKind::InsertItem | WriteKind::InsertSubTask))
        .map(|w| w.id)
        .collect();
    assert!(!ids.is_empty());
    let found: i64 = f
        .target
        .query_one(
            "SELECT count(DISTINCT i) FROM unnest($1::int8[]) i
              WHERE EXISTS (SELECT FROM tasks t WHERE t.legacy_id = i)
                 OR EXISTS (SELECT FROM sub_tasks s WHERE s.legacy_id = i)",
            &[&ids],
        )
        .await
        .unwrap()
        .get(0);
    let distinct: i64 = f
        .target
        .query_one(
            "SELECT count(DISTINCT i) FROM unnest($1::int8[]) i",
            &[&ids],
        )
        .await
        .unwrap()
        .get(0);
    let deleted_since: i64 = f
        .source
        .query_one(
            "SELECT count(DISTINCT i) FROM unnest($1::int8[]) i
              WHERE NOT EXISTS (SELECT FROM vortex_items v WHERE v.id = i)",
            &[&ids],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        found + deleted_since,
        distinct,
        "acknowledged inserts missing from the target"
    );

    // Rollback: the legacy tables are writable again.
    let (ok, out) = switchyard(
        &["rollback"],
        &f.source_cluster.url("legacy"),
        &f.target_cluster.url("app"),
    )
    .await;
    assert!(ok, "{out}");
    write_once(&f.source).await.unwrap();
    assert_eq!(f.status().await, "rolled_back");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tiny_max_blocked_aborts_releases_the_locks_and_keeps_the_consumer() {
    let mut f = Following::start(0.01).await;
    let (ok, out) = f.cutover(&["--max-blocked", "1ms"]).await;
    assert!(!ok, "{out}");
    assert!(out.contains("would exceed --max-blocked"), "{out}");
    assert!(out.contains("rolled back"), "{out}");
    // A write goes through right after, without waiting.
    let started = Instant::now();
    write_once(&f.source).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(1));
    f.assert_still_following().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_transaction_holding_a_conflicting_lock_makes_the_cutover_retry_then_fail() {
    let mut f = Following::start(0.01).await;
    let holder = f.source_cluster.connect("legacy").await.unwrap();
    holder
        .batch_execute("BEGIN; UPDATE vortex_items SET title = title WHERE id = 2")
        .await
        .unwrap();
    // Another writer measures how long its writes wait while the cutover tries.
    let writer = f.source_cluster.connect("legacy").await.unwrap();
    let writes = tokio::spawn(async move {
        let mut worst = Duration::ZERO;
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            let started = Instant::now();
            writer
                .batch_execute("UPDATE vortex_items SET title = title WHERE id = 3")
                .await
                .unwrap();
            worst = worst.max(started.elapsed());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        worst
    });
    let (ok, out) = f
        .cutover(&["--lock-timeout", "200ms", "--lock-attempts", "4"])
        .await;
    let worst = writes.await.unwrap();
    assert!(!ok, "{out}");
    assert!(out.contains("not granted in 4 attempts"), "{out}");
    assert!(
        out.contains("Sessions hold conflicting locks: pid"),
        "{out}"
    );
    assert!(
        out.contains("lock attempt 1"),
        "retries are reported: {out}"
    );
    assert!(
        worst < Duration::from_millis(1000),
        "writes were blocked for {worst:?}"
    );
    holder.batch_execute("COMMIT").await.unwrap();
    assert_eq!(f.status().await, "following");
    f.assert_converged().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_measures_the_window_and_changes_nothing() {
    let mut f = Following::start(0.01).await;
    let (ok, out) = f.cutover(&["--dry-run", "--json"]).await;
    assert!(ok, "{out}");
    let report: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["committed"], false);
    assert!(report["window_ms"].as_f64().unwrap() > 0.0);
    let counts = report["counts"].as_array().unwrap();
    assert_eq!(counts.len(), 3, "projects, tasks and sub_tasks are counted");
    assert!(counts.iter().all(|c| c["expected"] == c["actual"]));
    assert_eq!(f.status().await, "following");
    assert!(slot_exists(&f.source).await);
    let triggers: i64 = f
        .source
        .query_one(
            "SELECT count(*) FROM pg_trigger WHERE tgname = 'switchyard_read_only'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(triggers, 0);
    write_once(&f.source).await.unwrap();
    f.assert_still_following().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn same_database_cutover_swaps_in_views_and_rollback_swaps_back() {
    let c = cluster();
    let db = seeded_source(&c, "legacy", 0.01).await;
    let url = c.url("legacy");
    let (ok, out) = switchyard(&["backfill", "--no-follow"], &url, &url).await;
    assert!(ok, "{out}");
    db.batch_execute("UPDATE company_projects SET name = 'renamed before cutover' WHERE id = 1")
        .await
        .unwrap();
    // No consumer running: the cutover runs one itself.
    let (ok, out) = switchyard(&["cutover"], &url, &url).await;
    assert!(ok, "{out}");
    assert!(out.contains("starting one in this process"), "{out}");
    let kind = relkind(&db, "company_projects").await;
    assert_eq!(kind, "v", "the legacy name is now a compatibility view");
    let name: String = db
        .query_one("SELECT name FROM company_projects WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        name, "renamed before cutover",
        "the last write went through the consumer"
    );

    let (ok, out) = switchyard(&["rollback"], &url, &url).await;
    assert!(ok, "{out}");
    let kind = relkind(&db, "company_projects").await;
    assert_eq!(kind, "r", "the legacy table is back");
    db.batch_execute("UPDATE company_projects SET name = 'writable again' WHERE id = 1")
        .await
        .unwrap();
}
