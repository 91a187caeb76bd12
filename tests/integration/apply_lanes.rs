//! The WAL consumer's parallel apply lanes (issue 13): `follow --apply-jobs 4` under SIGKILL,
//! moves between outputs and lanes, fences, unique-value exchanges between lanes and a lane
//! count changed across restarts. Every test ends at a quiet point and compares the target
//! with the expected result computed independently in SQL (or with the source, row for row),
//! and checks that each source change was applied exactly once.

use std::time::Duration;

use switchyard::demo::write_load::{WriteLoad, WriteLoadOptions, WriteLoadReport};
use tokio_postgres::Client;

use crate::faults::{migration_i64, Logs};
use crate::follow::{seeded_pair, Following};
use crate::small_migration::{Migration, SLOT};
use crate::support::wait_until_applied;

/// A seeded pair at `scale`, backfilled, with `switchyard follow --apply-jobs <jobs>` running
/// (its output in `logs`).
async fn following(scale: f64, jobs: &str, logs: &mut Logs) -> Following {
    let (source_cluster, target_cluster, source, target) = seeded_pair(scale).await;
    let mut backfill = logs.spawn(
        &["backfill", "--jobs", "2", "--no-follow"],
        &source_cluster,
        &target_cluster,
    );
    let status = backfill.wait().unwrap();
    assert!(status.success(), "backfill: {status}\n{}", logs.last());
    let consumer = logs.spawn(
        &["follow", "--apply-jobs", jobs],
        &source_cluster,
        &target_cluster,
    );
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

/// The write mix on the source of `f`.
async fn load(f: &Following, seed: u64) -> WriteLoad {
    WriteLoad::start(
        &f.source_cluster.url("legacy"),
        WriteLoadOptions {
            target_rate: Some(400.0),
            seed,
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

/// Source row changes the load committed: each committed statement of the mix changes one row
/// (statements that found no row are counted apart, as misses).
fn changes_of(report: &WriteLoadReport) -> i64 {
    assert_eq!(report.counts.errors, 0, "the load failed: {report:?}");
    report.counts.committed() as i64
}

/// Row changes the source's statistics count on the published tables since the server
/// started (inserted, updated and deleted rows; the load's sessions have ended, so theirs are
/// flushed): an independent count of the changes the stream carries.
async fn source_changes(source: &Client) -> i64 {
    const SQL: &str = "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::int8
               FROM pg_stat_user_tables s JOIN pg_publication_tables p
                 ON p.schemaname = s.schemaname AND p.tablename = s.relname
              WHERE p.pubname = 'switchyard_legacy_to_projects'";
    // Ended sessions flush their counts as they exit: read until two reads agree.
    let mut last = -1;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now: i64 = source.query_one(SQL, &[]).await.unwrap().get(0);
        if now == last {
            return now;
        }
        last = now;
    }
}

/// SIGKILLs the consumer, waits until its sessions are gone and starts `follow --apply-jobs
/// <jobs>`.
async fn kill_and_restart(f: &mut Following, logs: &mut Logs, jobs: &str) {
    f.consumer.kill().unwrap();
    f.consumer.wait().unwrap();
    sessions_gone(f).await;
    println!(
        "killed; the lanes stand at {:?}, restarting with {jobs}",
        lanes(&f.target).await
    );
    tokio::time::sleep(Duration::from_millis(200)).await; // the load goes on meanwhile
    f.consumer = logs.spawn(
        &["follow", "--apply-jobs", jobs],
        &f.source_cluster,
        &f.target_cluster,
    );
}

/// Waits (a few seconds at most) until no session of a killed switchyard remains, then ends
/// any straggler: a restarted consumer must find its slot free.
async fn sessions_gone(f: &Following) {
    const LEFT: &str = "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'switchyard%' OR backend_type = 'walsender'";
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut left = 0i64;
        for client in [&f.source, &f.target] {
            left += client.query_one(LEFT, &[]).await.unwrap().get::<_, i64>(0);
        }
        if left == 0 || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for client in [&f.source, &f.target] {
        client
            .batch_execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'switchyard%' OR backend_type = 'walsender'")
            .await
            .unwrap();
    }
}

/// (lane, applied_lsn, changes_applied) of every row of `switchyard.apply_lanes`.
async fn lanes(target: &Client) -> Vec<(i32, String, i64)> {
    target
        .query(
            "SELECT lane, applied_lsn::text, changes_applied FROM switchyard.apply_lanes ORDER BY lane",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

/// Waits until the summary row counts `expected` changes (it is written after the lanes
/// commit, at most every 200 ms), then asserts that it and the lanes' rows say so.
async fn assert_applied_exactly(f: &mut Following, expected: i64, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let summary = migration_i64(&f.target, "changes_applied").await;
        if summary == expected || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let in_lanes: i64 = lanes(&f.target).await.iter().map(|l| l.2).sum();
    let summary = migration_i64(&f.target, "changes_applied").await;
    assert_eq!(
        (summary, in_lanes),
        (expected, expected),
        "{what}: every source change applied exactly once (summary, sum over the lanes): {:?}",
        lanes(&f.target).await
    );
}

/// Waits until `switchyard.apply_lanes` has `count` rows, all at one position at least as far
/// as the summary row's applied LSN.
async fn assert_lane_rows(f: &mut Following, count: usize) {
    f.wait_for(&format!(
        "SELECT count(*) = {count} AND count(DISTINCT lane) = {count} AND max(lane) = {count} - 1 FROM switchyard.apply_lanes"
    ))
    .await;
    let behind: i64 = f
        .target
        .query_one(
            "SELECT count(*) FROM switchyard.apply_lanes l JOIN switchyard.migrations m ON m.name = l.migration
              WHERE l.applied_lsn < m.applied_lsn",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        behind,
        0,
        "no lane behind the summary: {:?}",
        lanes(&f.target).await
    );
}

/// Proof 1: SIGKILL with four lanes mid-stream under the write mix; the restart converges and
/// applies each change once.
#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_follow_with_4_lanes_converges_and_applies_each_change_once() {
    let mut logs = Logs::default();
    let mut f = following(0.01, "4", &mut logs).await;
    f.catch_up().await;
    let before = migration_i64(&f.target, "changes_applied").await;
    let stat_before = source_changes(&f.source).await;
    let load = load(&f, 13).await;
    for _ in 0..2 {
        let applied = migration_i64(&f.target, "changes_applied").await;
        f.wait_for(&format!(
            "SELECT changes_applied > {applied} + 100 FROM switchyard.migrations"
        ))
        .await;
        kill_and_restart(&mut f, &mut logs, "4").await;
    }
    f.wait_for("SELECT coalesce(heartbeat_at > now() - interval '2 seconds', false) FROM switchyard.migrations").await;
    tokio::time::sleep(Duration::from_millis(500)).await; // following again under the load
    let report = load.stop().await.unwrap();
    f.assert_converged().await;
    let changed = source_changes(&f.source).await - stat_before;
    println!(
        "load committed {}, source statistics count {changed} row changes",
        changes_of(&report)
    );
    assert_applied_exactly(&mut f, before + changed, "after two SIGKILLs").await;
    assert_lane_rows(&mut f, 4).await;
    assert!(f.consumer.try_wait().unwrap().is_none());
}

/// Proof 2: key changes (the old target row deleted, the new one written, likely by another
/// lane) and rows moving between tasks and sub_tasks (another output, another lane), alone and
/// combined, in one transaction and across transactions.
#[tokio::test(flavor = "multi_thread")]
async fn key_changes_and_moves_between_outputs_cross_lanes_and_converge() {
    let mut logs = Logs::default();
    let mut f = following(0.005, "4", &mut logs).await;
    f.catch_up().await;
    let before = migration_i64(&f.target, "changes_applied").await;
    // Top-level items without children: 40 of them, their keys free to change.
    let ids: Vec<i64> = f
        .source
        .query(
            "SELECT id FROM vortex_items v WHERE parent_item_id IS NULL
                AND NOT EXISTS (SELECT FROM vortex_items c WHERE c.parent_item_id = v.id)
              ORDER BY id LIMIT 41",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids.len(), 41, "the test needs 41 leaf tasks");
    let parent = ids[40];
    const SHIFT: i64 = 1_000_000_000_000;
    let mut changed = 0u64;
    // One transaction: ten keys change, ten rows gain a parent (tasks -> sub_tasks), ten do
    // both at once.
    let tx = f.source.transaction().await.unwrap();
    for &id in &ids[0..10] {
        changed += tx
            .execute(
                "UPDATE vortex_items SET id = id + $2 WHERE id = $1",
                &[&id, &SHIFT],
            )
            .await
            .unwrap();
    }
    for &id in &ids[10..20] {
        changed += tx
            .execute(
                "UPDATE vortex_items SET parent_item_id = $2 WHERE id = $1",
                &[&id, &parent],
            )
            .await
            .unwrap();
    }
    for &id in &ids[20..30] {
        changed += tx
            .execute(
                "UPDATE vortex_items SET id = id + $2, parent_item_id = $3 WHERE id = $1",
                &[&id, &SHIFT, &parent],
            )
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    f.assert_converged().await;
    let moved: i64 = f
        .target
        .query_one(
            "SELECT count(*) FROM sub_tasks WHERE legacy_id = ANY($1) OR legacy_id = ANY($2)",
            &[
                &ids[10..20].to_vec(),
                &ids[20..30].iter().map(|i| i + SHIFT).collect::<Vec<_>>(),
            ],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(moved, 20, "twenty rows moved to sub_tasks");
    // Back again, one transaction each, interleaved: keys return, parents are dropped, and a
    // row changes its key twice and moves twice in one transaction.
    for &id in &ids[0..10] {
        changed += f
            .source
            .execute(
                "UPDATE vortex_items SET id = $1 WHERE id = $1::int8 + $2::int8",
                &[&id, &SHIFT],
            )
            .await
            .unwrap();
    }
    for &id in &ids[10..20] {
        changed += f
            .source
            .execute(
                "UPDATE vortex_items SET parent_item_id = NULL WHERE id = $1",
                &[&id],
            )
            .await
            .unwrap();
    }
    let tx = f.source.transaction().await.unwrap();
    for &id in &ids[20..30] {
        changed += tx
            .execute(
                "UPDATE vortex_items SET id = $1, parent_item_id = NULL WHERE id = $1::int8 + $2::int8",
                &[&id, &SHIFT],
            )
            .await
            .unwrap();
        changed += tx
            .execute(
                "UPDATE vortex_items SET id = id + 2 * $2::int8, parent_item_id = $3 WHERE id = $1",
                &[&id, &SHIFT, &parent],
            )
            .await
            .unwrap();
        changed += tx
            .execute(
                "UPDATE vortex_items SET id = $1, parent_item_id = NULL WHERE id = $1::int8 + 2 * $2::int8",
                &[&id, &SHIFT],
            )
            .await
            .unwrap();
    }
    // A key change into a key another row just left, in the same transaction.
    changed += tx
        .execute(
            "UPDATE vortex_items SET id = id + $2 WHERE id = $1",
            &[&ids[30], &SHIFT],
        )
        .await
        .unwrap();
    changed += tx
        .execute(
            "UPDATE vortex_items SET id = $2 WHERE id = $1",
            &[&ids[31], &ids[30]],
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    f.assert_converged().await;
    assert_applied_exactly(&mut f, before + changed as i64, "key changes and moves").await;
    assert_lane_rows(&mut f, 4).await;
}

/// Proof 3: verify's fences under the write mix wait for every lane: verify passes with the
/// consumer caught up, and the fence recorded in the summary row is behind no lane.
#[tokio::test(flavor = "multi_thread")]
async fn a_fence_under_load_waits_for_every_lane() {
    let mut logs = Logs::default();
    let mut f = following(0.005, "4", &mut logs).await;
    // At the moment each fence is recorded (in the transaction that records it), the lanes'
    // rows as that transaction sees them: every lane must have committed up to the fence.
    f.target
        .batch_execute(
            "CREATE SCHEMA audit;
             CREATE TABLE audit.fences (fence_lsn pg_lsn, lanes int8, behind int8, positions text);
             CREATE FUNCTION audit.fence() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
             BEGIN
               IF NEW.fence_id IS DISTINCT FROM OLD.fence_id THEN
                 INSERT INTO audit.fences
                 SELECT NEW.fence_lsn, count(*), count(*) FILTER (WHERE applied_lsn < NEW.fence_lsn),
                        string_agg(lane || ':' || applied_lsn, ' ' ORDER BY lane)
                   FROM switchyard.apply_lanes WHERE migration = NEW.name;
               END IF;
               RETURN NEW;
             END $$;
             CREATE TRIGGER fence_audit BEFORE UPDATE ON switchyard.migrations
                 FOR EACH ROW EXECUTE FUNCTION audit.fence();
             ALTER TABLE switchyard.migrations ENABLE ALWAYS TRIGGER fence_audit;",
        )
        .await
        .unwrap();
    let load = load(&f, 7).await;
    f.wait_for("SELECT changes_applied > 100 FROM switchyard.migrations")
        .await;
    // What verify takes for a running consumer (its heartbeat is about a second apart).
    f.wait_for("SELECT coalesce(heartbeat_at > now() - interval '2 seconds', false) FROM switchyard.migrations").await;
    let (source_url, target_url) = (f.source_cluster.url("legacy"), f.target_cluster.url("app"));
    let plan = crate::support::seed_plan();
    let out = tokio::task::spawn_blocking(move || {
        crate::support::run_command("verify", &plan, &source_url, &target_url, &["--json"])
    })
    .await
    .unwrap();
    let during = load.counts();
    assert!(during.committed() > 0, "the load wrote during verify");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "verify printed no JSON report ({e}):\nstdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert_eq!(report["consumer"], "caught_up", "{report:#}");
    let row = f
        .target
        .query_one(
            "SELECT fence_id, fence_lsn::text,
                    (SELECT count(*) FROM switchyard.apply_lanes l WHERE l.migration = m.name),
                    (SELECT count(*) FROM switchyard.apply_lanes l
                      WHERE l.migration = m.name AND l.applied_lsn < m.fence_lsn),
                    m.applied_lsn >= m.fence_lsn
               FROM switchyard.migrations m",
            &[],
        )
        .await
        .unwrap();
    let (fence_id, fence_lsn): (Option<String>, Option<String>) = (row.get(0), row.get(1));
    assert!(
        fence_id.is_some() && fence_lsn.is_some(),
        "verify's fence is recorded"
    );
    assert_eq!(row.get::<_, i64>(2), 4, "{:?}", lanes(&f.target).await);
    assert_eq!(
        row.get::<_, i64>(3),
        0,
        "every lane applied up to the fence {fence_lsn:?}: {:?}",
        lanes(&f.target).await
    );
    assert!(row.get::<_, bool>(4));
    let fences: Vec<(String, i64, i64, String)> = f
        .target
        .query(
            "SELECT fence_lsn::text, lanes, behind, positions FROM audit.fences",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert!(!fences.is_empty(), "verify's fences were recorded");
    for fence in &fences {
        assert_eq!(
            (fence.1, fence.2),
            (4, 0),
            "a fence recorded before every lane committed up to it: {fences:#?}"
        );
    }
    println!(
        "{} fences, each recorded after all 4 lanes: {fences:?}",
        fences.len()
    );
    let report = load.stop().await.unwrap();
    f.assert_converged().await;
    let _ = changes_of(&report);
}

/// The scenario of `silent_loss::unique_swap`, here with four lanes and more exchanges: the
/// rows' operations fall into different lanes, whose set-based writes refuse or deadlock each
/// other; the consumer restarts itself and applies that stretch in source order.
const MORE_EXCHANGES: &str = r#"
BEGIN;
UPDATE users SET email = 'tmp' WHERE id = 30;
UPDATE users SET email = 'u30' WHERE id = 31;
UPDATE users SET email = 'u31' WHERE id = 30;
COMMIT;
BEGIN;
UPDATE users SET email = 'tmp' WHERE id = 32;
UPDATE users SET email = 'u32' WHERE id = 33;
UPDATE users SET email = 'u33' WHERE id = 32;
COMMIT;
BEGIN;
UPDATE users SET email = 'tmp' WHERE id = 34;
UPDATE users SET email = 'u34' WHERE id = 35;
UPDATE users SET email = 'u35' WHERE id = 34;
COMMIT;
BEGIN;
UPDATE users SET email = 'tmp' WHERE id = 36;
UPDATE users SET email = 'u36' WHERE id = 37;
UPDATE users SET email = 'u37' WHERE id = 36;
COMMIT;
BEGIN;
UPDATE users SET email = 'tmp' WHERE id = 38;
UPDATE users SET email = 'u38' WHERE id = 39;
UPDATE users SET email = 'u39' WHERE id = 38;
COMMIT;
"#;

/// Proof 4.
#[tokio::test(flavor = "multi_thread")]
async fn unique_value_exchanges_across_4_lanes_are_applied_with_nothing_dead_lettered() {
    use crate::silent_loss::unique_swap::{EXCHANGES, PAIRS, PLAN, SOURCE, TARGET};
    let mut m = Migration::prepare(SOURCE, TARGET, PLAN).await;
    let log = m.cluster.dir().join("apply_lanes_follow.log");
    let out = std::fs::File::create(&log).unwrap();
    let urls = m.urls();
    let mut args = m.args("backfill", &urls);
    args.extend(["--jobs", "2", "--apply-jobs", "4"]);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(&args)
        .env("SWITCHYARD_LOG", "switchyard=info")
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    crate::support::wait_for(
        &m.target,
        "SELECT coalesce((SELECT status = 'following' FROM switchyard.migrations), false)",
        &mut child,
    )
    .await;
    m.consumer = Some(child);
    let show = || std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(m.assert_pairs(PAIRS).await, vec![31, 31, 30, 10, 10]);
    // Everything at once, so that the consumer takes it as few groups.
    m.source
        .batch_execute(&format!("{EXCHANGES}\n{MORE_EXCHANGES}"))
        .await
        .unwrap();
    wait_until_applied(&m.source, SLOT, m.consumer.as_mut().unwrap()).await;
    assert_eq!(
        m.assert_pairs(PAIRS).await,
        vec![32, 32, 30, 10, 10],
        "{}",
        show()
    );
    assert_eq!(dead_letters(&m.target).await, 0, "{}", show());
    let text = show();
    assert!(
        text.contains("applying up to"),
        "a conflict between lanes was met and applied in source order:\n{text}"
    );
    // And again later, in both directions: the lanes go on in parallel afterwards.
    m.write(
        "BEGIN;
         UPDATE users SET email = 'tmp' WHERE id = 12;
         UPDATE users SET email = 'u12' WHERE id = 11;
         UPDATE users SET email = 'u11' WHERE id = 12;
         COMMIT;
         UPDATE users SET email = email || '!' WHERE id BETWEEN 30 AND 40;
         BEGIN;
         UPDATE users SET email = 'tmp' WHERE id = 31;
         UPDATE users SET email = 'u31!' WHERE id = 30;
         UPDATE users SET email = 'u30!' WHERE id = 31;
         COMMIT;",
    )
    .await;
    m.assert_pairs(PAIRS).await;
    assert_eq!(dead_letters(&m.target).await, 0, "{}", show());
    assert!(
        m.consumer.as_mut().unwrap().try_wait().unwrap().is_none(),
        "the consumer recovers by itself:\n{}",
        show()
    );
    let rows: i64 = m
        .target
        .query_one("SELECT count(*) FROM switchyard.apply_lanes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 4, "{}", show());
}

async fn dead_letters(target: &Client) -> i64 {
    target
        .query_one("SELECT count(*) FROM switchyard.dead_letters", &[])
        .await
        .unwrap()
        .get(0)
}

/// Proof 5: four lanes, SIGKILL under load, a restart with one lane, then one with three:
/// each change applied once, and the lanes table ends with the last count's rows.
#[tokio::test(flavor = "multi_thread")]
async fn the_lane_count_changes_across_restarts_and_each_change_applies_once() {
    let mut logs = Logs::default();
    let mut f = following(0.01, "4", &mut logs).await;
    f.catch_up().await;
    let before = migration_i64(&f.target, "changes_applied").await;
    let stat_before = source_changes(&f.source).await;
    let load = load(&f, 5).await;
    f.wait_for("SELECT changes_applied > 150 FROM switchyard.migrations")
        .await;
    kill_and_restart(&mut f, &mut logs, "1").await;
    // Serial past the furthest lane, then one lane.
    assert_lane_rows(&mut f, 1).await;
    let applied = migration_i64(&f.target, "changes_applied").await;
    f.wait_for(&format!(
        "SELECT changes_applied > {applied} + 100 FROM switchyard.migrations"
    ))
    .await;
    let report = load.stop().await.unwrap();
    f.assert_converged().await;
    let mut expected = before + source_changes(&f.source).await - stat_before;
    println!(
        "load committed {}, expecting {expected}",
        changes_of(&report)
    );
    assert_applied_exactly(&mut f, expected, "four lanes killed, one lane after").await;
    assert_lane_rows(&mut f, 1).await;

    // Three lanes: killed under the load again, the same count on the restart.
    let load = self::load(&f, 6).await;
    f.wait_for(&format!(
        "SELECT changes_applied > {expected} + 50 FROM switchyard.migrations"
    ))
    .await;
    kill_and_restart(&mut f, &mut logs, "3").await;
    assert_lane_rows(&mut f, 3).await;
    let applied = migration_i64(&f.target, "changes_applied").await;
    f.wait_for(&format!(
        "SELECT changes_applied > {applied} + 100 FROM switchyard.migrations"
    ))
    .await;
    let report = load.stop().await.unwrap();
    f.assert_converged().await;
    let _ = changes_of(&report);
    expected = before + source_changes(&f.source).await - stat_before;
    assert_applied_exactly(&mut f, expected, "one lane killed, three lanes after").await;
    assert_lane_rows(&mut f, 3).await;
    assert!(f.consumer.try_wait().unwrap().is_none());
}
