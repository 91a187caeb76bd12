//! The cutover's write-blocked window, under the write mix at the rate the source sustains.
//!
//! ```text
//!   cargo bench --bench cutover                                  (SF 1, ten dry runs)
//!   SWITCHYARD_BENCH_SCALE=0.2 SWITCHYARD_BENCH_RUNS=5 cargo bench --bench cutover
//! ```
//! Backfill at the scale factor, start `switchyard follow`, run the write mix at the highest
//! rate the migration sustains (measured first: what the source commits unthrottled, capped by
//! what the consumer applies), and issue `cutover --dry-run` (lock, fence, counts, the swap, roll back) ten times, a second apart. A probe
//! session meanwhile updates one legacy row after another and records each write's latency: the
//! worst latency of the probes sent during a dry run is what the application felt.
//! `SWITCHYARD_BENCH_RATE_FRACTION` (default 0.9) sets the mix's rate as a fraction of that
//! sustainable rate. Reports the window's p50 and p100 (goal: p50 <= 200 ms, p100 <= 1 s) and the probes'.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchyard::cutover::{cutover, CutoverOptions};
use switchyard::demo::generator::load_legacy;
use switchyard::demo::write_load::{WriteLoad, WriteLoadOptions};
use switchyard::pg::conninfo::ConnInfo;
use switchyard::plan::Plan;

use common::{bench_cluster, switchyard};

mod common;

fn main() {
    let env = |name: &str, default: f64| {
        std::env::var(name)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    let scale = env("SWITCHYARD_BENCH_SCALE", 1.0);
    let runs = env("SWITCHYARD_BENCH_RUNS", 10.0) as usize;
    let fraction = env("SWITCHYARD_BENCH_RATE_FRACTION", 0.9);
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(run(scale, runs, fraction));
}

async fn run(scale: f64, runs: usize, fraction: f64) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let plan_path = repo.join("transforms/legacy_to_projects/plan.toml");
    let plan = Arc::new(Plan::load(&plan_path).unwrap());
    let (source_cluster, target_cluster) = (bench_cluster(), bench_cluster());
    source_cluster.create_database("legacy").await.unwrap();
    target_cluster.create_database("app").await.unwrap();
    let source = source_cluster.connect("legacy").await.unwrap();
    let loaded = Instant::now();
    let counts = load_legacy(&source, scale).await.unwrap();
    let (source_url, target_url) = (source_cluster.url("legacy"), target_cluster.url("app"));
    println!(
        "scale {scale}: {} items loaded in {:.0} s",
        counts.vortex_items,
        loaded.elapsed().as_secs_f64()
    );
    let backfilled = Instant::now();
    let status = switchyard(
        &plan_path,
        &["backfill", "--no-follow"],
        &source_url,
        &target_url,
    )
    .stdout(Stdio::null())
    .status()
    .unwrap();
    assert!(status.success());
    println!("backfilled in {:.0} s", backfilled.elapsed().as_secs_f64());
    let mut consumer = switchyard(&plan_path, &["follow"], &source_url, &target_url)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();

    // The highest rate the migration sustains: what the source commits unthrottled, capped by
    // what the consumer applies (a cutover waits for the lag to converge, so a faster load
    // would only measure the wait).
    let target = target_cluster.connect("app").await.unwrap();
    let applied = || async {
        switchyard::lag::sample(&source, &target, &plan)
            .await
            .unwrap()
            .unwrap()
    };
    let before = applied().await.changes_applied;
    let calibrating = Instant::now();
    let probe_load = WriteLoad::start(&source_url, WriteLoadOptions::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let committed = probe_load.stop().await.unwrap().counts.committed() as f64;
    let seconds = calibrating.elapsed().as_secs_f64();
    let consumer_rate = (applied().await.changes_applied - before) as f64 / seconds;
    let rate = fraction * (committed / seconds).min(consumer_rate);
    println!(
        "unthrottled mix: source {:.0} tx/s, consumer {consumer_rate:.0} changes/s; running the mix at {rate:.0} tx/s",
        committed / seconds
    );
    while applied().await.bytes_behind.unwrap_or(0) > 1 << 20 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let load = WriteLoad::start(
        &source_url,
        WriteLoadOptions {
            target_rate: Some(rate),
            ..WriteLoadOptions::default()
        },
    )
    .await
    .unwrap();
    // The probe: one small write after another, each timed.
    let probes: Arc<Mutex<Vec<(Instant, Duration)>>> = Arc::default();
    let probe = source_cluster.connect("legacy").await.unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probing = {
        let (probes, stop) = (Arc::clone(&probes), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut id = 1i64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let started = Instant::now();
                probe
                    .execute(
                        "UPDATE company_services SET status = status WHERE id = $1",
                        &[&id],
                    )
                    .await
                    .unwrap();
                probes.lock().unwrap().push((started, started.elapsed()));
                id = id % 1000 + 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let mixed = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;

    let (source_info, target_info) = (
        ConnInfo::parse(&source_url).unwrap(),
        ConnInfo::parse(&target_url).unwrap(),
    );
    let options = CutoverOptions {
        max_blocked: Duration::from_secs(5),
        max_lag: 1 << 20,
        catch_up_timeout: Duration::from_secs(120),
        lock_timeout: Duration::from_millis(500),
        lock_attempts: 10,
        dry_run: true,
        verify: false,
    };
    let mut windows = Vec::new();
    let mut stalls = Vec::new();
    let quiet = |_: String| {};
    for i in 0..runs {
        let started = Instant::now();
        let report = cutover(&plan, &source_info, &target_info, &options, &quiet)
            .await
            .unwrap();
        let ended = Instant::now();
        let worst = probes
            .lock()
            .unwrap()
            .iter()
            .filter(|(at, _)| *at >= started && *at <= ended)
            .map(|(_, took)| *took)
            .max()
            .unwrap_or_default();
        let steps: Vec<String> = report
            .steps
            .iter()
            .filter(|s| {
                !matches!(
                    s.step,
                    switchyard::cutover::window::Step::WaitForLag
                        | switchyard::cutover::window::Step::Rehearsal
                )
            })
            .map(|s| format!("{:?} {:.1}", s.step, s.ms))
            .collect();
        println!(
            "dry run {:>2}: window {:>7.1} ms, attempts {}, worst probe write {:>7.1} ms  [{}]",
            i + 1,
            report.window_ms,
            report.lock_attempts,
            worst.as_secs_f64() * 1e3,
            steps.join(", ")
        );
        windows.push(report.window_ms);
        stalls.push(worst.as_secs_f64() * 1e3);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    probing.await.unwrap();
    let report = load.stop().await.unwrap();
    let elapsed = probes.lock().unwrap().len();
    let _ = consumer.kill();
    let _ = consumer.wait();
    let pct = |v: &mut Vec<f64>, p: f64| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[((v.len() as f64 - 1.0) * p).round() as usize]
    };
    println!(
        "write mix: {} transactions committed ({:.0} tx/s), {} errors; {elapsed} probe writes",
        report.counts.committed(),
        report.counts.committed() as f64 / mixed.elapsed().as_secs_f64(),
        report.counts.errors
    );
    println!(
        "write-blocked window over {runs} dry runs: p50 {:.1} ms, p100 {:.1} ms  (goal p50 <= 200 ms, p100 <= 1000 ms)",
        pct(&mut windows.clone(), 0.5),
        pct(&mut windows, 1.0)
    );
    println!(
        "worst probe write latency per dry run: p50 {:.1} ms, p100 {:.1} ms",
        pct(&mut stalls.clone(), 0.5),
        pct(&mut stalls, 1.0)
    );
}
