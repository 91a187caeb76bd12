//! With two servers, the legacy tables must take no write once the cutover committed: the
//! application would write into a database nobody reads any more. A statement trigger refuses
//! every INSERT, UPDATE, DELETE, TRUNCATE (and COPY FROM, which fires INSERT triggers), and
//! `switchyard rollback` removes it. Installed inside the lock's transaction, so it exists from
//! the moment the lock is released.
//!
//! Two ways around an ordinary trigger are closed:
//! - `session_replication_role = replica` (logical replication's apply workers, `pg_restore
//!   --disable-triggers`, tools that set it to skip triggers) skips triggers that are merely
//!   `ENABLED`; the guard is `ENABLE ALWAYS`, which fires in every role
//!   (<https://www.postgresql.org/docs/current/sql-altertable.html>, "ENABLE ALWAYS TRIGGER").
//! - A statement trigger on a partitioned table fires only for statements naming that table; a
//!   write naming a partition fires the partition's own triggers
//!   (<https://www.postgresql.org/docs/current/ddl-partitioning.html>). The guard goes on every
//!   member of each legacy table's partition tree (`pg_partition_tree`).

use tokio_postgres::GenericClient;

use crate::pg::ident::{quote_ident, quote_literal, TableName};
use crate::source::catalog;

/// The trigger's name on every legacy table.
pub const TRIGGER: &str = "switchyard_read_only";

/// The function the triggers call; created before the lock is taken (it takes no lock on the
/// tables), in the source's `switchyard` schema. It lets the reverse stream's own session
/// through ([`crate::pipeline::reverse::BYPASS_SETTING`]).
pub const FUNCTION_SQL: &str = r#"
CREATE SCHEMA IF NOT EXISTS switchyard;
CREATE OR REPLACE FUNCTION switchyard.refuse_writes() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
    IF current_setting('switchyard.reverse_apply', true) = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'table %.% is read-only: migration % was cut over by switchyard',
        TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_ARGV[0]
        USING ERRCODE = 'read_only_sql_transaction',
              HINT = 'write to the new tables; `switchyard rollback` makes this table writable again';
END
$f$;
"#;

/// The function the triggers on the *new* tables call after a rollback with a reverse stream:
/// the legacy tables are live again, and a write to the new ones would reach nobody.
pub const ROLLED_BACK_FUNCTION_SQL: &str = r#"
CREATE SCHEMA IF NOT EXISTS switchyard;
CREATE OR REPLACE FUNCTION switchyard.refuse_writes_rolled_back() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
    RAISE EXCEPTION 'table %.% is read-only: migration % was rolled back by switchyard',
        TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_ARGV[0]
        USING ERRCODE = 'read_only_sql_transaction',
              HINT = 'write to the legacy tables again; DROP TRIGGER switchyard_read_only ON this table makes it writable (before a new migration follows into it)';
END
$f$;
"#;

/// Which function a read-only trigger calls: after a cutover (on the legacy tables) or after a
/// rollback (on the new tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    Cutover,
    Rollback,
}

impl After {
    fn function(self) -> &'static str {
        match self {
            After::Cutover => "switchyard.refuse_writes",
            After::Rollback => "switchyard.refuse_writes_rolled_back",
        }
    }
}

/// A read-only trigger found on a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guard {
    pub table: TableName,
    /// `pg_trigger.tgenabled`: `A` (always) is the only state that refuses every session.
    pub enabled: String,
}

impl Guard {
    /// Whether it fires for every session, `session_replication_role = replica` included.
    pub fn always(&self) -> bool {
        self.enabled == "A"
    }
}

/// Every member of the partition trees rooted at `tables`, the tables themselves included
/// (`pg_partition_tree` returns no row for a plain table).
async fn members(
    client: &impl GenericClient,
    tables: &[TableName],
) -> Result<Vec<TableName>, tokio_postgres::Error> {
    let quoted: Vec<String> = tables.iter().map(TableName::quoted).collect();
    let rows = client
        .query(
            &format!(
                "SELECT n.nspname::text, c.relname::text
                   FROM unnest($1::text[]) AS t(name),
                        LATERAL {} AS p
                   JOIN pg_class c ON c.oid = p.relid
                   JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE c.relkind IN ('r', 'p')",
                catalog::partition_tree("t.name::regclass")
            ),
            &[&quoted],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| TableName {
            schema: r.get(0),
            name: r.get(1),
        })
        .collect())
}

/// Creates the read-only triggers, enabled ALWAYS, on every member of the legacy tables'
/// partition trees; run inside the transaction holding the write lock.
pub async fn install(
    client: &impl GenericClient,
    tables: &[TableName],
    migration: &str,
    after: After,
) -> Result<(), tokio_postgres::Error> {
    let mut sql = String::new();
    for t in members(client, tables).await? {
        sql.push_str(&format!(
            "CREATE TRIGGER {trigger} BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table}
                 FOR EACH STATEMENT EXECUTE FUNCTION {function}({migration});
             ALTER TABLE {table} ENABLE ALWAYS TRIGGER {trigger};\n",
            trigger = quote_ident(TRIGGER),
            table = t.quoted(),
            function = after.function(),
            migration = quote_literal(migration)
        ));
    }
    client.batch_execute(&sql).await
}

/// The read-only triggers on the partition trees of the tables with these OIDs (the legacy
/// tables as the backfill recorded them, whatever they are called now).
pub async fn installed(
    client: &impl GenericClient,
    oids: &[u32],
) -> Result<Vec<Guard>, tokio_postgres::Error> {
    let rows = client
        .query(
            &format!(
                "SELECT n.nspname::text, c.relname::text, g.tgenabled::text
                   FROM unnest($1::oid[]) AS t(relid)
                   JOIN pg_class r ON r.oid = t.relid,
                        LATERAL {} AS p
                   JOIN pg_trigger g ON g.tgrelid = p.relid AND g.tgname = $2
                   JOIN pg_class c ON c.oid = p.relid
                   JOIN pg_namespace n ON n.oid = c.relnamespace
                  ORDER BY 1, 2",
                catalog::partition_tree("t.relid::regclass")
            ),
            &[&oids, &TRIGGER],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Guard {
            table: TableName {
                schema: r.get(0),
                name: r.get(1),
            },
            enabled: r.get(2),
        })
        .collect())
}

/// Drops these read-only triggers.
pub async fn remove(
    client: &impl GenericClient,
    guards: &[Guard],
) -> Result<(), tokio_postgres::Error> {
    let mut sql = String::new();
    for g in guards {
        sql.push_str(&format!(
            "DROP TRIGGER IF EXISTS {} ON {};\n",
            quote_ident(TRIGGER),
            g.table.quoted()
        ));
    }
    client.batch_execute(&sql).await
}
