//! The contenders: how each is started on its slot, drained and stopped, and what it cost
//! (their set-up is in `setup.rs`).

use std::fs::{self, OpenOptions};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use switchyard::pg::lsn::Lsn;

use crate::applied::Applied;
use crate::common::cpu::{self, ChildUsage};
use crate::common::switchyard;
use crate::walsender::Walsender;
use crate::Bench;

/// The limit's slot, created beside the others before the first backlog.
pub const LIMIT_SLOT: &str = "bench_limit";

pub enum Contender {
    /// Subscription `native` into the `native` database's copy of the legacy tables.
    Native,
    /// `switchyard follow` of migration `bench_j<apply_jobs>` into the database of that name.
    Switchyard {
        apply_jobs: usize,
        /// Whether `follow` is given `--apply-jobs` (it may not know it yet).
        pass_flag: bool,
        plan: PathBuf,
        target_url: String,
        /// The consumer's stderr, appended to by every run.
        log: PathBuf,
    },
    /// `pg_recvlogical` into `/dev/null`: the walsender decoding the migration's publication.
    Limit { publication: String },
}

/// What one drain cost.
pub struct Drained {
    pub seconds: f64,
    /// Until the walsender took the slot: process or worker start, connections, plan load.
    pub startup_seconds: Option<f64>,
    /// switchyard: until its target applied the backlog's last commit (see `applied.rs`).
    pub applied_seconds: Option<f64>,
    /// The walsender serving the contender's slot.
    pub walsender_cpu: f64,
    /// Every process of the target cluster.
    pub target_cpu: f64,
    /// Of which the contender's own: native's apply worker, switchyard's sessions.
    pub sessions_cpu: Option<f64>,
    /// switchyard or pg_recvlogical; none for native (its apply worker is in the target).
    pub client: Option<ChildUsage>,
}

impl Contender {
    pub fn label(&self) -> String {
        match self {
            Contender::Native => "native logical replication".to_owned(),
            Contender::Switchyard {
                apply_jobs,
                pass_flag: true,
                ..
            } => format!("switchyard follow --apply-jobs {apply_jobs}"),
            Contender::Switchyard { .. } => "switchyard follow".to_owned(),
            Contender::Limit { .. } => "the limit: pg_recvlogical".to_owned(),
        }
    }

    pub fn apply_jobs(&self) -> Option<usize> {
        match self {
            Contender::Switchyard { apply_jobs, .. } => Some(*apply_jobs),
            _ => None,
        }
    }

    pub fn slot(&self) -> String {
        match self {
            Contender::Native => "native".to_owned(),
            Contender::Switchyard { apply_jobs, .. } => format!("switchyard_bench_j{apply_jobs}"),
            Contender::Limit { .. } => LIMIT_SLOT.to_owned(),
        }
    }

    /// The contender's target database, vacuumed after each drain.
    fn target_url(&self, bench: &Bench) -> Option<String> {
        match self {
            Contender::Native => Some(bench.target_cluster.url("native")),
            Contender::Switchyard { target_url, .. } => Some(target_url.clone()),
            Contender::Limit { .. } => None,
        }
    }

    /// Start from the slot, wait until it confirmed `to`, stop; what that cost.
    ///
    /// A CHECKPOINT on the target before and a VACUUM of the contender's database after keep
    /// the checkpointer and autovacuum from charging one contender's writes to the next.
    pub async fn drain(&self, bench: &Bench, to: Lsn) -> Drained {
        bench.native.batch_execute("CHECKPOINT").await.unwrap();
        let target_before = bench.target_cpu.seconds().unwrap();
        let applied = match self {
            Contender::Switchyard {
                apply_jobs,
                target_url,
                ..
            } => Some(Applied::watch(target_url, format!("bench_j{apply_jobs}")).await),
            _ => None,
        };
        let started = Instant::now();
        let walsender = Walsender::watch(bench.source.clone(), self.slot());
        let child = self.start(bench, to);
        let (child, recvlogical) = match self {
            Contender::Limit { .. } => {
                let child = child.expect("pg_recvlogical");
                let (status, usage) = tokio::task::spawn_blocking(move || cpu::wait(child))
                    .await
                    .unwrap()
                    .unwrap();
                assert!(status.success(), "pg_recvlogical failed: {status}");
                (None, Some(usage))
            }
            _ => {
                if matches!(self, Contender::Native) {
                    bench
                        .native
                        .batch_execute("ALTER SUBSCRIPTION native ENABLE")
                        .await
                        .unwrap();
                }
                bench.wait_for_slot(&self.slot(), to).await;
                (child, None)
            }
        };
        let seconds = started.elapsed().as_secs_f64();
        let sessions_cpu = self
            .sessions_cpu(bench, applied.as_ref().map(|a| a.backend))
            .await;
        let (walsender_cpu, streaming) = walsender.stop().await;
        let startup_seconds = streaming.map(|at| (at - started).as_secs_f64());
        let (applied_seconds, polling_cpu) = match applied {
            Some(applied) => {
                let (at, cpu) = applied.stop().await;
                (at.map(|at| (at - started).as_secs_f64()), cpu)
            }
            None => (None, 0.0),
        };
        let target_cpu = bench.target_cpu.seconds().unwrap() - target_before - polling_cpu;
        let client = self.stop(bench, child).await.or(recvlogical);
        if matches!(self, Contender::Limit { .. }) {
            // pg_recvlogical confirms what it wrote when it exits at --endpos.
            bench.wait_for_slot(LIMIT_SLOT, to).await;
        }
        if let Some(url) = self.target_url(bench) {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            client.batch_execute("VACUUM ANALYZE").await.unwrap();
        }
        Drained {
            seconds,
            sessions_cpu,
            startup_seconds,
            applied_seconds,
            walsender_cpu,
            target_cpu,
            client,
        }
    }

    /// CPU seconds of the contender's processes on the target (native's apply worker,
    /// switchyard's sessions but `poller`), read while they still run. They started with the
    /// drain, so their whole life is this drain.
    async fn sessions_cpu(&self, bench: &Bench, poller: Option<i32>) -> Option<f64> {
        let pids = match self {
            Contender::Native => {
                bench
                    .native
                    .query(
                        "SELECT pid FROM pg_stat_activity \
                          WHERE backend_type = 'logical replication worker'",
                        &[],
                    )
                    .await
            }
            Contender::Switchyard { apply_jobs, .. } => {
                bench
                    .native
                    .query(
                        "SELECT pid FROM pg_stat_activity \
                          WHERE datname = $1 AND pid <> coalesce($2, 0)",
                        &[&format!("bench_j{apply_jobs}"), &poller],
                    )
                    .await
            }
            Contender::Limit { .. } => return None,
        };
        let pids = pids.unwrap().into_iter().map(|row| row.get::<_, i32>(0));
        Some(
            pids.map(|pid| cpu::process_seconds(pid).unwrap_or(0.0))
                .sum(),
        )
    }

    /// Start the contender's process, if it has one (native is enabled by the caller).
    pub fn start(&self, bench: &Bench, to: Lsn) -> Option<Child> {
        match self {
            Contender::Native => None,
            Contender::Switchyard {
                apply_jobs,
                pass_flag,
                plan,
                target_url,
                log,
            } => {
                let jobs = apply_jobs.to_string();
                let args: &[&str] = if *pass_flag {
                    &["follow", "--apply-jobs", &jobs]
                } else {
                    &["follow"]
                };
                let log = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log)
                    .unwrap();
                let child = switchyard(plan, args, &bench.source_url, target_url)
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()
                    .unwrap();
                Some(child)
            }
            Contender::Limit { publication } => {
                let child = Command::new(pg_bin_dir().join("pg_recvlogical"))
                    .args(["-d", &bench.source_url, "--slot", LIMIT_SLOT])
                    .args(["--plugin=pgoutput", "-o", "proto_version=1"])
                    .arg(format!("--option=publication_names={publication}"))
                    .args(["--start", "--no-loop", "-f", "/dev/null"])
                    .arg(format!("--endpos={to}"))
                    .spawn()
                    .unwrap();
                Some(child)
            }
        }
    }

    /// Stop the contender and wait until its walsender is gone; switchyard's usage.
    pub async fn stop(&self, bench: &Bench, child: Option<Child>) -> Option<ChildUsage> {
        let usage = match (self, child) {
            (Contender::Native, _) => {
                bench
                    .native
                    .batch_execute("ALTER SUBSCRIPTION native DISABLE")
                    .await
                    .unwrap();
                None
            }
            (Contender::Switchyard { log, .. }, Some(child)) => {
                // SIGTERM: the consumer finishes the group it applies, records it, exits 0.
                // SAFETY: kill has no memory preconditions; the pid is our unreaped child.
                unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
                let (status, usage) =
                    tokio::task::spawn_blocking(move || cpu::wait_sampling_peak_rss(child))
                        .await
                        .unwrap()
                        .unwrap();
                let log = fs::read_to_string(log).unwrap_or_default();
                assert!(
                    status.success(),
                    "switchyard follow failed: {status}\n{log}"
                );
                Some(usage)
            }
            _ => None,
        };
        bench.wait_for_inactive(&self.slot()).await;
        usage
    }
}

/// `$PG_BIN`, else `pg_config --bindir` (where `demo::cluster` looks first for the server's
/// binaries), else none: `pg_recvlogical` is then looked up on the PATH.
fn pg_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return PathBuf::from(dir);
    }
    match Command::new("pg_config").arg("--bindir").output() {
        Ok(out) if out.status.success() => {
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        }
        _ => PathBuf::new(),
    }
}
