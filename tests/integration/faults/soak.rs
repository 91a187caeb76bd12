//! `follow` under the write mix for a while: the consumer's resident memory after a warm-up
//! and at the end. `SWITCHYARD_SOAK_SECS` sets the length, `SWITCHYARD_SOAK_RATE` the write
//! rate (transactions per second).

use std::time::Duration;

use switchyard::demo::write_load::{WriteLoad, WriteLoadOptions};

use super::{env_or, following, migration_i64, Logs};

/// VmRSS of `pid` in KiB, from /proc.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

async fn soak(default_secs: u64, warm_up: Duration) {
    let secs = env_or("SWITCHYARD_SOAK_SECS", default_secs);
    let rate = env_or("SWITCHYARD_SOAK_RATE", 500.0);
    let mut logs = Logs::default();
    let mut f = following(0.02, &mut logs).await;
    let applied_before_load = migration_i64(&f.target, "changes_applied").await;
    let load = WriteLoad::start(
        &f.source_cluster.url("legacy"),
        WriteLoadOptions {
            target_rate: Some(rate),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    tokio::time::sleep(warm_up).await;
    let pid = f.consumer.id();
    let (rss_start, applied_start) = (
        rss_kib(pid),
        migration_i64(&f.target, "changes_applied").await,
    );
    let mut rss_peak = rss_start;
    // Ten samples over the run show a plateau from steady growth.
    let mut samples = Vec::new();
    let every = (secs / 10).max(1);
    for second in 1..=secs {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(f.consumer.try_wait().unwrap().is_none(), "{}", logs.last());
        let rss = rss_kib(pid);
        rss_peak = rss_peak.max(rss);
        if second % every == 0 {
            samples.push(rss);
        }
    }
    let rss_end = rss_kib(pid);
    let applied = migration_i64(&f.target, "changes_applied").await - applied_start;
    let lag: f64 = f
        .target
        .query_one(
            "SELECT coalesce(extract(epoch FROM now() - applied_commit_at), 0)::float8 FROM switchyard.migrations",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let report = load.stop().await.unwrap();
    f.catch_up().await;
    // Every write that changed a row is one change, applied at most once. A few may not count:
    // an update that leaves a TOASTed body unchanged is skipped when its row is deleted before
    // it is applied (the delete follows in the stream).
    let rows_written = report.counts.committed() - report.counts.misses;
    let applied_in_all = migration_i64(&f.target, "changes_applied").await - applied_before_load;
    println!(
        "soak {secs} s at {rate}/s: consumer RSS {rss_start} KiB after warm-up, {rss_end} KiB at the end (peak {rss_peak} KiB); {applied} changes applied in the soak ({:.0}/s), lag at the end {lag:.1} s; with the warm-up {applied_in_all} changes applied for {rows_written} writes that changed a row; RSS every {every} s (KiB): {samples:?}",
        applied as f64 / secs as f64,
    );
    let rows_written = rows_written as i64;
    assert!(
        applied_in_all <= rows_written && rows_written - applied_in_all <= rows_written / 1000 + 1,
        "{applied_in_all} changes applied for {rows_written} writes that changed a row"
    );
    assert!(applied > 0, "the consumer applied nothing");
    // Generous: allocator noise and a few larger groups, not growth with the changes applied.
    assert!(
        rss_end <= rss_start + rss_start / 2 + 32 * 1024,
        "the consumer's memory grew from {rss_start} KiB to {rss_end} KiB"
    );
    f.assert_converged().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn follow_under_the_write_mix_keeps_its_memory_flat() {
    soak(20, Duration::from_secs(5)).await;
}

/// The full soak: ten minutes.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "ten minutes; run with --ignored"]
async fn follow_under_the_write_mix_for_ten_minutes_keeps_its_memory_flat() {
    soak(600, Duration::from_secs(30)).await;
}
