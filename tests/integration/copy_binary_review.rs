//! A reviewer's attempts to break the binary COPY backfill with data a user would have: every
//! value lands as the target's own input function reads its text (what the text path gave), or
//! is dead-lettered with its key where the target refuses it; nothing is lost, nothing hangs.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::SinkExt;
use switchyard::transform::row::encode_value;
use switchyard::transform::value::Value;
use tokio_postgres::Client;

use crate::small_migration::Migration;
use crate::support::switchyard;

/// The target types each value of the corpus goes into, as `(table suffix, SQL type)`; every
/// one of them has a binary writer (enums and domains by their base type).
const TYPES: [(&str, &str); 17] = [
    ("date", "date"),
    ("ts", "timestamp"),
    ("tz", "timestamptz"),
    ("num", "numeric"),
    ("num52", "numeric(5,2)"),
    ("i2", "int2"),
    ("i4", "int4"),
    ("i8", "int8"),
    ("b", "bool"),
    ("u", "uuid"),
    ("j", "json"),
    ("jb", "jsonb"),
    ("vc3", "varchar(3)"),
    ("bp3", "char(3)"),
    ("mood", "mood"),
    ("price", "price"),
    ("tx", "text"),
];

const TARGET_TYPES: &str = "CREATE TYPE mood AS ENUM ('ok', 'sad');
    CREATE DOMAIN price_base AS numeric(6,2) CHECK (VALUE >= 0);
    CREATE DOMAIN price AS price_base CHECK (VALUE <> 13);";

/// Text a user's legacy column may hold, passed through uncast into typed columns.
fn corpus() -> Vec<Option<String>> {
    let mut values: Vec<String> = [
        // Dates and timestamps.
        "2024-03-01",
        " 2024-03-01 ",
        "2024-02-29",
        "2023-02-29",
        "2024-03-01 24:00:00",
        "2024-03-01 24:00:01",
        "2024-03-01 23:59:60",
        "2024-03-01 23:59:60.5",
        "2024-03-01 12:00:00.1234565",
        "2024-03-01 12:00:00.1234575",
        "2024-03-01 23:59:59.9999995",
        "2024-03-01 12:00:00.00000049",
        "2024-03-01 12:00:00.",
        "2024-03-01T12:00Z",
        "2024-03-01t12:00z",
        "2024-03-01T 12:00",
        "2024-03-01 12:00:00+05:30",
        "2024-03-01 12:00:00-05",
        "2024-03-01 12:00:00+0530",
        "2024-03-01 12:00:00+530",
        "2024-03-01 12:00:00+15:59:59",
        "2024-03-01 12:00:00+15:59:60",
        "2024-03-01 12:00:00+16",
        "2024-03-01 12:00 +05",
        "2024-03-01 -05",
        "2024-03-01 +05",
        "2024-03-01+05",
        "2024-03-01 12:00:00 UTC",
        "2024-03-01 12:00:00 gmt",
        "2024-03-01 12:00:00 ut",
        "2024-03-01 12:00:00 zulu",
        "2024-03-01 12:00:00 Z BC",
        "2024-03-01 12:00:00+02 BC",
        "2024-03-01 12:00:00 ad",
        "2024-03-01 1:2:3",
        "2024-03-01 12:60",
        "2024-03-01 12:00:00.5+00:30",
        "0044-03-15 BC",
        "0001-01-01 BC",
        "0000-01-01",
        "999-01-01",
        "10000-01-01",
        "10000-01-01 12:00:00",
        "294276-12-31 23:59:59.999999",
        "294276-12-31 23:59:59-01",
        "294277-01-01 00:00:00+01",
        "4714-11-24 00:00:00 BC",
        "4714-11-24 00:00:00+01 BC",
        "4714-11-23 23:00:00-01 BC",
        "4714-11-23 BC",
        "5874897-12-31",
        "5874898-01-01",
        "20240301",
        "2024030112",
        "1234567890101",
        "20240301 12:00",
        "2024-0003-01",
        "2024-3-1",
        "epoch",
        "EPOCH",
        "infinity",
        "-infinity",
        " Infinity ",
        "+infinity",
        "2024-03-01 allballs",
        "2024-03-01 12:00:00 PST",
        // Numbers.
        "1",
        " 1 ",
        "+1",
        "-0",
        "-0.00",
        "1.5",
        ".5",
        "5.",
        "1e3",
        "1E-3",
        "1.50e+2",
        "1e 3",
        "1e",
        "NaN",
        "nan",
        " -Infinity ",
        "inf",
        "-inf",
        "infinit",
        "1_000",
        "0x10",
        "1,5",
        "32767",
        "32768",
        "-32768",
        "-32769",
        "2147483648",
        "-9223372036854775808",
        "9223372036854775808",
        "12345678901234567890",
        "0.005",
        "0.004999",
        "123.455",
        "999.994",
        "999.995",
        "-999.995",
        "9999.995",
        "1e-20000",
        "1e16383",
        "0.1e-16382",
        "12.00",
        "13",
        "13.001",
        "12.999",
        "7.0",
        "1e2",
        "\u{b}7\u{c}",
        "\u{a0}7",
        // Booleans.
        "t",
        "TRUE",
        "yes",
        "on",
        "of",
        "o",
        "0",
        "2",
        " y ",
        "tr ue",
        "truE",
        "n",
        // UUIDs.
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
        "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
        "a0eebc999c0b4ef8bb6d6bb9bd380a11",
        "a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11",
        "urn:uuid:a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        " a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11 ",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1g",
        // JSON.
        "{\"a\":1,\"a\":2}",
        "{\"b\": 1, \"a\": [1, 2.50, 1e2]}",
        "\"\\u0000\"",
        "\"\\ud800\"",
        "\"\\ud83d\\ude00\"",
        " [1] ",
        "{\"n\": 1e1000}",
        "{\"n\": -0.0}",
        "NULL",
        "null",
        "'single'",
        "{bad",
        // Text.
        "abc",
        "abcd",
        "abc   ",
        "abcd ",
        "a",
        "a  ",
        "ab c",
        "é€😀",
        "éééé",
        "ok",
        "OK",
        "ok ",
        "sad",
        "",
        " ",
        "tab\there",
        "back\\slash",
        "line\nbreak\r\n",
        "\u{1}\u{8}\u{b}\u{c}\u{1f}\u{7f}",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    values.push(format!("{}]", "[".repeat(2000)));
    values.push(format!("{}{}", "[".repeat(2000), "]".repeat(2000)));
    values.push(format!("{}{}", "[".repeat(6500), "]".repeat(6500)));
    values.push(format!("1{}", "0".repeat(1000)));
    values.push(format!("0.{}1", "0".repeat(16381)));
    values.push(format!("0.{}1", "0".repeat(16382)));
    values.push("x".repeat(100_000));
    let mut all: Vec<Option<String>> = values.into_iter().map(Some).collect();
    all.push(None);
    all
}

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// One output per type of [`TYPES`], each `(id, v)` from the source's `(id, v text)`.
fn per_type_plan(source: &str, on_error: &str) -> String {
    let mut plan = format!(
        "name = \"hostile\"\non_error = \"{on_error}\"\n[[sources]]\ntable = \"{source}\"\nkey = [\"id\"]\n"
    );
    for (suffix, _) in TYPES {
        plan += &format!(
            "[[sources.outputs]]\ntable = \"t_{suffix}\"\nkey = [\"id\"]\n\
             [sources.outputs.columns]\nid = \"id\"\nv = \"v\"\n"
        );
    }
    plan
}

/// Per type, per id: what landed (`v::text`, `<null>`), `<error>` when the row is in the dead
/// letters for that output, `<missing>` when it is neither.
async fn landed(target: &Client, ids: &[i32]) -> BTreeMap<(String, i32), String> {
    let mut got = BTreeMap::new();
    let letters = target
        .query(
            "SELECT (source_key->>'id')::int4, coalesce(output_table, '') FROM switchyard.dead_letters",
            &[],
        )
        .await
        .unwrap();
    for (suffix, _) in TYPES {
        let rows = target
            .query(
                &format!("SELECT id, coalesce(v::text, '<null>') FROM t_{suffix}"),
                &[],
            )
            .await
            .unwrap();
        let mut by_id: BTreeMap<i32, String> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        for l in &letters {
            let table: String = l.get(1);
            if table.ends_with(&format!("t_{suffix}")) {
                let previous = by_id.insert(l.get(0), "<error>".into());
                assert!(
                    previous.is_none(),
                    "t_{suffix} id {} both landed ({previous:?}) and was dead-lettered",
                    l.get::<_, i32>(0)
                );
            }
        }
        for id in ids {
            let v = by_id.remove(id).unwrap_or_else(|| "<missing>".into());
            got.insert((suffix.to_string(), *id), v);
        }
        assert!(
            by_id.is_empty(),
            "t_{suffix}: rows of unknown ids {by_id:?}"
        );
    }
    got
}

/// What the text path gives: each value alone, COPY text into a table like the output, read
/// back as text (`<null>`), or `<error>` when the target refuses it.
async fn expected(target: &Client, values: &[Option<String>]) -> BTreeMap<(String, i32), String> {
    let mut want = BTreeMap::new();
    for (suffix, _) in TYPES {
        target
            .batch_execute(&format!(
                "CREATE TEMP TABLE probe_{suffix} (LIKE t_{suffix})"
            ))
            .await
            .unwrap();
        for (id, v) in values.iter().enumerate() {
            let mut line = format!("{id}\t").into_bytes();
            let value = v.as_deref().map_or(Value::Null, Value::text);
            encode_value(&value, &mut line);
            line.push(b'\n');
            let copied = async {
                let sink = target
                    .copy_in::<_, Bytes>(&format!("COPY probe_{suffix} (id, v) FROM STDIN"))
                    .await?;
                futures_util::pin_mut!(sink);
                sink.send(Bytes::from(line)).await?;
                sink.finish().await
            };
            let e = match copied.await {
                Err(_) => "<error>".to_string(),
                Ok(_) => target
                    .query_one(
                        &format!(
                            "SELECT coalesce(v::text, '<null>') FROM probe_{suffix} WHERE id = $1"
                        ),
                        &[&(id as i32)],
                    )
                    .await
                    .unwrap()
                    .get(0),
            };
            want.insert((suffix.to_string(), id as i32), e);
        }
    }
    want
}

fn show(v: &Option<String>) -> String {
    match v {
        Some(v) if v.len() > 60 => format!("{:?}... ({} bytes)", &v[..40], v.len()),
        other => format!("{other:?}"),
    }
}

/// Every value of [`corpus`], passed through uncast into each type: each lands as the target's
/// input function reads its text in a COPY (the text path), or is dead-lettered with its
/// key where the target refuses it. `check` names every output binary.
/// The corpus in `vals`, one output table per type, `check` passed and every output binary.
async fn corpus_migration(extra_target_sql: &str) -> (Migration, Vec<Option<String>>) {
    let values = corpus();
    let inserts: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(id, v)| format!("({id}, {})", v.as_deref().map_or("NULL".into(), quote)))
        .collect();
    let source = format!(
        "CREATE TABLE vals (id int PRIMARY KEY, v text);
         INSERT INTO vals VALUES {};",
        inserts.join(",\n")
    );
    let mut target = String::from(TARGET_TYPES);
    for (suffix, ty) in TYPES {
        target += &format!("CREATE TABLE t_{suffix} (id int PRIMARY KEY, v {ty});");
    }
    target += extra_target_sql;
    let m = Migration::prepare(&source, &target, &per_type_plan("vals", "dead_letter")).await;
    let (ok, report) = m.check();
    assert!(ok, "{report}");
    for (suffix, _) in TYPES {
        assert!(
            report.contains(&format!("COPY into public.t_{suffix}: binary")),
            "t_{suffix} not binary:\n{report}"
        );
    }
    (m, values)
}

/// Asserts that each value landed as text COPY reads it, or is dead-lettered where text COPY
/// refuses it.
async fn assert_corpus_landed(m: &Migration, values: &[Option<String>]) {
    let ids: Vec<i32> = (0..values.len() as i32).collect();
    let got = landed(&m.target, &ids).await;
    let want = expected(&m.target, values).await;
    let mut wrong = Vec::new();
    for (key, w) in &want {
        let g = &got[key];
        if g != w {
            wrong.push(format!(
                "t_{} value {}: target holds {}, text COPY gives {}",
                key.0,
                show(&values[key.1 as usize]),
                show(&Some(g.clone())),
                show(&Some(w.clone()))
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// Every value of [`corpus`], passed through uncast into each type: each lands as the target's
/// input function reads its text in a COPY (the text path), or is dead-lettered with its key
/// where the target refuses it. `check` names every output binary.
#[tokio::test]
async fn text_passed_into_typed_columns_lands_as_the_input_function_reads_it() {
    let (m, values) = corpus_migration("").await;
    let urls = m.urls();
    let mut args = m.args("backfill", &urls);
    args.extend(["--no-follow", "--jobs", "2"]);
    let out = switchyard(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_corpus_landed(&m, &values).await;
}

/// The same corpus through a resumed backfill, whose outputs are staged (binary COPY into a
/// temporary table, then `INSERT ... ON CONFLICT`): killed while its only chunk is in flight
/// (an `ALWAYS` trigger sleeps on one row), then `--resume`d.
#[tokio::test]
async fn a_resumed_backfill_stages_binary_rows_with_the_same_values() {
    let stall = "CREATE FUNCTION stall() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN IF NEW.id = 5 THEN PERFORM pg_sleep(600); END IF; RETURN NEW; END $$;
        CREATE TRIGGER stall BEFORE INSERT ON t_tx FOR EACH ROW EXECUTE FUNCTION stall();
        ALTER TABLE t_tx ENABLE ALWAYS TRIGGER stall;";
    let (m, values) = corpus_migration(stall).await;
    let urls = m.urls();
    let mut args = m.args("backfill", &urls);
    args.extend(["--no-follow", "--jobs", "2"]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        let sleeping: i64 = m
            .target
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if sleeping > 0 {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "the backfill ended");
        assert!(started.elapsed() < Duration::from_secs(60), "never stalled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    m.target
        .batch_execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE wait_event = 'PgSleep';
             DROP TRIGGER stall ON t_tx;",
        )
        .await
        .unwrap();
    let mut args = m.args("backfill", &urls);
    args.extend(["--no-follow", "--jobs", "2", "--resume"]);
    let out = switchyard(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_corpus_landed(&m, &values).await;
}

/// Runs `backfill --no-follow` with `extra`, killing it after `limit`: (finished, exit success,
/// stderr).
fn backfill_within(m: &Migration, extra: &[&str], limit: Duration) -> (bool, bool, String) {
    let urls = m.urls();
    let mut args = m.args("backfill", &urls);
    args.push("--no-follow");
    args.extend(extra);
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    (status.is_some(), status.is_some_and(|s| s.success()), err)
}

/// A table written by an upsert output and an insert-if-absent output of the same source: each
/// employee is upserted into `people`, and a placeholder for its manager is inserted if absent.
/// With the manager's own row already copied (uncommitted) in the chunk's transaction, the
/// placeholder's insert on the worker's second connection waits for that transaction, which
/// waits for the worker: with one worker, nothing can ever end it. In one transaction (the text
/// path before the second connection), the insert saw the chunk's own row and did nothing.
#[tokio::test]
async fn an_upsert_and_an_insert_if_absent_output_into_one_table_do_not_hang() {
    const SOURCE: &str =
        "CREATE TABLE employees (id bigint PRIMARY KEY, name text, manager_id bigint);
        INSERT INTO employees SELECT i, 'employee ' || i, CASE WHEN i > 1 THEN 1 END
          FROM generate_series(1, 200) i;";
    const TARGET: &str = "CREATE TABLE people (id bigint PRIMARY KEY, name text);";
    const PLAN: &str = r#"
name = "hostile"
on_error = "dead_letter"

[[sources]]
table = "employees"
key = ["id"]

[[sources.outputs]]
table = "people"
key = ["id"]
mode = "upsert"
[sources.outputs.columns]
id = "id"
name = "name"

[[sources.outputs]]
table = "people"
key = ["id"]
mode = "insert_if_absent"
when = "manager_id IS NOT NULL"
[sources.outputs.columns]
id = "manager_id"
name = "'a manager'"
"#;
    let m = Migration::prepare(SOURCE, TARGET, PLAN).await;
    let (ok, report) = m.check();
    assert!(ok, "{report}");
    let (finished, success, err) = backfill_within(&m, &["--jobs", "1"], Duration::from_secs(60));
    assert!(finished, "the backfill hung for a minute:\n{err}");
    assert!(success, "{err}");
    let rows = crate::small_migration::text_rows(&m.target, "people", &["id", "name"]).await;
    assert_eq!(rows.len(), 200);
    assert!(rows.contains(&vec![Some("1".into()), Some("employee 1".into())]));
}

const ORDERS_SOURCE: &str =
    "CREATE TABLE orders (id bigint PRIMARY KEY, customer text, placed text);
    INSERT INTO orders SELECT i, CASE WHEN i % 50 = 7 THEN 'evil' ELSE 'customer ' || (i % 13) END,
        '2024-03-01 12:00:00.' || lpad(i::text, 7, '0')
      FROM generate_series(1, 3000) i;";
const ORDERS_TARGET: &str = "CREATE TABLE orders_new (id bigint PRIMARY KEY, customer text,
        placed timestamptz);
    CREATE TABLE customers (name text PRIMARY KEY CHECK (name <> 'evil'), first_seen date);";

fn orders_plan(on_error: &str) -> String {
    format!(
        r#"
name = "hostile"
on_error = "{on_error}"

[[sources]]
table = "orders"
key = ["id"]

[[sources.outputs]]
table = "orders_new"
key = ["id"]
[sources.outputs.columns]
id = "id"
customer = "customer"
placed = "placed"

[[sources.outputs]]
table = "customers"
key = ["name"]
mode = "insert_if_absent"
[sources.outputs.columns]
name = "customer"
first_seen = "placed"
"#
    )
}

/// Teams-like rows refused by the shared table (a CHECK): every source row whose shared row is
/// refused is dead-lettered with its key and the table; its own output row still lands; the
/// other shared rows land once.
#[tokio::test]
async fn shared_rows_the_target_refuses_are_dead_lettered_with_their_keys() {
    let m = Migration::prepare(ORDERS_SOURCE, ORDERS_TARGET, &orders_plan("dead_letter")).await;
    let (ok, report) = m.check();
    assert!(ok, "{report}");
    assert!(
        report.contains("COPY into public.customers: binary"),
        "{report}"
    );
    let (finished, success, err) = backfill_within(&m, &["--jobs", "3"], Duration::from_secs(120));
    assert!(finished && success, "{err}");
    let expected = "SELECT id::text, customer, placed::timestamptz::text FROM orders";
    let actual = "SELECT id::text, customer, placed::text FROM orders_new";
    assert_eq!(
        three_columns(&m.source, expected).await,
        three_columns(&m.target, actual).await
    );
    let customers: i64 = m
        .target
        .query_one("SELECT count(*) FROM customers", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(customers, 13);
    let letters: Vec<(i64, String, String)> = m
        .target
        .query(
            "SELECT (source_key->>'id')::int8, coalesce(output_table, ''), reason
               FROM switchyard.dead_letters ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let evil: Vec<i64> = (1..=3000).filter(|i| i % 50 == 7).collect();
    assert_eq!(
        letters.iter().map(|l| l.0).collect::<Vec<_>>(),
        evil,
        "{letters:?}"
    );
    assert!(
        letters
            .iter()
            .all(|l| l.1.ends_with("customers") && l.2.contains("customers_name_check")),
        "{letters:?}"
    );
}

/// The same under `--on-error stop`: the backfill stops, naming the first refused key.
#[tokio::test]
async fn a_refused_shared_row_stops_the_backfill_under_on_error_stop() {
    let m = Migration::prepare(ORDERS_SOURCE, ORDERS_TARGET, &orders_plan("dead_letter")).await;
    let (finished, success, err) = backfill_within(
        &m,
        &["--jobs", "2", "--on-error", "stop"],
        Duration::from_secs(120),
    );
    assert!(finished, "hung:\n{err}");
    assert!(!success, "stopped:\n{err}");
    assert!(
        err.contains("customers") && err.contains("evil"),
        "the message names the table and the row:\n{err}"
    );
}

/// Rows of three text columns, sorted.
async fn three_columns(c: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    let mut r: Vec<Vec<Option<String>>> = c
        .query(sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (0..3).map(|i| r.get(i)).collect())
        .collect();
    r.sort();
    r
}

/// Target tables shaped unlike the plan: columns in another order, a dropped column, a
/// `GENERATED ALWAYS` identity key (binary); a `name` and a `float8` column (text, and `check`
/// names the column that decided it). Every row lands as text COPY would have put it.
#[tokio::test]
async fn target_tables_shaped_unlike_the_plan_get_the_same_rows() {
    const SOURCE: &str = "CREATE TABLE items (id bigint PRIMARY KEY, label text, price text,
            at timestamp, ratio text);
        INSERT INTO items SELECT i, 'item ' || i, (i * 1.005)::text,
            '2024-01-01'::timestamp + i * interval '1 hour 1.5 seconds', (i / 7.0)::float8::text
          FROM generate_series(1, 1000) i;";
    const TARGET: &str = "CREATE TABLE shaped (junk int, at timestamptz, price numeric(8,2),
            label varchar(10), id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);
        ALTER TABLE shaped DROP COLUMN junk;
        CREATE TABLE named (ratio float8, nm name, id bigint PRIMARY KEY);";
    const PLAN: &str = r#"
name = "hostile"

[[sources]]
table = "items"
key = ["id"]

[[sources.outputs]]
table = "shaped"
key = ["id"]
[sources.outputs.columns]
id = "id"
label = "label"
price = "price"
at = "at"

[[sources.outputs]]
table = "named"
key = ["id"]
[sources.outputs.columns]
id = "id"
nm = "label"
ratio = "ratio"
"#;
    let m = Migration::prepare(SOURCE, TARGET, PLAN).await;
    let (ok, report) = m.check();
    assert!(ok, "{report}");
    assert!(
        report.contains("COPY into public.shaped: binary"),
        "{report}"
    );
    assert!(
        report.contains("COPY into public.named: text (column nm is name"),
        "{report}"
    );
    let (finished, success, err) = backfill_within(&m, &["--jobs", "2"], Duration::from_secs(120));
    assert!(finished && success, "{err}");
    let pairs = [
        (
            "SELECT id::text, label, price::numeric(8,2)::text FROM items",
            "SELECT id::text, label::text, price::text FROM shaped",
        ),
        (
            "SELECT id::text, at::timestamptz::text, NULL FROM items",
            "SELECT id::text, at::text, NULL FROM shaped",
        ),
        (
            "SELECT id::text, label::name::text, ratio::float8::text FROM items",
            "SELECT id::text, nm::text, ratio::text FROM named",
        ),
    ];
    for (source, target) in pairs {
        let expected = three_columns(&m.source, source).await;
        assert_eq!(expected.len(), 1000);
        assert_eq!(expected, three_columns(&m.target, target).await, "{target}");
    }
}

/// Typed expression values (not text) into binary columns of their own or another type, each
/// beside the same expression into a `text` column, which holds what the text path sent: every
/// typed row holds what text COPY makes of that text, or is dead-lettered where it refuses.
#[tokio::test]
async fn typed_expression_values_land_as_their_text_would() {
    const EXPRS: [(&str, &str, &str); 12] = [
        ("i2", "int2", "id * 1000"),
        ("num52", "numeric(5,2)", "n::numeric"),
        ("i4", "int4", "n::numeric"),
        ("i8", "int8", "n::numeric * 100000000000000000"),
        ("b", "bool", "id % 3 = 0"),
        ("date", "date", "at::date"),
        ("tz", "timestamptz", "d::date"),
        ("ts", "timestamp", "at::timestamptz"),
        ("jb", "jsonb", "(id * 2)::text"),
        ("div", "numeric", "n::numeric / 3"),
        ("price", "price", "n::numeric"),
        ("vc3", "varchar(3)", "id * 11"),
    ];
    const SOURCE: &str = "CREATE TABLE exprs (id int PRIMARY KEY, n text, at text, d text);
        INSERT INTO exprs SELECT i,
            (ARRAY['1', '12.5', '123.455', 'NaN', 'Infinity', '-0', '1e3', '99999.999', NULL,
                   '0.0000001', '-12.994999'])[i % 11 + 1],
            (ARRAY['2024-03-01 12:00:00', '2024-03-01 23:59:59.9999999', 'infinity',
                   '0044-03-15 12:00 BC', '294276-12-31 23:59:59', NULL])[i % 6 + 1],
            (ARRAY['2024-02-29', 'infinity', '4714-11-24 BC', '-infinity'])[i % 4 + 1]
          FROM generate_series(1, 132) i;";
    let mut target = String::from(TARGET_TYPES);
    let mut plan = String::from(
        "name = \"hostile\"\non_error = \"dead_letter\"\n[[sources]]\ntable = \"exprs\"\nkey = [\"id\"]\n",
    );
    for (suffix, ty, expr) in EXPRS {
        target += &format!(
            "CREATE TABLE t_{suffix} (id int PRIMARY KEY, v {ty});
             CREATE TABLE s_{suffix} (id int PRIMARY KEY, v text);"
        );
        for table in [format!("t_{suffix}"), format!("s_{suffix}")] {
            plan += &format!(
                "[[sources.outputs]]\ntable = \"{table}\"\nkey = [\"id\"]\n\
                 [sources.outputs.columns]\nid = \"id\"\nv = {expr:?}\n"
            );
        }
    }
    let m = Migration::prepare(SOURCE, &target, &plan).await;
    let (ok, report) = m.check();
    assert!(ok, "{report}");
    let (finished, success, err) = backfill_within(&m, &["--jobs", "2"], Duration::from_secs(120));
    assert!(finished && success, "{err}");
    let mut wrong = Vec::new();
    for (suffix, _, expr) in EXPRS {
        m.target
            .batch_execute(&format!(
                "CREATE TEMP TABLE probe_{suffix} (LIKE t_{suffix})"
            ))
            .await
            .unwrap();
        let sent = m
            .target
            .query(&format!("SELECT id, v FROM s_{suffix} ORDER BY id"), &[])
            .await
            .unwrap();
        for row in sent {
            let (id, v): (i32, Option<String>) = (row.get(0), row.get(1));
            let mut line = format!("{id}\t").into_bytes();
            encode_value(&v.as_deref().map_or(Value::Null, Value::text), &mut line);
            line.push(b'\n');
            let copied = async {
                let sink = m
                    .target
                    .copy_in::<_, Bytes>(&format!("COPY probe_{suffix} (id, v) FROM STDIN"))
                    .await?;
                futures_util::pin_mut!(sink);
                sink.send(Bytes::from(line)).await?;
                sink.finish().await
            };
            let want: Option<Option<String>> = match copied.await {
                Err(_) => None,
                Ok(_) => Some(
                    m.target
                        .query_one(
                            &format!("SELECT v::text FROM probe_{suffix} WHERE id = $1"),
                            &[&id],
                        )
                        .await
                        .unwrap()
                        .get(0),
                ),
            };
            let got: Option<Option<String>> = m
                .target
                .query_opt(
                    &format!("SELECT v::text FROM t_{suffix} WHERE id = $1"),
                    &[&id],
                )
                .await
                .unwrap()
                .map(|r| r.get(0));
            let lettered: bool = m
                .target
                .query_one(
                    "SELECT EXISTS (SELECT FROM switchyard.dead_letters
                      WHERE (source_key->>'id')::int = $1 AND output_table LIKE $2)",
                    &[&id, &format!("%t_{suffix}")],
                )
                .await
                .unwrap()
                .get(0);
            if got != want || (got.is_none() != lettered) {
                wrong.push(format!(
                    "t_{suffix} = {expr} id {id}: text path sent {v:?}, text COPY gives {want:?}, \
                     the target holds {got:?} (dead-lettered: {lettered})"
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
