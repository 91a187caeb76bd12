//! One size: a migration of its own ready for the cutover (`migration.rs`), then the dry runs
//! and the real cutover under the write mix at a fraction of the rate it sustains.

use std::path::Path;
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard::cutover::{cutover, CutoverOptions, CutoverReport};
use switchyard::demo::write_load::{WriteLoad, WriteLoadOptions};
use switchyard::pg::conninfo::ConnInfo;
use switchyard::plan::Plan;

use crate::acked::{self, AckedCheck};
use crate::common::cpu::{self, ChildUsage, ClusterCpu};
use crate::migration::{Migration, Phases, MAX_LAG_BYTES};
use crate::probe::Probe;

/// The mix runs this long before the first cutover, so that it is in its stride.
const WARM_UP: Duration = Duration::from_secs(3);
/// The pause after each cutover: the probe's last write comes back, the lag settles.
const BETWEEN_RUNS: Duration = Duration::from_secs(1);
/// The cutover's options, as an operator would set them: a window over `MAX_BLOCKED` is rolled
/// back (the run fails and is counted as failed); a lock attempt waits at most `LOCK_TIMEOUT`
/// (writers queue behind it meanwhile), `LOCK_ATTEMPTS` times; the lag must fall under
/// `MAX_LAG_BYTES` within `CATCH_UP_TIMEOUT`, generous for the largest size.
const MAX_BLOCKED: Duration = Duration::from_secs(5);
const LOCK_TIMEOUT: Duration = Duration::from_millis(500);
const LOCK_ATTEMPTS: u32 = 10;
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(120);
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

impl MeasuredCpu {
    fn since(&self, before: &MeasuredCpu) -> MeasuredCpu {
        MeasuredCpu {
            source: self.source - before.source,
            target: self.target - before.target,
            consumer: self.consumer - before.consumer,
            bench: self.bench - before.bench,
        }
    }
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
    /// left out of the window's percentiles, not of the probe's.
    pub failures: Vec<Failed>,
}

/// A cutover that returned an error, and the stall the probe felt meanwhile.
pub struct Failed {
    pub error: String,
    pub worst_probe_ms: f64,
}

pub async fn measure(plan_path: &Path, scale: f64, runs: usize, fraction: f64) -> Size {
    let mut phases = Phases::new();
    let mut m = Migration::start(plan_path, scale, &mut phases).await;
    let rate = fraction * m.sustained_rate();
    println!(
        "  unthrottled mix: source {:.0} tx/s, consumer {:.0} changes/s ({:.2} changes per tx); the mix runs at {rate:.0} tx/s",
        m.source_tx_per_s, m.consumer_changes_per_s, m.changes_per_tx
    );
    let mix = |record_acks| WriteLoadOptions {
        target_rate: Some(rate),
        record_acks,
        ..WriteLoadOptions::default()
    };
    let (source_info, target_info) = (
        ConnInfo::parse(&m.source_url).unwrap(),
        ConnInfo::parse(&m.target_url).unwrap(),
    );
    let mut options = CutoverOptions {
        max_blocked: MAX_BLOCKED,
        max_lag: MAX_LAG_BYTES,
        catch_up_timeout: CATCH_UP_TIMEOUT,
        lock_timeout: LOCK_TIMEOUT,
        lock_attempts: LOCK_ATTEMPTS,
        dry_run: true,
        verify: false,
        keep_reverse: false,
    };
    let consumer = m.consumer.take().expect("the consumer runs");
    let clusters_cpu = (
        ClusterCpu::of(&m.source_cluster).unwrap(),
        ClusterCpu::of(&m.target_cluster).unwrap(),
    );
    // CPU seconds so far; the consumer's come from `/proc` now, from `wait4` once it exited.
    let cpu_now = |consumer| MeasuredCpu {
        source: clusters_cpu.0.seconds().unwrap(),
        target: clusters_cpu.1.seconds().unwrap(),
        consumer,
        bench: cpu::process_seconds(std::process::id() as i32).unwrap(),
    };
    let cpu_before = cpu_now(cpu::process_seconds(consumer.id() as i32).unwrap());
    let probe = Probe::start(
        m.source_cluster.connect("legacy").await.unwrap(),
        m.counts.company_services,
    );

    // The dry runs: one load throughout, acknowledgements not kept.
    let load = WriteLoad::start(&m.source_url, mix(false)).await.unwrap();
    tokio::time::sleep(WARM_UP).await;
    let (mut measured, mut failures) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let label = format!("dry run {:>2}", i + 1);
        match one_cutover(&m.plan, &source_info, &target_info, &options, &probe).await {
            Ok(run) => {
                print_run(&label, &run);
                measured.push(run);
            }
            Err(failed) => {
                print_failed(&label, &failed);
                failures.push(failed);
            }
        }
    }
    let dry = load.stop().await.unwrap();
    phases.end("dry runs");

    // The real one, under a load of its own that keeps every acknowledgement.
    let load = WriteLoad::start(&m.source_url, mix(true)).await.unwrap();
    tokio::time::sleep(WARM_UP).await;
    options.dry_run = false;
    let committed = match one_cutover(&m.plan, &source_info, &target_info, &options, &probe).await {
        Ok(run) => {
            print_run("cutover   ", &run);
            measured.push(run);
            true
        }
        Err(failed) => {
            print_failed("cutover   ", &failed);
            failures.push(failed);
            false
        }
    };
    probe.stop().await;
    let real = load.stop().await.unwrap();
    let consumer = stopped(consumer, committed).await;
    let cpu = cpu_now(consumer.cpu_seconds).since(&cpu_before);
    let acked = match committed {
        true => Some(acked::check(&m.source, &m.target, &real.acked).await),
        false => None,
    };
    if let Some(acked) = &acked {
        println!("  {}", acked.line());
    }
    phases.end("cutover");

    let (items, backfill) = (m.counts.vortex_items, m.backfill);
    let (source_tx_per_s, consumer_changes_per_s) = (m.source_tx_per_s, m.consumer_changes_per_s);
    drop(m);
    phases.end("teardown");
    Size {
        scale,
        items,
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

/// One cutover call and the worst probe write sent while it ran; the error, with its chain,
/// when the cutover failed.
async fn one_cutover(
    plan: &Arc<Plan>,
    source: &ConnInfo,
    target: &ConnInfo,
    options: &CutoverOptions,
    probe: &Probe,
) -> Result<Run, Failed> {
    let started = Instant::now();
    let report = cutover(plan, source, target, options, &|_: String| {}).await;
    let ended = Instant::now();
    tokio::time::sleep(BETWEEN_RUNS).await;
    let (worst, probe_writes) = probe.worst_between(started, ended);
    let worst_probe_ms = worst.as_secs_f64() * 1e3;
    let report = report.map_err(|e| Failed {
        error: format!("{:#}", anyhow::Error::new(e)),
        worst_probe_ms,
    })?;
    // What the steps under the lock read (changed keys, or a table scanned), as the report
    // says it: the first thing to look at when a step grows with size.
    for step in &report.steps {
        if let Some(reads) = &step.reads {
            println!("    {:?} reads {reads}", step.step);
        }
    }
    Ok(Run {
        dry_run: options.dry_run,
        window_ms: report.window_ms,
        lock_attempts: report.lock_attempts,
        worst_probe_ms,
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

fn print_failed(label: &str, failed: &Failed) {
    println!(
        "  {label}: FAILED, worst probe {:>7.1} ms: {}",
        failed.worst_probe_ms, failed.error
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
