//! A counted output table changed behind the consumer's back while the cutover waits for its
//! write lock: after everything it does before the lock (a count there included), before the
//! lock is granted. An open transaction on the source holds the cutover there: it holds a lock
//! that conflicts with the write lock, so the cutover backs off and retries, and says so.

use super::harness::{
    assert_committed, assert_no_trigger_left, assert_nothing_changed, assert_refused_naming,
    cutover, cutover_changing_while_it_waits, status, transient_objects, SCALE,
};
use crate::follow::Following;

/// A leaf task (no sub-task's foreign key points at it) kept in `saved`, then deleted.
const DELETE_A_LEAF_TASK: &str = "CREATE TEMP TABLE saved AS
     SELECT * FROM tasks t WHERE NOT EXISTS (SELECT FROM sub_tasks s WHERE s.task_id = t.id)
      ORDER BY legacy_id LIMIT 1;
     DELETE FROM tasks WHERE id IN (SELECT id FROM saved)";

/// Starts a cutover, waits until it reports a lock attempt (its steps before the lock are
/// done), runs `change` on the target from a plain session, then lets the lock through. The
/// cutover must refuse naming `table` and change nothing; after `repair` on the same session
/// a second cutover commits.
async fn refused_when_changed_while_waiting_for_the_lock(change: &str, repair: &str, table: &str) {
    let mut f = Following::start(SCALE).await;
    let (source, target) = (f.source_cluster.url("legacy"), f.target_cluster.url("app"));
    let before = transient_objects(&f.source, &f.target).await;
    let dba = f.target_cluster.connect("app").await.unwrap();
    let (code, out) = cutover_changing_while_it_waits(&f, &[], &dba, change).await;
    assert_refused_naming(code, &out, table);
    assert_nothing_changed(&mut f, &before).await;

    dba.batch_execute(repair).await.unwrap();
    f.assert_converged().await;
    let (code, out) = cutover(&source, &target, &[]).await;
    assert_committed(code, &out);
    assert_eq!(status(&f.target).await, "cut_over");
    assert_no_trigger_left(&f.source, &f.target, &before).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_deleted_while_the_cutover_waits_for_its_lock_is_refused_naming_tasks() {
    refused_when_changed_while_waiting_for_the_lock(
        DELETE_A_LEAF_TASK,
        "INSERT INTO tasks SELECT * FROM saved",
        "public.tasks",
    )
    .await;
}

/// TRUNCATE fires no row or transition-table trigger: counts carried forward by triggers
/// must see it some other way.
#[tokio::test(flavor = "multi_thread")]
async fn sub_tasks_truncated_while_the_cutover_waits_for_its_lock_is_refused_naming_sub_tasks() {
    refused_when_changed_while_waiting_for_the_lock(
        "CREATE TEMP TABLE saved AS SELECT * FROM sub_tasks; TRUNCATE sub_tasks",
        "INSERT INTO sub_tasks SELECT * FROM saved",
        "public.sub_tasks",
    )
    .await;
}

/// A session with `session_replication_role = replica` (pg_restore, a replication tool) fires
/// only triggers enabled REPLICA or ALWAYS.
#[tokio::test(flavor = "multi_thread")]
async fn a_task_deleted_by_a_replica_role_session_while_the_cutover_waits_is_refused() {
    refused_when_changed_while_waiting_for_the_lock(
        &format!("SET session_replication_role = replica; {DELETE_A_LEAF_TASK}"),
        "RESET session_replication_role; INSERT INTO tasks SELECT * FROM saved",
        "public.tasks",
    )
    .await;
}
