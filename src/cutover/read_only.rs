//! With two servers, the legacy tables must take no write once the cutover committed: the
//! application would write into a database nobody reads any more. A statement trigger refuses
//! every write (`session_replication_role = replica` sessions excepted, as for every trigger),
//! and `switchyard rollback` removes it. Installed inside the lock's transaction, so it exists
//! from the moment the lock is released.

use tokio_postgres::GenericClient;

use crate::pg::ident::{quote_ident, quote_literal, TableName};

/// The trigger's name on every legacy table.
pub const TRIGGER: &str = "switchyard_read_only";

/// The function the triggers call; created before the lock is taken (it takes no lock on the
/// tables), in the source's `switchyard` schema.
pub const FUNCTION_SQL: &str = r#"
CREATE SCHEMA IF NOT EXISTS switchyard;
CREATE OR REPLACE FUNCTION switchyard.refuse_writes() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
    RAISE EXCEPTION 'table %.% is read-only: migration % was cut over by switchyard',
        TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_ARGV[0]
        USING ERRCODE = 'read_only_sql_transaction',
              HINT = 'write to the new tables; `switchyard rollback` makes this table writable again';
END
$f$;
"#;

/// Creates the read-only triggers; run inside the transaction holding the write lock.
pub async fn install(
    client: &impl GenericClient,
    tables: &[TableName],
    migration: &str,
) -> Result<(), tokio_postgres::Error> {
    let mut sql = String::new();
    for t in tables {
        sql.push_str(&format!(
            "CREATE TRIGGER {} BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON {}
                 FOR EACH STATEMENT EXECUTE FUNCTION switchyard.refuse_writes({});\n",
            quote_ident(TRIGGER),
            t.quoted(),
            quote_literal(migration)
        ));
    }
    client.batch_execute(&sql).await
}

/// Drops the read-only triggers (those that exist).
pub async fn remove(
    client: &impl GenericClient,
    tables: &[TableName],
) -> Result<(), tokio_postgres::Error> {
    let mut sql = String::new();
    for t in tables {
        sql.push_str(&format!(
            "DROP TRIGGER IF EXISTS {} ON {};\n",
            quote_ident(TRIGGER),
            t.quoted()
        ));
    }
    client.batch_execute(&sql).await
}
