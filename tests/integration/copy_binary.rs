//! The binary COPY writer against PostgreSQL itself: every value switchyard writes in binary
//! lands as the value its text would have made, byte for byte in the server's own output, and
//! what the writer leaves to the target (text it does not read as PostgreSQL would) lands
//! through the text path of a real backfill.

use bytes::Bytes;
use futures_util::SinkExt;
use switchyard::pg::copy_binary::{self as wire, BinaryType};
use switchyard::pg::ident::TableName;
use switchyard::sink::copy_format::column_types;
use switchyard::transform::cast::{cast, CastType};
use switchyard::transform::copy_binary::{encode_field, NotExact};
use switchyard::transform::row::encode_value;
use switchyard::transform::temporal::{Date, Timestamp};
use switchyard::transform::value::{Numeric, Value};
use tokio_postgres::Client;

use crate::small_migration::Migration;
use crate::support::cluster;

const TABLE: &str = "CREATE TYPE mood AS ENUM ('ok', 'sad');
    CREATE DOMAIN price AS numeric(14,2) CHECK (VALUE >= 0);
    CREATE DOMAIN price_again AS price;
    CREATE TABLE kinds (n int, b bool, i2 int2, i4 int4, i8 int8, num numeric, num2 numeric(14,2),
        p price_again, tx text, vc varchar(5), bp char(3), m mood, u uuid, d date,
        ts timestamp, tz timestamptz, j json, jb jsonb);
    CREATE TABLE via_text (LIKE kinds);
    CREATE TABLE via_binary (LIKE kinds);";

fn numeric(text: &str) -> Value<'static> {
    cast(Value::text(text), &CastType::Numeric { typmod: None })
        .unwrap()
        .into_owned()
}

/// Rows of values as the transforms produce them: typed, text the input function must read,
/// values of another type, the extremes and the specials, NULLs.
fn corpus() -> Vec<Vec<Value<'static>>> {
    let u = uuid::Uuid::parse_str("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").unwrap();
    let t = Value::text;
    vec![
        vec![
            Value::Bool(true),
            Value::Int(-32768),
            Value::Int(2_147_483_647),
            Value::Int(i64::MIN),
            numeric("12500.005"),
            numeric("12500.005"),
            numeric("0.1"),
            t("héllo\tworld\n\\ \u{1F600}"),
            t("abcde"),
            t("ab"),
            t("sad"),
            Value::Uuid(u),
            Value::Date(Date::from_ymd(2024, 2, 29).unwrap()),
            Value::Timestamp(Timestamp(1)),
            Value::TimestampTz(Timestamp(-1)),
            t("{\"a\": [1, 2.50]}"),
            t("{\"b\": 1, \"a\": \"\\u00e9\"}"),
        ],
        // Text, as a column passed through or an uncast expression gives it.
        vec![
            t("yes"),
            t(" 12 "),
            t("-0"),
            t("9223372036854775807"),
            t("-0.000001"),
            t("1e3"),
            t("  7.999 "),
            t(""),
            t("ab  "),
            t("a"),
            t("ok"),
            t("{A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11}"),
            t("0044-03-15 BC"),
            t("2024-03-01 10:00:00.123456"),
            t("2024-03-01 10:00:00+05:30"),
            t("[]"),
            t("  {\"k\": null}  "),
        ],
        // Specials and extremes.
        vec![
            t("f"),
            Value::Int(0),
            Value::Int(-2_147_483_648),
            t("-9223372036854775808"),
            numeric("NaN"),
            numeric("999999999999.99"),
            numeric("0"),
            t("x"),
            t(""),
            t(""),
            t("ok"),
            t("a0eebc999c0b4ef8bb6d6bb9bd380a11"),
            Value::Date(Date::INFINITY),
            Value::Timestamp(Timestamp::NEG_INFINITY),
            t("infinity"),
            t("\"s\""),
            t("1"),
        ],
        // Values of another type than the column's: their text is what the target read.
        vec![
            t("1"),
            Value::Numeric(Numeric::from_i64(7)),
            numeric("42"),
            Value::Int(5),
            Value::Int(-3),
            Value::Int(12),
            Value::Int(4),
            Value::Bool(false),
            Value::Int(12345),
            Value::Int(123),
            t("sad"),
            Value::Text(u.to_string().into()),
            Value::TimestampTz(Timestamp(86_400_000_000 + 5)),
            Value::Date(Date(1)),
            Value::Date(Date(-1)),
            Value::Int(3),
            Value::Int(4),
        ],
        (0..17).map(|_| Value::Null).collect(),
        // Long and large.
        vec![
            Value::Bool(false),
            Value::Null,
            Value::Null,
            Value::Null,
            numeric(&format!("-{}.{}", "9".repeat(300), "0".repeat(40))),
            Value::Null,
            Value::Null,
            Value::Text("x".repeat(100_000).into()),
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Date(Date::MIN),
            Value::Timestamp(Timestamp::INFINITY),
            Value::Null,
            Value::Text(format!("[{}]", "1,".repeat(5000) + "1").into()),
            Value::Null,
        ],
    ]
}

async fn copy_in(
    client: &Client,
    statement: &str,
    parts: &[&[u8]],
) -> Result<u64, tokio_postgres::Error> {
    let sink = client.copy_in::<_, Bytes>(statement).await?;
    futures_util::pin_mut!(sink);
    for part in parts {
        sink.send(Bytes::copy_from_slice(part)).await?;
    }
    sink.finish().await
}

async fn rows_as_text(client: &Client, table: &str) -> Vec<String> {
    client
        .query(&format!("SELECT t::text FROM {table} t ORDER BY n"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn binary_fields_land_as_their_text_would() {
    let cluster = cluster();
    let client = cluster.connect("postgres").await.unwrap();
    client.batch_execute(TABLE).await.unwrap();
    let columns: Vec<String> = [
        "b", "i2", "i4", "i8", "num", "num2", "p", "tx", "vc", "bp", "m", "u", "d", "ts", "tz",
        "j", "jb",
    ]
    .map(String::from)
    .to_vec();
    let types = column_types(&client, &TableName::parse("kinds", "public"), &columns)
        .await
        .unwrap()
        .expect("every column has a binary writer, the enum and the domain over a domain too");
    let (mut text, mut binary) = (Vec::new(), Vec::new());
    for (n, row) in corpus().iter().enumerate() {
        text.extend_from_slice(format!("{n}").as_bytes());
        wire::begin_tuple(&mut binary, 1 + row.len() as u16);
        wire::int4(&mut binary, n as i32);
        for (v, ty) in row.iter().zip(&types) {
            text.push(b'\t');
            encode_value(v, &mut text);
            encode_field(v, *ty, &mut binary)
                .unwrap_or_else(|NotExact| panic!("row {n}: {v:?} as {ty:?} is not exact"));
        }
        text.push(b'\n');
    }
    let list = format!("n, {}", columns.join(", "));
    copy_in(
        &client,
        &format!("COPY via_text ({list}) FROM STDIN"),
        &[&text],
    )
    .await
    .unwrap();
    copy_in(
        &client,
        &format!("COPY via_binary ({list}) FROM STDIN (FORMAT binary)"),
        &[wire::HEADER, &binary, wire::TRAILER],
    )
    .await
    .unwrap();
    let (by_text, by_binary) = (
        rows_as_text(&client, "via_text").await,
        rows_as_text(&client, "via_binary").await,
    );
    assert_eq!(by_text.len(), corpus().len());
    for (a, b) in by_text.iter().zip(&by_binary) {
        assert_eq!(a, b);
    }
}

/// The server refuses in binary what it refuses in text: a varchar too long, a domain's check,
/// an enum label that does not exist, a numeric over its typmod, an int2 out of range that the
/// writer passed as text.
#[tokio::test]
async fn the_target_refuses_in_binary_what_it_refuses_in_text() {
    let cluster = cluster();
    let client = cluster.connect("postgres").await.unwrap();
    client.batch_execute(TABLE).await.unwrap();
    let cases: [(&str, BinaryType, Value<'_>); 5] = [
        ("vc", BinaryType::Text, Value::text("toolong")),
        ("p", BinaryType::Numeric, numeric("-1")),
        ("m", BinaryType::Text, Value::text("happy")),
        ("num2", BinaryType::Numeric, numeric("1e13")),
        ("jb", BinaryType::Jsonb, Value::text("{bad")),
    ];
    for (column, ty, v) in cases {
        let mut line = Vec::new();
        encode_value(&v, &mut line);
        line.push(b'\n');
        let by_text = copy_in(
            &client,
            &format!("COPY via_text ({column}) FROM STDIN"),
            &[&line],
        )
        .await
        .expect_err(column);
        let mut tuple = Vec::new();
        wire::begin_tuple(&mut tuple, 1);
        encode_field(&v, ty, &mut tuple).unwrap();
        let by_binary = copy_in(
            &client,
            &format!("COPY via_binary ({column}) FROM STDIN (FORMAT binary)"),
            &[wire::HEADER, &tuple, wire::TRAILER],
        )
        .await
        .expect_err(column);
        assert_eq!(
            by_text.code(),
            by_binary.code(),
            "{column}: {by_text} / {by_binary}"
        );
    }
}

/// Byte for byte what `numeric_send` makes of the same value, normalization included (the
/// specials' scale word aside).
#[tokio::test]
async fn numerics_are_what_numeric_send_writes() {
    let cluster = cluster();
    let client = cluster.connect("postgres").await.unwrap();
    let values = [
        "0",
        "0.00",
        "-0.5",
        "1",
        "9999",
        "10000",
        "10000.0001",
        "0.0001",
        "0.00001",
        "123.456",
        "-123456789012345678901234567890.123456789",
        "1e-20",
        "NaN",
        "Infinity",
        "-Infinity",
        "100000000",
        "0.000000000000000000000000000000000001",
    ];
    for text in values {
        let mut field = Vec::new();
        encode_field(&numeric(text), BinaryType::Numeric, &mut field).unwrap();
        let sent: Vec<u8> = client
            .query_one("SELECT numeric_send($1::text::numeric)", &[&text])
            .await
            .unwrap()
            .get(0);
        if text.ends_with("Infinity") {
            // numeric_send writes bits of the special's header word as dscale, which
            // numeric_recv ignores for specials: compare count, weight and sign.
            assert_eq!(field[4..10], sent[..6], "{text}");
        } else {
            assert_eq!(field[4..], sent[..], "{text}");
        }
    }
}

/// A real backfill into binary outputs: pass-through timestamps with BC and infinity, a
/// numeric with many digits, and a text column holding dates PostgreSQL reads but switchyard's
/// ISO-only reader does not, written uncast into a `date` column. Those rows go as text, in
/// the same chunk, and land as the target's input function reads them. `check` says which
/// output is binary and why another is not.
#[tokio::test]
async fn a_backfill_writes_binary_and_leaves_the_rest_to_the_target() {
    const SOURCE: &str = "CREATE TABLE events (id bigint PRIMARY KEY, at timestamp, amount numeric,
            day text, tags int[]);
        INSERT INTO events SELECT i, '2024-03-01'::timestamp + i * interval '1 second',
            i * 1000000000000.0001, '2024-03-0' || (i % 9 + 1), ARRAY[i] FROM generate_series(1, 2000) i;
        UPDATE events SET day = 'March 3, 2024' WHERE id % 100 = 0;
        INSERT INTO events VALUES (0, '0044-03-15 12:00:00 BC', 'NaN', NULL, NULL),
            (-1, 'infinity', -0.5, 'yesterday', '{}');
        ALTER TABLE events REPLICA IDENTITY FULL;";
    const TARGET: &str = "CREATE TABLE happened (id bigint PRIMARY KEY, at timestamptz,
            amount numeric, day date);
        CREATE TABLE tagged (id bigint PRIMARY KEY, tags int[]);";
    const PLAN: &str = r#"
name = "hostile"
on_error = "dead_letter"

[[sources]]
table = "events"
key = ["id"]

[[sources.outputs]]
table = "happened"
key = ["id"]
[sources.outputs.columns]
id = "id"
at = "at"
amount = "amount"
day = "day"

[[sources.outputs]]
table = "tagged"
key = ["id"]
[sources.outputs.columns]
id = "id"
tags = "tags"
"#;
    let m = Migration::prepare(SOURCE, TARGET, PLAN).await;
    let (ok, report) = m.check();
    assert!(ok, "{report}");
    assert!(
        report.contains("COPY into public.happened: binary"),
        "{report}"
    );
    assert!(
        report.contains("COPY into public.tagged: text (column tags is integer[]"),
        "{report}"
    );
    let urls = m.urls();
    let mut args = m.args("backfill", &urls);
    args.extend(["--no-follow", "--jobs", "2"]);
    let out = crate::support::switchyard(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 'yesterday' depends on the day the target reads it: compare everything else, and that
    // one row's date against the target's own reading.
    let expected = "SELECT id, at::timestamptz::text, amount::text,
            CASE WHEN day = 'yesterday' THEN NULL ELSE day::date::text END FROM events ORDER BY id";
    let actual = "SELECT id, at::text, amount::text,
            CASE WHEN id = -1 THEN NULL ELSE day::text END FROM happened ORDER BY id";
    let (source_rows, target_rows) = (
        rows_of(&m.source, expected).await,
        rows_of(&m.target, actual).await,
    );
    assert_eq!(source_rows.len(), 2002);
    assert_eq!(source_rows, target_rows);
    let yesterday: bool = m
        .target
        .query_one(
            "SELECT day = 'yesterday'::date FROM happened WHERE id = -1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(yesterday, "the target's input function read the text");
    let tagged: i64 = m
        .target
        .query_one("SELECT count(*) FROM tagged", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(tagged, 2002);
}

/// Rows of (bigint, text, text, text), printed for comparison.
async fn rows_of(client: &Client, sql: &str) -> Vec<String> {
    let rows = client.query(sql, &[]).await.unwrap();
    rows.iter()
        .map(|r| {
            let text = |i| r.get::<_, Option<String>>(i);
            format!(
                "{} {:?} {:?} {:?}",
                r.get::<_, i64>(0),
                text(1),
                text(2),
                text(3)
            )
        })
        .collect()
}
