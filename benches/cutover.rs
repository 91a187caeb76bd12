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
//! How long it takes on 2 shared cores: the default run, measured (seconds, 10 dry runs):
//!
//! ```text
//!   size    clusters  load  backfill  calibration  dry runs  cutover  teardown  total
//!   SF 0.1      6       2       4         10          27         8        5        62
//!   SF 1        4      16      18         10          34        31        8       121
//!   SF 5        7      73     122         10         284        37       15       548
//! ```
//! 12 min in all, under 20. The cores are shared, so phases vary by up to 2x between runs (SF 5
//! alone, earlier: load 65, backfill 91, dry runs 110, 315 s in all). The cutovers grow with the
//! data too: at SF 5 the rehearsal, the lock wait and the window take 8 to 40 s per dry run,
//! and two of ten overran `--max-blocked` (5 s) in the row counts; a failed run is printed and
//! left out of the window's percentiles. The summary prints a lower bound for SF 5 from the
//! largest size that ran (load and backfill scaled with the data; from SF 0.2: 3.2 to 5.1
//! min). The two SF 5 clusters hold about 12 GB of disk; the last line prints this process's
//! peak RSS: 23 MB over 0.05 and 0.2, 114 MB over the default run, for the legacy loader keeps
//! 16 bytes per top-level item while it loads (`demo::generator`, 4 M of them at SF 5); what the
//! bench keeps itself lasts one run.

#[path = "cutover/acked.rs"]
mod acked;
mod common;
#[path = "cutover/migration.rs"]
mod migration;
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
    if let Some(kb) = common::cpu::vm_hwm_kb(std::process::id() as libc::pid_t) {
        println!("this process's peak RSS: {} MB", kb / 1024);
    }
}
