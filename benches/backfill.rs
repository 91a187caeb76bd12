//! End-to-end backfill benchmark against the baselines, on the same data in the same run.
//!
//! ```text
//!   cargo bench --bench backfill            (SF 1: 100k projects, 20k services, 1M items)
//!   SWITCHYARD_BENCH_SCALE=0.1 cargo bench --bench backfill
//! ```
//! Three ways to move the seed migration's tables from a source cluster to a target cluster:
//!  1. the raw text pipe `psql -c "COPY t TO STDOUT" | psql -c "COPY t FROM STDIN"` of the legacy
//!     tables into identical tables (with their primary keys), one table after the other and
//!     all three at once: the floor for moving the bytes, with no transform at all;
//!  2. the plain SQL migration (`expected.sql`: INSERT ... SELECT with the same rules, in one
//!     transaction, inside the source database);
//!  3. `switchyard backfill` (slot, snapshot, transforms, COPY in, indexes and foreign keys after).
//!
//! Absolute times move with the machine's load; the ratios printed at the end are the result.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{bench_cluster, switchyard};

use switchyard::demo::generator::load_legacy;

const TABLES: [&str; 3] = ["company_projects", "company_services", "vortex_items"];

mod common;

fn main() {
    let scale: f64 = std::env::var("SWITCHYARD_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let jobs: usize = std::env::var("SWITCHYARD_BENCH_JOBS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(run(scale, jobs));
}

async fn run(scale: f64, jobs: usize) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (source_cluster, target_cluster) = (bench_cluster(), bench_cluster());
    source_cluster.create_database("legacy").await.unwrap();
    let source = source_cluster.connect("legacy").await.unwrap();
    let counts = load_legacy(&source, scale).await.unwrap();
    source.batch_execute("CHECKPOINT").await.unwrap();
    let rows = counts.company_projects + counts.company_services + counts.vortex_items;
    println!(
        "scale {scale}: {rows} legacy rows ({} items), jobs {jobs}",
        counts.vortex_items
    );

    // 1. raw text COPY pipes into identical legacy tables.
    let schema =
        std::fs::read_to_string(repo.join("transforms/legacy_to_projects/legacy_schema.sql"))
            .unwrap();
    let mut pipe_times = Vec::new();
    for parallel in [false, true] {
        let db = if parallel {
            "pipe_parallel"
        } else {
            "pipe_serial"
        };
        target_cluster.create_database(db).await.unwrap();
        target_cluster
            .connect(db)
            .await
            .unwrap()
            .batch_execute(&schema)
            .await
            .unwrap();
        let started = Instant::now();
        let children: Vec<_> = TABLES
            .iter()
            .map(|t| {
                let child = copy_pipe(&source_cluster.url("legacy"), &target_cluster.url(db), t);
                if !parallel {
                    wait(child);
                    None
                } else {
                    Some(child)
                }
            })
            .collect();
        children.into_iter().flatten().for_each(wait);
        pipe_times.push(started.elapsed());
    }

    // 2. the plain SQL migration.
    let expected =
        std::fs::read_to_string(repo.join("transforms/legacy_to_projects/expected.sql")).unwrap();
    let started = Instant::now();
    source.batch_execute(&expected).await.unwrap();
    let sql_time = started.elapsed();
    source
        .batch_execute("DROP SCHEMA expected CASCADE; CHECKPOINT")
        .await
        .unwrap();

    // 3. switchyard backfill, as a user runs it.
    target_cluster.create_database("app").await.unwrap();
    let cpu_before = children_cpu();
    let started = Instant::now();
    let out = switchyard(
        &repo.join("transforms/legacy_to_projects/plan.toml"),
        &[
            "backfill",
            "--jobs",
            &jobs.to_string(),
            "--json",
            "--no-follow",
        ],
        &source_cluster.url("legacy"),
        &target_cluster.url("app"),
    )
    .env("SWITCHYARD_LOG", "switchyard=info")
    .output()
    .unwrap();
    let backfill_time = started.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    let max_rss_kb = children_max_rss_kb();
    let cpu = children_cpu() - cpu_before;

    let rate = |d: Duration| rows as f64 / d.as_secs_f64();
    println!(
        "raw COPY pipe, tables one by one   {:>7.2}s  {:>9.0} rows/s",
        pipe_times[0].as_secs_f64(),
        rate(pipe_times[0])
    );
    println!(
        "raw COPY pipe, three at once       {:>7.2}s  {:>9.0} rows/s",
        pipe_times[1].as_secs_f64(),
        rate(pipe_times[1])
    );
    println!(
        "plain SQL migration (INSERT..SELECT){:>7.2}s  {:>9.0} rows/s",
        sql_time.as_secs_f64(),
        rate(sql_time)
    );
    println!("switchyard backfill --jobs {jobs}       {:>7.2}s  {:>9.0} rows/s  (switchyard CPU {:.2}s, max RSS of child processes {} MB)", backfill_time.as_secs_f64(), rate(backfill_time), cpu, max_rss_kb / 1024);
    println!(
        "ratio vs raw pipe, one by one   {:.2}  (goal >= 1.0)",
        pipe_times[0].as_secs_f64() / backfill_time.as_secs_f64()
    );
    println!(
        "ratio vs raw pipe, three at once {:.2}",
        pipe_times[1].as_secs_f64() / backfill_time.as_secs_f64()
    );
    println!(
        "ratio vs plain SQL migration    {:.2}  (goal >= 3.0)",
        sql_time.as_secs_f64() / backfill_time.as_secs_f64()
    );
}

/// `psql -c "COPY t TO STDOUT" | psql -c "COPY t FROM STDIN"`.
fn copy_pipe(from: &str, to: &str, table: &str) -> (std::process::Child, std::process::Child) {
    let mut out = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-d",
            from,
            "-c",
            &format!("COPY {table} TO STDOUT"),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("psql");
    let into = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-d",
            to,
            "-c",
            &format!("COPY {table} FROM STDIN"),
        ])
        .stdin(out.stdout.take().unwrap())
        .spawn()
        .expect("psql");
    (out, into)
}

fn wait((mut a, mut b): (std::process::Child, std::process::Child)) {
    assert!(
        a.wait().unwrap().success() && b.wait().unwrap().success(),
        "COPY pipe failed"
    );
}

fn children_usage() -> libc::rusage {
    // SAFETY: `rusage` is plain integers; all-zero is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    usage
}

fn children_max_rss_kb() -> i64 {
    children_usage().ru_maxrss
}

/// User plus system CPU seconds of the waited-for child processes so far.
fn children_cpu() -> f64 {
    let u = children_usage();
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(u.ru_utime) + secs(u.ru_stime)
}
