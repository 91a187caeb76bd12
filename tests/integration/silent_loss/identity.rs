//! The source table changes identity under the consumer. Renamed or moved: the consumer stops
//! before confirming the changes made under the new name, and once the name is back, `follow`
//! applies every one of them. Replaced, dropped, unlogged, taken out of the publication, or
//! its replica identity moved off the plan's key: the consumer stops with what happened and
//! what to do, and `status` says `stopped`.

use crate::small_migration::{copy_plan, Migration, Pair};

const SOURCE: &str = "
CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, qty int);
INSERT INTO items SELECT g, 'item ' || g, g FROM generate_series(1, 20) g;";

const TARGET: &str = "CREATE TABLE items_out (id int PRIMARY KEY, name text, qty int);";

const PAIRS: &[Pair] = &[(
    "public.items",
    &["id", "name", "qty"],
    "public.items_out",
    &["id", "name", "qty"],
)];

async fn following() -> Migration {
    let plan = copy_plan(&[("items", &["id"], "items_out", &["id", "name", "qty"])]);
    let mut m = Migration::prepare(SOURCE, TARGET, &plan).await;
    m.start().await;
    m.write("UPDATE items SET qty = qty + 1 WHERE id = 1").await;
    m.assert_pairs(PAIRS).await;
    m
}

/// Runs `ddl`, notes the position, runs `writes`, and asserts the consumer stops saying each
/// of `says`, with status `stopped` and the reason, and the slot not confirmed past the writes.
async fn stops(m: &mut Migration, ddl: &str, writes: &str, says: &[&str]) {
    m.source.batch_execute(ddl).await.unwrap();
    let before = m.position().await;
    m.source.batch_execute(writes).await.unwrap();
    let err = m.exit_message();
    for text in says {
        assert!(
            err.contains(text),
            "the consumer's exit does not say {text:?}:\n{err}"
        );
    }
    let (status, message): (String, Option<String>) = m
        .target
        .query_one("SELECT status, message FROM switchyard.migrations", &[])
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(status, "stopped", "{message:?}");
    assert!(message.unwrap().contains(says[0]));
    let confirmed_before = m.confirmed_at_most(&before).await;
    assert!(
        confirmed_before,
        "the slot was confirmed past changes never applied"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_renamed_table_stops_the_consumer_and_every_change_is_applied_once_renamed_back() {
    let mut m = following().await;
    stops(
        &mut m,
        "ALTER TABLE items RENAME TO items_old",
        "UPDATE items_old SET qty = 100 WHERE id = 2;
         INSERT INTO items_old VALUES (21, 'item 21', 21);
         DELETE FROM items_old WHERE id = 3;",
        &[
            "public.items",
            "now called public.items_old",
            "rename it back",
        ],
    )
    .await;
    m.source
        .batch_execute(
            "ALTER TABLE items_old RENAME TO items; UPDATE items SET name = 'after' WHERE id = 5",
        )
        .await
        .unwrap();
    m.resume().await;
    m.write("INSERT INTO items VALUES (22, 'item 22', 22)")
        .await;
    let [count] = m.assert_pairs(PAIRS).await[..] else {
        unreachable!()
    };
    assert_eq!(
        count, 21,
        "19 rows left of 20, one inserted under each name"
    );
    // A column the plan reads renamed under a renamed table is seen too.
    stops(
        &mut m,
        "ALTER TABLE items RENAME TO items_old; ALTER TABLE items_old RENAME COLUMN qty TO quantity",
        "UPDATE items_old SET quantity = 7 WHERE id = 4",
        &["public.items"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_table_moved_to_another_schema_and_back_loses_nothing() {
    let mut m = following().await;
    stops(
        &mut m,
        "CREATE SCHEMA archive; ALTER TABLE items SET SCHEMA archive",
        "UPDATE archive.items SET qty = 100 WHERE id = 2;
         INSERT INTO archive.items VALUES (21, 'item 21', 21);
         DELETE FROM archive.items WHERE id = 3;",
        &["public.items", "archive.items"],
    )
    .await;
    m.source
        .batch_execute(
            "ALTER TABLE archive.items SET SCHEMA public; UPDATE items SET qty = 0 WHERE id = 6",
        )
        .await
        .unwrap();
    m.resume().await;
    m.write("INSERT INTO items VALUES (22, 'item 22', 22)")
        .await;
    let [count] = m.assert_pairs(PAIRS).await[..] else {
        unreachable!()
    };
    assert_eq!(count, 21);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_table_replaced_in_one_transaction_stops_the_consumer() {
    let mut m = following().await;
    stops(
        &mut m,
        "BEGIN;
         ALTER TABLE items RENAME TO items_old;
         CREATE TABLE items (LIKE items_old INCLUDING ALL);
         INSERT INTO items SELECT * FROM items_old;
         COMMIT;",
        "UPDATE items SET qty = 100 WHERE id = 2",
        &["public.items", "abort"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_table_dropped_and_recreated_stops_the_consumer() {
    let mut m = following().await;
    stops(
        &mut m,
        "BEGIN;
         DROP TABLE items;
         CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, qty int);
         COMMIT;",
        "INSERT INTO items VALUES (1, 'new', 1)",
        &["public.items", "abort"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_table_stops_the_consumer() {
    let mut m = following().await;
    stops(&mut m, "DROP TABLE items", "SELECT 1", &["dropped"]).await;
}

/// (`ALTER TABLE ... SET UNLOGGED` is refused by PostgreSQL for a published table; a partition
/// of a table published through its root is not refused, and the identity check looks at
/// every partition.)
#[tokio::test(flavor = "multi_thread")]
async fn a_table_left_out_of_the_publication_stops_the_consumer() {
    for (ddl, says) in [
        (
            "ALTER PUBLICATION switchyard_hostile DROP TABLE items",
            "no longer holds public.items",
        ),
        (
            "ALTER PUBLICATION switchyard_hostile SET (publish = 'insert')",
            "every kind of change",
        ),
        (
            "ALTER PUBLICATION switchyard_hostile SET TABLE items WHERE (id > 5)",
            "filters the rows",
        ),
        (
            "ALTER PUBLICATION switchyard_hostile SET TABLE items (id, name)",
            "column qty",
        ),
    ] {
        let mut m = following().await;
        stops(
            &mut m,
            ddl,
            "UPDATE items SET qty = 100 WHERE id = 2",
            &[says],
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_identity_off_the_plans_key_stops_the_consumer() {
    let mut m = following().await;
    stops(
        &mut m,
        "CREATE UNIQUE INDEX items_name ON items (name);
         ALTER TABLE items REPLICA IDENTITY USING INDEX items_name",
        "DELETE FROM items WHERE id = 2",
        &["key column id", "replica identity"],
    )
    .await;
}
