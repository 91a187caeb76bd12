//! End-to-end backfill benchmark against the baselines, on the same data in the same run.
//!
//! ```text
//!   cargo bench --bench backfill            (SF 1: 100k projects, 20k services, 1M items)
//!   SWITCHYARD_BENCH_SCALE=0.1 cargo bench --bench backfill
//!   SWITCHYARD_BENCH_JOBS=2,4               (the --jobs values switchyard runs with)
//! ```
//! The contenders move the seed migration's data from a source cluster to a target cluster:
//!  1. the raw pipes `psql -c "COPY t TO STDOUT" | psql -c "COPY t FROM STDIN"` of the legacy
//!     tables into identical tables (with their primary keys), in text one table after the other
//!     and all three at once, and in binary all three at once: moving the bytes, no transform;
//!  2. **the limit**: the binary pipe of the migration's *output*, transformed beforehand on the
//!     source (not timed) and typed exactly like the target, into the index-less target tables,
//!     then the plan's after-backfill SQL: what the backfill would cost if transforms were free;
//!  3. the plain SQL migration (`expected.sql`: INSERT ... SELECT with the same rules, in one
//!     transaction, inside the source database);
//!  4. `switchyard backfill --no-follow` (slot, snapshot, transforms, COPY in, after-backfill
//!     SQL), once per `--jobs` value, each into a fresh target database.
//!
//! Every contender starts on vacuumed data after a CHECKPOINT on both clusters, and is charged
//! its wall time and the CPU seconds of its client processes, of the source cluster and of the
//! target cluster (see `common/cpu.rs`). Absolute times move with the machine's load; the ratios
//! printed at the end, for the goals of issue 12, are the result.

mod common;
#[path = "backfill/report.rs"]
mod report;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use tokio_postgres::Client;

use common::cpu::{self, ChildUsage, ClusterCpu};
use common::{bench_cluster, switchyard};
use report::{Contender, Measured};
use switchyard::demo::cluster::Cluster;
use switchyard::demo::generator::load_legacy;
use switchyard::plan::Plan;

const LEGACY_TABLES: [&str; 3] = ["company_projects", "company_services", "vortex_items"];
/// The plan's outputs, small lookup tables first; `output.*` on the source holds them for the
/// limit, built by target_schema.sql so that their columns match the target's for binary COPY.
const OUTPUT_TABLES: [&str; 7] = [
    "project_stages",
    "task_statuses",
    "teams",
    "team_members",
    "projects",
    "tasks",
    "sub_tasks",
];
/// Fills `output.*` from `expected.*`, retyped like the target (untimed).
const BUILD_OUTPUT: &str = include_str!("backfill/output.sql");

fn main() {
    let scale: f64 = std::env::var("SWITCHYARD_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let jobs: Vec<usize> = std::env::var("SWITCHYARD_BENCH_JOBS")
        .unwrap_or_else(|_| "2,4".into())
        .split(',')
        .map(|j| {
            j.trim()
                .parse()
                .expect("SWITCHYARD_BENCH_JOBS: numbers, comma-separated")
        })
        .collect();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(run(scale, &jobs));
}

async fn run(scale: f64, jobs: &[usize]) {
    let bench = Bench::start().await;
    let counts = load_legacy(&bench.source, scale).await.unwrap();
    bench.vacuum(&LEGACY_TABLES.map(String::from)).await;
    let rows = counts.company_projects + counts.company_services + counts.vortex_items;
    println!(
        "scale {scale}: {rows} legacy rows ({} items), switchyard --jobs {jobs:?}",
        counts.vortex_items
    );
    let mut results = raw_pipes(&bench, rows).await;
    // The plain SQL migration runs first: its result is the limit's input.
    let plain_sql = plain_sql_migration(&bench).await;
    results.push(the_limit(&bench, rows).await);
    results.push(plain_sql);
    for &jobs in jobs {
        results.push(switchyard_backfill(&bench, jobs, rows).await);
    }
    report::print(&results, rows);
}

/// Contender 1: the legacy tables piped into identical tables on the target, in text and in
/// binary.
async fn raw_pipes(bench: &Bench, rows: u64) -> Vec<Measured> {
    let raw = [
        (Contender::RawTextOneByOne, "raw_text_one_by_one", "", false),
        (Contender::RawText, "raw_text", "", true),
        (Contender::RawBinary, "raw_binary", " (FORMAT binary)", true),
    ];
    let mut results = Vec::new();
    for (contender, db, format, at_once) in raw {
        let target_url = (bench)
            .target_database(db, &[plan_file("legacy_schema.sql")])
            .await;
        let pipe = |table: &str| {
            let copy = |direction| format!("COPY {table} {direction}{format}");
            Pipe::start(
                &bench.source_url,
                &copy("TO STDOUT"),
                &target_url,
                &copy("FROM STDIN"),
            )
        };
        let measured = bench
            .measure(contender, || match at_once {
                true => Pipe::wait_all(LEGACY_TABLES.map(pipe)),
                false => (LEGACY_TABLES.iter())
                    .fold(ChildUsage::default(), |sum, t| sum.plus(pipe(t).wait())),
            })
            .await;
        bench.assert_rows(db, &LEGACY_TABLES, rows).await;
        results.push(measured);
    }
    results
}

/// Contender 3: expected.sql on the source, which leaves its result in schema `expected`.
async fn plain_sql_migration(bench: &Bench) -> Measured {
    let mut psql = psql(&bench.source_url);
    psql.arg("-f").arg(plan_file("expected.sql"));
    bench
        .measure(Contender::PlainSql, || run_psql(&mut psql))
        .await
}

/// Contender 2, the limit: the plain SQL migration's result, retyped like the target in
/// `output.*` (untimed), piped in binary into the index-less target tables, then the plan's
/// after-backfill SQL as switchyard runs it: stage by stage, the files of a stage at once, each
/// on its own session with the same `maintenance_work_mem`.
async fn the_limit(bench: &Bench, rows: u64) -> Measured {
    let target_schema = std::fs::read_to_string(plan_file("target_schema.sql")).unwrap();
    (bench.source)
        .batch_execute(&format!(
            "CREATE SCHEMA output; SET search_path = output; {target_schema}; RESET search_path; \
             {BUILD_OUTPUT}"
        ))
        .await
        .unwrap();
    bench
        .vacuum(&OUTPUT_TABLES.map(|t| format!("output.{t}")))
        .await;
    let db = "the_limit";
    let target_url = (bench)
        .target_database(db, &[plan_file("target_schema.sql")])
        .await;
    let plan = Plan::load(&plan_file("plan.toml")).unwrap();
    let measured = bench
        .measure(Contender::Limit, || {
            let pipes = OUTPUT_TABLES.map(|table| {
                Pipe::start(
                    &bench.source_url,
                    &format!("COPY output.{table} TO STDOUT (FORMAT binary)"),
                    &target_url,
                    &format!("COPY {table} FROM STDIN (FORMAT binary)"),
                )
            });
            let copied = Pipe::wait_all(pipes);
            plan.phases.after_backfill.iter().fold(copied, |sum, stage| {
                let files: Vec<Child> = (stage.files.iter())
                    .map(|file| {
                        let mut session = psql(&target_url);
                        session
                            .env(
                                "PGOPTIONS",
                                format!("{PSQL_OPTIONS} -c maintenance_work_mem={MAINTENANCE_WORK_MEM}"),
                            )
                            .arg("-f")
                            .arg(&file.path);
                        session.spawn().unwrap()
                    })
                    .collect();
                files.into_iter().fold(sum, |sum, child| {
                    let (status, usage) = cpu::wait(child).unwrap();
                    assert!(status.success(), "an after-backfill file failed");
                    sum.plus(usage)
                })
            })
        })
        .await;
    bench
        .assert_rows(db, &["projects", "tasks", "sub_tasks"], rows)
        .await;
    (bench.source)
        .batch_execute("DROP SCHEMA output CASCADE")
        .await
        .unwrap();
    measured
}

/// Contender 4: `switchyard backfill --no-follow`, as a user runs it, into a fresh database.
async fn switchyard_backfill(bench: &Bench, jobs: usize, rows: u64) -> Measured {
    let db = format!("switchyard_jobs_{jobs}");
    let target_url = bench.target_database(&db, &[]).await;
    let plan = plan_file("plan.toml");
    let run = |args: &[&str]| switchyard(&plan, args, &bench.source_url, &target_url);
    let jobs_arg = jobs.to_string();
    let mut backfill = run(&["backfill", "--jobs", &jobs_arg, "--json", "--no-follow"]);
    backfill.env("SWITCHYARD_LOG", "switchyard=info");
    let measured = bench
        .measure(Contender::Switchyard { jobs }, || {
            let (stderr, usage) = run_capturing_stderr(&mut backfill);
            eprint!("{stderr}");
            usage
        })
        .await;
    bench
        .assert_rows(&db, &["projects", "tasks", "sub_tasks"], rows)
        .await;
    // The slot and the publication would otherwise hold WAL and block the next run.
    let status = run(&["abort"]).stdout(Stdio::null()).status().unwrap();
    assert!(status.success(), "switchyard abort failed");
    measured
}

fn plan_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("transforms/legacy_to_projects")
        .join(name)
}

/// The two clusters, a session on each for the bench's own statements, and their CPU accounts.
struct Bench {
    /// Kept for its lifetime: dropping it stops the server.
    _source_cluster: Cluster,
    target_cluster: Cluster,
    /// The source database holding the legacy tables.
    source_url: String,
    /// `legacy` on the source: the legacy tables, `expected.*` and `output.*`.
    source: Client,
    /// `postgres` on the target: creates and drops each contender's database.
    target: Client,
    source_cpu: ClusterCpu,
    target_cpu: ClusterCpu,
}

impl Bench {
    async fn start() -> Bench {
        let (source_cluster, target_cluster) = (bench_cluster(), bench_cluster());
        source_cluster.create_database("legacy").await.unwrap();
        Bench {
            source: source_cluster.connect("legacy").await.unwrap(),
            target: target_cluster.connect("postgres").await.unwrap(),
            source_cpu: ClusterCpu::of(&source_cluster).unwrap(),
            target_cpu: ClusterCpu::of(&target_cluster).unwrap(),
            source_url: source_cluster.url("legacy"),
            _source_cluster: source_cluster,
            target_cluster,
        }
    }

    /// CHECKPOINT both clusters, then run `contender` and charge it what both clusters and its
    /// own processes spent meanwhile.
    async fn measure(&self, contender: Contender, run: impl FnOnce() -> ChildUsage) -> Measured {
        for client in [&self.source, &self.target] {
            client.batch_execute("CHECKPOINT").await.unwrap();
        }
        let (source_before, target_before) = (self.source_cpu(), self.target_cpu());
        let started = Instant::now();
        let client = run();
        let wall = started.elapsed();
        let measured = Measured {
            contender,
            wall,
            client,
            source_cpu: self.source_cpu() - source_before,
            target_cpu: self.target_cpu() - target_before,
        };
        println!("{:<44} {:>7.2} s", contender.name(), wall.as_secs_f64());
        measured
    }

    fn source_cpu(&self) -> f64 {
        self.source_cpu.seconds().expect("read the source's /proc")
    }

    fn target_cpu(&self) -> f64 {
        self.target_cpu.seconds().expect("read the target's /proc")
    }

    /// VACUUM (FREEZE, ANALYZE) on the source: no contender sets hint bits or pays autovacuum.
    async fn vacuum(&self, tables: &[String]) {
        let statement = format!("VACUUM (FREEZE, ANALYZE) {}", tables.join(", "));
        self.source.batch_execute(&statement).await.unwrap();
    }

    /// A fresh target database running `sql_files`, replacing the previous contender's (whose
    /// leftover autovacuum would otherwise be charged to the next); returns its URL.
    async fn target_database(&self, db: &str, sql_files: &[PathBuf]) -> String {
        let previous = "SELECT datname FROM pg_database WHERE datname NOT IN \
                        ('postgres', 'template0', 'template1')";
        for row in self.target.query(previous, &[]).await.unwrap() {
            let name: &str = row.get(0);
            let drop = format!("DROP DATABASE \"{name}\" WITH (FORCE)");
            self.target.batch_execute(&drop).await.unwrap();
        }
        self.target_cluster.create_database(db).await.unwrap();
        let client = self.target_cluster.connect(db).await.unwrap();
        for file in sql_files {
            let sql = std::fs::read_to_string(file).unwrap();
            client.batch_execute(&sql).await.unwrap();
        }
        self.target_cluster.url(db)
    }

    /// The contender moved every legacy row: `tables` of `db` on the target hold `rows` rows.
    async fn assert_rows(&self, db: &str, tables: &[&str], rows: u64) {
        let count = tables
            .iter()
            .map(|t| format!("(SELECT count(*) FROM {t})"))
            .collect::<Vec<_>>()
            .join(" + ");
        let client = self.target_cluster.connect(db).await.unwrap();
        let row = client
            .query_one(&format!("SELECT {count}"), &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, i64>(0), rows as i64, "rows in {db}");
    }
}

/// `psql -c "<out>" | psql -c "<into>"`, running.
struct Pipe {
    out: Child,
    into: Child,
}

impl Pipe {
    fn start(from: &str, out: &str, to: &str, into: &str) -> Pipe {
        let mut out = psql(from)
            .args(["-c", out])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let into = psql(to)
            .args(["-c", into])
            .stdin(out.stdout.take().unwrap())
            .spawn()
            .unwrap();
        Pipe { out, into }
    }

    /// Wait for both ends; panics when either fails.
    fn wait(self) -> ChildUsage {
        let (out, out_usage) = cpu::wait(self.out).unwrap();
        let (into, into_usage) = cpu::wait(self.into).unwrap();
        assert!(out.success() && into.success(), "COPY pipe failed");
        out_usage.plus(into_usage)
    }

    fn wait_all<const N: usize>(pipes: [Pipe; N]) -> ChildUsage {
        (pipes.into_iter()).fold(ChildUsage::default(), |sum, pipe| sum.plus(pipe.wait()))
    }
}

/// Session options of every `psql`: no NOTICEs (the after-backfill SQL reports the orphan rows
/// of the legacy data as NOTICEs).
const PSQL_OPTIONS: &str = "-c client_min_messages=warning";

/// What `switchyard backfill` gives its after-backfill sessions by default.
const MAINTENANCE_WORK_MEM: &str = "256MB";

/// `psql` on `url`, quiet, stopping at the first error, without the caller's psqlrc.
fn psql(url: &str) -> Command {
    let mut command = Command::new("psql");
    command
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url])
        .env("PGOPTIONS", PSQL_OPTIONS);
    command
}

fn run_psql(command: &mut Command) -> ChildUsage {
    let (status, usage) = cpu::wait(command.spawn().unwrap()).unwrap();
    assert!(status.success(), "psql failed: {command:?}");
    usage
}

/// Run `command` to its end with stdout discarded, sampling its peak RSS; returns its stderr,
/// panicking with it when the command fails.
fn run_capturing_stderr(command: &mut Command) -> (String, ChildUsage) {
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut text).map(|_| text)
    });
    let (status, usage) = cpu::wait_sampling_peak_rss(child).unwrap();
    let stderr = reader.join().unwrap().unwrap();
    assert!(status.success(), "{command:?} failed:\n{stderr}");
    (stderr, usage)
}
