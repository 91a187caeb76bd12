//! What the user typed, as clap types; no I/O here. Commands resolve these into jobs.

pub mod units;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "switchyard",
    version,
    about = "Move live PostgreSQL data into a new schema with zero downtime"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Report everything that would stop a migration, each problem with its fix.
    Check(CheckArgs),
    /// Copy every source table through the plan's transforms into the target.
    Backfill(BackfillArgs),
    /// Run the WAL consumer of a backfilled migration (resumes where it stopped).
    Follow(FollowArgs),
    /// Live lag of a migration, from any machine: bytes and seconds behind, apply rate, ETA.
    Watch(WatchArgs),
    /// Show a migration's state.
    Status(StatusArgs),
    /// Drop the migration's slot and publication and mark it aborted.
    Abort(AbortArgs),
    /// Compare every output table with the transformed source, by key; exit 1 on divergence.
    Verify(VerifyArgs),
    /// Block writes for seconds, prove the target caught up, check it and swap it in.
    Cutover(CutoverArgs),
    /// Undo what a cutover put in place on the source, whatever the recorded status (the plan's
    /// rollback SQL, the read-only triggers); with nothing in place and no cutover, abort.
    Rollback(RollbackArgs),
    /// Pause a running backfill (after the chunks in flight) or consumer, from any machine.
    Pause(ControlArgs),
    /// Lift a pause.
    Resume(ControlArgs),
    /// Cap a running backfill's rows/s (all workers together) or the consumer's changes/s.
    Throttle(ThrottleArgs),
    /// Run the whole story on throwaway clusters: legacy data, a write load, check, backfill.
    Demo(DemoArgs),
    /// Print a shell completion script: `switchyard completions bash > /etc/bash_completion.d/switchyard`.
    Completions(CompletionsArgs),
    /// Write the man pages (switchyard(1) and one per subcommand), or print switchyard(1).
    Man(ManArgs),
}

/// Where the data comes from and goes to.
#[derive(Debug, Args, Clone)]
pub struct Connections {
    /// Source database: a postgres:// URL or key=value string.
    #[arg(long, env = "SWITCHYARD_SOURCE", hide_env_values = true)]
    pub source: String,
    /// Target database (may be the source database itself).
    #[arg(long, env = "SWITCHYARD_TARGET", hide_env_values = true)]
    pub target: String,
}

/// `--metrics-addr`, on the commands that run for long.
#[derive(Debug, Args, Clone)]
pub struct MetricsArg {
    /// Serve Prometheus metrics at http://HOST:PORT/metrics (e.g. 0.0.0.0:9187) while this
    /// runs: rows copied, chunks, changes applied, lag, the slot's WAL, dead letters.
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,
}

#[derive(Debug, Args)]
pub struct PlanArg {
    /// The plan file, e.g. transforms/legacy_to_projects/plan.toml.
    #[arg(long)]
    pub plan: PathBuf,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub plan: PlanArg,
    #[command(flatten)]
    pub connections: Connections,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnErrorArg {
    /// Rejected rows go to switchyard.dead_letters and the run goes on.
    DeadLetter,
    /// The run stops at the first rejected row.
    Stop,
}

#[derive(Debug, Args)]
pub struct BackfillArgs {
    #[command(flatten)]
    pub plan: PlanArg,
    #[command(flatten)]
    pub connections: Connections,
    #[command(flatten)]
    pub metrics: MetricsArg,
    /// Parallel copy workers (each one source and one target connection).
    #[arg(long, default_value_t = default_jobs())]
    pub jobs: usize,
    /// Go on with an interrupted backfill: finished chunks are skipped.
    #[arg(long)]
    pub resume: bool,
    /// Help a running backfill of this plan from another machine: copy its chunks under its
    /// snapshot, then exit once none is left (the first process runs the rest).
    #[arg(long, conflicts_with_all = ["resume", "no_follow"])]
    pub join: bool,
    /// Overrides the plan's on_error.
    #[arg(long, value_enum)]
    pub on_error: Option<OnErrorArg>,
    /// Print progress as JSON events, one per line.
    #[arg(long)]
    pub json: bool,
    /// Stop when the copy is done instead of going on with the WAL consumer.
    #[arg(long)]
    pub no_follow: bool,
    /// Apply lanes of the WAL consumer that follows the copy (see `follow --apply-jobs`).
    #[arg(long, env = "SWITCHYARD_APPLY_JOBS", default_value_t = DEFAULT_APPLY_JOBS, value_parser = apply_jobs)]
    pub apply_jobs: usize,
    /// How long creating the slot may wait for open source transactions to end (its
    /// snapshot needs them finished); the sessions waited for are named every 5 s.
    #[arg(long, default_value = "10m", value_parser = units::duration)]
    pub snapshot_timeout: Duration,
    /// maintenance_work_mem of each after-backfill session (index builds, foreign-key
    /// validations); up to --jobs of them run at once. Never lowers the server's own setting.
    #[arg(long, default_value = DEFAULT_MAINTENANCE_WORK_MEM_TEXT, value_parser = maintenance_work_mem)]
    pub maintenance_work_mem: i64,
    /// Wait between batches while more than this many sessions run a statement on the source
    /// (`pg_stat_activity`, switchyard's own left out); checked every second.
    #[arg(long)]
    pub max_source_sessions: Option<i64>,
    /// Wait between batches while this SQL, run on the source every second, returns true
    /// (e.g. "SELECT count(*) > 40 FROM pg_stat_activity WHERE state = 'active'").
    #[arg(long)]
    pub throttle_query: Option<String>,
}

/// 256 MB: PostgreSQL's 64 MB default makes the B-tree build of a table of a few million rows
/// sort on disk; 256 MB sorts about four times as much in memory. Up to `--jobs` sessions use
/// it at once, and `--jobs` defaults to the core count, so the total is 256 MB per core: 1 GB
/// on a 4-core server, which such a server has several times over. pgcopydb gives each of its
/// index jobs 1 GB; this stays a quarter of that because the target may be a shared server.
pub const DEFAULT_MAINTENANCE_WORK_MEM: i64 = 256 << 20;
/// [`DEFAULT_MAINTENANCE_WORK_MEM`] as `--help` shows it.
const DEFAULT_MAINTENANCE_WORK_MEM_TEXT: &str = "256MB";

/// PostgreSQL refuses a `maintenance_work_mem` below 1 MB.
const MIN_MAINTENANCE_WORK_MEM: i64 = 1 << 20;

/// More than 64 GB per session is a typo, not a setting (the server's own limit is 2 TB).
const MAX_MAINTENANCE_WORK_MEM: i64 = 64 << 30;

fn maintenance_work_mem(text: &str) -> Result<i64, String> {
    let bytes = units::bytes(text)?;
    if !(MIN_MAINTENANCE_WORK_MEM..=MAX_MAINTENANCE_WORK_MEM).contains(&bytes) {
        return Err(format!(
            "maintenance_work_mem {text:?} is out of range: 1MB to 64GB"
        ));
    }
    Ok(bytes)
}

#[derive(Debug, Args)]
pub struct FollowArgs {
    #[command(flatten)]
    pub plan: PlanArg,
    #[command(flatten)]
    pub connections: Connections,
    #[command(flatten)]
    pub metrics: MetricsArg,
    /// Overrides the plan's on_error.
    #[arg(long, value_enum)]
    pub on_error: Option<OnErrorArg>,
    /// Apply lanes: target sessions applying in parallel, each output key always in the same
    /// lane. 1 applies each group of source transactions in one target transaction.
    #[arg(long, env = "SWITCHYARD_APPLY_JOBS", default_value_t = DEFAULT_APPLY_JOBS, value_parser = apply_jobs)]
    pub apply_jobs: usize,
    /// Follow the reverse stream instead (after `cutover --keep-reverse`): the new tables'
    /// changes back into the legacy tables through the plan's [reverse] rules.
    #[arg(long)]
    pub reverse: bool,
}

/// Apply lanes by default. Measured with `cargo bench --bench follow` on a 2-core machine that
/// runs source, target and switchyard together, one lane drains fastest (J=2 0.8x of J=1, J=4
/// 0.65x): each lane pays the per-statement cost of every output it writes, and the cores are
/// already shared with the walsender and the target. More lanes pay off when the target has
/// cores of its own; raise it there and measure.
pub const DEFAULT_APPLY_JOBS: usize = 1;

/// Each lane is a target session: more than 64 is a typo, not a setting.
fn apply_jobs(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n @ 1..=64) => Ok(n),
        _ => Err(format!("apply jobs {text:?}: a number from 1 to 64")),
    }
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub plan: PlanArg,
    #[command(flatten)]
    pub connections: Connections,
    #[command(flatten)]
    pub metrics: MetricsArg,
    /// One JSON object per sample, for scripts and monitoring.
    #[arg(long)]
    pub json: bool,
    /// Print one sample and exit.
    #[arg(long)]
    pub once: bool,
}

fn default_jobs() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .max(2)
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub plan: PlanArg,
    /// Target database, where switchyard keeps its state.
    #[arg(long, env = "SWITCHYARD_TARGET", hide_env_values = true)]
    pub target: String,
    /// Source database, to report the slot (optional).
    #[arg(long, env = "SWITCHYARD_SOURCE", hide_env_values = true)]
    pub source: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AbortArgs {
    #[command(flatten)]
    pub plan: PlanArg,
    #[command(flatten)]
    pub connections: Connections,
}

/// Where the control state lives: the target (the source is accepted, as every command takes
/// it, and not used).
#[derive(Debug, Args)]
pub struct ControlArgs {
    #[command(flatten)]
    pub plan: PlanArg,
    /// Target database, where switchyard keeps its state.
    #[arg(long, env = "SWITCHYARD_TARGET", hide_env_values = true)]
    pub target: String,
    /// Source database (not needed: the controls live in the target).
    #[arg(long, env = "SWITCHYARD_SOURCE", hide_env_values = true)]
    pub source: Option<String>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("cap").required(true).args(["rows_per_sec", "off"])))]
pub struct ThrottleArgs {
    #[command(flatten)]
    pub control: ControlArgs,
    /// Rows per second of the backfill (source rows, all workers together), or changes per
    /// second of the consumer.
    #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
    pub rows_per_sec: Option<i64>,
    /// Lift the cap.
    #[arg(long)]
    pub off: bool,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Scale factor of the legacy data (1 = 100k projects, 20k services, 1M items).
    #[arg(long, default_value_t = 0.05)]
    pub scale: f64,
    #[arg(long, default_value_t = default_jobs())]
    pub jobs: usize,
    /// Write transactions per second of the load kept running on the source.
    #[arg(long, default_value_t = 200)]
    pub write_rate: u32,
}

#[derive(Debug, Args)]
pub struct CutoverArgs {
    #[command(flatten)]
    pub plan: PlanArg,
    #[command(flatten)]
    pub connections: Connections,
    /// The longest writes may stay blocked; any step that would exceed it rolls everything back.
    #[arg(long, default_value = "5s", value_parser = units::duration)]
    pub max_blocked: Duration,
    /// The lock is requested only once the consumer is at most this far behind.
    #[arg(long, default_value = "1MB", value_parser = units::bytes)]
    pub max_lag: i64,
    /// Everything through the fence and the checks, then roll back: reports the window the
    /// real cutover would need and changes nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also compare every row under the lock (`switchyard verify`): conclusive, but as long as
    /// reading both sides; raise --max-blocked to match.
    #[arg(long)]
    pub verify: bool,
    /// How long one lock attempt may wait (writers queue behind it meanwhile).
    #[arg(long, default_value = "500ms", value_parser = units::duration)]
    pub lock_timeout: Duration,
    /// Lock attempts before giving up, with exponential backoff between them.
    #[arg(long, default_value_t = 10)]
    pub lock_attempts: u32,
    /// How long to wait for the lag to fall under --max-lag.
    #[arg(long, default_value = "10m", value_parser = units::duration)]
    pub catch_up_timeout: Duration,
    /// The report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Start a reverse stream with the swap: the application's writes to the new tables go
    /// back into the legacy tables (plan's [reverse] rules), so a later `rollback` loses
    /// nothing. The command then goes on as the reverse consumer (`follow --reverse`).
    #[arg(long)]
    pub keep_reverse: bool,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub plan: PlanArg,
    #[command(flatten)]
    pub connections: Connections,
    /// Roll back even though writes were made to the new tables since the cutover (the
    /// rollback leaves them there; nothing copies them back). Without it, such writes refuse.
    #[arg(long)]
    pub yes: bool,
    /// With a reverse stream: the longest writes to the new tables may stay blocked while the
    /// reverse consumer catches up; past it, nothing is changed.
    #[arg(long, default_value = "5s", value_parser = units::duration)]
    pub max_blocked: Duration,
    /// With a reverse stream: how long one attempt at the new tables' write lock may wait.
    #[arg(long, default_value = "500ms", value_parser = units::duration)]
    pub lock_timeout: Duration,
    /// With a reverse stream: lock attempts before giving up, with backoff between them.
    #[arg(long, default_value_t = 10)]
    pub lock_attempts: u32,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub plan: PlanArg,
    #[command(flatten)]
    pub connections: Connections,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Recheck rounds for differing keys, to tell writes in flight from divergence.
    #[arg(long, default_value_t = 3)]
    pub recheck: u32,
    /// How long to wait for the consumer to apply verify's fence before comparing anyway.
    #[arg(long, default_value = "30s", value_parser = units::duration)]
    pub fence_timeout: Duration,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write switchyard.1 and switchyard-<command>.1 here (e.g. /usr/local/share/man/man1)
    /// instead of printing switchyard.1 to stdout.
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_maintenance_work_mem_default_shown_is_the_one_used() {
        assert_eq!(
            maintenance_work_mem(DEFAULT_MAINTENANCE_WORK_MEM_TEXT),
            Ok(DEFAULT_MAINTENANCE_WORK_MEM)
        );
    }
}
