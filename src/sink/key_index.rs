//! Unique indexes on output keys. Upserts need one (`ON CONFLICT (key)`), but a plan may build
//! a large table's primary key only after the bulk copy, because a sort beats millions of
//! random index inserts. A resumed backfill upserts before that point, so it adds a helper index
//! of its own, `switchyard_<table>_key`, and drops it before the after-backfill SQL builds the
//! plan's own keys.

use tokio_postgres::GenericClient;

use crate::pg::ident::{quote_ident, TableName};

/// Whether a unique index covers exactly the key columns.
pub async fn has_unique_key(
    client: &impl GenericClient,
    table: &TableName,
    key: &[String],
) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT EXISTS (
                 SELECT FROM pg_index i
                  WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indpred IS NULL
                    AND (SELECT array_agg(a.attname::text ORDER BY a.attname)
                           FROM pg_attribute a
                          WHERE a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey))
                        = (SELECT array_agg(k ORDER BY k) FROM unnest($2::text[]) k)
                    AND array_length(i.indkey, 1) = cardinality($2::text[]))",
            &[&table.quoted(), &key],
        )
        .await?;
    Ok(row.get(0))
}

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
