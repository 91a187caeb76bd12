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
//! How long it takes on 2 cores (measured with `SWITCHYARD_BENCH_SCALES=0.05,0.2`, 3 dry runs):
//! per size, starting the clusters 6 s, the 10 s calibration, about 3.5 s per cutover, 8 s for
//! the real one and its checks, 5 s to remove the clusters; the load and the backfill grow with
//! the data, 5 s at SF 0.05 and 11 s at SF 0.2, so about 43 s per SF. With 10 dry runs that
//! makes about 1.2 min for SF 0.1, 1.8 min for SF 1 and 5 min for SF 5 (a little more: the
//! row counts under the lock grow too): about 8 min for the default run, well under 20. The
//! summary prints the same estimate for SF 5 from whatever sizes ran.

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
}
