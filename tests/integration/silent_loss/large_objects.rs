//! See the module line in `silent_loss.rs`.

use crate::small_migration::{copy_plan, Migration};
use crate::support::switchyard;

const SOURCE: &str = "
    CREATE EXTENSION lo;
    CREATE TABLE docs (id int PRIMARY KEY, title text, body oid, scan lo);
    INSERT INTO docs VALUES (1, 'a', lo_from_bytea(0, 'first'), lo_from_bytea(0, 'scan 1')),
                            (2, 'b', lo_from_bytea(0, 'second'), NULL);";

const TARGET: &str = "
    CREATE EXTENSION lo;
    CREATE TABLE docs (id int PRIMARY KEY, title text, body oid, scan lo);";

#[tokio::test(flavor = "multi_thread")]
async fn check_warns_and_verify_notes_that_large_objects_are_numbers_only() {
    let plan = copy_plan(&[("docs", &["id"], "docs", &["id", "title", "body", "scan"])]);
    let mut m = Migration::prepare(SOURCE, TARGET, &plan).await;
    let (ok, report) = m.check();
    assert!(ok, "a warning, not a refusal:\n{report}");
    for column in [r#""body" (oid)"#, r#""scan" (lo)"#] {
        assert!(
            report.contains(&format!(
                "warning: source.public.docs: the plan reads column {column}"
            )) && report.contains("copies and follows the numbers only, never the objects"),
            "check names {column} and what happens:\n{report}"
        );
    }
    assert!(report.contains("lo_get("), "check gives the fix:\n{report}");

    m.backfill_then_follow(
        &[(
            "docs",
            &["id", "title", "body", "scan"],
            "docs",
            &["id", "title", "body", "scan"],
        )],
        "INSERT INTO docs VALUES (3, 'c', lo_from_bytea(0, 'third'), NULL)",
    )
    .await;
    // The numbers arrived; the objects did not.
    let objects: i64 = m
        .target
        .query_one("SELECT count(*) FROM pg_largeobject_metadata", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(objects, 0, "the README says large objects are not copied");

    let urls = m.urls();
    let out = switchyard(&m.args("verify", &urls));
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    for column in ["public.docs.body (oid)", "public.docs.scan (lo)"] {
        assert!(
            text.contains(&format!("note: {column} holds large-object numbers")),
            "verify says what it compared for {column}:\n{text}"
        );
    }
}
