//! A migration ready for its cutover, on clusters of its own: the legacy tables loaded at a
//! scale factor, backfilled, `switchyard follow` running and caught up, and the rate of the
//! write mix it sustains.

use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard::demo::cluster::Cluster;
use switchyard::demo::generator::{load_legacy, LoadedCounts};
use switchyard::demo::write_load::{WriteLoad, WriteLoadOptions};
use switchyard::plan::Plan;
use tokio_postgres::Client;

use crate::common::cpu::{self, ChildUsage};
use crate::common::{bench_cluster, switchyard};

/// How long the unthrottled mix runs to find the rate the migration sustains.
const CALIBRATION: Duration = Duration::from_secs(10);
/// The lag the consumer must be under before the measured mix starts, and that a cutover
/// waits for before it asks for the lock (`--max-lag`).
pub const MAX_LAG_BYTES: i64 = 1 << 20;

/// Times the phases of one size, printing each as it ends.
pub struct Phases {
    started: Instant,
    pub done: Vec<(&'static str, f64)>,
}

impl Phases {
    pub fn new() -> Phases {
        Phases {
            started: Instant::now(),
            done: Vec::new(),
        }
    }

    pub fn end(&mut self, phase: &'static str) {
        let seconds = self.started.elapsed().as_secs_f64();
        println!("  [{phase}: {seconds:.1} s]");
        self.done.push((phase, seconds));
        self.started = Instant::now();
    }
}

pub struct Migration {
    pub plan: Arc<Plan>,
    // The clients go before the clusters they are connected to.
    pub source: Client,
    pub target: Client,
    pub source_cluster: Cluster,
    pub target_cluster: Cluster,
    pub source_url: String,
    pub target_url: String,
    /// `switchyard follow`, running until the real cutover takes it to reap it.
    pub consumer: Option<Child>,
    pub counts: LoadedCounts,
    pub backfill: ChildUsage,
    /// What the unthrottled mix committed, and what the consumer applied meanwhile.
    pub source_tx_per_s: f64,
    pub consumer_changes_per_s: f64,
    /// Row changes per transaction of the mix, measured with the rates.
    pub changes_per_tx: f64,
}

impl Migration {
    /// Phases "clusters", "load", "backfill", "calibration" and "catch-up".
    pub async fn start(plan_path: &Path, scale: f64, phases: &mut Phases) -> Migration {
        let plan = Arc::new(Plan::load(plan_path).unwrap());
        let (source_cluster, target_cluster) = (bench_cluster(), bench_cluster());
        source_cluster.create_database("legacy").await.unwrap();
        target_cluster.create_database("app").await.unwrap();
        let (source_url, target_url) = (source_cluster.url("legacy"), target_cluster.url("app"));
        let source = source_cluster.connect("legacy").await.unwrap();
        let target = target_cluster.connect("app").await.unwrap();
        phases.end("clusters");

        let counts = load_legacy(&source, scale).await.unwrap();
        phases.end("load");

        let backfill = ["backfill", "--no-follow"];
        let backfill = switchyard(plan_path, &backfill, &source_url, &target_url)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let (status, backfill) =
            tokio::task::spawn_blocking(|| cpu::wait_sampling_peak_rss(backfill))
                .await
                .unwrap()
                .unwrap();
        assert!(status.success(), "backfill failed: {status}");
        phases.end("backfill");

        let consumer = switchyard(plan_path, &["follow"], &source_url, &target_url)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut migration = Migration {
            plan,
            source,
            target,
            source_cluster,
            target_cluster,
            source_url,
            target_url,
            consumer: Some(consumer),
            counts,
            backfill,
            source_tx_per_s: 0.0,
            consumer_changes_per_s: 0.0,
            changes_per_tx: 1.0,
        };
        migration.calibrate().await;
        phases.end("calibration");
        while migration.lag().await.bytes_behind.unwrap_or(0) > MAX_LAG_BYTES {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        phases.end("catch-up");
        migration
    }

    /// The highest rate the migration sustains: what the source commits unthrottled, capped by
    /// what the consumer applies (a cutover waits for the lag to converge, so a faster load
    /// would only measure the wait).
    /// The consumer's capacity is counted in row changes and the mix's rate in transactions:
    /// a transaction of the mix changes `changes_per_tx` rows on average.
    pub fn sustained_rate(&self) -> f64 {
        self.source_tx_per_s
            .min(self.consumer_changes_per_s / self.changes_per_tx.max(1.0))
    }

    /// Rows inserted, updated and deleted in the source database, as its statistics count them
    /// (a backend reports its counts at the latest when it exits).
    async fn source_row_changes(&self) -> i64 {
        self.source
            .query_one(
                "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::int8 FROM pg_stat_user_tables",
                &[],
            )
            .await
            .unwrap()
            .get(0)
    }

    async fn calibrate(&mut self) {
        let before = self.lag().await.changes_applied;
        let rows_before = self.source_row_changes().await;
        let started = Instant::now();
        let unthrottled = WriteLoad::start(&self.source_url, WriteLoadOptions::default())
            .await
            .unwrap();
        tokio::time::sleep(CALIBRATION).await;
        let committed = unthrottled.stop().await.unwrap().counts.committed();
        let seconds = started.elapsed().as_secs_f64();
        let applied = self.lag().await.changes_applied - before;
        self.source_tx_per_s = committed as f64 / seconds;
        self.consumer_changes_per_s = applied as f64 / seconds;
        // The mix's sessions have closed, so their statistics are in.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rows = self.source_row_changes().await - rows_before;
        self.changes_per_tx = rows as f64 / committed.max(1) as f64;
    }

    async fn lag(&self) -> switchyard::lag::Sample {
        switchyard::lag::sample(&self.source, &self.target, &self.plan)
            .await
            .unwrap()
            .expect("the migration's state is in the target")
    }
}
