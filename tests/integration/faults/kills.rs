//! SIGKILL at seeded random points, under the write load. The seed and the number of kill
//! points come from the environment so that a failure reproduces:
//!
//! ```text
//! SWITCHYARD_FAULT_SEED=<u64>            (printed by every run)
//! SWITCHYARD_FAULT_BACKFILL_KILLS=<n>    kills that land mid-copy
//! SWITCHYARD_FAULT_CHUNKS_PER_KILL=<n>   at most this many chunks finished between two kills
//! SWITCHYARD_FAULT_FOLLOW_KILLS=<n>      kills while the consumer streams
//! ```

use std::time::{Duration, Instant};

use switchyard::demo::prng::Prng;
use switchyard::demo::write_load::{WriteLoad, WriteLoadOptions};
use tokio_postgres::Client;

use super::{env_or, migration_i64, Logs};
use crate::follow::{seeded_pair, Following};
use crate::support::wait_for;

/// Where and how often to kill.
struct KillPlan {
    seed: u64,
    backfill_kills: usize,
    follow_kills: usize,
    scale: f64,
    /// A backfill run is killed once it finished up to this many more chunks (drawn, and never
    /// the last two, so that every kill lands mid-copy and the kills spread over the copy)...
    chunks_per_kill: u64,
    /// ... and then at most this long after.
    backfill_delay_ms: u64,
    /// A follow kill lands this long (at most) after the consumer applied something.
    follow_delay_ms: u64,
}

impl KillPlan {
    fn from_env(backfill_kills: usize, follow_kills: usize, scale: f64) -> KillPlan {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        let plan = KillPlan {
            seed: env_or("SWITCHYARD_FAULT_SEED", now.as_nanos() as u64),
            backfill_kills: env_or("SWITCHYARD_FAULT_BACKFILL_KILLS", backfill_kills),
            follow_kills: env_or("SWITCHYARD_FAULT_FOLLOW_KILLS", follow_kills),
            scale: env_or("SWITCHYARD_FAULT_SCALE", scale),
            chunks_per_kill: env_or("SWITCHYARD_FAULT_CHUNKS_PER_KILL", 3),
            backfill_delay_ms: env_or("SWITCHYARD_FAULT_BACKFILL_DELAY_MS", 200),
            follow_delay_ms: env_or("SWITCHYARD_FAULT_FOLLOW_DELAY_MS", 1500),
        };
        println!(
            "SWITCHYARD_FAULT_SEED={} SWITCHYARD_FAULT_BACKFILL_KILLS={} SWITCHYARD_FAULT_FOLLOW_KILLS={} SWITCHYARD_FAULT_SCALE={}",
            plan.seed, plan.backfill_kills, plan.follow_kills, plan.scale
        );
        plan
    }
}

/// Reads one count from the target.
async fn count(client: &Client, sql: &str) -> i64 {
    client
        .query_one(sql, &[])
        .await
        .map(|r| r.get(0))
        .unwrap_or(0)
}

/// Waits until no session of a killed switchyard remains on either server (the servers notice
/// a dead client at their next read or write); ends the stragglers after a few seconds.
async fn wait_for_sessions_gone(source: &Client, target: &Client) {
    const GONE: &str = "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'switchyard%' OR backend_type = 'walsender'";
    let deadline = Instant::now() + Duration::from_secs(5);
    while (count(source, GONE).await > 0 || count(target, GONE).await > 0)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for client in [source, target] {
        client
            .batch_execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'switchyard%' OR backend_type = 'walsender'",
            )
            .await
            .unwrap();
    }
}

async fn kills_at_seeded_points(plan: KillPlan) {
    let started = Instant::now();
    let mut rng = Prng::new(plan.seed);
    let mut logs = Logs::default();
    let (source_cluster, target_cluster, source, target) = seeded_pair(plan.scale).await;
    let load = WriteLoad::start(
        &source_cluster.url("legacy"),
        WriteLoadOptions {
            target_rate: Some(300.0),
            seed: plan.seed,
            ..Default::default()
        },
    )
    .await
    .unwrap();

    // Backfill: each run is killed a random moment after its readers began copying and it
    // finished a random number of chunks.
    let mut run = logs.spawn(
        &["backfill", "--jobs", "2"],
        &source_cluster,
        &target_cluster,
    );
    let mut mid_copy = Vec::new();
    while mid_copy.len() < plan.backfill_kills {
        wait_for(
            &source,
            "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE application_name = 'switchyard backfill reader' AND state = 'active' AND query LIKE 'COPY%')",
            &mut run,
        )
        .await;
        let more = rng.below(plan.chunks_per_kill + 1);
        wait_for(
            &target,
            &format!(
                "SELECT count(*) FILTER (WHERE status = 'done') >= least({} + {more}, count(*) - 2) FROM switchyard.chunks",
                mid_copy.last().copied().unwrap_or(0)
            ),
            &mut run,
        )
        .await;
        let delay = rng.below(plan.backfill_delay_ms.max(1));
        tokio::time::sleep(Duration::from_millis(delay)).await;
        run.kill().unwrap();
        run.wait().unwrap();
        let done = count(
            &target,
            "SELECT count(*) FILTER (WHERE status = 'done') FROM switchyard.chunks",
        )
        .await;
        let total = count(&target, "SELECT count(*) FROM switchyard.chunks").await;
        println!(
            "backfill kill {}: {delay} ms after {more} more chunks were done, {done} of {total} chunks done",
            mid_copy.len() + 1
        );
        assert!(
            done < total,
            "kill {} landed after the copy ended ({done} of {total} chunks): raise SWITCHYARD_FAULT_SCALE or lower SWITCHYARD_FAULT_CHUNKS_PER_KILL",
            mid_copy.len() + 1
        );
        mid_copy.push(done);
        wait_for_sessions_gone(&source, &target).await;
        run = logs.spawn(
            &["backfill", "--resume", "--jobs", "2"],
            &source_cluster,
            &target_cluster,
        );
    }
    let mut f = Following {
        source_cluster,
        target_cluster,
        source,
        target,
        consumer: run,
    };
    f.wait_for("SELECT status = 'following' FROM switchyard.migrations")
        .await;
    let backfill_done = started.elapsed();

    // Follow: each consumer is killed a random moment after it applied something.
    for kill in 1..=plan.follow_kills {
        let applied = migration_i64(&f.target, "changes_applied").await;
        f.wait_for(&format!(
            "SELECT changes_applied > {applied} FROM switchyard.migrations"
        ))
        .await;
        let delay = rng.below(plan.follow_delay_ms.max(1));
        tokio::time::sleep(Duration::from_millis(delay)).await;
        f.consumer.kill().unwrap();
        f.consumer.wait().unwrap();
        let down = rng.below(500);
        println!("follow kill {kill}: {delay} ms after an apply, restarted {down} ms later");
        tokio::time::sleep(Duration::from_millis(down)).await; // the load goes on meanwhile
        f.consumer = logs.spawn(&["follow"], &f.source_cluster, &f.target_cluster);
    }

    // The quiet point: writes stopped, the consumer caught up.
    let report = load.stop().await.unwrap();
    f.assert_converged().await;
    println!(
        "seed {}: {} backfill kills (chunks done at each: {mid_copy:?}) in {:.1} s, {} follow kills, {} writes committed, {} changes applied, converged in {:.1} s",
        plan.seed,
        mid_copy.len(),
        backfill_done.as_secs_f64(),
        plan.follow_kills,
        report.counts.committed(),
        migration_i64(&f.target, "changes_applied").await,
        started.elapsed().as_secs_f64()
    );
    assert!(report.counts.committed() > 0, "the load wrote nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_at_seeded_points_in_backfill_and_follow_loses_and_doubles_nothing() {
    kills_at_seeded_points(KillPlan::from_env(2, 2, 0.1)).await;
}

/// The full run: at least 20 kill points across the two phases.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "minutes long; run with --ignored"]
async fn sigkill_at_22_seeded_points_in_backfill_and_follow_loses_and_doubles_nothing() {
    kills_at_seeded_points(KillPlan::from_env(10, 12, 0.5)).await;
}
