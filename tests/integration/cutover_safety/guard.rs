//! Kind 4, writes the read-only guard lets through: with two servers, a session running with
//! `session_replication_role = replica` skips ordinary triggers, so the guard must be enabled
//! ALWAYS; every kind of write (INSERT, UPDATE, DELETE, TRUNCATE, COPY) is refused on every
//! legacy table and every partition of one, and `rollback` lifts the guard.

use switchyard::cutover::read_only;
use switchyard::pg::ident::TableName;
use tokio_postgres::Client;

use crate::follow::Following;
use crate::support::{cluster, seed_plan};

use super::proof::{run, slot_exists};

const LEGACY: [&str; 3] = ["company_projects", "company_services", "vortex_items"];

/// Every write statement a session can issue on `table`.
fn writes(table: &str) -> Vec<String> {
    vec![
        format!("INSERT INTO {table} SELECT * FROM {table} LIMIT 0"),
        format!("INSERT INTO {table} (id) VALUES (-1)"),
        format!("UPDATE {table} SET id = id WHERE id = 1"),
        format!("DELETE FROM {table} WHERE id = 1"),
        format!("TRUNCATE {table}"),
    ]
}

async fn row_count(db: &Client, table: &str) -> i64 {
    db.query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn replica_role_sessions_cannot_write_to_the_legacy_tables_until_rollback() {
    let f = Following::start(0.01).await;
    let (source, target) = (f.source_cluster.url("legacy"), f.target_cluster.url("app"));
    let (ok, out) = run("cutover", &seed_plan(), &source, &target, &[]);
    assert!(ok, "{out}");
    assert!(out.contains("cutover committed"), "{out}");

    let replica = f.source_cluster.connect("legacy").await.unwrap();
    replica
        .batch_execute("SET session_replication_role = replica")
        .await
        .unwrap();
    for table in LEGACY {
        let before = row_count(&f.source, table).await;
        for sql in writes(table) {
            let refused = replica.batch_execute(&sql).await.unwrap_err();
            let db = refused
                .as_db_error()
                .unwrap_or_else(|| panic!("{sql}: {refused:?}"));
            assert!(
                db.message().contains(&format!(
                    "table public.{table} is read-only: migration legacy_to_projects was cut over"
                )),
                "{sql}: {db:?}"
            );
            assert_eq!(db.hint(), Some("write to the new tables; `switchyard rollback` makes this table writable again"));
        }
        // COPY FROM fires the INSERT triggers too (its own session: a failed COPY ends it).
        let copier = f.source_cluster.connect("legacy").await.unwrap();
        copier
            .batch_execute("SET session_replication_role = replica")
            .await
            .unwrap();
        let copy = copier
            .copy_in::<_, bytes::Bytes>(&format!("COPY {table} (id) FROM STDIN"))
            .await;
        let refused = match copy {
            Err(e) => e,
            Ok(sink) => {
                use futures_util::SinkExt;
                let mut sink = Box::pin(sink);
                let sent = sink.send(bytes::Bytes::from_static(b"-2\n")).await;
                match sent {
                    Err(e) => e,
                    Ok(()) => sink.as_mut().finish().await.unwrap_err(),
                }
            }
        };
        assert!(
            format!("{refused:?}").contains("is read-only"),
            "{refused:?}"
        );
        assert_eq!(row_count(&f.source, table).await, before, "{table} changed");
    }
    let always: Vec<(String, String)> = f
        .source
        .query(
            "SELECT tgrelid::regclass::text, tgenabled::text FROM pg_trigger
              WHERE tgname = 'switchyard_read_only' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        always,
        LEGACY.map(|t| (t.to_owned(), "A".to_owned())).to_vec(),
        "one trigger per legacy table, enabled ALWAYS"
    );

    // Rollback says what it found, lifts the guard, and the same session writes again.
    let (ok, out) = run("rollback", &seed_plan(), &source, &target, &[]);
    assert!(ok, "{out}");
    for table in LEGACY {
        assert!(
            out.contains(&format!("public.{table} is the legacy table (OID")),
            "{out}"
        );
        assert!(
            out.contains(&format!(
                "read-only trigger on public.{table} (enabled always)"
            )),
            "{out}"
        );
    }
    assert!(
        out.contains("read-only triggers removed from public.company_projects, public.company_services, public.vortex_items"),
        "{out}"
    );
    assert!(!out.contains("never touched"), "{out}");
    replica
        .batch_execute("UPDATE vortex_items SET title = title || '.' WHERE id = 1; DELETE FROM vortex_items WHERE id = 2")
        .await
        .unwrap();
    let triggers: i64 = f
        .source
        .query_one(
            "SELECT count(*) FROM pg_trigger WHERE tgname = 'switchyard_read_only'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(triggers, 0);
    assert!(
        !slot_exists(&f.source).await,
        "the cutover dropped the slot"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_guard_covers_every_partition_of_a_partitioned_legacy_table() {
    let c = cluster();
    c.create_database("parts").await.unwrap();
    let db = c.connect("parts").await.unwrap();
    db.batch_execute(
        "CREATE TABLE events (id int, at date) PARTITION BY RANGE (at);
         CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
         CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')
             PARTITION BY RANGE (at);
         CREATE TABLE events_2025_h1 PARTITION OF events_2025 FOR VALUES FROM ('2025-01-01') TO ('2025-07-01');
         INSERT INTO events VALUES (1, '2024-05-01'), (2, '2025-02-01');",
    )
    .await
    .unwrap();
    db.batch_execute(read_only::FUNCTION_SQL).await.unwrap();
    db.batch_execute("BEGIN").await.unwrap();
    read_only::install(
        &db,
        &[TableName::parse("events", "public")],
        "m",
        read_only::After::Cutover,
    )
    .await
    .unwrap();
    db.batch_execute("COMMIT").await.unwrap();

    let replica = c.connect("parts").await.unwrap();
    replica
        .batch_execute("SET session_replication_role = replica")
        .await
        .unwrap();
    let members = ["events", "events_2024", "events_2025", "events_2025_h1"];
    for table in members {
        for sql in [
            format!("INSERT INTO {table} VALUES (3, '2025-03-01')"),
            format!("UPDATE {table} SET id = id"),
            format!("DELETE FROM {table}"),
            format!("TRUNCATE {table}"),
        ] {
            let refused = replica.batch_execute(&sql).await.unwrap_err();
            assert!(
                format!("{refused:?}").contains(&format!("table public.{table} is read-only")),
                "{sql}: {refused:?}"
            );
        }
    }
    let oid: u32 = db
        .query_one("SELECT 'events'::regclass::oid", &[])
        .await
        .unwrap()
        .get(0);
    let guards = read_only::installed(&db, &[oid]).await.unwrap();
    let found: Vec<(String, bool)> = guards
        .iter()
        .map(|g| (g.table.name.clone(), g.always()))
        .collect();
    assert_eq!(
        found,
        members.map(|m| (m.to_owned(), true)).to_vec(),
        "every member guarded, enabled ALWAYS"
    );
    read_only::remove(&db, &guards).await.unwrap();
    replica
        .batch_execute(
            "INSERT INTO events_2025_h1 VALUES (3, '2025-03-01'); DELETE FROM events_2024",
        )
        .await
        .unwrap();
}
