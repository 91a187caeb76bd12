//! Reads a source row's current version by key, for an update whose new tuple lacks an
//! unchanged TOASTed value the transforms need (REPLICA IDENTITY DEFAULT sends no old values).
//! The current row may be newer than the change being applied; later changes in the stream bring
//! the target to the same end state, so the result converges. A row deleted since is skipped:
//! its delete follows in the stream.
//!
//! One prepared statement per source table, prepared on its first read: a table whose updates
//! keep missing a large value costs one round trip per row, not a parse as well. Every column
//! is read as `text`, so the statement's result type never changes under DDL on the table
//! (PostgreSQL re-plans a prepared statement after DDL; it refuses one whose result changed).

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Statement};

use crate::pg::ident::quote_ident;
use crate::transform::program::SourcePlan;

/// A row read by [`CurrentRows::fetch`]: the plan's columns as text, borrowed from the row as
/// received, so that a large value is in memory once.
pub struct CurrentRow(Row);

impl CurrentRow {
    /// The `i`th of the plan's columns; `None` for NULL.
    pub fn get(&self, i: usize) -> Option<&str> {
        self.0.get(i)
    }
}

/// The source's current rows, by key, for every source of the plan.
pub struct CurrentRows<'c> {
    client: &'c Client,
    /// Key column types per source, so that the lookup uses the table's key index.
    key_types: &'c [Vec<String>],
    /// Per source, its statement once prepared.
    statements: Vec<Option<Statement>>,
}

impl<'c> CurrentRows<'c> {
    /// `key_types` holds the key columns' SQL types per plan source, in plan order.
    pub fn new(client: &'c Client, key_types: &'c [Vec<String>]) -> CurrentRows<'c> {
        CurrentRows {
            client,
            key_types,
            statements: (0..key_types.len()).map(|_| None).collect(),
        }
    }

    /// The plan's columns of the row of plan source `index` (`source`) with this key, as
    /// text, or `None` if it is gone.
    pub async fn fetch(
        &mut self,
        source: &SourcePlan,
        index: usize,
        key: &[Option<String>],
    ) -> Result<Option<CurrentRow>, tokio_postgres::Error> {
        let statement = match self.statements[index].take() {
            Some(statement) => statement,
            None => {
                let sql = select_by_key(source, &self.key_types[index]);
                self.client.prepare(&sql).await?
            }
        };
        let statement = &*self.statements[index].insert(statement);
        let params: Vec<&(dyn ToSql + Sync)> =
            key.iter().map(|k| k as &(dyn ToSql + Sync)).collect();
        Ok(self
            .client
            .query_opt(statement, &params)
            .await?
            .map(CurrentRow))
    }
}

/// `SELECT <plan columns>::text FROM <table> WHERE <key> = $n::text::<key type> AND ...`
fn select_by_key(source: &SourcePlan, key_types: &[String]) -> String {
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
    format!(
        "SELECT {} FROM {} WHERE {}",
        columns.join(", "),
        source.table.quoted(),
        filter.join(" AND ")
    )
}
