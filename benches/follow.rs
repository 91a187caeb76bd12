//! The WAL consumer against native logical replication, on the same clusters in the same run.
//!
//! ```text
//!   cargo bench --bench follow                   (SF 0.2, a 20 s backlog)
//!   SWITCHYARD_BENCH_SCALE=1 SWITCHYARD_BENCH_BACKLOG_S=30 cargo bench --bench follow
//! ```
//! 1. Drain: both consumers are stopped while the write mix (60% item updates, 20% item inserts
//!    of which a quarter sub-tasks, 10% project updates, 10% item deletes) builds a backlog on
//!    the source; then each drains it alone: native logical replication (a subscription on an
//!    identical copy of the legacy tables, no transforms) and `switchyard follow` (the seed
//!    migration's transforms). Rate = source transactions / drain time.
//! 2. Lag: `switchyard follow` runs while the mix writes as fast as the source allows; the lag
//!    (bytes and seconds behind, as `switchyard watch` computes them) is sampled every 100 ms.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use switchyard::demo::generator::load_legacy;
use switchyard::demo::write_load::{WriteLoad, WriteLoadOptions};
use switchyard::pg::lsn::Lsn;
use switchyard::source::slot;
use tokio_postgres::Client;

use common::{bench_cluster, switchyard};

mod common;

fn main() {
    let env = |name: &str, default: f64| {
        std::env::var(name)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    let scale = env("SWITCHYARD_BENCH_SCALE", 0.2);
    let backlog = Duration::from_secs_f64(env("SWITCHYARD_BENCH_BACKLOG_S", 20.0));
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(run(scale, backlog));
}

async fn run(scale: f64, backlog: Duration) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let plan = repo.join("transforms/legacy_to_projects/plan.toml");
    let (source_cluster, target_cluster) = (bench_cluster(), bench_cluster());
    source_cluster.create_database("legacy").await.unwrap();
    let source = source_cluster.connect("legacy").await.unwrap();
    load_legacy(&source, scale).await.unwrap();
    let source_url = source_cluster.url("legacy");

    // Native logical replication into an identical copy of the legacy tables.
    target_cluster.create_database("native").await.unwrap();
    let native = target_cluster.connect("native").await.unwrap();
    native
        .batch_execute(switchyard::demo::generator::LEGACY_SCHEMA_SQL)
        .await
        .unwrap();
    source
        .batch_execute(
            "CREATE PUBLICATION native FOR TABLE company_projects, company_services, vortex_items",
        )
        .await
        .unwrap();
    native
        .batch_execute(&format!(
            "CREATE SUBSCRIPTION native CONNECTION '{source_url}' PUBLICATION native"
        ))
        .await
        .unwrap();
    wait_until(
        &native,
        "SELECT count(*) = 0 FROM pg_subscription_rel WHERE srsubstate <> 'r'",
    )
    .await;
    native
        .batch_execute("ALTER SUBSCRIPTION native DISABLE")
        .await
        .unwrap();

    // switchyard: backfill, then stop before following.
    target_cluster.create_database("app").await.unwrap();
    let out = switchyard(
        &plan,
        &["backfill", "--no-follow"],
        &source_url,
        &target_cluster.url("app"),
    )
    .stdout(Stdio::null())
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The backlog.
    let load = WriteLoad::start(&source_url, WriteLoadOptions::default())
        .await
        .unwrap();
    tokio::time::sleep(backlog).await;
    let report = load.stop().await.unwrap();
    let transactions = report.counts.committed();
    let quiet = insert_lsn(&source).await;
    let native_slot = slot::state(&source, "native")
        .await
        .unwrap()
        .expect("the native slot exists");
    let backlog_bytes = slot::bytes(
        native_slot
            .wal_lsn
            .saturating_bytes_since(native_slot.confirmed_flush_lsn.expect("a logical slot")),
    );
    println!(
        "scale {scale}: backlog of {transactions} transactions ({:.0} tx/s for {:.0} s), {:.1} MB of WAL",
        transactions as f64 / backlog.as_secs_f64(),
        backlog.as_secs_f64(),
        backlog_bytes as f64 / 1e6
    );

    let started = Instant::now();
    native
        .batch_execute("ALTER SUBSCRIPTION native ENABLE")
        .await
        .unwrap();
    wait_for_slot(&source, "native", &quiet).await;
    let native_time = started.elapsed();

    let started = Instant::now();
    let mut consumer = switchyard(&plan, &["follow"], &source_url, &target_cluster.url("app"))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_slot(&source, "switchyard_legacy_to_projects", &quiet).await;
    let switchyard_time = started.elapsed();

    let rate = |d: Duration| transactions as f64 / d.as_secs_f64();
    println!(
        "native logical replication drain   {:>6.2}s  {:>8.0} tx/s (no transforms)",
        native_time.as_secs_f64(),
        rate(native_time)
    );
    println!(
        "switchyard follow drain             {:>6.2}s  {:>8.0} tx/s (with transforms)",
        switchyard_time.as_secs_f64(),
        rate(switchyard_time)
    );
    println!(
        "apply rate ratio switchyard / native {:.2}  (goal >= 2.0)",
        native_time.as_secs_f64() / switchyard_time.as_secs_f64()
    );

    // Lag while the mix runs as fast as the source sustains.
    native
        .batch_execute("ALTER SUBSCRIPTION native DISABLE")
        .await
        .unwrap();
    let target = target_cluster.connect("app").await.unwrap();
    let load = WriteLoad::start(&source_url, WriteLoadOptions::default())
        .await
        .unwrap();
    let mut bytes = Vec::new();
    let mut seconds = Vec::new();
    let sampling = Instant::now();
    let plan_loaded = switchyard::plan::Plan::load(&plan).unwrap();
    while sampling.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Some(s) = switchyard::lag::sample(&source, &target, &plan_loaded)
            .await
            .unwrap()
        {
            bytes.push(s.bytes_behind.unwrap_or(0));
            seconds.push(s.seconds_behind.unwrap_or(f64::NAN));
        }
    }
    let report = load.stop().await.unwrap();
    consumer.kill().unwrap();
    let _ = consumer.wait();
    bytes.sort_unstable();
    seconds.sort_by(|a, b| a.total_cmp(b));
    let pct = |v: usize, p: f64| ((v as f64 - 1.0) * p).round() as usize;
    println!(
        "lag under the mix at {:.0} tx/s: bytes p50 {:.1} kB, max {:.1} kB; seconds p50 {:.3}, max {:.3}  (goal <= 0.5 s)",
        report.counts.committed() as f64 / 15.0,
        bytes[pct(bytes.len(), 0.5)] as f64 / 1e3,
        bytes[bytes.len() - 1] as f64 / 1e3,
        seconds[pct(seconds.len(), 0.5)],
        seconds[seconds.len() - 1]
    );
}

async fn insert_lsn(client: &Client) -> String {
    client
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .unwrap()
        .get(0)
}

async fn wait_for_slot(source: &Client, slot: &str, lsn: &str) {
    loop {
        let done = slot::state(source, slot)
            .await
            .unwrap()
            .expect("the slot exists")
            .confirmed_flush_lsn
            .is_some_and(|c| c >= lsn.parse::<Lsn>().expect("an LSN"));
        if done {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn wait_until(client: &Client, condition: &str) {
    loop {
        if client
            .query_one(condition, &[])
            .await
            .unwrap()
            .get::<_, bool>(0)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
