//! Objects bound to the legacy tables by OID follow them when the swap renames them (issue 18,
//! kind 1). Each test sets one up next to the seed's legacy tables and runs `check`, the
//! backfill, `cutover` (and `--dry-run`, `rollback`) as a user would.

use std::time::{Duration, Instant};

use super::harness::SameDatabase;
use crate::support::{cluster, run_command, seed_plan, seeded_source};

/// `comments.item_id REFERENCES vortex_items`: a table of the application the plan does not
/// migrate.
const COMMENTS: &str = "
    CREATE TABLE comments (id serial PRIMARY KEY,
                           item_id bigint REFERENCES vortex_items (id) ON DELETE CASCADE,
                           body text);
    INSERT INTO comments (item_id, body) SELECT id, 'first' FROM vortex_items ORDER BY id LIMIT 3;";

const FK: &str = "foreign key \"comments_item_id_fkey\" on public.comments";

/// What the foreign key references now.
async fn fk_target(m: &SameDatabase) -> Option<String> {
    m.db.query_opt(
        "SELECT confrelid::regclass::text FROM pg_constraint WHERE conname = 'comments_item_id_fkey'",
        &[],
    )
    .await
    .unwrap()
    .map(|r| r.get(0))
}

/// Nothing changed: the legacy table is a table under its name, the foreign key points at it,
/// the migration is not cut over.
async fn assert_untouched(m: &SameDatabase) {
    assert_eq!(m.relkind("vortex_items").await, "r");
    assert_ne!(m.status().await, "cut_over");
}

#[tokio::test(flavor = "multi_thread")]
async fn check_and_cutover_refuse_a_foreign_key_of_another_table_and_change_nothing() {
    let m = SameDatabase::new(COMMENTS).await;
    let (ok, out) = m.run("check", &[]);
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!("error: source.public.vortex_items: {FK}"))
            && out.contains("refers to a row written after the cutover is refused")
            && out
                .contains("ALTER TABLE public.comments DROP CONSTRAINT \"comments_item_id_fkey\"")
            && out.contains("foreign_keys = \"cutover_sql\""),
        "check names the foreign key, what the swap does to it and the fix:\n{out}"
    );
    // They block the cutover, not the copy.
    m.backfill();
    for extra in [&["--dry-run"][..], &[]] {
        let (ok, out) = m.run("cutover", extra);
        assert!(!ok, "{out}");
        assert!(
            out.contains("cutover refused before taking any lock; nothing was changed")
                && out.contains(FK)
                && out.contains("fix: in the plan's cutover SQL drop it"),
            "cutover {extra:?} names the foreign key and the fix:\n{out}"
        );
        assert_untouched(&m).await;
        assert_eq!(fk_target(&m).await.as_deref(), Some("vortex_items"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cutover_sql_must_deal_with_the_foreign_key_or_the_cutover_rolls_back_naming_it() {
    let mut m = SameDatabase::new(COMMENTS).await;
    m.with_dependents(&[("foreign_keys", "cutover_sql")]);
    let (_, out) = m.run("check", &[]);
    assert!(
        out.contains(&format!("warning: source.public.vortex_items: {FK}"))
            && out.contains("foreign_keys = \"cutover_sql\" (the plan's cutover SQL deals with it"),
        "{out}"
    );
    m.backfill();

    // The seed's cutover.sql knows nothing of comments: the swap is proven incomplete.
    let (ok, out) = m.run("cutover", &[]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("still bound to a legacy table")
            && out.contains(FK)
            && out.contains("Everything was rolled back"),
        "the cutover names what is still bound:\n{out}"
    );
    assert_untouched(&m).await;
    assert_eq!(fk_target(&m).await.as_deref(), Some("vortex_items"));

    // A cutover.sql that deals with it commits.
    m.with_cutover_sql("ALTER TABLE comments DROP CONSTRAINT comments_item_id_fkey;");
    let (ok, out) = m.run("cutover", &[]);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("bound to a legacy table: {FK}"))
            && out.contains("Plan: foreign_keys = \"cutover_sql\""),
        "the report lists it with what the plan says:\n{out}"
    );
    assert_eq!(m.relkind("vortex_items").await, "v");
    assert_eq!(fk_target(&m).await, None);
    m.db.batch_execute(
        "INSERT INTO comments (item_id, body) VALUES (987654321, 'on a task written after the cutover')",
    )
    .await
    .expect("a comment on a new task is no longer checked against the frozen table");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_carried_view_reads_the_new_tables_after_the_cutover_and_rollback_restores_it() {
    let m = SameDatabase::new(
        "CREATE VIEW top_items AS SELECT id, title, status FROM vortex_items WHERE parent_item_id IS NULL;
         CREATE VIEW top_item_titles AS SELECT title FROM top_items;",
    )
    .await;
    let (_, out) = m.run("check", &[]);
    assert!(
        out.contains("warning: source.public.vortex_items: view public.top_items is bound to it")
            && out.contains("view public.top_item_titles (through public.top_items)")
            && out.contains("views = \"carry\"")
            && !out.contains("error: source.public.vortex_items: view"),
        "{out}"
    );
    m.backfill();
    let (ok, out) = m.run("cutover", &["--dry-run"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("bound to a legacy table: view public.top_items, bound to public.vortex_items: it reads public.vortex_items by OID")
            && out.contains("Plan: views = \"carry\""),
        "the dry run prints the dependency report:\n{out}"
    );
    let (ok, out) = m.run("cutover", &["--dry-run", "--json"]);
    assert!(ok, "{out}");
    let report: serde_json::Value = out
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("a JSON report:\n{out}"));
    let views = &report["dependents"]["dependents"];
    assert!(
        views
            .as_array()
            .is_some_and(|v| v.iter().any(|d| d["kind"] == "view"
                && d["object"] == "view public.top_items"
                && d["disposition"] == "carry"
                && d["legacy_table"] == "public.vortex_items")),
        "the JSON report carries the dependency report:\n{out}"
    );
    let (ok, out) = m.run("cutover", &[]);
    assert!(ok, "{out}");
    assert!(out.contains("view public.top_items carried over"), "{out}");

    // Written through the new model after the cutover: the carried views see it.
    let id: i64 =
        m.db.query_one(
            "UPDATE tasks SET title = 'written after the cutover'
              WHERE legacy_id = (SELECT min(legacy_id) FROM tasks) RETURNING legacy_id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let title = |view: &'static str| {
        let db = &m.db;
        async move {
            db.query_one(
                &format!("SELECT title FROM {view} WHERE title = 'written after the cutover'"),
                &[],
            )
            .await
            .map(|r| r.get::<_, String>(0))
            .ok()
        }
    };
    assert!(
        title("top_items").await.is_some(),
        "the carried view reads the new tables"
    );
    assert!(
        title("top_item_titles").await.is_some(),
        "so does the view over it"
    );
    let reads_legacy: bool =
        m.db.query_one(
            "SELECT EXISTS (SELECT FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
                             WHERE r.ev_class = 'top_items'::regclass
                               AND d.refobjid = 'vortex_items_legacy'::regclass)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!reads_legacy);

    // The task written through the new model since the cutover would stay behind: named,
    // and the rollback goes on only when told to.
    let (ok, out) = m.run("rollback", &[]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("public.tasks: 1 rows inserted or updated"),
        "{out}"
    );
    let (ok, out) = m.run("rollback", &["--yes"]);
    assert!(ok, "{out}");
    assert!(out.contains("view public.top_items restored"), "{out}");
    assert_eq!(m.relkind("vortex_items").await, "r");
    assert!(
        title("top_items").await.is_none(),
        "it reads the legacy table again"
    );
    m.db.execute(
        "UPDATE vortex_items SET title = 'written after the rollback' WHERE id = $1",
        &[&id],
    )
    .await
    .unwrap();
    let back: String =
        m.db.query_one("SELECT title FROM top_items WHERE id = $1", &[&id])
            .await
            .unwrap()
            .get(0);
    assert_eq!(back, "written after the rollback");
}

/// A materialized view, a SQL function that reads, a plpgsql trigger function of another table
/// that writes, a `BEGIN ATOMIC` function, a trigger on the legacy table, and a publication
/// with a live subscriber.
const BOUND_BY_NAME_AND_OID: &str = "
    CREATE MATERIALIZED VIEW item_statuses AS SELECT status, count(*) AS n FROM vortex_items GROUP BY status;
    CREATE FUNCTION open_item_count() RETURNS bigint LANGUAGE sql STABLE
        AS $$ SELECT count(*) FROM public.vortex_items WHERE status <> 'done' $$;
    CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL);
    CREATE FUNCTION note_to_item() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO vortex_items (title, created_at) VALUES (NEW.body, now());
        RETURN NEW;
    END $$;
    CREATE TRIGGER note_to_item AFTER INSERT ON notes FOR EACH ROW EXECUTE FUNCTION note_to_item();
    CREATE FUNCTION touch_item() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN NEW.updated_at := now(); RETURN NEW; END $$;
    CREATE TRIGGER touch_item BEFORE UPDATE ON vortex_items FOR EACH ROW EXECUTE FUNCTION touch_item();
    CREATE FUNCTION item_titles() RETURNS SETOF text LANGUAGE sql
        BEGIN ATOMIC SELECT title FROM vortex_items; END;
    CREATE PUBLICATION items_pub FOR TABLE vortex_items;";

/// A subscriber in another database of the cluster, on slot `items_sub`; returns once the slot
/// is active.
async fn subscribe(m: &SameDatabase) {
    // On its own: a slot is not created in a transaction that wrote.
    m.db.batch_execute("SELECT pg_create_logical_replication_slot('items_sub', 'pgoutput')")
        .await
        .unwrap();
    m.cluster.create_database("replica").await.unwrap();
    let replica = m.cluster.connect("replica").await.unwrap();
    replica
        .batch_execute(&format!(
            "CREATE TABLE vortex_items (id bigint PRIMARY KEY, project_id bigint, parent_item_id bigint,
                 title text, status text, priority text, assignee_email text, due text, body text,
                 created_at timestamp, updated_at timestamp);
             CREATE SUBSCRIPTION items_sub CONNECTION '{}' PUBLICATION items_pub
                 WITH (create_slot = false, slot_name = 'items_sub', copy_data = false);",
            m.url
        ))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let active: bool =
            m.db.query_one(
                "SELECT active FROM pg_replication_slots WHERE slot_name = 'items_sub'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if active {
            return;
        }
        assert!(Instant::now() < deadline, "the subscriber never connected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn check_and_cutover_name_views_functions_triggers_and_publications_with_what_the_swap_does()
{
    let m = SameDatabase::new(BOUND_BY_NAME_AND_OID).await;
    subscribe(&m).await;
    let expected = [
        "materialized view public.item_statuses",
        "DROP MATERIALIZED VIEW public.item_statuses",
        "function public.open_item_count()",
        "it reads public.vortex_items by name: after the swap it reads whatever takes that name",
        "trigger function public.note_to_item() (fired by note_to_item on public.notes)",
        "it writes public.vortex_items by name (INSERT/UPDATE/DELETE/MERGE): after the swap that name is the compatibility view, which is read-only, so it will fail",
        "function public.item_titles()",
        "its body (BEGIN ATOMIC) is bound to public.vortex_items by OID",
        "trigger \"touch_item\" on public.vortex_items (executes touch_item())",
        "it no longer fires",
        "DROP TRIGGER \"touch_item\" ON \"public\".\"vortex_items\"",
        "publication \"items_pub\" (publishes public.vortex_items via the table itself)",
        "its subscribers silently stop receiving the application's changes",
        "slot items_sub (pid",
    ];
    let (ok, out) = m.run("check", &[]);
    assert!(!ok, "{out}");
    for e in expected {
        assert!(out.contains(e), "check says {e:?}:\n{out}");
    }
    assert!(
        !out.contains("switchyard_legacy_to_projects\" (publishes"),
        "the migration's own publication is not a dependent:\n{out}"
    );
    m.backfill();
    let (ok, out) = m.run("cutover", &["--dry-run"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("cutover refused before taking any lock"),
        "{out}"
    );
    for e in expected {
        assert!(out.contains(e), "the cutover says {e:?}:\n{out}");
    }
    assert_untouched(&m).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn after_the_cutover_sql_readers_pass_and_a_writer_left_behind_rolls_back_naming_it() {
    let mut m = SameDatabase::new(
        "CREATE MATERIALIZED VIEW item_statuses AS SELECT status, count(*) AS n FROM vortex_items GROUP BY status;
         CREATE FUNCTION open_item_count() RETURNS bigint LANGUAGE sql STABLE
             AS $$ SELECT count(*) FROM vortex_items WHERE status <> 'done' $$;
         CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL);
         CREATE FUNCTION note_to_item() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN INSERT INTO vortex_items (title) VALUES (NEW.body); RETURN NEW; END $$;
         CREATE TRIGGER note_to_item AFTER INSERT ON notes FOR EACH ROW EXECUTE FUNCTION note_to_item();
         CREATE PUBLICATION items_pub FOR TABLE vortex_items;",
    )
    .await;
    m.with_dependents(&[
        ("materialized_views", "cutover_sql"),
        ("functions", "cutover_sql"),
        ("publications", "cutover_sql"),
    ]);
    m.backfill();
    // The materialized view and the publication re-made over the new names; the writer forgotten.
    let handled = "DROP MATERIALIZED VIEW item_statuses;
        CREATE MATERIALIZED VIEW item_statuses AS SELECT status, count(*) AS n FROM vortex_items GROUP BY status;
        ALTER PUBLICATION items_pub SET TABLE tasks, sub_tasks;";
    m.with_cutover_sql(handled);
    let (ok, out) = m.run("cutover", &[]);
    assert!(!ok, "{out}");
    let (_, still) = out
        .split_once("still bound to a legacy table")
        .unwrap_or_else(|| panic!("the cutover names what is still bound:\n{out}"));
    assert!(
        still.contains(
            "trigger function public.note_to_item() (fired by note_to_item on public.notes)"
        ) && still.contains("will fail")
            && !still.contains("open_item_count")
            && !still.contains("item_statuses")
            && !still.contains("items_pub"),
        "only the writer is still bound; the reader reads the compatibility view:\n{out}"
    );
    assert_untouched(&m).await;

    m.with_cutover_sql(&format!(
        "{handled}
         CREATE OR REPLACE FUNCTION note_to_item() RETURNS trigger LANGUAGE plpgsql AS $f$
         BEGIN
             INSERT INTO tasks (id, legacy_id, title) VALUES (gen_random_uuid(), -NEW.id, NEW.body);
             RETURN NEW;
         END $f$;"
    ));
    let (ok, out) = m.run("cutover", &[]);
    assert!(ok, "{out}");
    assert_eq!(m.relkind("vortex_items").await, "v");
    m.db.batch_execute("INSERT INTO notes (body) VALUES ('a note after the cutover')")
        .await
        .unwrap();
    let seen: i64 =
        m.db.query_one(
            "SELECT count(*) FROM vortex_items WHERE title = 'a note after the cutover'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        seen, 1,
        "the rewritten trigger function writes the new tables"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_two_servers_check_refuses_to_carry_a_view_nothing_would_take_the_name_of() {
    let c = cluster();
    let source = seeded_source(&c, "legacy", 0.001).await;
    source
        .batch_execute("CREATE VIEW top_items AS SELECT id, title FROM vortex_items")
        .await
        .unwrap();
    c.create_database("app").await.unwrap();
    let out = run_command("check", &seed_plan(), &c.url("legacy"), &c.url("app"), &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("error: source.public.vortex_items: view public.top_items is bound to it")
            && text.contains("after the swap it keeps reading the legacy table, read-only and frozen after the cutover")
            && text.contains("views = \"carry\" needs the same-database layout")
            && text.contains("DROP VIEW public.top_items"),
        "{text}"
    );
}
