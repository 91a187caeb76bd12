//! Ctrl-C (SIGINT) and SIGTERM. The backfill exits with the shell's code for the signal (130,
//! 143) and says what it kept; `follow` ends between groups and exits 0. Either way a rerun
//! goes on from what was recorded, redoing nothing.

use std::path::Path;
use std::process::Child;
use std::time::Duration;

use switchyard::demo::cluster::Cluster;
use tokio_postgres::Client;

use super::{
    exit_within, following, migration_i64, migration_state, plan_with, send, source_objects, Logs,
};
use crate::follow::seeded_pair;
use crate::support::{
    assert_target_matches_expected, backfill, lift_stall, middle_top_level_item, seed_plan,
    stall_tasks, switchyard, wait_for,
};

/// Starts `backfill --no-follow` and waits until `condition` holds on the target.
async fn backfill_until(
    logs: &mut Logs,
    plan: &Path,
    source: &Cluster,
    target: &Cluster,
    target_client: &Client,
    condition: &str,
) -> Child {
    let args = ["backfill", "--jobs", "2", "--no-follow"];
    let mut run = logs.spawn_with_plan(&args, plan, source, target);
    wait_for(target_client, condition, &mut run).await;
    run
}

/// (table, chunk, finished_at as text) of every chunk done.
async fn done_chunks(target: &Client) -> Vec<(String, i32, String)> {
    target
        .query(
            "SELECT source_table, chunk_no, finished_at::text FROM switchyard.chunks WHERE status = 'done' ORDER BY 1, 2",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn sigint_mid_backfill_exits_130_and_the_resume_copies_only_what_was_left() {
    let mut logs = Logs::default();
    let (source_cluster, target_cluster, source, target) = seeded_pair(0.02).await;
    // One chunk of vortex_items stalls: every other chunk finishes, that one is in flight.
    let stalled = middle_top_level_item(&source).await;
    stall_tasks(&target, stalled, 1).await;
    let mut run = backfill_until(
        &mut logs,
        &seed_plan(),
        &source_cluster,
        &target_cluster,
        &target,
        "SELECT count(*) > 0 AND count(*) FILTER (WHERE status = 'done') = count(*) - 1 FROM switchyard.chunks",
    )
    .await;
    send(&run, libc::SIGINT);
    let status = exit_within(&mut run, Duration::from_secs(15));
    let out = logs.last();
    assert_eq!(status.code(), Some(130), "{out}");
    assert!(
        out.contains("interrupted:")
            && out.contains("chunks are copied and recorded")
            && out.contains("--resume"),
        "{out}"
    );
    let (state, message) = migration_state(&target).await;
    assert_eq!(state, "backfilling");
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("interrupted")),
        "the reason is recorded for `status`: {message:?}"
    );
    let shown = switchyard(&[
        "status",
        "--plan",
        seed_plan().to_str().unwrap(),
        "--target",
        &target_cluster.url("app"),
    ]);
    assert!(
        String::from_utf8_lossy(&shown.stdout).contains("backfill interrupted"),
        "{shown:?}"
    );
    lift_stall(&target).await;
    let before = done_chunks(&target).await;

    backfill(
        &source_cluster.url("legacy"),
        &target_cluster.url("app"),
        &["--resume"],
    );
    let after = done_chunks(&target).await;
    assert_eq!(
        after.len(),
        before.len() + 1,
        "only the chunk in flight is copied again"
    );
    for chunk in &before {
        assert!(after.contains(chunk), "{chunk:?} was copied again");
    }
    assert_target_matches_expected(&source, &target).await;
}

/// A first run stalled between creating its slot and recording its chunk list (the insert of
/// the chunk list sleeps); `lift` ends the stall.
async fn stalled_first_run(logs: &mut Logs) -> (Cluster, Cluster, Client, Client, Child) {
    let (source_cluster, target_cluster, source, target) = seeded_pair(0.002).await;
    target
        .batch_execute("CREATE SCHEMA switchyard")
        .await
        .unwrap();
    target
        .batch_execute(switchyard::checkpoint::SCHEMA_SQL)
        .await
        .unwrap();
    target
        .batch_execute(
            "CREATE FUNCTION stall() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(600); RETURN NULL; END $$;
             CREATE TRIGGER stall BEFORE INSERT ON switchyard.chunks FOR EACH STATEMENT EXECUTE FUNCTION stall();
             ALTER TABLE switchyard.chunks ENABLE ALWAYS TRIGGER stall;",
        )
        .await
        .unwrap();
    let run = backfill_until(
        logs,
        &seed_plan(),
        &source_cluster,
        &target_cluster,
        &target,
        "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE application_name = 'switchyard backfill' AND wait_event = 'PgSleep')",
    )
    .await;
    assert!(source_objects(&source).await.0, "the slot exists by now");
    (source_cluster, target_cluster, source, target, run)
}

/// Ends the stall of [`stalled_first_run`].
async fn lift(target: &Client) {
    target
        .batch_execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE wait_event = 'PgSleep';
             DROP TRIGGER stall ON switchyard.chunks;",
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_before_the_copy_removes_the_slot_and_publication_it_made() {
    let mut logs = Logs::default();
    let (source_cluster, target_cluster, source, target, mut run) =
        stalled_first_run(&mut logs).await;
    send(&run, libc::SIGTERM);
    let status = exit_within(&mut run, Duration::from_secs(15));
    let out = logs.last();
    assert_eq!(status.code(), Some(143), "{out}");
    assert!(out.contains("interrupted: before the copy began"), "{out}");
    let (slot, publication, _) = source_objects(&source).await;
    assert!(!slot && !publication, "nothing is left on the source");
    lift(&target).await;
    assert_eq!(migration_state(&target).await.0, "aborted");

    // A new run starts over and gets it all.
    backfill(
        &source_cluster.url("legacy"),
        &target_cluster.url("app"),
        &[],
    );
    assert_target_matches_expected(&source, &target).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_before_the_copy_leaves_created_and_a_plain_rerun_starts_over() {
    let mut logs = Logs::default();
    let (source_cluster, target_cluster, source, target, mut run) =
        stalled_first_run(&mut logs).await;
    run.kill().unwrap();
    run.wait().unwrap();
    lift(&target).await;
    assert_eq!(migration_state(&target).await.0, "created");
    assert!(source_objects(&source).await.0, "no clean-up after SIGKILL");

    // Nothing is worth resuming: a plain rerun drops the dead run's slot and starts over.
    let out = backfill(
        &source_cluster.url("legacy"),
        &target_cluster.url("app"),
        &[],
    );
    assert!(out.status.success(), "{out:?}");
    assert_target_matches_expected(&source, &target).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigint_mid_follow_ends_between_groups_and_the_rerun_applies_each_change_once() {
    let mut logs = Logs::default();
    let mut f = following(0.005, &mut logs).await;
    f.catch_up().await;
    let before = migration_i64(&f.target, "changes_applied").await;
    // Small transactions, one after another; the signal arrives while they stream in, and the
    // rest are written while the consumer is stopped.
    let (mut changed, mut before_stop) = (0u64, 0u64);
    for n in 0..40i64 {
        if n == 10 {
            before_stop = changed;
            send(&f.consumer, libc::SIGINT);
            let status = exit_within(&mut f.consumer, Duration::from_secs(15));
            assert!(
                status.success(),
                "a stop is a clean end: {status}\n{}",
                logs.last()
            );
            assert!(logs.last().contains("stopped; `switchyard follow` resumes"));
        }
        changed += f
            .source
            .execute(
                "UPDATE vortex_items SET title = title || '.' WHERE id % 40 = $1",
                &[&n],
            )
            .await
            .unwrap();
    }
    let stopped_at = migration_i64(&f.target, "changes_applied").await;
    let lsn_at_stop: String = f
        .target
        .query_one(
            "SELECT coalesce(applied_lsn, snapshot_lsn)::text FROM switchyard.migrations",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        stopped_at - before <= before_stop as i64,
        "nothing after the stop was applied"
    );

    f.consumer = logs.spawn(&["follow"], &f.source_cluster, &f.target_cluster);
    f.catch_up().await;
    assert_eq!(
        migration_i64(&f.target, "changes_applied").await - before,
        changed as i64,
        "every change applied once: none again after the stop, none lost"
    );
    let advanced: bool = f
        .target
        .query_one(
            "SELECT applied_lsn > $1::text::pg_lsn FROM switchyard.migrations",
            &[&lsn_at_stop],
        )
        .await
        .unwrap()
        .get(0);
    assert!(advanced, "the rerun went on from the recorded LSN");
    f.assert_converged().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigint_during_the_after_backfill_sql_cancels_it_and_the_resume_runs_it_again() {
    let mut logs = Logs::default();
    let (source_cluster, target_cluster, source, target) = seeded_pair(0.002).await;
    // The after-backfill SQL sleeps once the chunks are copied, while table sleep_here exists.
    let plan = plan_with(
        source_cluster.dir(),
        "validate_tasks.sql",
        "DO $$ BEGIN IF EXISTS (SELECT FROM tasks) AND to_regclass('public.sleep_here') IS NOT NULL THEN PERFORM pg_sleep(600); END IF; END $$;",
    );
    target
        .batch_execute("CREATE TABLE sleep_here ()")
        .await
        .unwrap();
    const SLEEPING: &str = "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE application_name = 'switchyard backfill' AND wait_event = 'PgSleep')";
    let mut run = backfill_until(
        &mut logs,
        &plan,
        &source_cluster,
        &target_cluster,
        &target,
        SLEEPING,
    )
    .await;
    send(&run, libc::SIGINT);
    let status = exit_within(&mut run, Duration::from_secs(15));
    let out = logs.last();
    assert_eq!(status.code(), Some(130), "{out}");
    assert!(out.contains("during the after-backfill SQL"), "{out}");
    // Cancelled, not left running on the server with its locks until it notices.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while target
        .query_one(SLEEPING, &[])
        .await
        .unwrap()
        .get::<_, bool>(0)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the statement still runs"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(migration_state(&target).await.0, "backfilling");

    target.batch_execute("DROP TABLE sleep_here").await.unwrap();
    let args = ["backfill", "--resume", "--no-follow"];
    let mut resume = logs.spawn_with_plan(&args, &plan, &source_cluster, &target_cluster);
    let status = exit_within(&mut resume, Duration::from_secs(60));
    assert!(status.success(), "{}", logs.last());
    assert_eq!(migration_state(&target).await.0, "backfilled");
    assert_target_matches_expected(&source, &target).await;
}
