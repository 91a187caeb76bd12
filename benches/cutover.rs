//! The cutover's write-blocked window at three sizes, under the write mix at the rate the
//! migration sustains: does the window stay flat as the data grows (issue 14)?
//!
//! ```text
//!   cargo bench --bench cutover                        (SF 0.1, 1 and 5: 0.1 M, 1 M, 5 M items)
//!   SWITCHYARD_BENCH_SCALES=0.05,0.2 SWITCHYARD_BENCH_RUNS=3 cargo bench --bench cutover
//!   SWITCHYARD_BENCH_RATE_FRACTION=0.9                 (the mix's rate, of the sustainable one)
//! ```
//! Per size, on fresh clusters (stopped afterwards): load the legacy tables, backfill
//! (`--no-follow`), start `switchyard follow`, and measure the highest rate the migration
//! sustains (the unthrottled mix for 10 s: what the source commits, capped by what the consumer
//! applies). Then, under the mix at `SWITCHYARD_BENCH_RATE_FRACTION` of that rate,
//! `SWITCHYARD_BENCH_RUNS` (10) `cutover --dry-run`s a second apart (lock, fence, counts, the
//! swap, roll back), then one real cutover under a fresh load that keeps every acknowledged
//! write. A probe session meanwhile writes one legacy row after another; the worst latency of
//! the probe writes sent during a cutover is the stall the application felt.
//!
//! Printed per size: p50 and p100 over its runs of the window (the report's `window_ms`) and of
//! the worst probe; each step's p50, read by name from the report's `steps` (a step the cutover
//! gains shows up by itself), so one sees which step grows with size; the seconds each phase
//! took; CPU seconds of each cluster, the consumer and this process over the cutovers
//! (`common/cpu.rs`); and whether the real cutover lost an acknowledged write
//! (`cutover/acked.rs`). Then a table across sizes, the flatness ratio p50(largest) /
//! p50(smallest) and the goals: window p50 <= 100 ms and p100 <= 250 ms at SF 1; p50 at SF 5
//! <= 1.2 x p50 at SF 0.1.
//!
//! Memory stays bounded: the probe's samples are dropped after each run, and acknowledgements
//! are kept only for the real cutover's load.
//!
//! How long it takes on 2 shared cores, measured (seconds; each size on its own, 10 dry runs):
//!
//! ```text
//!   size    clusters  load  backfill  calibration  dry runs  cutover  teardown  total
//!   SF 1        4      10      17         10          33         9        9        92
//!   SF 5        4      65      91         10         110        23       13       315
//! ```
//! The cutovers grow with the data too (at SF 5 the rehearsal, the lock and the window take
//! 8 s or more per dry run). The default run (SF 0.1, 1, 5) takes about 7.5 min, well under
//! 20; at 0.05 and 0.2 with 3 dry runs, 35 s and 45 s. The summary extrapolates SF 5's total
//! from the sizes that ran (from 0.05 and 0.2, three runs: 3.3 to 5.8 min; the cores are
//! shared, so single phases vary by 2x between runs). The two SF 5 clusters hold
//! about 12 GB of disk; the last line prints this process's peak RSS (23 MB).

#[path = "cutover/acked.rs"]
mod acked;
mod common;
#[path = "cutover/probe.rs"]
mod probe;
#[path = "cutover/report.rs"]
mod report;
#[path = "cutover/size.rs"]
mod size;

use std::path::Path;

/// The sizes run when `SWITCHYARD_BENCH_SCALES` is not set: 0.1 M, 1 M and 5 M items.
const DEFAULT_SCALES: &str = "0.1,1,5";
/// Dry runs per size, before the real cutover.
const DEFAULT_RUNS: usize = 10;
/// The mix's rate as a fraction of the rate the migration sustains: close to the limit, with
/// room for the consumer to catch up after each window.
const DEFAULT_RATE_FRACTION: f64 = 0.9;

fn main() {
    let env = |name: &str| std::env::var(name).ok().filter(|s| !s.trim().is_empty());
    let mut scales: Vec<f64> = env("SWITCHYARD_BENCH_SCALES")
        .unwrap_or_else(|| DEFAULT_SCALES.to_string())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .unwrap_or_else(|_| panic!("SWITCHYARD_BENCH_SCALES: {s:?} is not a number"))
        })
        .collect();
    // Smallest first: the flatness ratio compares the last size with the first.
    scales.sort_by(f64::total_cmp);
    let runs = env("SWITCHYARD_BENCH_RUNS").map_or(DEFAULT_RUNS, |s| s.parse().unwrap());
    let fraction =
        env("SWITCHYARD_BENCH_RATE_FRACTION").map_or(DEFAULT_RATE_FRACTION, |s| s.parse().unwrap());
    let plan =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("transforms/legacy_to_projects/plan.toml");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut sizes = Vec::new();
    for scale in scales {
        println!("== SF {scale}");
        let size = runtime.block_on(size::measure(&plan, scale, runs, fraction));
        size.print();
        sizes.push(size);
    }
    report::print_summary(&sizes);
    if let Some(kb) = peak_rss_kb() {
        println!("this process's peak RSS: {} MB", kb / 1024);
    }
}

/// `VmHWM` of this process, in KiB: the bench keeps no sample beyond a run, so it stays small.
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
