//! A source row the transforms reject has no output rows, only a dead letter: the backfill
//! writes nothing for it, the consumer deletes the key an update made unacceptable, and
//! `verify` expects nothing for it. The previous version never stays looking current.

use crate::small_migration::Migration;
use crate::support::switchyard;

const SOURCE: &str = "
CREATE TABLE bills (id int PRIMARY KEY, amount text);
INSERT INTO bills SELECT g, (g * 10)::text FROM generate_series(1, 10) g;
UPDATE bills SET amount = 'ten' WHERE id = 10;";

const TARGET: &str = "CREATE TABLE bills_out (id int PRIMARY KEY, amount numeric);";

const PLAN: &str = r#"
name = "hostile"
on_error = "dead_letter"
[[sources]]
table = "bills"
key = ["id"]
[[sources.outputs]]
table = "bills_out"
key = ["id"]
[sources.outputs.columns]
id = "id"
amount = "amount::numeric"
"#;

async fn target_rows(m: &Migration) -> Vec<(i32, String)> {
    m.target
        .query("SELECT id, amount::text FROM bills_out ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_new_version_removes_the_key_and_verify_agrees() {
    let mut m = Migration::prepare(SOURCE, TARGET, PLAN).await;
    m.start().await;
    let expected: Vec<(i32, String)> = (1..=9).map(|i| (i, (i * 10).to_string())).collect();
    assert_eq!(
        target_rows(&m).await,
        expected,
        "the backfill writes nothing for id 10"
    );
    m.write(
        "UPDATE bills SET amount = 'twenty' WHERE id = 2;
         UPDATE bills SET id = 30, amount = 'thirty' WHERE id = 3;
         UPDATE bills SET amount = '100' WHERE id = 10;
         INSERT INTO bills VALUES (11, 'eleven');",
    )
    .await;
    let rows = target_rows(&m).await;
    let ids: Vec<i32> = rows.iter().map(|r| r.0).collect();
    assert_eq!(ids, vec![1, 4, 5, 6, 7, 8, 9, 10], "{rows:?}");
    let letters: Vec<String> = m
        .target
        .query(
            "SELECT source_key::text FROM switchyard.dead_letters ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        letters.len(),
        4,
        "10 at the backfill, then 2, 30 and 11: {letters:?}"
    );
    let urls = m.urls();
    let out = switchyard(&m.args("verify", &urls));
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "verify disagrees:\n{text}");
}
