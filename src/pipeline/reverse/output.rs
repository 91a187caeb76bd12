//! The new tables the reverse rules read (their `from`): each one's primary key, and the SQL
//! that evaluates a rule over rows of it, either as they are now in the table or as a WAL
//! tuple carried them (the old row of an update or delete).

use tokio_postgres::Client;

use crate::pg::ident::{quote_ident, TableName};
use crate::plan::ReverseTable;

use super::error::ReverseError;

/// A column and its type as SQL (`format_type`), for `CAST(text AS type)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub type_sql: String,
}

/// An output table that feeds legacy tables.
#[derive(Debug)]
pub struct OutputTable {
    pub table: TableName,
    /// Its primary key, in index order: how a changed row is found again.
    pub key: Vec<Column>,
}

impl OutputTable {
    /// Reads the primary key of `table` on the target; a table without one cannot be followed
    /// (a changed row could not be found again).
    pub async fn read(
        client: &Client,
        table: &TableName,
    ) -> Result<OutputTable, ReverseError> {
        let rows = client
            .query(
                "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod)
                   FROM pg_index i
                   CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)
                   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                  WHERE i.indrelid = $1::text::regclass AND i.indisprimary
                  ORDER BY k.n",
                &[&table.quoted()],
            )
            .await
            .map_err(ReverseError::target(format!("reading the primary key of {table}")))?;
        if rows.is_empty() {
            return Err(ReverseError::Unmappable(format!(
                "{table} has no primary key: the reverse stream finds a changed row again by it. Add one (ALTER TABLE {} ADD PRIMARY KEY (...)) and start `switchyard follow --reverse` again",
                table.quoted()
            )));
        }
        Ok(OutputTable {
            table: table.clone(),
            key: rows
                .iter()
                .map(|r| Column {
                    name: r.get(0),
                    type_sql: r.get(1),
                })
                .collect(),
        })
    }

    /// The primary key's columns as text: the leading columns of both SELECTs.
    fn key_as_text(&self) -> Vec<String> {
        let alias = quote_ident(&self.table.name);
        self.key
            .iter()
            .map(|c| format!("{alias}.{}::text", quote_ident(&c.name)))
            .collect()
    }

    /// `rule` over the rows of this table whose primary key is among `$1..$k` (one text array
    /// per key column): returns the key as text, then the legacy key and columns as text.
    pub fn current_rows_sql(&self, rule: &ReverseTable) -> String {
        let alias = quote_ident(&self.table.name);
        let columns: Vec<String> = self
            .key
            .iter()
            .map(|c| format!("{alias}.{}", quote_ident(&c.name)))
            .collect();
        let condition = format!(
            "({}) IN (SELECT {} FROM {})",
            columns.join(", "),
            casts(&self.key),
            unnest(self.key.len())
        );
        rule.select_over(&self.table.quoted(), &self.key_as_text(), true, &condition)
    }

    /// `rule` over rows given as text arrays `$1..$n`, one per column of `columns` (a WAL
    /// tuple's columns in the Relation's order): the old rows of updates and deletes, which
    /// are no longer in the table.
    pub fn tuple_rows_sql(&self, rule: &ReverseTable, columns: &[Column]) -> String {
        let named: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!("CAST(u.c{i} AS {}) AS {}", c.type_sql, quote_ident(&c.name)))
            .collect();
        let relation = format!("(SELECT {} FROM {})", named.join(", "), unnest(columns.len()));
        rule.select_over(&relation, &self.key_as_text(), true, "true")
    }
}

/// `CAST(u.c0 AS t0), CAST(u.c1 AS t1), ...`
pub(super) fn casts(columns: &[Column]) -> String {
    columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("CAST(u.c{i} AS {})", c.type_sql))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `unnest($1::text[], ..., $n::text[]) AS u(c0, ..., c<n-1>)`: n parallel text arrays as rows.
pub(super) fn unnest(n: usize) -> String {
    let arrays: Vec<String> = (1..=n).map(|i| format!("${i}::text[]")).collect();
    let names: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
    format!("unnest({}) AS u({})", arrays.join(", "), names.join(", "))
}
