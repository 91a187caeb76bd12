//! See the module line in `silent_loss.rs`.
//!
//! Both paths write as `session_replication_role = replica`: a trigger marked `ENABLE ALWAYS`
//! fills its column for copied and streamed rows alike, an ordinary one fires for neither, and
//! columns PostgreSQL fills itself (generated, defaults, NOT NULL filled by a trigger) come out
//! the same. Every expectation is computed in SQL on the target, after the backfill and again
//! after the follow; `check` names each trigger with what happens and the fix.

use crate::small_migration::{Migration, Pair};

const SOURCE: &str = r#"
CREATE TABLE articles (id int PRIMARY KEY, title text, body text, kind text NOT NULL);
INSERT INTO articles
SELECT g, 'title ' || g, 'the body of article ' || g, 'k' || (g % 3) FROM generate_series(1, 40) g;
"#;

const TARGET: &str = r#"
CREATE TABLE docs (
    id int PRIMARY KEY, title text, body text, kind_id int,
    search tsvector,
    summary text,
    filled text NOT NULL,
    title_len int GENERATED ALWAYS AS (length(title)) STORED,
    stamped text NOT NULL DEFAULT 'default'
);
-- BEFORE INSERT OR UPDATE, marked ALWAYS: fills a tsvector and a NOT NULL column on both paths.
CREATE FUNCTION docs_search() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.search := to_tsvector('simple', coalesce(NEW.title, '') || ' ' || coalesce(NEW.body, ''));
    NEW.filled := 'by trigger ' || NEW.id;
    RETURN NEW;
END $$;
CREATE TRIGGER docs_search BEFORE INSERT OR UPDATE ON docs
    FOR EACH ROW EXECUTE FUNCTION docs_search();
ALTER TABLE docs ENABLE ALWAYS TRIGGER docs_search;
-- The same kind left ordinary: it fires for neither path.
CREATE FUNCTION docs_summary() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.summary := left(NEW.body, 5); RETURN NEW; END $$;
CREATE TRIGGER docs_summary BEFORE INSERT OR UPDATE ON docs
    FOR EACH ROW EXECUTE FUNCTION docs_summary();
-- AFTER row triggers: an ordinary audit, and a DELETE trigger marked ALWAYS.
CREATE TABLE audit (doc_id int, op text);
CREATE FUNCTION docs_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO audit VALUES (coalesce(NEW.id, OLD.id), TG_OP); RETURN NULL; END $$;
CREATE TRIGGER docs_audit AFTER INSERT OR UPDATE OR DELETE ON docs
    FOR EACH ROW EXECUTE FUNCTION docs_audit();
CREATE TABLE removed (doc_id int);
CREATE FUNCTION docs_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO removed VALUES (OLD.id); RETURN NULL; END $$;
CREATE TRIGGER docs_removed AFTER DELETE ON docs FOR EACH ROW EXECUTE FUNCTION docs_removed();
ALTER TABLE docs ENABLE ALWAYS TRIGGER docs_removed;
-- A statement trigger, ordinary.
CREATE FUNCTION docs_batch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO audit VALUES (NULL, 'statement'); RETURN NULL; END $$;
CREATE TRIGGER docs_batch AFTER INSERT ON docs FOR EACH STATEMENT EXECUTE FUNCTION docs_batch();
-- A lookup table whose values the backfill and the follow create: its trigger fires for both.
CREATE TABLE kinds (id serial PRIMARY KEY, name text UNIQUE, shout text);
CREATE FUNCTION kinds_shout() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.shout := upper(NEW.name); RETURN NEW; END $$;
CREATE TRIGGER kinds_shout BEFORE INSERT ON kinds FOR EACH ROW EXECUTE FUNCTION kinds_shout();
ALTER TABLE kinds ENABLE ALWAYS TRIGGER kinds_shout;
"#;

const PLAN: &str = r#"
name = "hostile"

[lookups.kinds]
table = "kinds"
id = "id"
value = "name"

[[sources]]
table = "articles"
key = ["id"]
[[sources.outputs]]
table = "docs"
key = ["id"]
[sources.outputs.columns]
id = "id"
title = "title"
body = "body"
kind_id = "lookup('kinds', kind)"
"#;

const PAIRS: &[Pair] = &[
    (
        "articles",
        &["id", "title", "body"],
        "docs",
        &["id", "title", "body"],
    ),
    (
        "(SELECT DISTINCT kind FROM articles) a",
        &["kind", "upper(kind)"],
        "kinds",
        &["name", "shout"],
    ),
];

/// Rows whose trigger-filled or PostgreSQL-filled columns differ from what they must be,
/// computed here in SQL: the ALWAYS trigger's values, nothing from the ordinary one, the
/// generated column, the default, and each row's kind.
const WRONG_ROWS: &str = "
SELECT count(*) FROM docs d LEFT JOIN kinds k ON k.id = d.kind_id
 WHERE d.search IS DISTINCT FROM to_tsvector('simple', coalesce(d.title, '') || ' ' || coalesce(d.body, ''))
    OR d.filled IS DISTINCT FROM 'by trigger ' || d.id
    OR d.summary IS NOT NULL
    OR d.title_len IS DISTINCT FROM length(d.title)
    OR d.stamped IS DISTINCT FROM 'default'
    OR k.name IS NULL";

#[tokio::test(flavor = "multi_thread")]
async fn target_triggers_and_filled_columns_act_alike_on_copied_and_streamed_rows() {
    let mut m = Migration::prepare(SOURCE, TARGET, PLAN).await;
    let (ok, report) = m.check();
    assert!(ok, "{report}");
    for (name, fix) in [
        ("docs_summary", "ENABLE ALWAYS TRIGGER \"docs_summary\""),
        ("docs_audit", "ENABLE ALWAYS TRIGGER \"docs_audit\""),
        ("docs_batch", "ENABLE ALWAYS TRIGGER \"docs_batch\""),
    ] {
        let line = report
            .split("warning: ")
            .find(|f| f.contains(&format!("trigger {name}:")))
            .unwrap_or_else(|| panic!("check does not name {name}:\n{report}"));
        assert!(line.contains("fires for neither"), "{line}");
        assert!(line.contains(fix), "{line}");
    }
    for name in ["docs_search", "docs_removed", "kinds_shout"] {
        let line = report
            .split("warning: ")
            .find(|f| f.contains(&format!("trigger {name}:")))
            .unwrap_or_else(|| panic!("check does not name {name}:\n{report}"));
        assert!(line.contains("ENABLE ALWAYS"), "{line}");
    }
    assert!(
        report.contains("DELETE fires in the follow only"),
        "{report}"
    );

    m.start().await;
    assert_eq!(m.assert_pairs(PAIRS).await, vec![40, 3]);
    assert_eq!(count(&m, WRONG_ROWS).await, 0, "after the backfill");
    m.write(
        "UPDATE articles SET body = 'a new body' WHERE id BETWEEN 1 AND 4;
         UPDATE articles SET title = NULL WHERE id = 7;
         INSERT INTO articles VALUES (100, 'streamed', 'a streamed body', 'k-new'),
                                     (101, NULL, NULL, 'k1');
         UPDATE articles SET id = 300 WHERE id = 30;
         DELETE FROM articles WHERE id IN (5, 6);",
    )
    .await;
    assert_eq!(m.assert_pairs(PAIRS).await, vec![40, 4]);
    assert_eq!(count(&m, WRONG_ROWS).await, 0, "after the follow");
    assert_eq!(
        count(&m, "SELECT count(*) FROM audit").await,
        0,
        "ordinary row and statement triggers fired"
    );
    let removed: Vec<i32> = m
        .target
        .query("SELECT doc_id FROM removed ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(removed, vec![5, 6, 30], "the ALWAYS delete trigger");
    assert_eq!(
        count(&m, "SELECT count(*) FROM switchyard.dead_letters").await,
        0
    );
}

/// A rule marked ALWAYS would apply to the follow's statements and not to the backfill's COPY:
/// `check` refuses it.
#[tokio::test(flavor = "multi_thread")]
async fn check_refuses_a_rule_that_only_one_path_would_apply() {
    let target = "CREATE TABLE docs (id int PRIMARY KEY, title text, body text);
                  CREATE TABLE log (id int);
                  CREATE RULE docs_log AS ON INSERT TO docs DO ALSO INSERT INTO log VALUES (NEW.id);
                  ALTER TABLE docs ENABLE ALWAYS RULE docs_log;";
    let plan = crate::small_migration::copy_plan(&[(
        "articles",
        &["id"],
        "docs",
        &["id", "title", "body"],
    )]);
    let m = Migration::prepare(SOURCE, target, &plan).await;
    let (ok, report) = m.check();
    assert!(!ok, "{report}");
    assert!(
        report.contains("rule docs_log") && report.contains("ENABLE RULE \"docs_log\""),
        "{report}"
    );
}

async fn count(m: &Migration, sql: &str) -> i64 {
    m.target.query_one(sql, &[]).await.unwrap().get(0)
}
