//! Kind 6, messages that are not true: `rollback` inspects what is in place on the source
//! whatever the recorded status (a failed second commit leaves the swap without `cut_over`),
//! says exactly that and undoes it; before leaving writes made to the new tables behind, it
//! counts them per table and wants `--yes`.

use crate::support::{cluster, seed_plan, seeded_source};

use super::proof::{relkind, run, slot_exists, status, wait_until_slot_idle};

/// Makes the target's commit of the cutover fail, for real: a deferred constraint trigger on
/// the state table raises at COMMIT, once the status turns `cut_over`.
const FAIL_THE_STATE_COMMIT: &str = r#"
CREATE FUNCTION public.fail_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'injected: the state''s commit fails'; END $$;
CREATE CONSTRAINT TRIGGER fail_at_commit AFTER UPDATE ON switchyard.migrations
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.status = 'cut_over')
    EXECUTE FUNCTION public.fail_at_commit();
"#;

#[tokio::test(flavor = "multi_thread")]
async fn after_a_half_committed_cutover_rollback_says_what_is_in_place_and_undoes_it() {
    let c = cluster();
    let db = seeded_source(&c, "legacy", 0.01).await;
    let url = c.url("legacy");
    let (ok, out) = run("backfill", &seed_plan(), &url, &url, &["--no-follow"]);
    assert!(ok, "{out}");
    db.batch_execute(FAIL_THE_STATE_COMMIT).await.unwrap();

    let (ok, out) = run("cutover", &seed_plan(), &url, &url, &[]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("the cutover committed on the source but the target's commit failed"),
        "{out}"
    );
    assert!(out.contains("injected: the state's commit fails"), "{out}");
    // The swap is in place on the source while the state never recorded it.
    assert_eq!(relkind(&db, "public.company_projects").await, "v");
    let recorded = status(&db).await;
    assert_ne!(recorded, "cut_over");
    db.batch_execute("DROP TRIGGER fail_at_commit ON switchyard.migrations")
        .await
        .unwrap();

    let (ok, out) = run("rollback", &seed_plan(), &url, &url, &[]);
    assert!(ok, "{out}");
    for table in ["company_projects", "company_services", "vortex_items"] {
        assert!(
            out.contains(&format!("public.{table} is a view (OID")),
            "{out}"
        );
        assert!(out.contains(&format!(") is now {table}_legacy")), "{out}");
    }
    assert!(
        out.contains("no read-only trigger is on the legacy tables"),
        "{out}"
    );
    assert!(
        out.contains(&format!("was recorded as {recorded} but had committed on the source; undone: the plan's rollback SQL ran; every legacy name is its legacy table again")),
        "{out}"
    );
    assert!(!out.contains("never touched"), "{out}");
    assert!(!out.contains("aborted instead"), "{out}");

    // Undone: the legacy tables are back and writable; the migration can cut over again.
    assert_eq!(relkind(&db, "public.company_projects").await, "r");
    db.batch_execute("UPDATE company_projects SET name = 'writable again' WHERE id = 1")
        .await
        .unwrap();
    assert!(slot_exists(&db).await);
    assert_eq!(status(&db).await, recorded);
    wait_until_slot_idle(&db).await;
    let (ok, out) = run("cutover", &seed_plan(), &url, &url, &[]);
    assert!(ok, "{out}");
    assert_eq!(relkind(&db, "public.company_projects").await, "v");
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_to_the_new_tables_since_the_cutover_make_rollback_ask_for_yes() {
    let c = cluster();
    let db = seeded_source(&c, "legacy", 0.01).await;
    let url = c.url("legacy");
    let (ok, out) = run("backfill", &seed_plan(), &url, &url, &["--no-follow"]);
    assert!(ok, "{out}");
    let (ok, out) = run("cutover", &seed_plan(), &url, &url, &[]);
    assert!(ok, "{out}");

    // The new application writes: updates, deletes, a new lookup value.
    db.batch_execute(
        "UPDATE tasks SET title = title || ' (edited)' WHERE id IN (SELECT id FROM tasks ORDER BY legacy_id LIMIT 3);
         DELETE FROM sub_tasks WHERE id IN (SELECT id FROM sub_tasks ORDER BY legacy_id LIMIT 2);
         INSERT INTO project_stages (name) VALUES ('added after the cutover');
         SELECT pg_stat_force_next_flush();",
    )
    .await
    .unwrap();

    let (ok, out) = run("rollback", &seed_plan(), &url, &url, &[]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("rollback refused: writes were made to the new tables since the cutover"),
        "{out}"
    );
    for line in [
        "public.tasks: 3 rows inserted or updated since the cutover, 3 rows of the cutover updated or deleted since (about 0 deleted, from the statistics)",
        "public.sub_tasks: 0 rows inserted or updated since the cutover, 2 rows of the cutover updated or deleted since (about 2 deleted, from the statistics)",
        "public.project_stages: 1 rows inserted or updated since the cutover, 0 rows of the cutover updated or deleted since",
    ] {
        assert!(out.contains(line), "{line}\n{out}");
    }
    assert!(
        !out.contains("public.projects:"),
        "untouched tables are not listed: {out}"
    );
    assert!(out.contains("switchyard rollback --yes"), "{out}");
    // Nothing changed.
    assert_eq!(relkind(&db, "public.company_projects").await, "v");
    assert_eq!(status(&db).await, "cut_over");

    let (ok, out) = run("rollback", &seed_plan(), &url, &url, &["--yes"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("rolling back anyway (--yes), leaving these writes in the new tables"),
        "{out}"
    );
    assert!(
        out.contains("public.tasks: 3 rows inserted or updated"),
        "{out}"
    );
    assert!(
        out.contains("migration legacy_to_projects rolled back"),
        "{out}"
    );
    assert_eq!(relkind(&db, "public.company_projects").await, "r");
    assert_eq!(status(&db).await, "rolled_back");
}

/// A reader idle in its transaction on a legacy name holds a lock the rollback's DROP VIEW and
/// renames conflict with: the rollback gives up within its lock timeout, says why and changes
/// nothing, instead of queuing every reader of the name behind it.
#[tokio::test(flavor = "multi_thread")]
async fn an_idle_reader_makes_rollback_stop_in_seconds_and_change_nothing() {
    let c = cluster();
    let db = seeded_source(&c, "legacy", 0.01).await;
    let url = c.url("legacy");
    let (ok, out) = run("backfill", &seed_plan(), &url, &url, &["--no-follow"]);
    assert!(ok, "{out}");
    let (ok, out) = run("cutover", &seed_plan(), &url, &url, &[]);
    assert!(ok, "{out}");
    let reader = c.connect("legacy").await.unwrap();
    reader
        .batch_execute("BEGIN; SELECT count(*) FROM company_projects")
        .await
        .unwrap();

    let started = std::time::Instant::now();
    let (ok, out) = run("rollback", &seed_plan(), &url, &url, &["--yes"]);
    assert!(!ok, "{out}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "{out}"
    );
    assert!(
        out.contains("rollback stopped: a session holds a lock"),
        "{out}"
    );
    assert!(out.contains("Nothing was changed"), "{out}");
    assert_eq!(relkind(&db, "public.company_projects").await, "v");
    assert_eq!(status(&db).await, "cut_over");

    reader.batch_execute("COMMIT").await.unwrap();
    let (ok, out) = run("rollback", &seed_plan(), &url, &url, &["--yes"]);
    assert!(ok, "{out}");
    assert_eq!(relkind(&db, "public.company_projects").await, "r");
}
