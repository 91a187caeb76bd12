//! The WAL consumer against native logical replication and against the walsender alone, on the
//! same clusters in the same run, on a uniform and on a skewed write mix.
//!
//! ```text
//!   cargo bench --bench follow                   (SF 0.2, a 20 s backlog per mix)
//!   SWITCHYARD_BENCH_SCALE=1 SWITCHYARD_BENCH_BACKLOG_S=30 cargo bench --bench follow
//!   SWITCHYARD_BENCH_APPLY_JOBS=1,2,4            (the --apply-jobs values `follow` runs with)
//!   SWITCHYARD_BENCH_LAG_JOBS=1                  (the --apply-jobs value of the lag part)
//! ```
//! 1. Contenders, each reading from a slot of its own on the source, all set up before the first
//!    backlog: native logical replication (subscription `native` on an identical copy of the
//!    legacy tables, no transforms); `switchyard follow --apply-jobs J` for each J, each with
//!    its own copy of the seed migration (plan name `bench_jJ`, so slot and publication
//!    `switchyard_bench_jJ`) backfilled (`--no-follow`) into its own target database; and **the
//!    limit**, the walsender alone: `pg_recvlogical` decoding the first migration's publication
//!    with pgoutput into `/dev/null`. If `switchyard follow --help` has no `--apply-jobs`, only
//!    J = 1 runs, without the flag, and a line says so.
//! 2. Per mix (uniform: the `WriteLoad` mix; skewed: the same with 80% of the item updates on
//!    1% of the items, `HotItems::SKEWED`): every contender first catches up, untimed, past a
//!    running-xacts record, so that each slot's `restart_lsn` sits at the backlog's start (the
//!    header line says how much WAL a walsender still decodes again before it); then, with
//!    every consumer stopped (native's subscription disabled), the mix builds a backlog for
//!    `SWITCHYARD_BENCH_BACKLOG_S`; then each contender drains it alone, in turn:
//!    - drain s, from the start of the contender: until its slot's `confirmed_flush_lsn`
//!      reaches the source's insert LSN taken when the load stopped (the limit: until
//!      `pg_recvlogical --endpos` exits there); start s: until its walsender took the slot
//!      (process or worker start, connections); applied s (switchyard only): until its target
//!      applied the last commit, since switchyard reports its position once a second
//!      (`follow/applied.rs`). The goals are checked on drain s; beside them the ratios by
//!      applied time and "streaming only" (start-up taken off both sides), since on a short
//!      drain the start-up and the reporting interval weigh as much as the apply rate;
//!    - tx/s: the load's committed transactions / drain s; changes/s: the rows they changed (a
//!      statement that found its row changes exactly one: the legacy tables have no triggers
//!      or foreign keys; one that found none wrote nothing to the WAL);
//!    - CPU seconds of the walsender serving the slot (`follow/walsender.rs`), of the client
//!      process (switchyard, reaped with `wait4` after SIGTERM, or `pg_recvlogical`), and of
//!      the whole target cluster (for native that includes its apply worker), see
//!      `common/cpu.rs`, and of it the contender's own processes ("sessions": native's apply
//!      worker, switchyard's backends); switchyard's peak RSS (`VmHWM`);
//!    - ratios against native and the limit, and CPU per 1,000 source changes (switchyard +
//!      target against native's target cluster; walsenders apart), with the goals of issue 13.
//! 3. Lag: one `switchyard follow` runs while the uniform mix writes as fast as the source
//!    allows for 15 s; bytes and seconds behind are sampled every 100 ms (see `follow/lag.rs`
//!    for what "seconds behind" is here and why `switchyard watch` shows 0).
//!
//! Absolute times move with the machine's load (both clusters, the load and the contenders
//! share it); compare the rows of one run.

#[path = "follow/applied.rs"]
mod applied;
mod common;
#[path = "follow/contender.rs"]
mod contender;
#[path = "follow/lag.rs"]
mod lag;
#[path = "follow/report.rs"]
mod report;
#[path = "follow/setup.rs"]
mod setup;
#[path = "follow/walsender.rs"]
mod walsender;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use switchyard::demo::cluster::Cluster;
use switchyard::demo::generator::{load_legacy, LEGACY_SCHEMA_SQL};
use switchyard::demo::write_load::{HotItems, WriteLoad, WriteLoadOptions};
use switchyard::pg::lsn::Lsn;
use switchyard::source::slot;
use tokio_postgres::Client;

use common::bench_cluster;
use common::cpu::ClusterCpu;
use contender::Contender;
use report::{Backlog, Goals};

/// How long the lag part writes.
const LAG_LOAD: Duration = Duration::from_secs(15);
/// How often the bench polls a slot's position: a tenth of switchyard's 1 s status interval,
/// so a drain's time is off by at most that much beyond what the contender itself reports.
const SLOT_POLL: Duration = Duration::from_millis(10);

/// The two write mixes, in the order they run.
const MIXES: [Mix; 2] = [
    Mix {
        name: "uniform",
        hot_items: None,
        goals: Goals {
            vs_native: 1.0,
            vs_limit: Some(0.6),
        },
    },
    Mix {
        name: "skewed (80% of item updates on 1% of the items)",
        hot_items: Some(HotItems::SKEWED),
        goals: Goals {
            vs_native: 2.0,
            vs_limit: None,
        },
    },
];

struct Mix {
    name: &'static str,
    hot_items: Option<HotItems>,
    goals: Goals,
}

fn main() {
    let number = |name: &str, default: f64| {
        std::env::var(name)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    let jobs = |name: &str, default: &str| -> Vec<usize> {
        let list = std::env::var(name).unwrap_or_else(|_| default.to_owned());
        list.split(',')
            .map(|j| j.trim().parse().expect("a comma-separated list of numbers"))
            .collect()
    };
    let scale = number("SWITCHYARD_BENCH_SCALE", 0.2);
    let backlog = Duration::from_secs_f64(number("SWITCHYARD_BENCH_BACKLOG_S", 20.0));
    let apply_jobs = jobs("SWITCHYARD_BENCH_APPLY_JOBS", "1,2,4");
    let lag_jobs = jobs("SWITCHYARD_BENCH_LAG_JOBS", "1")[0];
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(run(scale, backlog, apply_jobs, lag_jobs));
}

async fn run(scale: f64, backlog: Duration, mut apply_jobs: Vec<usize>, mut lag_jobs: usize) {
    let bench = Bench::start(scale).await;
    let has_flag = setup::follow_has_apply_jobs();
    if !has_flag {
        println!("switchyard follow has no --apply-jobs yet: only J = 1 runs, without the flag");
        apply_jobs = vec![1];
        lag_jobs = 1;
    }
    let mut contenders = vec![Contender::native(&bench).await];
    for &jobs in &apply_jobs {
        contenders.push(Contender::switchyard(&bench, jobs, has_flag).await);
    }
    let limit = Contender::limit(&bench, &contenders[1]).await;
    contenders.push(limit);
    for mix in &MIXES {
        bench.catch_up(&contenders).await;
        let slots: Vec<String> = contenders.iter().map(Contender::slot).collect();
        let backlog = bench.backlog(mix, backlog, &slots).await;
        let mut drained = Vec::new();
        for contender in &contenders {
            drained.push((contender, contender.drain(&bench, backlog.end).await));
        }
        report::print(&backlog, &drained, &mix.goals);
    }

    let lag_contender = contenders
        .iter()
        .find(|c| c.apply_jobs() == Some(lag_jobs))
        .unwrap_or(&contenders[1]);
    lag::run(&bench, lag_contender).await;
    let _ = std::fs::remove_dir_all(&bench.dir);
}

/// The two clusters, the sessions the bench's own statements use, and the target's CPU account.
pub struct Bench {
    /// Kept for its lifetime: dropping it stops the server.
    _source_cluster: Cluster,
    target_cluster: Cluster,
    /// `legacy` on the source: the legacy tables, the write load's database.
    source_url: String,
    source: Arc<Client>,
    /// `native` on the target: the copy of the legacy tables and its subscription.
    native: Client,
    target_cpu: ClusterCpu,
    /// The plan copies and the consumers' logs.
    dir: PathBuf,
}

impl Bench {
    /// Start both clusters, load the legacy tables at `scale`.
    async fn start(scale: f64) -> Bench {
        let (source_cluster, target_cluster) = (bench_cluster(), bench_cluster());
        source_cluster.create_database("legacy").await.unwrap();
        let source = source_cluster.connect("legacy").await.unwrap();
        load_legacy(&source, scale).await.unwrap();
        target_cluster.create_database("native").await.unwrap();
        let native = target_cluster.connect("native").await.unwrap();
        native.batch_execute(LEGACY_SCHEMA_SQL).await.unwrap();
        let dir =
            std::env::temp_dir().join(format!("switchyard-bench-follow-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Bench {
            source_url: source_cluster.url("legacy"),
            source: Arc::new(source),
            native,
            target_cpu: ClusterCpu::of(&target_cluster).unwrap(),
            dir,
            _source_cluster: source_cluster,
            target_cluster,
        }
    }

    /// Every contender drains to the source's position now, untimed, past a running-xacts
    /// record: decoding it lets each slot's `restart_lsn` move up to here, so that no walsender
    /// decodes the previous backlog's WAL again in the next drain. Creating a logical slot
    /// writes one (PostgreSQL 15 has no `pg_log_standby_snapshot()`); a CHECKPOINT would too,
    /// but the full-page images after it would then fill the backlog's first seconds.
    async fn catch_up(&self, contenders: &[Contender]) {
        self.source
            .batch_execute(
                "SELECT pg_create_logical_replication_slot('bench_snapshot', 'pgoutput');
                 SELECT pg_drop_replication_slot('bench_snapshot');",
            )
            .await
            .unwrap();
        let now = self.insert_lsn().await;
        self.nudge().await;
        for contender in contenders {
            contender.drain(self, now).await;
        }
    }

    /// Stop every consumer, write `mix` for `duration`, and say what it wrote; `slots` are
    /// the contenders', whose WAL to re-read before the backlog (from `restart_lsn`) it prints.
    async fn backlog(&self, mix: &Mix, duration: Duration, slots: &[String]) -> Backlog {
        let start = self.insert_lsn().await;
        let mut reread = Vec::new();
        for name in slots {
            let state = slot::state(&*self.source, name).await.unwrap().unwrap();
            let restart = state.restart_lsn.expect("a valid slot");
            reread.push((name.clone(), start.saturating_bytes_since(restart)));
        }
        let options = WriteLoadOptions {
            hot_items: mix.hot_items,
            ..WriteLoadOptions::default()
        };
        let load = WriteLoad::start(&self.source_url, options).await.unwrap();
        tokio::time::sleep(duration).await;
        let report = load.stop().await.unwrap();
        let end = self.insert_lsn().await;
        self.nudge().await;
        let counts = report.counts;
        let backlog = Backlog {
            mix: mix.name,
            transactions: counts.committed(),
            changes: counts.committed() - counts.misses,
            load_seconds: duration.as_secs_f64(),
            wal_bytes: end.saturating_bytes_since(start),
            end,
            reread,
        };
        backlog.print_header();
        backlog
    }

    /// One record past the insert LSN just taken, so that `pg_recvlogical --endpos` sees the
    /// walsender go beyond it and exits, rather than waiting for the next running-xacts record
    /// (up to 15 s). An empty transaction: pgoutput sends none of it.
    async fn nudge(&self) {
        self.source
            .batch_execute("SELECT txid_current()")
            .await
            .unwrap();
    }

    async fn insert_lsn(&self) -> Lsn {
        self.source
            .query_one("SELECT pg_current_wal_insert_lsn()", &[])
            .await
            .unwrap()
            .get(0)
    }

    /// Wait until `slot` has confirmed `lsn`.
    async fn wait_for_slot(&self, slot: &str, lsn: Lsn) {
        loop {
            let state = slot::state(&*self.source, slot).await.unwrap();
            let state = state.unwrap_or_else(|| panic!("slot {slot} is gone"));
            if state.confirmed_flush_lsn.is_some_and(|c| c >= lsn) {
                return;
            }
            tokio::time::sleep(SLOT_POLL).await;
        }
    }

    /// Wait until a walsender serves `slot`: its consumer is streaming.
    async fn wait_for_active(&self, slot: &str) {
        loop {
            let state = slot::state(&*self.source, slot).await.unwrap();
            if state.is_some_and(|s| s.active) {
                return;
            }
            tokio::time::sleep(SLOT_POLL).await;
        }
    }

    /// Wait until no walsender serves `slot`, so that the next start can take it.
    async fn wait_for_inactive(&self, slot: &str) {
        loop {
            let state = slot::state(&*self.source, slot).await.unwrap();
            if !state.is_some_and(|s| s.active) {
                return;
            }
            tokio::time::sleep(SLOT_POLL).await;
        }
    }
}

/// Poll `condition` (one boolean) on `client` until it holds.
async fn wait_until(client: &Client, condition: &str) {
    loop {
        if client
            .query_one(condition, &[])
            .await
            .unwrap()
            .get::<_, bool>(0)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
