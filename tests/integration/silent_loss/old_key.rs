//! Keys that arrive only in the old-key tuple: a key column stored out of line
//! (`SET STORAGE EXTERNAL`, or compressed past the TOAST threshold) and left unchanged by an
//! update is marked unchanged in the new tuple; PostgreSQL sends it in the old-key (`K`)
//! tuple instead. Single and composite keys, text and bytea, the key unchanged and changed,
//! other columns TOASTed too, primary keys and `REPLICA IDENTITY USING INDEX`.

use crate::small_migration::{copy_plan, Migration, Pair};

/// Keys of 2,100 to 2,500 characters: over the TOAST threshold, stored out of line (and
/// under the 2,704 bytes a btree entry may hold, since EXTERNAL storage is never compressed).
const SOURCE: &str = "
CREATE TABLE t (k text PRIMARY KEY, n int, doc text);
ALTER TABLE t ALTER k SET STORAGE EXTERNAL, ALTER doc SET STORAGE EXTERNAL;
INSERT INTO t SELECT repeat(chr(65 + g), 2100) || g, g, repeat('d', 3000) FROM generate_series(1, 5) g;

CREATE TABLE pair (a text, b bytea, n int, PRIMARY KEY (a, b));
ALTER TABLE pair ALTER a SET STORAGE EXTERNAL, ALTER b SET STORAGE EXTERNAL;
INSERT INTO pair SELECT repeat('a', 2100) || g, convert_to(repeat('b', 500) || g, 'UTF8'), g
  FROM generate_series(1, 5) g;

CREATE TABLE by_index (id int, code text NOT NULL, n int);
CREATE UNIQUE INDEX by_index_code ON by_index (code);
ALTER TABLE by_index REPLICA IDENTITY USING INDEX by_index_code;
ALTER TABLE by_index ALTER code SET STORAGE EXTERNAL;
INSERT INTO by_index SELECT g, repeat('c', 2500) || g, g FROM generate_series(1, 5) g;";

const TARGET: &str = "
CREATE TABLE t_out (k text PRIMARY KEY, n int, doc text);
CREATE TABLE pair_out (a text, b bytea, n int, PRIMARY KEY (a, b));
CREATE TABLE by_index_out (code text PRIMARY KEY, id int, n int);";

const PAIRS: &[Pair] = &[
    (
        "public.t",
        &["k", "n", "doc"],
        "public.t_out",
        &["k", "n", "doc"],
    ),
    (
        "public.pair",
        &["a", "b", "n"],
        "public.pair_out",
        &["a", "b", "n"],
    ),
    (
        "public.by_index",
        &["code", "id", "n"],
        "public.by_index_out",
        &["code", "id", "n"],
    ),
];

#[tokio::test(flavor = "multi_thread")]
async fn updates_whose_key_is_only_in_the_old_tuple_are_applied() {
    let plan = copy_plan(&[
        ("t", &["k"], "t_out", &["k", "n", "doc"]),
        ("pair", &["a", "b"], "pair_out", &["a", "b", "n"]),
        ("by_index", &["code"], "by_index_out", &["code", "id", "n"]),
    ]);
    let mut m = Migration::prepare(SOURCE, TARGET, &plan).await;
    let [copied, followed] = m
        .backfill_then_follow(
            PAIRS,
            "UPDATE t SET n = 2;
             UPDATE t SET doc = 'short' WHERE n = 2 AND k LIKE 'C%';
             UPDATE pair SET n = n * 10;
             UPDATE by_index SET n = -n, id = id + 100;
             BEGIN;
             UPDATE t SET n = 3 WHERE k LIKE 'B%';
             UPDATE t SET k = 'moved' WHERE k LIKE 'D%';
             INSERT INTO t VALUES (repeat('Z', 2400), 9, repeat('z', 5000));
             DELETE FROM t WHERE k LIKE 'F%';
             UPDATE pair SET n = 0 WHERE n = 20;
             DELETE FROM pair WHERE n = 30;
             DELETE FROM by_index WHERE id = 101;
             COMMIT;",
        )
        .await;
    assert_eq!(copied, vec![5, 5, 5]);
    assert_eq!(followed, vec![5, 4, 4]);
    let updated: i64 = m
        .target
        .query_one("SELECT count(*) FROM t_out WHERE n IN (2, 3)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        updated, 4,
        "the updates of unchanged long keys were applied"
    );
}
