//! After a command fails, the source keeps no replication slot or publication, unless the
//! migration is meant to continue: then `status` shows the slot and why it stopped, and
//! `abort` removes slot and publication.

use std::path::Path;
use std::process::Output;

use switchyard::demo::cluster::Cluster;
use tokio_postgres::Client;

use super::{following, migration_state, plan_with, source_objects, Logs, SLOT};
use crate::support::{cluster, run_command as run, seed_plan, seeded_source, switchyard};

/// Runs a backfill that must fail and returns what it printed.
fn refused_backfill(plan: &Path, source: &str, target: &str) -> String {
    let out = run("backfill", plan, source, target, &["--no-follow"]);
    assert!(!out.status.success(), "{}", text(&out));
    text(&out)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `status --source` names the slot and the reason; `abort` then leaves nothing on the source.
async fn status_shows_the_slot_then_abort_removes_it(
    source: &Client,
    source_url: &str,
    target_url: &str,
    reason: &str,
    failed_with: &str,
) {
    let (slot, publication, _) = source_objects(source).await;
    assert!(
        slot && publication,
        "kept for the migration to go on; it failed with:\n{failed_with}"
    );
    // A consumer that just exited may still hold it for a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while source
        .query_one(
            "SELECT active FROM pg_replication_slots WHERE slot_name = $1",
            &[&SLOT],
        )
        .await
        .unwrap()
        .get::<_, bool>(0)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the slot stays active"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let shown = switchyard(&[
        "status",
        "--plan",
        seed_plan().to_str().unwrap(),
        "--target",
        target_url,
        "--source",
        source_url,
    ]);
    let shown = text(&shown);
    assert!(
        shown.contains(SLOT) && shown.contains("slot inactive") && shown.contains(reason),
        "{shown}"
    );
    let out = run("abort", &seed_plan(), source_url, target_url, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let (slot, publication, slots) = source_objects(source).await;
    assert!(!slot && !publication && slots.is_empty(), "{slots:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_backfills_and_failed_checks_create_nothing_and_leave_a_foreign_slot_alone() {
    let (source_cluster, target_cluster) = (cluster(), cluster());
    let source = seeded_source(&source_cluster, "legacy", 0.002).await;
    target_cluster.create_database("app").await.unwrap();
    let target = target_cluster.connect("app").await.unwrap();
    let (source_url, target_url) = (source_cluster.url("legacy"), target_cluster.url("app"));

    // A slot of that name that this target knows nothing about (another target's migration).
    source
        .batch_execute(&format!(
            "SELECT pg_create_logical_replication_slot('{SLOT}', 'pgoutput')"
        ))
        .await
        .unwrap();
    let out = refused_backfill(&seed_plan(), &source_url, &target_url);
    assert!(out.contains("already exists"), "{out}");
    let (slot, publication, _) = source_objects(&source).await;
    assert!(slot, "the slot that was there before is left alone");
    assert!(!publication);
    source
        .batch_execute(&format!("SELECT pg_drop_replication_slot('{SLOT}')"))
        .await
        .unwrap();

    // The before-backfill SQL fails (the checks try it, so the run does not start, or it is
    // aborted): nothing is left on the source.
    let broken = plan_with(source_cluster.dir(), "target_schema.sql", "SELECT 1/0;");
    let out = refused_backfill(&broken, &source_url, &target_url);
    assert!(out.contains("division by zero"), "{out}");
    assert_eq!(source_objects(&source).await, (false, false, vec![]));
    let state = migration_state(&target).await;

    // Refused by the checks: `check` and `backfill` both fail, and nothing is created.
    source
        .batch_execute("ALTER TABLE vortex_items DROP COLUMN due")
        .await
        .unwrap();
    let out = run("check", &seed_plan(), &source_url, &target_url, &[]);
    assert!(!out.status.success(), "{}", text(&out));
    let out = refused_backfill(&seed_plan(), &source_url, &target_url);
    assert!(out.contains("cannot start"), "{out}");
    assert_eq!(source_objects(&source).await, (false, false, vec![]));
    assert_eq!(
        migration_state(&target).await,
        state,
        "the state is unchanged"
    );
}

/// Backfills into database `db` of `target` with `plan` and `extra`; it must fail.
async fn failing_backfill(
    source: &Cluster,
    target: &Cluster,
    db: &str,
    plan: &Path,
    extra: &[&str],
) -> String {
    target.create_database(db).await.unwrap();
    let mut args = vec!["--no-follow"];
    args.extend_from_slice(extra);
    let out = run(
        "backfill",
        plan,
        &source.url("legacy"),
        &target.url(db),
        &args,
    );
    assert!(!out.status.success(), "{}", text(&out));
    text(&out)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backfill_stopped_after_its_slot_exists_keeps_it_and_abort_removes_it() {
    let (source_cluster, target_cluster) = (cluster(), cluster());
    let source = seeded_source(&source_cluster, "legacy", 0.002).await;
    let source_url = source_cluster.url("legacy");

    // A row the plan rejects, with --on-error stop.
    source
        .batch_execute("INSERT INTO company_projects (company_id, name, budget, created_at, updated_at) VALUES (1, 'bad budget', 'n/a', now(), now())")
        .await
        .unwrap();
    let out = failing_backfill(
        &source_cluster,
        &target_cluster,
        "stop",
        &seed_plan(),
        &["--on-error", "stop"],
    )
    .await;
    assert!(out.contains("--resume"), "{out}");
    status_shows_the_slot_then_abort_removes_it(
        &source,
        &source_url,
        &target_cluster.url("stop"),
        "message: backfill stopped",
        &out,
    )
    .await;

    // The after-backfill SQL fails once every chunk is copied (the checks try it on empty
    // tables, where it passes).
    let broken = plan_with(
        source_cluster.dir(),
        "validate_tasks.sql",
        "DO $$ BEGIN IF EXISTS (SELECT FROM tasks) THEN RAISE EXCEPTION 'tasks are not welcome'; END IF; END $$;",
    );
    let out = failing_backfill(&source_cluster, &target_cluster, "app", &broken, &[]).await;
    assert!(out.contains("tasks are not welcome"), "{out}");
    status_shows_the_slot_then_abort_removes_it(
        &source,
        &source_url,
        &target_cluster.url("app"),
        "tasks are not welcome",
        &out,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn after_verify_cutover_and_the_consumer_fail_status_shows_the_slot_and_abort_removes_it() {
    let mut logs = Logs::default();
    let mut f = following(0.005, &mut logs).await;
    let (source_url, target_url) = (f.source_cluster.url("legacy"), f.target_cluster.url("app"));
    let only_ours = (true, true, vec![SLOT.to_owned()]);

    // verify finds a tampered row.
    f.target
        .batch_execute("UPDATE tasks SET title = 'tampered' WHERE legacy_id = (SELECT min(legacy_id) FROM tasks)")
        .await
        .unwrap();
    let out = run("verify", &seed_plan(), &source_url, &target_url, &[]);
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(source_objects(&f.source).await, only_ours);

    // The cutover aborts: the migration goes on following.
    let out = run(
        "cutover",
        &seed_plan(),
        &source_url,
        &target_url,
        &["--max-blocked", "1ms"],
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(source_objects(&f.source).await, only_ours);
    assert!(f.consumer.try_wait().unwrap().is_none(), "still following");

    // The consumer stops on something that needs a person.
    f.source
        .batch_execute("TRUNCATE company_services")
        .await
        .unwrap();
    let status = super::exit_within(&mut f.consumer, std::time::Duration::from_secs(30));
    assert!(!status.success());
    status_shows_the_slot_then_abort_removes_it(
        &f.source,
        &source_url,
        &target_url,
        "TRUNCATE",
        &logs.last(),
    )
    .await;
    assert_eq!(migration_state(&f.target).await.0, "aborted");
}
