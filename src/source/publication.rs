//! The publication the slot decodes through: the plan's source tables, nothing else.
//! It must exist before the slot is created, because pgoutput reads publications as of each
//! change's position in the WAL.

use tokio_postgres::Client;

use crate::pg::ident::{quote_ident, TableName};

/// Creates the publication, or leaves a pre-created one (least privilege: a DBA may create it
/// and grant nothing else) as it is. Returns whether it created one. Changes to a partitioned
/// source table are published as its root's, the table the plan names (a row moved between
/// partitions arrives as a delete and an insert on the root).
pub async fn ensure(
    client: &Client,
    name: &str,
    tables: &[&TableName],
) -> Result<bool, tokio_postgres::Error> {
    let exists = client
        .query_opt("SELECT 1 FROM pg_publication WHERE pubname = $1", &[&name])
        .await?
        .is_some();
    if exists {
        return Ok(false);
    }
    let list: Vec<String> = tables.iter().map(|t| t.quoted()).collect();
    client
        .batch_execute(&format!(
            "CREATE PUBLICATION {} FOR TABLE {} WITH (publish_via_partition_root = true)",
            quote_ident(name),
            list.join(", ")
        ))
        .await?;
    Ok(true)
}

/// Drops the publication if this role owns it, and says whether it is gone. One created by
/// another role (the least-privilege setup, where the tables' owner made it) is left to that
/// owner: only an owner may drop it.
pub async fn drop(client: &Client, name: &str) -> Result<bool, tokio_postgres::Error> {
    let owned: Option<bool> = client
        .query_opt(
            "SELECT pg_has_role(pubowner, 'USAGE') FROM pg_publication WHERE pubname = $1",
            &[&name],
        )
        .await?
        .map(|r| r.get(0));
    match owned {
        None => Ok(true),
        Some(false) => Ok(false),
        Some(true) => {
            client
                .batch_execute(&format!("DROP PUBLICATION IF EXISTS {}", quote_ident(name)))
                .await?;
            Ok(true)
        }
    }
}
