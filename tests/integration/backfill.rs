use std::time::Duration;

use switchyard::demo::cluster::Cluster;
use tokio_postgres::Client;

use crate::support::{
    assert_target_matches_expected, backfill, cluster, done_chunks, prepare_target, seed_plan,
    seeded_source, wait_for,
};

#[tokio::test(flavor = "multi_thread")]
async fn target_equals_transformed_source_for_every_output_table() {
    let (source_cluster, target_cluster) = (cluster(), cluster());
    let source = seeded_source(&source_cluster, "legacy", 0.01).await;
    target_cluster.create_database("app").await.unwrap();
    backfill(
        &source_cluster.url("legacy"),
        &target_cluster.url("app"),
        &[],
    );
    let target = target_cluster.connect("app").await.unwrap();
    assert_target_matches_expected(&source, &target).await;

    let status: String = target
        .query_one(
            "SELECT status FROM switchyard.migrations WHERE name = 'legacy_to_projects'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "backfilled");
    let slot_kept = source
        .query_opt(
            "SELECT FROM pg_replication_slots WHERE slot_name = 'switchyard_legacy_to_projects'",
            &[],
        )
        .await
        .unwrap();
    assert!(slot_kept.is_some(), "the slot stays for the WAL consumer");
}

/// A write and the WAL insert positions read just before it began and just after it committed.
struct TimedWrite {
    id: i64,
    title: String,
    before: u64,
    after: u64,
}

async fn wal_insert_lsn(client: &Client) -> u64 {
    let lsn: String = client
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    lsn.parse::<switchyard::pg::lsn::Lsn>().unwrap().0
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_written_during_backfill_are_not_in_the_copy() {
    let cluster = cluster();
    let source = seeded_source(&cluster, "app", 0.03).await;
    let url = cluster.url("app");

    // The writer inserts top-level items and retitles existing ones, one per transaction.
    let writer = cluster.connect("app").await.unwrap();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let writes = tokio::spawn(async move {
        let mut done = Vec::new();
        let mut n = 0i64;
        while !*stop_rx.borrow() {
            n += 1;
            let before = wal_insert_lsn(&writer).await;
            let (id, title) = if n % 2 == 0 {
                let title = format!("inserted during backfill {n}");
                let row = writer
                    .query_one("INSERT INTO vortex_items (title, created_at, updated_at) VALUES ($1, now(), now()) RETURNING id", &[&title])
                    .await
                    .unwrap();
                (row.get::<_, i64>(0), title)
            } else {
                let title = format!("retitled during backfill {n}");
                let row = writer
                    .query_one(
                        "UPDATE vortex_items SET title = $1 WHERE id = (SELECT min(id) + $2 FROM vortex_items WHERE parent_item_id IS NULL) AND parent_item_id IS NULL RETURNING id",
                        &[&title, &(n * 7 % 1000)],
                    )
                    .await
                    .map(|r| r.get::<_, i64>(0))
                    .unwrap_or(-1);
                (row, title)
            };
            let after = wal_insert_lsn(&writer).await;
            if id > 0 {
                done.push(TimedWrite {
                    id,
                    title,
                    before,
                    after,
                });
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        done
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let run = tokio::task::spawn_blocking(move || backfill(&url, &url, &[]));
    run.await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop_tx.send(true).unwrap();
    let writes = writes.await.unwrap();

    let snapshot: String = source
        .query_one("SELECT snapshot_lsn::text FROM switchyard.migrations", &[])
        .await
        .unwrap()
        .get(0);
    let snapshot = snapshot.parse::<switchyard::pg::lsn::Lsn>().unwrap().0;
    let (mut seen_before, mut seen_after) = (0, 0);
    for w in &writes {
        let title: Option<String> = source
            .query_opt("SELECT title FROM tasks WHERE legacy_id = $1", &[&w.id])
            .await
            .unwrap()
            .map(|r| r.get(0));
        if w.after <= snapshot {
            seen_before += 1;
            assert_eq!(
                title.as_deref(),
                Some(w.title.as_str()),
                "a write committed before the snapshot is in the copy"
            );
        } else if w.before >= snapshot {
            seen_after += 1;
            assert_ne!(
                title.as_deref(),
                Some(w.title.as_str()),
                "a write committed after the snapshot is not in the copy"
            );
        }
    }
    assert!(
        seen_before > 0 && seen_after > 0,
        "writes on both sides of the snapshot ({seen_before} before, {seen_after} after)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_rows_land_in_the_dead_letter_table_and_nothing_else_is_lost() {
    let (source_cluster, target_cluster) = (cluster(), cluster());
    let source = seeded_source(&source_cluster, "legacy", 0.005).await;
    // Added after `expected` was computed: the expected result is everything but these.
    let bad: Vec<i64> = source
        .query(
            "INSERT INTO company_projects (company_id, name, budget, start_date, created_at, updated_at)
             VALUES (1, 'bad budget', 'n/a', NULL, now(), now()), (1, 'bad date', '10', '2024-02-30', now(), now())
             RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let refused: i64 = source
        .query_one("INSERT INTO vortex_items (title, created_at, updated_at) VALUES ('refused by the target', now(), now()) RETURNING id", &[])
        .await
        .unwrap()
        .get(0);

    // --on-error stop: the run stops and names the row.
    target_cluster.create_database("stop").await.unwrap();
    let out = crate::support::run_command(
        "backfill",
        &seed_plan(),
        &source_cluster.url("legacy"),
        &target_cluster.url("stop"),
        &["--on-error", "stop", "--no-follow"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "--on-error stop must fail");
    assert!(
        stderr.contains("rejected") && stderr.contains("--on-error stop"),
        "{stderr}"
    );
    let out = crate::support::run_command(
        "abort",
        &seed_plan(),
        &source_cluster.url("legacy"),
        &target_cluster.url("stop"),
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Dead letters (the default): the bad rows are recorded, every other row lands.
    target_cluster.create_database("app").await.unwrap();
    let target = target_cluster.connect("app").await.unwrap();
    prepare_target(
        &target,
        "ALTER TABLE tasks ADD CONSTRAINT no_refusal CHECK (title <> 'refused by the target')",
    )
    .await;
    backfill(
        &source_cluster.url("legacy"),
        &target_cluster.url("app"),
        &[],
    );
    let letters = target
        .query(
            "SELECT (source_key->>'id')::int8, source_table, coalesce(output_table, ''), reason, row_data->>'name'
               FROM switchyard.dead_letters ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(letters.len(), 3, "{letters:?}");
    let (key0, reason0): (i64, String) = (letters[0].get(0), letters[0].get(3));
    assert_eq!(key0, bad[0]);
    assert!(
        reason0.contains("budget") && reason0.contains("n/a"),
        "{reason0}"
    );
    assert_eq!(
        letters[0].get::<_, Option<String>>(4).as_deref(),
        Some("bad budget"),
        "the raw row is kept"
    );
    let (key1, reason1): (i64, String) = (letters[1].get(0), letters[1].get(3));
    assert_eq!(key1, bad[1]);
    assert!(reason1.contains("2024-02-30"), "{reason1}");
    let (key2, table2, output2, reason2): (i64, String, String, String) = (
        letters[2].get(0),
        letters[2].get(1),
        letters[2].get(2),
        letters[2].get(3),
    );
    assert_eq!(
        (key2, table2.as_str(), output2.as_str()),
        (refused, "public.vortex_items", "public.tasks")
    );
    assert!(reason2.contains("no_refusal"), "{reason2}");
    assert_target_matches_expected(&source, &target).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn resumes_after_sigkill_mid_backfill_with_the_right_rows() {
    let (source_cluster, target_cluster) = (cluster(), cluster());
    let source = seeded_source(&source_cluster, "legacy", 0.02).await;
    target_cluster.create_database("app").await.unwrap();
    let target = target_cluster.connect("app").await.unwrap();

    // One row in the middle of vortex_items stalls its chunk's COPY into tasks: the other
    // worker finishes every other chunk, and that is a deterministic point to kill at.
    let stalled = crate::support::middle_top_level_item(&source).await;
    crate::support::stall_tasks(&target, stalled, 1).await;
    let mut child =
        backfill_until_one_chunk_is_left(&source_cluster, &target_cluster, &target).await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    crate::support::lift_stall(&target).await;

    let (done, total) = chunks_done_of_total(&target).await;
    assert!(
        done > 0 && done < total,
        "killed mid-backfill: {done} of {total} chunks done"
    );

    backfill(
        &source_cluster.url("legacy"),
        &target_cluster.url("app"),
        &["--resume"],
    );
    assert_target_matches_expected(&source, &target).await;
    let helper_indexes: i64 = target
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relname LIKE 'switchyard_%_key'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        helper_indexes, 0,
        "the resume's helper indexes are gone once the plan's keys exist"
    );
}

/// The chunk sessions commit with `synchronous_commit = off`. A crash of the target server
/// (immediate shutdown: no flush of the WAL buffers) may lose the last chunks that committed, but
/// a chunk's rows and its `done` mark go together, so the resume copies every lost chunk again.
#[tokio::test(flavor = "multi_thread")]
async fn chunks_committed_asynchronously_survive_an_immediate_target_crash() {
    use switchyard::demo::cluster::ClusterOptions;
    let source_cluster = cluster();
    // Durable commits are this target's default, so only the chunk sessions' own setting makes
    // theirs asynchronous (the recorded modes prove it). The WAL writer's rounds are 10 s apart,
    // but an async commit also wakes it, so whether the crash finds unwritten commits is a race:
    // the test holds whatever was lost, and prints how many chunks were.
    let mut target_cluster = Cluster::start(
        ClusterOptions::default()
            .with_setting("synchronous_commit", "on")
            .with_setting("wal_writer_delay", "10s"),
    )
    .unwrap();
    let source = seeded_source(&source_cluster, "legacy", 0.02).await;
    target_cluster.create_database("app").await.unwrap();
    let target = target_cluster.connect("app").await.unwrap();
    let stalled = crate::support::middle_top_level_item(&source).await;
    crate::support::stall_tasks(&target, stalled, 1).await;
    // Each session that copies into tasks records its commit mode (ENABLE ALWAYS: the copy
    // runs as a replica session).
    target
        .batch_execute(
            "CREATE TABLE commit_modes (pid int PRIMARY KEY, mode text NOT NULL);
             CREATE FUNCTION record_mode() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
                 INSERT INTO commit_modes VALUES (pg_backend_pid(), current_setting('synchronous_commit'))
                 ON CONFLICT DO NOTHING;
                 RETURN NULL;
             END $$;
             CREATE TRIGGER record_mode AFTER INSERT ON tasks FOR EACH STATEMENT EXECUTE FUNCTION record_mode();
             ALTER TABLE tasks ENABLE ALWAYS TRIGGER record_mode;",
        )
        .await
        .unwrap();
    let mut child =
        backfill_until_one_chunk_is_left(&source_cluster, &target_cluster, &target).await;
    let done_seen = done_chunks(&target).await;
    let modes: Vec<String> = target
        .query("SELECT DISTINCT mode FROM commit_modes", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(modes, ["off"], "the chunk sessions commit asynchronously");
    drop(target);

    target_cluster.restart_immediate().unwrap();
    // The crash ended the backfill's sessions: it records why and exits.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.wait().unwrap();
    let target = target_cluster.connect("app").await.unwrap();
    let done_kept = done_chunks(&target).await;
    eprintln!(
        "chunks done: {done_seen} seen before the crash, {done_kept} after it (lost whole: {})",
        done_seen - done_kept
    );
    assert!(done_kept <= done_seen);
    crate::support::lift_stall(&target).await;
    target
        .batch_execute("DROP TRIGGER record_mode ON tasks")
        .await
        .unwrap();

    backfill(
        &source_cluster.url("legacy"),
        &target_cluster.url("app"),
        &["--resume"],
    );
    assert_target_matches_expected(&source, &target).await;
    let (done, total) = chunks_done_of_total(&target).await;
    assert_eq!(
        done, total,
        "every chunk lost in the crash was copied again"
    );
}

/// (chunks done, chunks in all) of the migration.
async fn chunks_done_of_total(target: &Client) -> (i64, i64) {
    let r = target
        .query_one(
            "SELECT count(*) FILTER (WHERE status = 'done'), count(*) FROM switchyard.chunks",
            &[],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slot_snapshot_blocked_by_an_open_transaction_names_it_times_out_and_says_what_was_removed(
) {
    use crate::small_migration::{copy_plan, Migration};
    let m = Migration::prepare(
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)",
        "CREATE TABLE t (id int PRIMARY KEY)",
        &copy_plan(&[("t", &["id"], "t", &["id"])]),
    )
    .await;
    let holder = m.cluster.connect("src").await.unwrap();
    holder
        .batch_execute("SET application_name = 'report_job'; BEGIN; INSERT INTO t VALUES (2)")
        .await
        .unwrap();
    let pid: i32 = holder
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let urls = m.urls();
    let mut args = m.args("backfill", &urls);
    args.extend(["--snapshot-timeout", "7s", "--no-follow"]);
    let out = tokio::task::spawn_blocking({
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        move || crate::support::switchyard(&args.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await
    .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    let named = format!("pid {pid} (application \"report_job\"");
    assert!(
        text.contains("creating the replication slot waits") && text.contains(&named),
        "the wait names the session it waits for:\n{text}"
    );
    assert!(
        text.contains("waited 7s for open source transactions to end")
            && text.contains("--snapshot-timeout"),
        "{text}"
    );
    let left: (i64, i64) = {
        let r = m
            .source
            .query_one(
                "SELECT (SELECT count(*) FROM pg_replication_slots), (SELECT count(*) FROM pg_publication)",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    for (thing, count) in [("slot", left.0), ("publication", left.1)] {
        let removed = text.contains(&format!("{thing} switchyard_hostile removed"));
        assert_eq!(
            removed,
            count == 0,
            "the message says the {thing} was removed exactly when it was:\n{text}"
        );
    }
    assert_eq!(left.1, 0, "the publication this run made is gone:\n{text}");
    holder.batch_execute("ROLLBACK").await.unwrap();
}

/// Starts `backfill --jobs 2 --no-follow` of the seed plan from `legacy` into `app` and returns
/// once every chunk but one (the one stalled by the caller) is done.
async fn backfill_until_one_chunk_is_left(
    source_cluster: &Cluster,
    target_cluster: &Cluster,
    target: &Client,
) -> std::process::Child {
    let mut child = crate::support::command(
        "backfill",
        &seed_plan(),
        &source_cluster.url("legacy"),
        &target_cluster.url("app"),
        &["--jobs", "2", "--no-follow"],
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    wait_for(
        target,
        "SELECT count(*) > 0 AND count(*) FILTER (WHERE status = 'done') = count(*) - 1 FROM switchyard.chunks",
        &mut child,
    )
    .await;
    child
}
