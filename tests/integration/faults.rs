//! Faults: processes killed, interrupted and starved of their servers at bad moments. Each test
//! ends at a quiet point (writes stopped, consumer caught up) and compares the target with the
//! expected result computed independently in SQL.
//!
//! The switchyard processes here write their output to files (a pipe that nobody reads would
//! stall a long run); a failing test prints their tails.

/// Seeded random SIGKILLs during the backfill and during follow, under the write load.
mod kills;

/// Source restarts (fast and immediate) and a target restart under a running consumer.
mod restarts;

/// Ctrl-C and SIGTERM during the backfill and during follow: exit codes, recorded progress.
mod interrupt;

/// Failed commands leave no slot or publication behind, or `status` shows them and `abort`
/// removes them.
mod leftovers;

/// Follow under the write mix for a while: the consumer's memory stays flat.
mod soak;

/// A 100 MB row through the backfill and follow: peak memory a small multiple of the row.
mod large_rows;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use switchyard::demo::cluster::Cluster;
use tokio_postgres::Client;

use crate::follow::{seeded_pair, Following};
use crate::support::{repo, seed_plan};

/// The seed plan's slot and publication.
const SLOT: &str = "switchyard_legacy_to_projects";
const PUBLICATION: &str = "switchyard_legacy_to_projects";

/// Log files of the switchyard processes a test started, in a directory of their own (the
/// clusters' go first on drop); their tails are printed if the test fails.
pub(crate) struct Logs {
    dir: PathBuf,
    files: Vec<PathBuf>,
}

impl Default for Logs {
    fn default() -> Logs {
        static DIRS: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "switchyard-faults-{}-{}",
            std::process::id(),
            DIRS.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Logs {
            dir,
            files: Vec::new(),
        }
    }
}

impl Drop for Logs {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for path in &self.files {
                let text = std::fs::read_to_string(path).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                eprintln!(
                    "--- {} (last lines) ---\n{}",
                    path.display(),
                    lines[lines.len().saturating_sub(30)..].join("\n")
                );
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Logs {
    /// Starts `switchyard <args> --plan <seed> --source <source/legacy> --target <target/app>`
    /// with stdout and stderr in one file.
    pub(crate) fn spawn(&mut self, args: &[&str], source: &Cluster, target: &Cluster) -> Child {
        self.spawn_with_plan(args, &seed_plan(), source, target)
    }

    pub(crate) fn spawn_with_plan(
        &mut self,
        args: &[&str],
        plan: &Path,
        source: &Cluster,
        target: &Cluster,
    ) -> Child {
        let path = self
            .dir
            .join(format!("{}-{}.log", self.files.len(), args[0]));
        let out = std::fs::File::create(&path).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            // Consumers under test apply through two lanes (the default is one): the parallel
            // path gets every fault and convergence test; `--apply-jobs` given wins.
            .env("SWITCHYARD_APPLY_JOBS", "2")
            .args(args)
            .arg("--plan")
            .arg(plan)
            .args(["--source", &source.url("legacy")])
            .args(["--target", &target.url("app")])
            .env("SWITCHYARD_LOG", "switchyard=info")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        self.files.push(path);
        child
    }

    /// Everything the last process started wrote.
    pub(crate) fn last(&self) -> String {
        std::fs::read_to_string(self.files.last().expect("a process was started")).unwrap()
    }
}

/// Backfills a seeded pair and leaves its consumer following, as its own `follow` process.
pub(crate) async fn following(scale: f64, logs: &mut Logs) -> Following {
    let (source_cluster, target_cluster, source, target) = seeded_pair(scale).await;
    let mut backfill = logs.spawn(
        &["backfill", "--jobs", "2", "--no-follow"],
        &source_cluster,
        &target_cluster,
    );
    let status = backfill.wait().unwrap();
    assert!(status.success(), "backfill: {status}\n{}", logs.last());
    let consumer = logs.spawn(&["follow"], &source_cluster, &target_cluster);
    let mut f = Following {
        source_cluster,
        target_cluster,
        source,
        target,
        consumer,
    };
    f.wait_for("SELECT status = 'following' FROM switchyard.migrations")
        .await;
    f
}

/// Sends `signal` to our own child.
pub(crate) fn send(child: &Child, signal: libc::c_int) {
    // SAFETY: a plain syscall to a child we have not reaped, so its pid is not recycled.
    unsafe { libc::kill(child.id() as libc::pid_t, signal) };
}

/// Waits for `child` to exit on its own within `limit`.
pub(crate) fn exit_within(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the process did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One number from the target's migration row (`changes_applied`, ...).
pub(crate) async fn migration_i64(target: &Client, column: &str) -> i64 {
    target
        .query_one(
            &format!("SELECT {column}::int8 FROM switchyard.migrations"),
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// The migration's (status, message); ("", None) when there is none.
pub(crate) async fn migration_state(target: &Client) -> (String, Option<String>) {
    match target
        .query_opt("SELECT status, message FROM switchyard.migrations", &[])
        .await
    {
        Ok(Some(row)) => (row.get(0), row.get(1)),
        _ => (String::new(), None),
    }
}

/// Whether the source has the seed plan's (slot, publication), and every slot it has.
pub(crate) async fn source_objects(source: &Client) -> (bool, bool, Vec<String>) {
    let slots: Vec<String> = source
        .query("SELECT slot_name::text FROM pg_replication_slots", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let publication = source
        .query_opt(
            "SELECT FROM pg_publication WHERE pubname = $1",
            &[&PUBLICATION],
        )
        .await
        .unwrap()
        .is_some();
    (slots.iter().any(|s| s == SLOT), publication, slots)
}

/// An environment variable parsed, or `default`.
pub(crate) fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The seed plan copied into `dir`, with `sql` appended to one of its SQL files.
pub(crate) fn plan_with(dir: &Path, file: &str, sql: &str) -> PathBuf {
    let from = repo().join("transforms/legacy_to_projects");
    let to = dir.join(format!("plan-{file}"));
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(&from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
    let path = to.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{text}\n{sql}\n")).unwrap();
    to.join("plan.toml")
}
