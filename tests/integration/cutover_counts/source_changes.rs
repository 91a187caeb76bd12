//! The source's counts are carried from a baseline to the fence by the keys the WAL names
//! (`src/cutover/baseline.rs`): each changed key is looked up at the baseline and now. These
//! are the orderings of changes on a key between the baseline and the lock that such a
//! carry can get wrong, made while the cutover waits for its lock: a wrong carry either
//! refuses a target that is right or, worse, lets a wrong one through.

use super::harness::{
    assert_committed, assert_no_trigger_left, assert_nothing_changed, assert_refused_naming,
    cutover_changing_while_it_waits, status, transient_objects, SCALE,
};
use crate::follow::Following;
use crate::support::{assert_target_matches_expected, compute_expected};

/// Three leaf tasks (no sub-task under them), kept in a temp table of the source session.
const PICK_LEAF_TASKS: &str = "CREATE TEMP TABLE leaf AS
     SELECT id FROM vortex_items v
      WHERE parent_item_id IS NULL
        AND NOT EXISTS (SELECT FROM vortex_items c WHERE c.parent_item_id = v.id)
      ORDER BY id LIMIT 3";

/// One transaction each, on the source, after [`PICK_LEAF_TASKS`]. `offset` keeps the keys
/// of a second round apart from the first's.
fn every_ordering(offset: i64) -> Vec<String> {
    vec![
        // The key of a task changes: its old key leaves `tasks`, its new key enters.
        format!("UPDATE vortex_items SET id = id + {offset} WHERE id = (SELECT min(id) FROM leaf)"),
        // A sub-task deleted, then inserted again under the same key.
        format!("DROP TABLE IF EXISTS gone; CREATE TEMP TABLE gone AS
             SELECT * FROM vortex_items WHERE parent_item_id IS NOT NULL ORDER BY id LIMIT 1 OFFSET {}", offset / 100_000_000),
        "DELETE FROM vortex_items WHERE id = (SELECT id FROM gone)".to_owned(),
        "INSERT INTO vortex_items SELECT * FROM gone".to_owned(),
        // A row inserted and deleted in one transaction: in the WAL, never in any snapshot.
        format!("BEGIN;
             INSERT INTO vortex_items (id, title) VALUES ({offset} + 77, 'born and gone');
             DELETE FROM vortex_items WHERE id = {offset} + 77;
             COMMIT"),
        // A task becomes a sub-task: one key leaves `tasks` and enters `sub_tasks`.
        "UPDATE vortex_items SET parent_item_id = (SELECT max(id) FROM leaf)
          WHERE id = (SELECT id FROM leaf ORDER BY id OFFSET 1 LIMIT 1)"
            .to_owned(),
        // A service inserted and another deleted: `projects` changes both ways.
        "INSERT INTO company_services (company_id, service_name, created_at, updated_at)
             VALUES (1, 'inserted while the cutover waits', now(), now())"
            .to_owned(),
        "DELETE FROM company_services WHERE id = (SELECT min(id) FROM company_services)".to_owned(),
    ]
}

/// The same orderings twice: with a task deleted behind the consumer's back the cutover
/// refuses naming `tasks`; once it is put back, a cutover with a second round of them commits,
/// and the target equals the transformed source.
#[tokio::test(flavor = "multi_thread")]
async fn source_changes_of_every_ordering_while_the_cutover_waits_are_carried_exactly() {
    let mut f = Following::start(SCALE).await;
    let before = transient_objects(&f.source, &f.target).await;
    f.source.batch_execute(PICK_LEAF_TASKS).await.unwrap();
    let dba = f.target_cluster.connect("app").await.unwrap();
    let first = every_ordering(100_000_000);
    let first: Vec<&str> = first.iter().map(String::as_str).collect();
    let hide_a_task = "CREATE TEMP TABLE saved AS
         SELECT * FROM tasks t WHERE NOT EXISTS (SELECT FROM sub_tasks s WHERE s.task_id = t.id)
            AND legacy_id < 100000000 ORDER BY legacy_id DESC LIMIT 1;
         DELETE FROM tasks WHERE id IN (SELECT id FROM saved)";
    let (code, out) = cutover_changing_while_it_waits(&f, &first, &dba, hide_a_task).await;
    assert_refused_naming(code, &out, "public.tasks");
    assert_nothing_changed(&mut f, &before).await;

    dba.batch_execute("INSERT INTO tasks SELECT * FROM saved")
        .await
        .unwrap();
    f.assert_converged().await;
    f.source
        .batch_execute(&format!("DROP TABLE leaf; {PICK_LEAF_TASKS}"))
        .await
        .unwrap();
    let second = every_ordering(200_000_000);
    let second: Vec<&str> = second.iter().map(String::as_str).collect();
    let (code, out) = cutover_changing_while_it_waits(&f, &second, &dba, "").await;
    assert_committed(code, &out);
    assert!(
        out.contains("keys looked up"),
        "the counts were carried by key, not scanned:\n{out}"
    );
    assert_eq!(status(&f.target).await, "cut_over");
    assert_no_trigger_left(&f.source, &f.target, &before).await;
    // The fence proved the target caught up; the legacy tables are read-only from here.
    compute_expected(&f.source).await;
    assert_target_matches_expected(&f.source, &f.target).await;
}

/// With REPLICA IDENTITY FULL the WAL's old tuple is the whole row, not a key the counts can
/// look up: the table is counted by a scan under the lock, the report says so, and a row
/// missing from its output is still refused.
#[tokio::test(flavor = "multi_thread")]
async fn a_source_table_with_replica_identity_full_is_scanned_and_still_refused() {
    let mut f = Following::start(SCALE).await;
    let before = transient_objects(&f.source, &f.target).await;
    f.source
        .batch_execute("ALTER TABLE vortex_items REPLICA IDENTITY FULL")
        .await
        .unwrap();
    f.assert_converged().await;
    let dba = f.target_cluster.connect("app").await.unwrap();
    let changes = ["UPDATE vortex_items SET title = title || '!' WHERE id = (SELECT min(id) FROM vortex_items)"];
    let hide_a_task = "CREATE TEMP TABLE saved AS
         SELECT * FROM tasks t WHERE NOT EXISTS (SELECT FROM sub_tasks s WHERE s.task_id = t.id)
          ORDER BY legacy_id DESC LIMIT 1;
         DELETE FROM tasks WHERE id IN (SELECT id FROM saved)";
    let (code, out) = cutover_changing_while_it_waits(&f, &changes, &dba, hide_a_task).await;
    assert_refused_naming(code, &out, "public.tasks");
    assert_nothing_changed(&mut f, &before).await;

    dba.batch_execute("INSERT INTO tasks SELECT * FROM saved")
        .await
        .unwrap();
    f.assert_converged().await;
    let (code, out) = cutover_changing_while_it_waits(&f, &changes, &dba, "").await;
    assert_committed(code, &out);
    assert!(
        out.contains("TABLE SIZE"),
        "the report names the scan:\n{out}"
    );
    assert_no_trigger_left(&f.source, &f.target, &before).await;
    compute_expected(&f.source).await;
    assert_target_matches_expected(&f.source, &f.target).await;
}
