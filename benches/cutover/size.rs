//! One size, on clusters of its own: load, backfill, follow, find the rate the migration
//! sustains, then the dry runs and the real cutover under the write mix at a fraction of it.

use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard::cutover::{cutover, CutoverOptions, CutoverReport};
use switchyard::demo::generator::load_legacy;
use switchyard::demo::write_load::{WriteLoad, WriteLoadOptions};
use switchyard::pg::conninfo::ConnInfo;
use switchyard::plan::Plan;
use tokio_postgres::Client;

use crate::acked::{self, AckedCheck};
use crate::common::cpu::{self, ChildUsage, ClusterCpu};
use crate::common::{bench_cluster, switchyard};
use crate::probe::Probe;

/// How long the unthrottled mix runs to find the rate the migration sustains.
const CALIBRATION: Duration = Duration::from_secs(10);
/// The lag the consumer must be under before the measured mix starts, and that a cutover
/// waits for before it asks for the lock (`--max-lag`).
const MAX_LAG_BYTES: i64 = 1 << 20;
/// The mix runs this long before the first cutover, so that it is in its stride.
const WARM_UP: Duration = Duration::from_secs(3);
/// The pause after each cutover: the probe's last write comes back, the lag settles.
const BETWEEN_RUNS: Duration = Duration::from_secs(1);
/// How long the consumer may take to stop by itself after the real cutover.
const CONSUMER_STOP: Duration = Duration::from_secs(60);

/// One cutover: its report's window and steps, and what the probe felt.
pub struct Run {
    pub dry_run: bool,
    pub window_ms: f64,
    pub lock_attempts: u32,
    pub worst_probe_ms: f64,
    pub probe_writes: usize,
    /// `(step, ms)` as the report names them (its `steps`, read through its JSON), in order.
    pub steps: Vec<(String, f64)>,
}

/// CPU seconds from the first dry run to the consumer's exit after the real cutover.
pub struct MeasuredCpu {
    pub source: f64,
    pub target: f64,
    pub consumer: f64,
    /// This process: the write mix, the probe and the cutover itself.
    pub bench: f64,
}

/// Everything one size produced.
pub struct Size {
    pub scale: f64,
    pub items: u64,
    /// Seconds per phase, in order.
    pub phases: Vec<(&'static str, f64)>,
    pub source_tx_per_s: f64,
    pub consumer_changes_per_s: f64,
    pub rate: f64,
    pub runs: Vec<Run>,
    pub backfill: ChildUsage,
    pub cpu: MeasuredCpu,
    pub mix_committed: u64,
    pub mix_errors: u64,
    /// None when the real cutover failed (the source is then not final).
    pub acked: Option<AckedCheck>,
    /// Cutovers that returned an error (an overrun of `max_blocked`, a lock not granted):
    /// left out of the percentiles.
    pub failures: Vec<String>,
}

/// Times the phases of one size.
struct Phases {
    started: Instant,
    done: Vec<(&'static str, f64)>,
}

impl Phases {
    fn new() -> Phases {
        Phases {
            started: Instant::now(),
            done: Vec::new(),
        }
    }

    fn end(&mut self, phase: &'static str) {
        let seconds = self.started.elapsed().as_secs_f64();
        println!("  [{phase}: {seconds:.1} s]");
        self.done.push((phase, seconds));
        self.started = Instant::now();
    }
}

pub async fn measure(plan_path: &Path, scale: f64, runs: usize, fraction: f64) -> Size {
    let plan = Arc::new(Plan::load(plan_path).unwrap());
    let mut phases = Phases::new();
    let (source_cluster, target_cluster) = (bench_cluster(), bench_cluster());
    source_cluster.create_database("legacy").await.unwrap();
    target_cluster.create_database("app").await.unwrap();
    let (source_url, target_url) = (source_cluster.url("legacy"), target_cluster.url("app"));
    let source = source_cluster.connect("legacy").await.unwrap();
    phases.end("clusters");

    let counts = load_legacy(&source, scale).await.unwrap();
    phases.end("load");

    let backfill = switchyard(
        plan_path,
        &["backfill", "--no-follow"],
        &source_url,
        &target_url,
    )
    .stdout(Stdio::null())
    .spawn()
    .unwrap();
    let (status, backfill) = tokio::task::spawn_blocking(|| cpu::wait_sampling_peak_rss(backfill))
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "backfill failed: {status}");
    phases.end("backfill");

    let consumer = switchyard(plan_path, &["follow"], &source_url, &target_url)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let target = target_cluster.connect("app").await.unwrap();
    // The highest rate the migration sustains: what the source commits unthrottled, capped by
    // what the consumer applies (a cutover waits for the lag to converge, so a faster load
    // would only measure the wait).
    let before = lag(&source, &target, &plan).await.changes_applied;
    let calibrating = Instant::now();
    let unthrottled = WriteLoad::start(&source_url, WriteLoadOptions::default())
        .await
        .unwrap();
    tokio::time::sleep(CALIBRATION).await;
    let committed = unthrottled.stop().await.unwrap().counts.committed() as f64;
    let seconds = calibrating.elapsed().as_secs_f64();
    let applied = lag(&source, &target, &plan).await.changes_applied - before;
    let (source_tx_per_s, consumer_changes_per_s) = (committed / seconds, applied as f64 / seconds);
    let rate = fraction * source_tx_per_s.min(consumer_changes_per_s);
    println!(
        "  unthrottled mix: source {source_tx_per_s:.0} tx/s, consumer {consumer_changes_per_s:.0} changes/s; the mix runs at {rate:.0} tx/s"
    );
    phases.end("calibration");
    while lag(&source, &target, &plan).await.bytes_behind.unwrap_or(0) > MAX_LAG_BYTES {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    phases.end("catch-up");

    let mix = |record_acks| WriteLoadOptions {
        target_rate: Some(rate),
        record_acks,
        ..WriteLoadOptions::default()
    };
    let (source_info, target_info) = (
        ConnInfo::parse(&source_url).unwrap(),
        ConnInfo::parse(&target_url).unwrap(),
    );
    let mut options = CutoverOptions {
        max_blocked: Duration::from_secs(5),
        max_lag: MAX_LAG_BYTES,
        catch_up_timeout: Duration::from_secs(120),
        lock_timeout: Duration::from_millis(500),
        lock_attempts: 10,
        dry_run: true,
        verify: false,
    };
    let clusters_cpu = (
        ClusterCpu::of(&source_cluster).unwrap(),
        ClusterCpu::of(&target_cluster).unwrap(),
    );
    let cpu_before = [
        clusters_cpu.0.seconds().unwrap(),
        clusters_cpu.1.seconds().unwrap(),
        cpu::process_seconds(consumer.id() as i32).unwrap(),
        cpu::process_seconds(std::process::id() as i32).unwrap(),
    ];
    let probe = Probe::start(
        source_cluster.connect("legacy").await.unwrap(),
        counts.company_services,
    );

    // The dry runs: one load throughout, acknowledgements not kept.
    let load = WriteLoad::start(&source_url, mix(false)).await.unwrap();
    tokio::time::sleep(WARM_UP).await;
    let (mut measured, mut failures) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let label = format!("dry run {:>2}", i + 1);
        match one_cutover(&plan, &source_info, &target_info, &options, &probe).await {
            Ok(run) => {
                print_run(&label, &run);
                measured.push(run);
            }
            Err(e) => {
                println!("  {label}: FAILED: {e}");
                failures.push(e);
            }
        }
    }
    let dry = load.stop().await.unwrap();
    phases.end("dry runs");

    // The real one, under a load of its own that keeps every acknowledgement.
    let load = WriteLoad::start(&source_url, mix(true)).await.unwrap();
    tokio::time::sleep(WARM_UP).await;
    options.dry_run = false;
    let committed = match one_cutover(&plan, &source_info, &target_info, &options, &probe).await {
        Ok(run) => {
            print_run("cutover   ", &run);
            measured.push(run);
            true
        }
        Err(e) => {
            println!("  cutover   : FAILED: {e}");
            failures.push(e);
            false
        }
    };
    probe.stop().await;
    let real = load.stop().await.unwrap();
    let consumer = stopped(consumer, committed).await;
    let cpu = MeasuredCpu {
        source: clusters_cpu.0.seconds().unwrap() - cpu_before[0],
        target: clusters_cpu.1.seconds().unwrap() - cpu_before[1],
        consumer: consumer.cpu_seconds - cpu_before[2],
        bench: cpu::process_seconds(std::process::id() as i32).unwrap() - cpu_before[3],
    };
    let acked = match committed {
        true => Some(acked::check(&source, &target, &real.acked).await),
        false => None,
    };
    if let Some(acked) = &acked {
        println!("  {}", acked.line());
    }
    phases.end("cutover");

    drop((source, target));
    drop((source_cluster, target_cluster));
    phases.end("teardown");
    Size {
        scale,
        items: counts.vortex_items,
        phases: phases.done,
        source_tx_per_s,
        consumer_changes_per_s,
        rate,
        runs: measured,
        backfill,
        cpu,
        mix_committed: dry.counts.committed() + real.counts.committed(),
        mix_errors: dry.counts.errors + real.counts.errors,
        acked,
        failures,
    }
}

async fn lag(source: &Client, target: &Client, plan: &Plan) -> switchyard::lag::Sample {
    switchyard::lag::sample(source, target, plan)
        .await
        .unwrap()
        .expect("the migration's state is in the target")
}

/// One cutover call and the worst probe write sent while it ran; the error, with its chain,
/// when the cutover failed.
async fn one_cutover(
    plan: &Arc<Plan>,
    source: &ConnInfo,
    target: &ConnInfo,
    options: &CutoverOptions,
    probe: &Probe,
) -> Result<Run, String> {
    let started = Instant::now();
    let report = cutover(plan, source, target, options, &|_: String| {}).await;
    let ended = Instant::now();
    tokio::time::sleep(BETWEEN_RUNS).await;
    let (worst, probe_writes) = probe.worst_between(started, ended);
    let report = report.map_err(|e| format!("{:#}", anyhow::Error::new(e)))?;
    Ok(Run {
        dry_run: options.dry_run,
        window_ms: report.window_ms,
        lock_attempts: report.lock_attempts,
        worst_probe_ms: worst.as_secs_f64() * 1e3,
        probe_writes,
        steps: steps_by_name(&report),
    })
}

/// The report's steps as it serializes them, so that a step added to the cutover shows up
/// here without a change to the bench.
fn steps_by_name(report: &CutoverReport) -> Vec<(String, f64)> {
    let json = serde_json::to_value(report).unwrap();
    json["steps"]
        .as_array()
        .expect("the report has steps")
        .iter()
        .map(|step| {
            let name = match &step["step"] {
                serde_json::Value::String(name) => name.clone(),
                other => other.to_string(),
            };
            (name, step["ms"].as_f64().unwrap_or(f64::NAN))
        })
        .collect()
}

fn print_run(label: &str, run: &Run) {
    let steps: Vec<String> = run
        .steps
        .iter()
        .map(|(name, ms)| format!("{name} {ms:.1}"))
        .collect();
    println!(
        "  {label}: window {:>7.1} ms, attempts {}, worst probe {:>7.1} ms ({} writes)  [{}]",
        run.window_ms,
        run.lock_attempts,
        run.worst_probe_ms,
        run.probe_writes,
        steps.join(", ")
    );
}

/// The consumer, reaped with its CPU time. After a committed cutover it sees the cutover and
/// exits by itself; one that does not within [`CONSUMER_STOP`], or any after a failed cutover,
/// gets SIGTERM.
async fn stopped(consumer: Child, committed: bool) -> ChildUsage {
    let pid = consumer.id() as libc::pid_t;
    let mut reaped = tokio::task::spawn_blocking(move || cpu::wait(consumer));
    let wait = if committed {
        CONSUMER_STOP
    } else {
        Duration::ZERO
    };
    let (status, usage) = match tokio::time::timeout(wait, &mut reaped).await {
        Ok(done) => done.unwrap().unwrap(),
        Err(_) => {
            if committed {
                println!("  the consumer did not stop by itself: SIGTERM");
            }
            // SAFETY: a plain syscall; `pid` is our child, not yet reaped.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            reaped.await.unwrap().unwrap()
        }
    };
    if committed && !status.success() {
        println!("  the consumer exited with {status}");
    }
    usage
}
