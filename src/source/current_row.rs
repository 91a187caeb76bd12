//! Reads a source row's current version by key, for an update whose new tuple lacks an
//! unchanged TOASTed value the transforms need (REPLICA IDENTITY DEFAULT sends no old values).
//! The current row may be newer than the change being applied; later changes in the stream bring
//! the target to the same end state, so the result converges. A row deleted since is skipped:
//! its delete follows in the stream.

use tokio_postgres::{Client, Row};

use crate::pg::ident::quote_ident;
use crate::transform::program::SourcePlan;

/// A row read by [`fetch`]: the plan's columns as text, borrowed from the row as received, so
/// that a large value is in memory once.
pub struct CurrentRow(Row);

impl CurrentRow {
    /// The `i`th of the plan's columns; `None` for NULL.
    pub fn get(&self, i: usize) -> Option<&str> {
        self.0.get(i)
    }
}

/// The plan's columns of the row with this key, as text, or `None` if it is gone.
/// `key_types` are the key columns' SQL types, so that the lookup uses the table's key index.
pub async fn fetch(
    client: &Client,
    source: &SourcePlan,
    key_types: &[String],
    key: &[Option<String>],
) -> Result<Option<CurrentRow>, tokio_postgres::Error> {
    let columns: Vec<String> = source
        .columns
        .iter()
        .map(|c| format!("{}::text", quote_ident(c)))
        .collect();
    let filter: Vec<String> = source
        .key
        .iter()
        .enumerate()
        .map(|(i, k)| format!("{} = ${}::text::{}", quote_ident(k), i + 1, key_types[i]))
        .collect();
    let sql = format!(
        "SELECT {} FROM {} WHERE {}",
        columns.join(", "),
        source.table.quoted(),
        filter.join(" AND ")
    );
    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = key
        .iter()
        .map(|k| k as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect();
    Ok(client.query_opt(&sql, &params).await?.map(CurrentRow))
}
