use std::process::{Child, Command, Stdio};

use serde_json::Value;
use switchyard::demo::cluster::Cluster;
use switchyard::demo::write_load::{WriteLoad, WriteLoadOptions};
use tokio_postgres::Client;

use crate::follow::seeded_pair;
use crate::support::{backfill, seed_plan, switchyard, wait_for};

/// A seeded pair, backfilled; no consumer runs until [`Backfilled::follow`].
struct Backfilled {
    source_cluster: Cluster,
    target_cluster: Cluster,
    source: Client,
    target: Client,
    consumer: Option<Child>,
}

impl Drop for Backfilled {
    fn drop(&mut self) {
        if let Some(consumer) = self.consumer.as_mut() {
            let _ = consumer.kill();
            let _ = consumer.wait();
        }
    }
}

impl Backfilled {
    async fn start() -> Backfilled {
        let (source_cluster, target_cluster, source, target) = seeded_pair(0.002).await;
        backfill(
            &source_cluster.url("legacy"),
            &target_cluster.url("app"),
            &[],
        );
        Backfilled {
            source_cluster,
            target_cluster,
            source,
            target,
            consumer: None,
        }
    }

    /// Starts `switchyard follow` and waits until it beats.
    async fn follow(&mut self) {
        let plan = seed_plan();
        let mut consumer = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["follow", "--plan", plan.to_str().unwrap(), "--source"])
            .arg(self.source_cluster.url("legacy"))
            .arg("--target")
            .arg(self.target_cluster.url("app"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_for(
            &self.target,
            "SELECT coalesce(heartbeat_at > now() - interval '2 seconds', false) FROM switchyard.migrations",
            &mut consumer,
        )
        .await;
        self.consumer = Some(consumer);
    }

    /// Runs `switchyard verify --json`: the exit code and the report.
    fn verify(&self) -> (Option<i32>, Value) {
        let plan = seed_plan();
        let started = std::time::Instant::now();
        let out = switchyard(&[
            "verify",
            "--plan",
            plan.to_str().unwrap(),
            "--source",
            &self.source_cluster.url("legacy"),
            "--target",
            &self.target_cluster.url("app"),
            "--json",
        ]);
        eprintln!("verify took {:?}", started.elapsed());
        let stdout = String::from_utf8_lossy(&out.stdout);
        let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "verify printed no JSON report ({e}):\nstdout:\n{stdout}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code(), report)
    }
}

/// The report of one output table.
fn table<'r>(report: &'r Value, name: &str) -> &'r Value {
    report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == format!("public.{name}"))
        .unwrap_or_else(|| panic!("no report for {name}: {report:#}"))
}

/// The keys listed under `kind` for `name`.
fn keys(report: &Value, name: &str, kind: &str) -> Vec<String> {
    table(report, name)[kind]["first"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["key"].as_str().unwrap().to_owned())
        .collect()
}

async fn one_text(client: &Client, sql: &str) -> String {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backfilled_target_verifies_clean() {
    let pair = Backfilled::start().await;
    let (code, report) = pair.verify();
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["consumer"], "not_running", "no consumer runs");
    for name in ["projects", "teams", "tasks", "sub_tasks"] {
        let t = table(&report, name);
        assert!(t["source_rows"].as_i64().unwrap() > 0, "{name}: {t:#}");
        assert_eq!(t["source_rows"], t["target_rows"], "{name}: {t:#}");
    }
    assert!(
        report["orphans"].as_array().unwrap().len() == 2,
        "the plan's reports are run: {report:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_deleted_and_extra_rows_are_listed_by_key() {
    let pair = Backfilled::start().await;
    let tampered = one_text(
        &pair.target,
        "UPDATE tasks SET title = 'tampered' WHERE id = (SELECT min(id::text)::uuid FROM tasks) RETURNING id::text",
    )
    .await;
    let deleted = one_text(
        &pair.target,
        "DELETE FROM sub_tasks WHERE id = (SELECT min(id::text)::uuid FROM sub_tasks) RETURNING id::text",
    )
    .await;
    let extra = one_text(
        &pair.target,
        "INSERT INTO projects SELECT gen_random_uuid(), legacy_table, legacy_id + 1000000000, team_id, kind,
                name, stage_id, status, owner_email, budget, start_date, created_at, updated_at, attributes
           FROM projects LIMIT 1 RETURNING id::text",
    )
    .await;
    let (code, report) = pair.verify();
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(
        keys(&report, "tasks", "different"),
        [format!("({tampered})")]
    );
    let columns = &table(&report, "tasks")["different"]["first"][0]["columns"];
    assert_eq!(columns[0]["column"], "title", "{columns:#}");
    assert_eq!(columns[0]["target"], "tampered", "{columns:#}");
    assert_eq!(
        keys(&report, "sub_tasks", "missing"),
        [format!("({deleted})")]
    );
    assert_eq!(keys(&report, "projects", "extra"), [format!("({extra})")]);
    for name in ["teams", "team_members"] {
        let t = table(&report, name);
        assert_eq!(t["missing"]["count"], 0, "{t:#}");
    }
    assert_eq!(
        table(&report, "tasks")["in_flight"]["count"],
        0,
        "a quiet source"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_never_writes_lookup_values() {
    let pair = Backfilled::start().await;
    let item: i64 = pair
        .source
        .query_one(
            "UPDATE vortex_items SET status = 'Awaiting Review'
              WHERE id = (SELECT min(id) FROM vortex_items WHERE parent_item_id IS NULL) RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let count = "SELECT count(*)::text FROM task_statuses";
    let before = one_text(&pair.target, count).await;
    let (code, report) = pair.verify();
    assert_eq!(
        one_text(&pair.target, count).await,
        before,
        "verify wrote a lookup row"
    );
    assert_eq!(
        code,
        Some(1),
        "the consumer has not applied the change: {report:#}"
    );
    assert!(
        report["lookup_misses"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m == "task_statuses has no row for 'awaiting review'"),
        "{report:#}"
    );
    let task = one_text(
        &pair.target,
        &format!("SELECT id::text FROM tasks WHERE legacy_id = {item}"),
    )
    .await;
    assert_eq!(keys(&report, "tasks", "different"), [format!("({task})")]);
    let columns = &table(&report, "tasks")["different"]["first"][0]["columns"];
    assert_eq!(columns[0]["column"], "status_id", "{columns:#}");
    assert_eq!(
        columns[0]["reason"], "task_statuses has no row for 'awaiting review'",
        "{columns:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_in_flight_during_verify_are_not_divergence() {
    let mut pair = Backfilled::start().await;
    pair.follow().await;
    let load = WriteLoad::start(
        &pair.source_cluster.url("legacy"),
        WriteLoadOptions {
            target_rate: Some(300.0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let pair = std::sync::Arc::new(pair);
    let verifying = std::sync::Arc::clone(&pair);
    let (code, report) = tokio::task::spawn_blocking(move || verifying.verify())
        .await
        .unwrap();
    let written = load.stop().await.unwrap();
    assert!(
        written.counts.committed() > 0,
        "the load wrote during verify"
    );
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["consumer"], "caught_up", "{report:#}");
}

/// A consumer killed a moment ago leaves a fresh heartbeat and the status `following`; its
/// slot is released at once. verify must see that, say why, and compare without waiting out
/// its fence timeout (it used to sit silent for 30 s, then print a WARN after its report).
#[tokio::test(flavor = "multi_thread")]
async fn verify_sees_at_once_that_a_killed_consumer_is_gone() {
    let mut pair = Backfilled::start().await;
    pair.follow().await;
    let mut consumer = pair.consumer.take().expect("started");
    consumer.kill().unwrap();
    consumer.wait().unwrap();
    // The walsender lets go of the slot a moment after its connection closes.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while one_text(
        &pair.source,
        "SELECT bool_or(active)::text FROM pg_replication_slots",
    )
    .await
        == "true"
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the slot stays active"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let started = std::time::Instant::now();
    let (code, report) = pair.verify();
    let took = started.elapsed();
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["consumer"], "not_running", "{report:#}");
    let why = report["consumer_detail"].as_str().unwrap_or_default();
    assert!(why.contains("inactive"), "{report:#}");
    assert!(
        took < std::time::Duration::from_secs(20),
        "verify waited {took:?} for a consumer that is gone"
    );
}
