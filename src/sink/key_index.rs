//! Unique indexes on output keys. Upserts need one (`ON CONFLICT (key)`), but a plan may build
//! a large table's primary key only after the bulk copy, because a sort beats millions of
//! random index inserts. A resumed backfill upserts before that point, so it adds a helper index
//! of its own, `switchyard_<table>_key`, and drops it before the after-backfill SQL builds the
//! plan's own keys.

use tokio_postgres::GenericClient;

use crate::pg::ident::{quote_ident, TableName};
use crate::source::catalog::has_unique_key;

fn helper_name(table: &TableName) -> String {
    format!("switchyard_{}_key", table.name)
}

/// Adds the helper index when no unique index covers the key.
pub async fn ensure_unique_key(
    client: &impl GenericClient,
    table: &TableName,
    key: &[String],
) -> Result<(), tokio_postgres::Error> {
    if has_unique_key(client, table, key).await? {
        return Ok(());
    }
    let columns: Vec<String> = key.iter().map(|k| quote_ident(k)).collect();
    client
        .batch_execute(&format!(
            "CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} ({})",
            quote_ident(&helper_name(table)),
            table.quoted(),
            columns.join(", ")
        ))
        .await
}

/// Drops the helper index, before the after-backfill SQL builds the plan's own keys (a foreign
/// key created while both exist could bind to the helper and pin it).
pub async fn drop_helper(
    client: &impl GenericClient,
    table: &TableName,
) -> Result<(), tokio_postgres::Error> {
    let helper = TableName {
        schema: table.schema.clone(),
        name: helper_name(table),
    };
    client
        .batch_execute(&format!("DROP INDEX IF EXISTS {}", helper.quoted()))
        .await
}
