//! Captures raw pgoutput messages from a throwaway PostgreSQL cluster, for the decoder's test
//! fixtures (`src/pg/pgoutput/fixtures.rs`).
//!
//! It runs a fixed scenario (inserts with a TOASTed column, an update that leaves it unchanged,
//! an update of the key, deletes under REPLICA IDENTITY DEFAULT and FULL, truncates, logical
//! decoding messages, a transaction with a replication origin, big transactions that pgoutput
//! streams, a prepared transaction) and prints what `pg_logical_slot_peek_binary_changes`
//! returns for each set of plugin options, one message a line: `lsn xid hex`.
//!
//! ```text
//! cargo run --example capture_pgoutput > /tmp/pgoutput.txt
//! ```

use switchyard::demo::cluster::{Cluster, ClusterOptions};
use tokio_postgres::Client;

/// Rows per big transaction: enough to pass `logical_decoding_work_mem` (64kB) several times, so
/// protocol v2 streams the transaction in chunks.
const BIG_TRANSACTION_ROWS: i32 = 2000;

/// Plugin options every peek adds: the publication, and logical decoding messages.
const PUBLICATION_OPTIONS: &[&str] = &["publication_names", "pub", "messages", "true"];

const SCHEMA: &str = "
    CREATE TYPE mood AS ENUM ('calm', 'busy');
    CREATE TABLE accounts (
        id int PRIMARY KEY,
        email varchar(40) NOT NULL,
        balance numeric(10, 2),
        mood mood,
        bio text
    );
    -- Out of line and uncompressed once a row passes TOAST_TUPLE_THRESHOLD (about 2kB).
    ALTER TABLE accounts ALTER COLUMN bio SET STORAGE EXTERNAL;
    CREATE TABLE ledger (id bigint GENERATED ALWAYS AS IDENTITY, note text, big text);
    ALTER TABLE ledger REPLICA IDENTITY FULL;
    ALTER TABLE ledger ALTER COLUMN big SET STORAGE EXTERNAL;
    CREATE TABLE events (id int PRIMARY KEY, kind mood, payload text);
    CREATE PUBLICATION pub FOR TABLE accounts, ledger, events;
    SELECT pg_create_logical_replication_slot('slot', 'pgoutput');
    SELECT pg_create_logical_replication_slot('two_phase_slot', 'pgoutput', false, true);
";

const CHANGES: &str = "
    INSERT INTO accounts VALUES
        (1, 'ada@example.com', 12.50, 'calm', repeat('toast!', 350)),
        (2, 'bob@example.com', NULL, NULL, 'short bio');
    UPDATE accounts SET balance = 99.99 WHERE id = 1;
    UPDATE accounts SET id = 20 WHERE id = 2;
    DELETE FROM accounts WHERE id = 20;
    BEGIN;
    INSERT INTO ledger (note, big) VALUES ('opened', repeat('ledger', 350)), ('small', 'tiny');
    UPDATE ledger SET note = 'audited' WHERE note = 'opened';
    DELETE FROM ledger WHERE note = 'small';
    COMMIT;
    TRUNCATE accounts, events;
    TRUNCATE ledger RESTART IDENTITY CASCADE;
    SELECT pg_logical_emit_message(true, 'switchyard', 'fence');
    SELECT pg_logical_emit_message(false, 'switchyard', 'heartbeat');
";

const WITH_ORIGIN: &str = "
    SELECT pg_replication_origin_create('upstream');
    SELECT pg_replication_origin_session_setup('upstream');
    BEGIN;
    SELECT pg_replication_origin_xact_setup('0/ABCDEF', '2024-01-02 03:04:05+00');
    INSERT INTO accounts VALUES (3, 'cy@example.com', 1, 'busy', NULL);
    COMMIT;
    SELECT pg_replication_origin_session_reset();
";

const PREPARED: &str = "
    BEGIN;
    INSERT INTO accounts VALUES (4, 'di@example.com', 4, 'calm', 'prepared');
    PREPARE TRANSACTION 'p1';
    COMMIT PREPARED 'p1';
";

fn streamed(rows: i32) -> String {
    let (a, b, c) = (rows, rows + 1, 2 * rows);
    format!(
        "BEGIN;
         INSERT INTO events SELECT i, 'busy', 'payload ' || i FROM generate_series(1, {a}) i;
         SELECT pg_logical_emit_message(true, 'switchyard', 'in-stream');
         SAVEPOINT s1;
         INSERT INTO events SELECT i, 'calm', 'rolled back' FROM generate_series({b}, {c}) i;
         ROLLBACK TO SAVEPOINT s1;
         COMMIT;
         BEGIN;
         INSERT INTO events SELECT -i, 'calm', 'aborted' FROM generate_series(1, {a}) i;
         ROLLBACK;"
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cluster =
        Cluster::start(ClusterOptions::default().with_setting("max_prepared_transactions", "5"))?;
    let client = cluster.connect("postgres").await?;
    println!("# {}", value(&client, "SELECT version()").await?);
    for script in [
        SCHEMA,
        CHANGES,
        WITH_ORIGIN,
        &streamed(BIG_TRANSACTION_ROWS),
        PREPARED,
    ] {
        run(&client, script).await?;
    }

    // Streaming starts once a transaction's changes pass logical_decoding_work_mem; without
    // streaming the server spills to disk instead, and the output is the same.
    client
        .batch_execute("SET logical_decoding_work_mem = '64kB'")
        .await?;
    // Every peek decodes the same WAL again, with other plugin options.
    let peeks: [(&str, &str, &[&str]); 4] = [
        ("v1", "slot", &["proto_version", "1"]),
        (
            "v1 binary",
            "slot",
            &["proto_version", "1", "binary", "true"],
        ),
        (
            "v2 streaming",
            "slot",
            &["proto_version", "2", "streaming", "true"],
        ),
        (
            "v3 two_phase",
            "two_phase_slot",
            &["proto_version", "3", "two_phase", "on"],
        ),
    ];
    for (label, slot, options) in peeks {
        peek(&client, label, slot, options).await?;
    }
    Ok(())
}

/// Runs each statement on its own: a multi-statement query string would be one implicit
/// transaction, and each statement here is meant to be its own (unless the script says BEGIN).
async fn run(client: &Client, script: &str) -> anyhow::Result<()> {
    for statement in script.split(';').filter(|s| !s.trim().is_empty()) {
        client.batch_execute(statement).await?;
    }
    Ok(())
}

async fn value(client: &Client, sql: &str) -> anyhow::Result<String> {
    Ok(client.query_one(sql, &[]).await?.get(0))
}

/// Prints every message the slot would send with these options, without consuming them.
async fn peek(client: &Client, label: &str, slot: &str, options: &[&str]) -> anyhow::Result<()> {
    let options: Vec<String> = options
        .iter()
        .chain(PUBLICATION_OPTIONS)
        .map(|o| format!("'{o}'"))
        .collect();
    let sql = format!(
        "SELECT lsn::text, xid::text, encode(data, 'hex')
         FROM pg_logical_slot_peek_binary_changes('{slot}', NULL, NULL, {})",
        options.join(", ")
    );
    println!("## {label}: {}", options.join(" "));
    for row in client.query(&sql, &[]).await? {
        let (lsn, xid, hex): (String, String, String) = (row.get(0), row.get(1), row.get(2));
        println!("{lsn} {xid} {hex}");
    }
    Ok(())
}
