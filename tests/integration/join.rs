//! `backfill --join`: a second process copies the same migration's chunks under the first
//! one's snapshot; killed mid-chunk, its chunk is taken over once its lease expires, and every
//! chunk lands exactly once.

use std::process::{Child, Stdio};

use tokio_postgres::Client;

use crate::support::{
    assert_target_matches_expected, cluster, prepare_target, seed_plan, seeded_source, wait_for,
};

/// The COPY into `tasks` waits at a gate in the first process's sessions (those connected
/// before `split` holds a time) until the test opens it, and sleeps for good in the joiner's
/// (connected after), once it announced it through a sequence (which no rollback undoes).
const GATES: &str = "
    CREATE TABLE split (t timestamptz);
    CREATE TABLE gate (open int);
    CREATE SEQUENCE joiner_stuck;
    CREATE FUNCTION gate() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE born timestamptz := (SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid());
    BEGIN
        IF born >= (SELECT t FROM split) THEN
            PERFORM nextval('joiner_stuck');
            PERFORM pg_sleep(600);
        END IF;
        WHILE NOT EXISTS (SELECT FROM gate) LOOP PERFORM pg_sleep(0.02); END LOOP;
        RETURN NULL;
    END $$;
    CREATE TRIGGER gate BEFORE INSERT ON tasks FOR EACH STATEMENT EXECUTE FUNCTION gate();
    ALTER TABLE tasks ENABLE ALWAYS TRIGGER gate;";

#[tokio::test(flavor = "multi_thread")]
async fn a_joiner_killed_mid_chunk_loses_nothing_and_copies_nothing_twice() {
    let (source_cluster, target_cluster) = (cluster(), cluster());
    let source = seeded_source(&source_cluster, "legacy", 0.02).await;
    target_cluster.create_database("app").await.unwrap();
    let target = target_cluster.connect("app").await.unwrap();
    prepare_target(&target, GATES).await;
    let (from, to) = (source_cluster.url("legacy"), target_cluster.url("app"));

    let mut first = spawn(&from, &to, &["--jobs", "2", "--no-follow"]);
    // Both of the first process's workers wait at the gate: all its sessions are connected,
    // and its snapshot is recorded for joiners.
    wait_for(
        &target,
        "SELECT count(*) = 2 FROM pg_stat_activity
          WHERE application_name = 'switchyard backfill' AND wait_event = 'PgSleep'",
        &mut first,
    )
    .await;
    target
        .batch_execute("INSERT INTO split VALUES (clock_timestamp())")
        .await
        .unwrap();
    let mut joiner = spawn(&from, &to, &["--join", "--jobs", "1"]);
    wait_for(&target, "SELECT is_called FROM joiner_stuck", &mut joiner).await;
    let held = format!("%/{}/%", joiner.id());
    let stuck = target
        .query(
            "SELECT source_table, chunk_no FROM switchyard.chunks
              WHERE lease_owner LIKE $1 AND status <> 'done'",
            &[&held],
        )
        .await
        .unwrap();
    assert_eq!(stuck.len(), 1, "the joiner is stuck inside one chunk");
    let (table, chunk_no): (String, i32) = (stuck[0].get(0), stuck[0].get(1));

    joiner.kill().unwrap(); // SIGKILL, mid-chunk
    joiner.wait().unwrap();
    // Its backends sleep on without a client; end them, then let the first process go on.
    target
        .batch_execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE backend_start >= (SELECT t FROM split) AND application_name LIKE 'switchyard%';
             INSERT INTO gate VALUES (1);",
        )
        .await
        .unwrap();
    let out = first.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the first process finished the copy, the joiner's chunk too:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    assert_target_matches_expected(&source, &target).await;
    assert_each_chunk_copied_once(&source, &target).await;
    let copied_by: String = target
        .query_one(
            "SELECT copied_by FROM switchyard.chunks WHERE source_table = $1 AND chunk_no = $2",
            &[&table, &chunk_no],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        !copied_by.contains(&format!("/{}/", joiner.id())),
        "the killed joiner's chunk was taken over: copied by {copied_by}"
    );

    // Every process shows in `watch`, the killed one with a stale heartbeat.
    let watch =
        crate::support::run_command("watch", &seed_plan(), &from, &to, &["--once", "--json"]);
    let sample: serde_json::Value = serde_json::from_slice(&watch.stdout).unwrap();
    assert_eq!(
        sample["workers"].as_array().map(Vec::len),
        Some(2),
        "{sample}"
    );

    // A joiner that comes late has nothing left to copy.
    let late = crate::support::run_command("backfill", &seed_plan(), &from, &to, &["--join"]);
    assert!(late.status.success());
    assert!(String::from_utf8_lossy(&late.stdout).contains("nothing left to copy"));
}

/// The COPY into `tasks` sleeps for good in the first process's sessions (those connected
/// before `split` holds a time, or while it holds none), once it announced it through a
/// sequence; the joiner's go through.
const FIRST_STALLS: &str = "
    CREATE TABLE split (t timestamptz);
    CREATE SEQUENCE first_stuck;
    CREATE FUNCTION stall_first() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE born timestamptz := (SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid());
    BEGIN
        IF born < coalesce((SELECT t FROM split), 'infinity') THEN
            PERFORM nextval('first_stuck');
            PERFORM pg_sleep(600);
        END IF;
        RETURN NULL;
    END $$;
    CREATE TRIGGER stall_first BEFORE INSERT ON tasks FOR EACH STATEMENT EXECUTE FUNCTION stall_first();
    ALTER TABLE tasks ENABLE ALWAYS TRIGGER stall_first;";

/// The first process SIGKILLed mid-chunk while a joiner copies: the joiner, still reading
/// under the snapshot it imported, takes the dead process's chunks over and finishes the copy;
/// `--resume` then runs what only the first process runs (the after-backfill SQL).
#[tokio::test(flavor = "multi_thread")]
async fn a_joiner_finishes_the_copy_of_a_killed_first_process_and_resume_completes_it() {
    let (source_cluster, target_cluster) = (cluster(), cluster());
    let source = seeded_source(&source_cluster, "legacy", 0.02).await;
    target_cluster.create_database("app").await.unwrap();
    let target = target_cluster.connect("app").await.unwrap();
    prepare_target(&target, FIRST_STALLS).await;
    let (from, to) = (source_cluster.url("legacy"), target_cluster.url("app"));

    let mut first = spawn(&from, &to, &["--jobs", "2", "--no-follow"]);
    wait_for(
        &target,
        "SELECT count(*) = 2 FROM pg_stat_activity
          WHERE application_name = 'switchyard backfill' AND wait_event = 'PgSleep'",
        &mut first,
    )
    .await;
    target
        .batch_execute("INSERT INTO split VALUES (clock_timestamp())")
        .await
        .unwrap();
    let mut joiner = spawn(&from, &to, &["--join", "--jobs", "2"]);
    // Its readers imported the snapshot (it registers right after).
    wait_for(
        &target,
        "SELECT count(*) = 2 FROM switchyard.workers",
        &mut joiner,
    )
    .await;
    first.kill().unwrap(); // SIGKILL, two chunks in flight
    first.wait().unwrap();
    target
        .batch_execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE backend_start < (SELECT t FROM split) AND application_name LIKE 'switchyard%'",
        )
        .await
        .unwrap();
    let out = joiner.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the joiner copied every chunk, the dead process's too:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    crate::support::backfill(&from, &to, &["--resume"]);
    assert_target_matches_expected(&source, &target).await;
    assert_each_chunk_copied_once(&source, &target).await;
}

fn spawn(from: &str, to: &str, extra: &[&str]) -> Child {
    crate::support::command("backfill", &seed_plan(), from, to, extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Every chunk is done, and the source rows the chunks counted are the source's rows, once
/// each: no chunk was counted (so none was committed) twice.
async fn assert_each_chunk_copied_once(source: &Client, target: &Client) {
    let rows = target
        .query(
            "SELECT source_table, count(*) FILTER (WHERE status <> 'done'),
                    sum(row_count)::int8
               FROM switchyard.chunks GROUP BY 1",
            &[],
        )
        .await
        .unwrap();
    for row in rows {
        let (table, not_done, counted): (String, i64, i64) = (row.get(0), row.get(1), row.get(2));
        assert_eq!(not_done, 0, "{table}: every chunk is done");
        let in_source: i64 = source
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(counted, in_source, "{table}: each row counted by one chunk");
    }
}

/// The race in `checkpoint::leases`, step by step on two sessions: a worker whose lease expired
/// and was taken over cannot mark the chunk done (its copy rolls back), a heartbeat does not win
/// the lease back, and a late worker that marked it first keeps the taker out until it commits.
#[tokio::test(flavor = "multi_thread")]
async fn only_the_lease_holder_at_commit_marks_a_chunk_done() {
    use switchyard::checkpoint::leases::{
        chunks_left, extend_leases, take_lease, ChunksLeft, LeaseOwner,
    };
    use switchyard::checkpoint::{self, Chunk, Migration, MigrationStatus};

    let target_cluster = cluster();
    target_cluster.create_database("app").await.unwrap();
    let (a, b) = (
        target_cluster.connect("app").await.unwrap(),
        target_cluster.connect("app").await.unwrap(),
    );
    checkpoint::ensure_schema(&a).await.unwrap();
    let m = Migration {
        name: "m".into(),
        plan_checksum: "x".into(),
        status: MigrationStatus::Backfilling,
        slot_name: "s".into(),
        publication: "p".into(),
        snapshot_lsn: None,
        consistent_lsn: None,
        applied_lsn: None,
        message: None,
    };
    checkpoint::create(&a, &m).await.unwrap();
    let chunk = Chunk {
        source_table: "public.t".into(),
        chunk_no: 0,
        first_block: 0,
        end_block: None,
    };
    checkpoint::insert_chunks(&a, "m", std::slice::from_ref(&chunk))
        .await
        .unwrap();
    checkpoint::set_exported_snapshot(&a, "m", Some("snap"), None)
        .await
        .unwrap();
    let (owner_a, owner_b) = (LeaseOwner("a/1/0".into()), LeaseOwner("b/2/0".into()));
    let short = std::time::Duration::from_millis(50);
    let long = std::time::Duration::from_secs(60);

    // A leases it, stalls past the expiry, B takes it over.
    assert_eq!(
        take_lease(&a, "m", &owner_a, "snap", short).await.unwrap(),
        Some(chunk.clone())
    );
    assert_eq!(
        take_lease(&b, "m", &owner_b, "snap", long).await.unwrap(),
        None,
        "leased"
    );
    tokio::time::sleep(short * 3).await;
    assert_eq!(
        take_lease(&b, "m", &owner_b, "snap", long).await.unwrap(),
        Some(chunk.clone())
    );
    assert_eq!(
        extend_leases(&a, "m", &owner_a, long).await.unwrap(),
        0,
        "no lease won back"
    );
    assert_eq!(
        chunks_left(&a, "m", "snap").await.unwrap(),
        ChunksLeft::Leased
    );
    let mut a_tx = target_cluster.connect("app").await.unwrap();
    let tx = a_tx.transaction().await.unwrap();
    assert!(!checkpoint::finish_chunk(&tx, "m", &chunk, &owner_a, 1, 0)
        .await
        .unwrap());
    drop(tx);

    // B's lease expires too, and A (late) marks it first: B cannot take it while A's
    // transaction is open, and finds it done once A commits.
    let (a_again, c) = (LeaseOwner("a/1/1".into()), LeaseOwner("c/3/0".into()));
    b.execute(
        "UPDATE switchyard.chunks SET lease_owner = $1, lease_expires_at = now() - interval '1 s'",
        &[&a_again.0],
    )
    .await
    .unwrap();
    let tx = a_tx.transaction().await.unwrap();
    assert!(checkpoint::finish_chunk(&tx, "m", &chunk, &a_again, 1, 0)
        .await
        .unwrap());
    assert_eq!(
        take_lease(&b, "m", &c, "snap", long).await.unwrap(),
        None,
        "locked: skipped"
    );
    tx.commit().await.unwrap();
    assert_eq!(
        take_lease(&b, "m", &c, "snap", long).await.unwrap(),
        None,
        "done"
    );
    assert_eq!(
        chunks_left(&b, "m", "snap").await.unwrap(),
        ChunksLeft::None
    );

    // A chunk is taken only under the snapshot the migration reads now.
    checkpoint::insert_chunks(
        &a,
        "m",
        &[Chunk {
            chunk_no: 1,
            ..chunk
        }],
    )
    .await
    .unwrap();
    checkpoint::set_exported_snapshot(&a, "m", Some("newer"), None)
        .await
        .unwrap();
    assert_eq!(take_lease(&a, "m", &c, "snap", long).await.unwrap(), None);
    assert_eq!(
        chunks_left(&a, "m", "snap").await.unwrap(),
        ChunksLeft::SnapshotReplaced
    );
}
