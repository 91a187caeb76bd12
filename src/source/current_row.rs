//! Reads a source row's current version by key, for an update whose new tuple lacks an
//! unchanged TOASTed value the transforms need (REPLICA IDENTITY DEFAULT sends no old values).
//! The current row may be newer than the change being applied; later changes in the stream bring
//! the target to the same end state, so the result converges. A row deleted since is skipped:
//! its delete follows in the stream.
//!
//! The reads have a session of their own, opened on the first read. A session that received a
//! row larger than [`LARGE_ROW_BYTES`] is closed after it: tokio-postgres keeps the space of
//! the largest message it ever read in the connection's read buffer, and a 100 MB row read once
//! would stay resident for the consumer's lifetime (README, Memory).
//!
//! One prepared statement per source table, prepared on its first read in a session: a table
//! whose updates keep missing a large value costs one round trip per row, not a parse as well.
//! Every column is read as `text`, so the statement's result type never changes under DDL on
//! the table (PostgreSQL re-plans a prepared statement after DDL; it refuses one whose result
//! changed).

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Statement};

use crate::pg::connect::{connect, ConnectError};
use crate::pg::conninfo::ConnInfo;
use crate::pg::ident::quote_ident;
use crate::transform::program::SourcePlan;

/// A row whose values add up to more than this closes the session that read it (16 MiB): below
/// it, what the read buffer keeps is small next to the consumer's 8 MiB apply groups, and a
/// reconnect (a few ms) per row would cost more than it frees.
pub const LARGE_ROW_BYTES: usize = 16 * 1024 * 1024;

/// Why a current row could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("reading a row for a value the stream does not carry")]
    Read(#[source] tokio_postgres::Error),
}

/// A row read by [`CurrentRows::fetch`]: the plan's columns as text, borrowed from the row as
/// received, so that a large value is in memory once.
pub struct CurrentRow(Row);

impl CurrentRow {
    /// The `i`th of the plan's columns; `None` for NULL.
    pub fn get(&self, i: usize) -> Option<&str> {
        self.0.get(i)
    }

    /// The values' total size in bytes (NULLs count as none).
    fn bytes(&self) -> usize {
        (0..self.0.len())
            .filter_map(|i| self.0.get::<_, Option<&str>>(i))
            .map(str::len)
            .sum()
    }
}

/// The source's current rows, by key, for every source of the plan.
pub struct CurrentRows<'c> {
    /// Where the session for the reads connects.
    source: &'c ConnInfo,
    /// The session, once opened; `None` again after a large row.
    client: Option<Client>,
    /// Key column types per source, so that the lookup uses the table's key index.
    key_types: &'c [Vec<String>],
    /// Per source, its statement once prepared in the current session.
    statements: Vec<Option<Statement>>,
}

impl<'c> CurrentRows<'c> {
    /// `key_types` holds the key columns' SQL types per plan source, in plan order. Nothing
    /// connects until the first [`CurrentRows::fetch`].
    pub fn new(source: &'c ConnInfo, key_types: &'c [Vec<String>]) -> CurrentRows<'c> {
        CurrentRows {
            source,
            client: None,
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
    ) -> Result<Option<CurrentRow>, FetchError> {
        let client = match self.client.take() {
            // Often idle for long: a server's idle_session_timeout or a proxy may have closed it.
            Some(client) if !client.is_closed() => client,
            _ => {
                let client = connect(self.source, "switchyard current rows").await?;
                crate::source::ctype::use_source_ctype(&client)
                    .await
                    .map_err(FetchError::Read)?;
                self.statements.iter_mut().for_each(|s| *s = None);
                client
            }
        };
        let client = &*self.client.insert(client);
        let statement = match self.statements[index].take() {
            Some(statement) => statement,
            None => {
                let sql = select_by_key(source, &self.key_types[index]);
                client.prepare(&sql).await.map_err(FetchError::Read)?
            }
        };
        let statement = &*self.statements[index].insert(statement);
        let params: Vec<&(dyn ToSql + Sync)> =
            key.iter().map(|k| k as &(dyn ToSql + Sync)).collect();
        let row = client
            .query_opt(statement, &params)
            .await
            .map_err(FetchError::Read)?
            .map(CurrentRow);
        if row.as_ref().is_some_and(|r| r.bytes() > LARGE_ROW_BYTES) {
            // Its connection task ends, and with it the read buffer sized for this row.
            self.client = None;
        }
        Ok(row)
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
