//! Hostile and unusual input, backfilled and then followed (inserts, updates, key changes,
//! deletes): identifiers no plain name could spell, values whose text form is easy to mangle,
//! tables keyed by a replica identity instead of a primary key, and partitioned tables
//! published through their root. Source and target are compared column by column on the
//! exact text PostgreSQL prints (under fixed session settings) and again typed, `EXCEPT ALL`
//! both ways over the source rows cast back to their types on the target.

use crate::small_migration::{copy_plan, Migration, Pair};

// ─── identifiers ─────────────────────────────────────────────────────────────────────────

const IDENT_SOURCE: &str = r#"
CREATE SCHEMA "Odd ""Schema"" ü";
CREATE TABLE "Odd ""Schema"" ü"."Table.With ""Dots"" & Spaces" (
    "Id" int PRIMARY KEY,
    "select" text,
    "My ""Col""" text,
    "Ünïcödé" int,
    "with space" text,
    "UPPER" text
);
INSERT INTO "Odd ""Schema"" ü"."Table.With ""Dots"" & Spaces"
SELECT g, 'sel ' || g, 'my "col" ' || g, g * 10, 'sp ' || g, 'Up ' || g FROM generate_series(1, 50) g;
CREATE TABLE public."user" ("group" int PRIMARY KEY, "order" text);
INSERT INTO public."user" SELECT g, 'o' || g FROM generate_series(1, 20) g;
"#;

const IDENT_TARGET: &str = r#"
CREATE SCHEMA "Tgt ""Schema""";
CREATE TABLE "Tgt ""Schema"""."Out.Table ""x""" (
    "Key" int PRIMARY KEY,
    "order" text,
    "Their ""Col""" text,
    "ünï" int,
    "with space" text,
    "shouted" text,
    "kind" int
);
CREATE TABLE "Tgt ""Schema"""."Kinds.Table" (
    "Id ""x""" serial PRIMARY KEY,
    "Näme" text UNIQUE
);
CREATE TABLE public."table" ("from" int PRIMARY KEY, "where" text);
"#;

const IDENT_PLAN: &str = r#"
name = "hostile"

[lookups.kinds]
schema = 'Tgt "Schema"'
table = "Kinds.Table"
id = 'Id "x"'
value = "Näme"

[[sources]]
schema = 'Odd "Schema" ü'
table = 'Table.With "Dots" & Spaces'
key = ["Id"]
[sources.derive]
loud = 'lower("UPPER")'
[[sources.outputs]]
schema = 'Tgt "Schema"'
table = 'Out.Table "x"'
key = ["Key"]
[sources.outputs.columns]
"Key" = '"Id"'
"order" = '"select"'
'Their "Col"' = '"My ""Col"""'
"ünï" = '"Ünïcödé"'
"with space" = '"with space"'
"shouted" = 'loud'
"kind" = """lookup('kinds', "select")"""

[[sources]]
table = "user"
key = ["group"]
[[sources.outputs]]
table = "table"
key = ["from"]
[sources.outputs.columns]
"from" = '"group"'
"where" = '"order"'
"#;

const IDENT_PAIRS: &[Pair] = &[
    (
        r#""Odd ""Schema"" ü"."Table.With ""Dots"" & Spaces""#,
        &[
            r#""Id""#,
            r#""select""#,
            r#""My ""Col""""#,
            r#""Ünïcödé""#,
            r#""with space""#,
            r#"lower("UPPER")"#,
            r#""select""#,
        ],
        r#""Tgt ""Schema"""."Out.Table ""x""""#,
        &[
            r#""Key""#,
            r#""order""#,
            r#""Their ""Col""""#,
            r#""ünï""#,
            r#""with space""#,
            r#""shouted""#,
            r#"(SELECT "Näme" FROM "Tgt ""Schema"""."Kinds.Table" WHERE "Id ""x""" = "kind")"#,
        ],
    ),
    (
        r#"public."user""#,
        &[r#""group""#, r#""order""#],
        r#"public."table""#,
        &[r#""from""#, r#""where""#],
    ),
];

#[tokio::test(flavor = "multi_thread")]
async fn quoted_mixed_case_unicode_and_reserved_identifiers_are_copied_and_streamed() {
    let mut m = Migration::prepare(IDENT_SOURCE, IDENT_TARGET, IDENT_PLAN).await;
    let [copied, followed] = m
        .backfill_then_follow(
            IDENT_PAIRS,
            r#"
        INSERT INTO "Odd ""Schema"" ü"."Table.With ""Dots"" & Spaces"
        VALUES (100, 'new', 'new "col"', 1000, 'new sp', 'NEW');
        UPDATE "Odd ""Schema"" ü"."Table.With ""Dots"" & Spaces"
           SET "My ""Col""" = 'changed "col"', "UPPER" = 'CHANGED' WHERE "Id" = 2;
        UPDATE "Odd ""Schema"" ü"."Table.With ""Dots"" & Spaces" SET "Id" = 1003 WHERE "Id" = 3;
        DELETE FROM "Odd ""Schema"" ü"."Table.With ""Dots"" & Spaces" WHERE "Id" = 4;
        INSERT INTO public."user" VALUES (100, 'new');
        UPDATE public."user" SET "order" = 'changed' WHERE "group" = 1;
        UPDATE public."user" SET "group" = 102 WHERE "group" = 2;
        DELETE FROM public."user" WHERE "group" = 3;
        "#,
        )
        .await;
    assert_eq!((copied, followed), (vec![50, 20], vec![50, 20]));
    let gone: i64 = m
        .target
        .query_one(
            r#"SELECT count(*) FROM "Tgt ""Schema"""."Out.Table ""x""" WHERE "Key" IN (3, 4)"#,
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        gone, 0,
        "the old key of a key change and a deleted row are gone"
    );
}

// ─── values ──────────────────────────────────────────────────────────────────────────────

const VALUE_TYPES: &str = r#"
CREATE TYPE mood AS ENUM ('sad', 'ok', 'it''s "fine"', 'Ünïcode mood');
CREATE DOMAIN positive AS int CHECK (VALUE > 0);
CREATE DOMAIN short_text AS text CHECK (length(VALUE) < 100);
"#;

const VALUE_COLUMNS: &str = "(
    id int PRIMARY KEY,
    t text, b bytea, ta text[], ia int[], j json, jb jsonb, n numeric, f float8,
    d date, ts timestamp, tz timestamptz, iv interval, e mood, dp positive, dt short_text,
    ea mood[]
)";

/// Rows whose text forms are easy to mangle, with ids `base + 1 ..`.
fn hostile_values(base: i32) -> String {
    let huge = format!("{}.{}", "9".repeat(300), "1".repeat(300));
    format!(
        r#"INSERT INTO vals VALUES
    ({a}, E'tab\there\nnewline\r\nCRLF \\ backslash \\N and \N', '\x00ff5c0a0d09'::bytea,
     '{{NULL,"a\"b","c,d","NULL","",x\\y}}', '{{1,NULL,-3}}',
     '{{"b": 1,  "a" : [1, 2], "a": "dup"}}', '{{"z": "\t\n\\", "a": null, "ü": [1.50, 1e3]}}',
     'NaN', 'NaN', 'infinity', 'infinity', 'infinity', '1 year 2 mons -3 days 04:05:06.789',
     'it''s "fine"', 1, E'\\N', '{{sad,"it''s \"fine\""}}'),
    ({b}, '', '', '{{}}', '[0:2]={{7,8,9}}', '"\u00e9 \ud83d\ude00"', '[]',
     '{huge}', '-infinity', '-infinity', '-infinity', '-infinity', '-178000000 years',
     'Ünïcode mood', 2147483647, '', '{{}}'),
    ({c}, NULL, NULL, NULL, '{{{{1,2}},{{3,4}}}}', 'null', 'null', '-0.000000000000000000001',
     '-0', '4713-01-01 BC', '4713-01-01 00:00:00 BC', '0044-03-15 12:34:56.789012 BC',
     '1 day', NULL, NULL, NULL, NULL),
    ({d}, '😀 ünï ∑ 𝄞 e'||chr(769), '\x'::bytea, ARRAY[E'tab\there', E'nl\nthere', E'\\'],
     NULL, '{{"deep": {{"x": [true, false, null, "\u0000"]}}}}', '{{"k": "\u00e9"}}',
     '12345678901234567890.000000000000000000001000', '1e-310', '2000-02-29',
     '2000-02-29 23:59:59.999999', '1999-12-31 23:59:59.999999+14', '24:00:00', 'sad', 5,
     'plain', NULL),
    ({e}, 'NULL', E'\\x5c4e'::bytea, '{{"\\N"}}', '{{}}', '{{}}', '{{}}', 'Infinity', '1.7976931348623157e308',
     '0001-01-01', '294276-12-31 23:59:59.999999', '0001-01-01 00:00:00+00', '-1 mons +1 day -00:00:00.000001',
     'ok', 3, ' lead and trail ', '{{ok,NULL}}')"#,
        a = base + 1,
        b = base + 2,
        c = base + 3,
        d = base + 4,
        e = base + 5,
    )
}

/// Text keys that COPY must escape (tab, newline, backslash, `\N`) and ones that are easy to
/// trim away ('', ' '), each with `suffix` appended (a key with a suffix is a new key).
fn hostile_keys(suffix: &str) -> String {
    let keys = [
        r"E'a\tb'",
        r"E'line\nbreak'",
        r"E'back\\slash'",
        r"'\N'",
        "'ünï 😀'",
        "''",
        "' '",
        "'NULL'",
        r"E'cr\rlf\n'",
    ];
    let rows: Vec<String> = keys
        .iter()
        .map(|k| format!("({k} || '{suffix}', E'v\\t' || {k})"))
        .collect();
    format!("INSERT INTO tkeys VALUES {};", rows.join(", "))
}

const VALUE_NAMES: [&str; 17] = [
    "id", "t", "b", "ta", "ia", "j", "jb", "n", "f", "d", "ts", "tz", "iv", "e", "dp", "dt", "ea",
];

#[tokio::test(flavor = "multi_thread")]
async fn tricky_values_pass_through_backfill_and_follow_unchanged() {
    let source_sql = format!(
        "{VALUE_TYPES} CREATE TABLE vals {VALUE_COLUMNS}; {}; {};
         CREATE TABLE tkeys (k text PRIMARY KEY, v text); {}",
        hostile_values(0),
        hostile_values(10),
        hostile_keys("")
    );
    let target_sql = format!(
        "{VALUE_TYPES} CREATE TABLE vals_out {VALUE_COLUMNS};
         CREATE TABLE tkeys_out (k text PRIMARY KEY, v text);"
    );
    let plan = copy_plan(&[
        ("vals", &["id"], "vals_out", &VALUE_NAMES),
        ("tkeys", &["k"], "tkeys_out", &["k", "v"]),
    ]);
    let mut m = Migration::prepare(&source_sql, &target_sql, &plan).await;
    // Inserted, updated to other tricky values (and to NULL and back), key-changed, deleted.
    let writes = format!(
        r"{};
         UPDATE vals v SET (t, b, ta, ia, j, jb, n, f, d, ts, tz, iv, e, dp, dt, ea) =
             (SELECT t, b, ta, ia, j, jb, n, f, d, ts, tz, iv, e, dp, dt, ea FROM vals w
               WHERE w.id = 100 + (v.id % 5) + 1)
          WHERE v.id BETWEEN 1 AND 5;
         UPDATE vals SET t = NULL, b = NULL, j = NULL WHERE id = 11;
         UPDATE vals SET t = '', j = '{{}}' WHERE id = 13;
         UPDATE vals SET id = 1000 + id WHERE id IN (12, 14);
         DELETE FROM vals WHERE id = 15;
         {}
         UPDATE tkeys SET v = v || E' changed\\' WHERE k <> '';
         UPDATE tkeys SET k = k || E'\t2' WHERE k IN (E'a\tb', E'back\\slash');
         DELETE FROM tkeys WHERE k IN ('\N', '', E'line\nbreak new')",
        hostile_values(100),
        hostile_keys(" new")
    );
    let pairs: &[Pair] = &[
        ("vals", &VALUE_NAMES, "vals_out", &VALUE_NAMES),
        ("tkeys", &["k", "v"], "tkeys_out", &["k", "v"]),
    ];
    let counts = m.backfill_then_follow(pairs, &writes).await;
    assert_eq!(counts, [vec![10, 9], vec![14, 15]]);
}

// ─── no primary key ──────────────────────────────────────────────────────────────────────

const NO_PK_SOURCE: &str = "
CREATE TABLE rifull (a int NOT NULL, b text, c jsonb);
ALTER TABLE rifull REPLICA IDENTITY FULL;
INSERT INTO rifull SELECT g, 'b' || g, jsonb_build_object('g', g) FROM generate_series(1, 200) g;
CREATE TABLE riidx (x int NOT NULL, y text NOT NULL, z text);
CREATE UNIQUE INDEX riidx_xy ON riidx (x, y);
ALTER TABLE riidx REPLICA IDENTITY USING INDEX riidx_xy;
ALTER TABLE riidx ALTER z SET STORAGE EXTERNAL;
INSERT INTO riidx
SELECT g % 50, 'y' || (g / 50), coalesce(CASE WHEN g % 50 BETWEEN 5 AND 9 THEN repeat('z', 5000) END, 'z') || g
  FROM generate_series(1, 200) g;
";

const NO_PK_TARGET: &str = "
CREATE TABLE rifull_out (a int PRIMARY KEY, b text, c jsonb);
CREATE TABLE riidx_out (x int, y text, z text, PRIMARY KEY (x, y));
";

const NO_PK_PAIRS: &[Pair] = &[
    ("rifull", &["a", "b", "c"], "rifull_out", &["a", "b", "c"]),
    ("riidx", &["x", "y", "z"], "riidx_out", &["x", "y", "z"]),
];

#[tokio::test(flavor = "multi_thread")]
async fn tables_keyed_by_replica_identity_full_or_index_are_copied_and_followed() {
    let plan = copy_plan(&[
        ("rifull", &["a"], "rifull_out", &["a", "b", "c"]),
        ("riidx", &["x", "y"], "riidx_out", &["x", "y", "z"]),
    ]);
    let mut m = Migration::prepare(NO_PK_SOURCE, NO_PK_TARGET, &plan).await;
    let (ok, report) = m.check();
    assert!(
        ok && report.contains(r#"source.public.rifull: no unique index on the plan's key ["a"]"#)
            && report.contains(r#"CREATE UNIQUE INDEX ON "public"."rifull" ("a");"#)
            // riidx's key is its identity index; only the TOAST cost of `z` may be reported.
            && !report.contains("source.public.riidx: no unique index"),
        "{report}"
    );
    let counts = m
        .backfill_then_follow(
            NO_PK_PAIRS,
            "INSERT INTO rifull VALUES (1000, 'new', NULL);
             UPDATE rifull SET b = 'changed', c = '[1]' WHERE a BETWEEN 1 AND 10;
             UPDATE rifull SET a = a + 5000 WHERE a BETWEEN 11 AND 15;
             DELETE FROM rifull WHERE a BETWEEN 16 AND 20;
             INSERT INTO riidx VALUES (1000, 'new', 'z');
             UPDATE riidx SET z = 'changed' WHERE x < 5;
             -- a key change leaving a TOASTed z unchanged: the key tuple has no z
             UPDATE riidx SET y = y || ' moved' WHERE x BETWEEN 5 AND 9;
             UPDATE riidx SET x = x + 5000, z = NULL WHERE x BETWEEN 10 AND 14;
             DELETE FROM riidx WHERE x BETWEEN 15 AND 19;",
        )
        .await;
    assert_eq!(counts, [vec![200, 200], vec![196, 181]]);
}

#[tokio::test(flavor = "multi_thread")]
async fn check_refuses_a_table_with_neither_key_nor_replica_identity_and_names_the_fix() {
    let m = Migration::prepare(
        "CREATE TABLE bare (a int NOT NULL, b text)",
        "CREATE TABLE bare_out (a int PRIMARY KEY, b text)",
        &copy_plan(&[("bare", &["a"], "bare_out", &["a", "b"])]),
    )
    .await;
    let (ok, report) = m.check();
    assert!(!ok, "check accepted a table without identity:\n{report}");
    assert!(
        report.contains("no primary key and no replica identity index")
            && report.contains(r#"ALTER TABLE "public"."bare" REPLICA IDENTITY FULL;"#),
        "{report}"
    );
}

// ─── partitioned tables ──────────────────────────────────────────────────────────────────

const PARTITIONED_SOURCE: &str = "
CREATE TABLE events (id int, region text, payload text, PRIMARY KEY (id, region))
    PARTITION BY LIST (region);
CREATE TABLE events_eu PARTITION OF events FOR VALUES IN ('eu');
CREATE TABLE events_us PARTITION OF events FOR VALUES IN ('us') PARTITION BY HASH (id);
CREATE TABLE events_us_0 PARTITION OF events_us FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE events_us_1 PARTITION OF events_us FOR VALUES WITH (MODULUS 2, REMAINDER 1);
CREATE TABLE events_other PARTITION OF events DEFAULT;
ALTER TABLE events ALTER payload SET STORAGE EXTERNAL;
INSERT INTO events SELECT g, (ARRAY['eu', 'us', 'ap'])[g % 3 + 1], repeat('p', 100) || g
  FROM generate_series(1, 6000) g;
INSERT INTO events SELECT g, 'ap', repeat('t', 5000) || g FROM generate_series(7001, 7010) g;
CREATE TABLE measures (id int NOT NULL, at date NOT NULL, value numeric, note text)
    PARTITION BY RANGE (at);
ALTER TABLE measures ALTER note SET STORAGE EXTERNAL;
CREATE TABLE measures_2023 PARTITION OF measures FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE measures_2024 PARTITION OF measures FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
INSERT INTO measures
SELECT g, date '2023-06-01' + (g % 400), g / 7.0, CASE WHEN g <= 40 THEN repeat('n', 5000) || g END
  FROM generate_series(1, 500) g;
";

const PARTITIONED_TARGET: &str = "
CREATE TABLE events_out (id int, region text, payload text, PRIMARY KEY (id, region));
CREATE TABLE measures_out (id int PRIMARY KEY, at date, value numeric, note text);
";

const PARTITIONED_PAIRS: &[Pair] = &[
    (
        "events",
        &["id", "region", "payload"],
        "events_out",
        &["id", "region", "payload"],
    ),
    (
        "measures",
        &["id", "at", "value", "note"],
        "measures_out",
        &["id", "at", "value", "note"],
    ),
];

#[tokio::test(flavor = "multi_thread")]
/// Includes unchanged TOASTed values in updates: read back through the root by key (events,
/// primary key) or taken from the full old tuple (measures, REPLICA IDENTITY FULL leaves).
async fn partitioned_tables_are_chunked_per_leaf_and_followed_through_their_root() {
    let plan = copy_plan(&[
        (
            "events",
            &["id", "region"],
            "events_out",
            &["id", "region", "payload"],
        ),
        (
            "measures",
            &["id"],
            "measures_out",
            &["id", "at", "value", "note"],
        ),
    ]);
    let mut m = Migration::prepare(PARTITIONED_SOURCE, PARTITIONED_TARGET, &plan).await;
    // Partitions are written with their own replica identity, not the root's.
    let (ok, report) = m.check();
    assert!(
        !ok && report.contains("partition public.measures_2023 has no primary key"),
        "{report}"
    );
    m.source
        .batch_execute(
            "ALTER TABLE measures_2023 REPLICA IDENTITY FULL;
             ALTER TABLE measures_2024 REPLICA IDENTITY FULL;
             CREATE PUBLICATION switchyard_hostile FOR TABLE events, measures",
        )
        .await
        .unwrap();
    // A pre-created publication must publish through the root.
    let (ok, report) = m.check();
    let fix = r#"ALTER PUBLICATION "switchyard_hostile" SET (publish_via_partition_root = true);"#;
    assert!(!ok && report.contains(fix), "{report}");
    m.source
        .batch_execute("DROP PUBLICATION switchyard_hostile")
        .await
        .unwrap();
    let counts = m
        .backfill_then_follow(
            PARTITIONED_PAIRS,
            "INSERT INTO events VALUES (10001, 'eu', 'new eu'), (10002, 'us', 'new us'), (10003, 'zz', 'new zz');
             UPDATE events SET payload = 'changed' WHERE id BETWEEN 1 AND 30;
             UPDATE events SET region = 'us' WHERE region = 'eu' AND id BETWEEN 31 AND 60;
             UPDATE events SET region = 'xx' WHERE region = 'us' AND id BETWEEN 61 AND 90;
             DELETE FROM events WHERE id BETWEEN 91 AND 120;
             UPDATE events SET region = 'zz' WHERE id BETWEEN 7001 AND 7003;
             UPDATE events SET region = 'us' WHERE id = 7004;
             INSERT INTO measures VALUES (10001, '2024-12-31', 1);
             UPDATE measures SET value = -1 WHERE id BETWEEN 1 AND 30;
             UPDATE measures SET at = at + 366 WHERE at < '2023-12-01' AND id BETWEEN 31 AND 200;
             DELETE FROM measures WHERE id BETWEEN 201 AND 230;",
        )
        .await;
    assert_eq!(counts, [vec![6010, 500], vec![5983, 471]]);
    let chunks: i64 = m
        .target
        .query_one(
            "SELECT count(*) FROM switchyard.chunks WHERE source_table = 'public.events'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(chunks > 1, "events was copied as {chunks} chunk(s)");
    // A TRUNCATE of the root arrives as the root's: the consumer stops rather than diverge.
    // (PostgreSQL publishes no TRUNCATE of a single partition through the root at all.)
    m.source.batch_execute("TRUNCATE events").await.unwrap();
    let stderr = m.exit_message();
    assert!(
        stderr.contains("TRUNCATE of source table public.events"),
        "{stderr}"
    );
}
