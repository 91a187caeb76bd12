//! A counted output table changed behind the consumer's back before the cutover starts.

use switchyard::demo::write_load::{WriteKind, WriteLoad, WriteLoadOptions};

use super::harness::{
    assert_committed, assert_legacy_untouched, assert_no_trigger_left, assert_nothing_changed,
    assert_refused_naming, cutover, delete_behind_the_back, follow_in_one_database, put_back,
    status, transient_objects, Consumer, A_LEAF_TASK, SCALE,
};
use crate::follow::Following;
use crate::support::{
    assert_target_matches_expected, backfill, cluster, compute_expected, seeded_source, wait_for,
};

#[tokio::test(flavor = "multi_thread")]
async fn a_task_deleted_behind_the_consumers_back_is_refused_naming_tasks() {
    let mut f = Following::start(SCALE).await;
    let (source, target) = (f.source_cluster.url("legacy"), f.target_cluster.url("app"));
    let before = transient_objects(&f.source, &f.target).await;
    let row = delete_behind_the_back(&f.target, "tasks", A_LEAF_TASK).await;

    let (code, out) = cutover(&source, &target, &[]).await;
    assert_refused_naming(code, &out, "public.tasks");
    assert_nothing_changed(&mut f, &before).await;

    put_back(&f.target, "tasks", &row).await;
    f.assert_converged().await;
    let (code, out) = cutover(&source, &target, &[]).await;
    assert_committed(code, &out);
    assert_eq!(status(&f.target).await, "cut_over");
    assert_no_trigger_left(&f.source, &f.target, &before).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sub_task_inserted_behind_the_consumers_back_is_refused_naming_sub_tasks() {
    let mut f = Following::start(SCALE).await;
    let (source, target) = (f.source_cluster.url("legacy"), f.target_cluster.url("app"));
    let before = transient_objects(&f.source, &f.target).await;
    // A copy of an existing sub-task under a new key and a legacy id no source row has.
    let copy: String = f
        .target
        .query_one(
            "INSERT INTO sub_tasks
             SELECT (jsonb_populate_record(s, jsonb_build_object(
                        'id', gen_random_uuid(), 'legacy_id', s.legacy_id + 1000000000))).*
               FROM sub_tasks s ORDER BY legacy_id LIMIT 1
             RETURNING id::text",
            &[],
        )
        .await
        .unwrap()
        .get(0);

    let (code, out) = cutover(&source, &target, &[]).await;
    assert_refused_naming(code, &out, "public.sub_tasks");
    assert_nothing_changed(&mut f, &before).await;

    f.target
        .execute("DELETE FROM sub_tasks WHERE id = $1::text::uuid", &[&copy])
        .await
        .unwrap();
    f.assert_converged().await;
    let (code, out) = cutover(&source, &target, &[]).await;
    assert_committed(code, &out);
    assert_eq!(status(&f.target).await, "cut_over");
    assert_no_trigger_left(&f.source, &f.target, &before).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_project_deleted_under_the_write_mix_is_refused_and_no_acknowledged_write_is_lost() {
    let mut f = Following::start(SCALE).await;
    let (source, target) = (f.source_cluster.url("legacy"), f.target_cluster.url("app"));
    let before = transient_objects(&f.source, &f.target).await;
    let load = WriteLoad::start(
        &source,
        WriteLoadOptions {
            target_rate: Some(300.0),
            record_acks: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    // A service: no task points at it and the load never writes company_services, so the
    // consumer cannot put it back by itself.
    let row = delete_behind_the_back(
        &f.target,
        "projects",
        "SELECT row_to_json(p)::text FROM projects p WHERE legacy_table = 'company_services'
          ORDER BY legacy_id LIMIT 1",
    )
    .await;
    f.wait_for("SELECT changes_applied > 100 FROM switchyard.migrations")
        .await;

    let (code, out) = cutover(&source, &target, &["--max-blocked", "5s"]).await;
    assert_refused_naming(code, &out, "public.projects");
    assert_nothing_changed(&mut f, &before).await;

    put_back(&f.target, "projects", &row).await;
    let (code, out) = cutover(&source, &target, &["--max-blocked", "5s"]).await;
    assert_committed(code, &out);
    assert_no_trigger_left(&f.source, &f.target, &before).await;
    let report = load.stop().await.unwrap();
    assert!(report.counts.committed() > 100, "{:?}", report.counts);
    assert_eq!(status(&f.target).await, "cut_over");

    // The target equals the transformed, now frozen, source: every acknowledged update and
    // delete is there; and every acknowledged insert is there unless a later delete took it.
    compute_expected(&f.source).await;
    assert_target_matches_expected(&f.source, &f.target).await;
    let inserted: Vec<i64> = report
        .acked
        .iter()
        .filter(|w| matches!(w.kind, WriteKind::InsertItem | WriteKind::InsertSubTask))
        .map(|w| w.id)
        .collect();
    assert!(!inserted.is_empty());
    let still_there: i64 = f
        .source
        .query_one(
            "SELECT count(DISTINCT i) FROM unnest($1::int8[]) i
              WHERE EXISTS (SELECT FROM vortex_items v WHERE v.id = i)",
            &[&inserted],
        )
        .await
        .unwrap()
        .get(0);
    let found: i64 = f
        .target
        .query_one(
            "SELECT count(DISTINCT i) FROM unnest($1::int8[]) i
              WHERE EXISTS (SELECT FROM tasks t WHERE t.legacy_id = i)
                 OR EXISTS (SELECT FROM sub_tasks s WHERE s.legacy_id = i)",
            &[&inserted],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        found, still_there,
        "acknowledged inserts missing from the target"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn same_database_a_task_deleted_behind_the_consumers_back_is_refused_naming_tasks() {
    let c = cluster();
    let db = seeded_source(&c, "legacy", SCALE).await;
    let url = c.url("legacy");
    backfill(&url, &url, &[]);
    let mut consumer = Consumer(follow_in_one_database(&c, &url));
    wait_for(
        &db,
        "SELECT status = 'following' FROM switchyard.migrations",
        &mut consumer.0,
    )
    .await;
    let before = transient_objects(&db, &db).await;
    let row = delete_behind_the_back(&db, "tasks", A_LEAF_TASK).await;

    let (code, out) = cutover(&url, &url, &[]).await;
    assert_refused_naming(code, &out, "public.tasks");
    assert_eq!(status(&db).await, "following");
    assert_eq!(transient_objects(&db, &db).await, before);
    assert_legacy_untouched(&db).await;
    assert!(
        consumer.0.try_wait().unwrap().is_none(),
        "the consumer still runs"
    );

    put_back(&db, "tasks", &row).await;
    let (code, out) = cutover(&url, &url, &[]).await;
    assert_committed(code, &out);
    assert_eq!(status(&db).await, "cut_over");
    assert_no_trigger_left(&db, &db, &before).await;
    let kind: String = db
        .query_one(
            "SELECT relkind::text FROM pg_class WHERE oid = 'vortex_items'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(kind, "v", "the legacy name is now a compatibility view");
}
