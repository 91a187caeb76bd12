//! `switchyard.dead_letters`, as `status` reads it (the rows are written by
//! `crate::sink::dead_letter`).

use tokio_postgres::Client;

use super::{ctx, CheckpointError};

/// How many rows of the migration were dead-lettered.
pub async fn dead_letter_count(client: &Client, migration: &str) -> Result<i64, CheckpointError> {
    let row = client
        .query_one(
            "SELECT count(*) FROM switchyard.dead_letters WHERE migration = $1",
            &[&migration],
        )
        .await
        .map_err(ctx("counting dead letters"))?;
    Ok(row.get(0))
}
