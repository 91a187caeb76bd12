//! Writes one output's rows into the target, inside the caller's transaction.
//!
//! Two ways in, chosen per output:
//! - **direct**: `COPY target FROM STDIN`. Used by a fresh backfill for upsert outputs, whose
//!   rows are each produced by exactly one source row version under one snapshot, so no key
//!   can already be there.
//! - **staged**: `COPY` into a temporary table, then `INSERT ... SELECT ... ON CONFLICT`: `DO
//!   NOTHING` for insert-if-absent outputs (teams, members), `DO UPDATE` for upserts when a
//!   resumed backfill may meet rows it already wrote.
//!
//! When the target refuses a backfill batch (a data or constraint error), the batch is rolled
//! back to a savepoint and split in halves until the refused rows are isolated; the others
//! still land. The follow's coalesced writes are not split: a refused one is replayed in source
//! order instead ([`super::apply`], [`super::replay`]).
//!
//! Rows come in the output's COPY format ([`super::copy_format`]): binary tuples, to which each
//! COPY adds the header and trailer, or text lines. A binary output's rows that its encoder left
//! to the target's input functions come as text and go in a COPY of their own, the same way.
//!
//! `OVERRIDING SYSTEM VALUE`: the direct COPY writes a key into a `GENERATED ALWAYS` identity
//! column, so the staged insert must too.
//!
//! The staging tables hold the plan's columns only (`CREATE TABLE AS ... WITH NO DATA`, not
//! `LIKE`): a target column outside the plan, `NOT NULL` with a default or filled by a trigger,
//! must not refuse the staged row before the target's own default, trigger or generation
//! expression fills it, as it does for the backfill's direct COPY.

use std::future::Future;
use std::ops::Range;
use std::pin::Pin;

use tokio_postgres::{Client, Transaction};

use crate::pg::copy_binary;
use crate::pg::ident::quote_ident;
use crate::transform::batch::OutputRows;
use crate::transform::program::{OutputPlan, WriteMode};

use super::copy::{copy, copy_parts, is_row_error, row_error_message};
use super::replay::{Op, ReplaySql, Replayed};

/// Who writes, which decides how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriterMode {
    /// Upserts COPY straight into the table: no key can be there yet.
    FreshBackfill,
    /// Upserts go through staging, `ON CONFLICT`: a resumed chunk may meet rows already copied.
    ResumedBackfill,
    /// Staged, with deletes by key; rows arrive coalesced per key.
    Follow,
}

/// How one output is written; the SQL is built once per worker connection.
pub struct OutputWriter {
    /// The COPY of rows in the output's format.
    copy_sql: String,
    /// The COPY of rows as text: the same as `copy_sql` for a text output; for a binary one,
    /// the rows its encoder left to the target's input functions.
    copy_text_sql: String,
    binary: bool,
    staged: Option<StagedSql>,
    table: String,
}

struct StagedSql {
    /// The merge and the staging table's truncation, as one simple query.
    merge: String,
    /// Deletes by key (the follow): COPY keys into a key table, delete the matching rows.
    copy_keys: String,
    /// The delete and the key table's truncation, as one simple query.
    delete: String,
    /// The follow's source-order replay of a refused write.
    replay: Option<ReplaySql>,
}

/// How the rows handed to a write are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoded {
    /// Binary COPY tuples, without the header and trailer (added per COPY).
    Binary,
    Text,
}

/// A row the target refused: its index in the batch and PostgreSQL's message.
pub type Refused = (usize, String);

#[derive(Debug, thiserror::Error)]
#[error("writing {table}")]
pub struct WriteError {
    pub table: String,
    #[source]
    pub source: tokio_postgres::Error,
}

impl OutputWriter {
    /// Prepares the writer of rows in binary COPY format when `binary`, else text; `staged`
    /// outputs get their temporary table on `client` now, outside any transaction, so that it
    /// survives chunk rollbacks.
    pub async fn new(
        client: &Client,
        output: &OutputPlan,
        mode: WriterMode,
        binary: bool,
    ) -> Result<OutputWriter, WriteError> {
        let index = output.number;
        let (resumed, coalesced) = match mode {
            WriterMode::FreshBackfill => (false, false),
            WriterMode::ResumedBackfill => (true, false),
            WriterMode::Follow => (true, true),
        };
        let table = output.table.quoted();
        let columns = output
            .columns
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ");
        let direct = output.mode == WriteMode::Upsert && !resumed;
        let err = |source| WriteError {
            table: output.table.to_string(),
            source,
        };
        let copy_into = |into: &str| {
            let text = format!("COPY {into} ({columns}) FROM STDIN");
            let formatted = if binary {
                format!("{text} (FORMAT binary)")
            } else {
                text.clone()
            };
            (formatted, text)
        };
        if direct {
            let (copy_sql, copy_text_sql) = copy_into(&table);
            return Ok(OutputWriter {
                copy_sql,
                copy_text_sql,
                binary,
                staged: None,
                table: output.table.to_string(),
            });
        }
        let stage = quote_ident(&format!("switchyard_stage_{index}"));
        client
            .batch_execute(&format!(
                "CREATE TEMP TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS AS
                 SELECT {columns} FROM {table} WITH NO DATA"
            ))
            .await
            .map_err(err)?;
        let key = output
            .key
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ");
        let keys = quote_ident(&format!("switchyard_keys_{index}"));
        client
            .batch_execute(&format!(
                "CREATE TEMP TABLE IF NOT EXISTS {keys} ON COMMIT DELETE ROWS AS
                 SELECT {key} FROM {table} WITH NO DATA"
            ))
            .await
            .map_err(err)?;
        let matches = output
            .key
            .iter()
            .map(|c| format!("t.{0} = k.{0}", quote_ident(c)))
            .collect::<Vec<_>>()
            .join(" AND ");
        let action = match output.mode {
            WriteMode::InsertIfAbsent => "DO NOTHING".to_owned(),
            WriteMode::Upsert => {
                let sets: Vec<String> = output
                    .columns
                    .iter()
                    .filter(|c| !output.key.contains(c))
                    .map(|c| format!("{0} = EXCLUDED.{0}", quote_ident(c)))
                    .collect();
                if sets.is_empty() {
                    "DO NOTHING".to_owned()
                } else {
                    format!("DO UPDATE SET {}", sets.join(", "))
                }
            }
        };
        // DISTINCT ON: one statement may not touch a row twice; the last row of a key wins. The
        // follow coalesces per key itself. ORDER BY key: concurrent chunks then take the locks
        // of shared rows (teams) in one order, which keeps their deadlocks rare; the workers
        // retry a chunk that still meets one.
        let distinct = if coalesced {
            String::new()
        } else {
            format!("DISTINCT ON ({key}) ")
        };
        let replay = if coalesced {
            Some(
                ReplaySql::new(client, index, output, &action)
                    .await
                    .map_err(err)?,
            )
        } else {
            None
        };
        let (copy_sql, copy_text_sql) = copy_into(&stage);
        Ok(OutputWriter {
            copy_sql,
            copy_text_sql,
            binary,
            staged: Some(StagedSql {
                merge: format!(
                    "INSERT INTO {table} ({columns}) OVERRIDING SYSTEM VALUE
                     SELECT {distinct}{columns} FROM {stage} ORDER BY {key}
                     ON CONFLICT ({key}) {action};
                     TRUNCATE {stage}"
                ),
                copy_keys: format!("COPY {keys} ({key}) FROM STDIN"),
                delete: format!(
                    "DELETE FROM {table} t USING {keys} k WHERE {matches}; TRUNCATE {keys}"
                ),
                replay,
            }),
            table: output.table.to_string(),
        })
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// The follow's set-based write of one output's coalesced operations: the deletes by key
    /// (COPY text lines of the key columns), then the upserts (COPY text rows), under one
    /// savepoint. When the target refuses a row, everything since the savepoint is rolled back
    /// and PostgreSQL's message returned: the caller replays in source order.
    pub async fn apply_set(
        &self,
        tx: &Transaction<'_>,
        deletes: &[u8],
        upserts: &[u8],
    ) -> Result<Option<String>, WriteError> {
        let staged = self
            .staged
            .as_ref()
            .expect("the follow's writers are staged");
        let err = |source| WriteError {
            table: self.table.clone(),
            source,
        };
        tx.batch_execute("SAVEPOINT switchyard_set")
            .await
            .map_err(err)?;
        let attempt = async {
            if !deletes.is_empty() {
                copy(tx, &staged.copy_keys, deletes).await?;
                tx.batch_execute(&staged.delete).await?;
            }
            if !upserts.is_empty() {
                self.attempt(tx, Encoded::Text, upserts).await?;
            }
            Ok::<(), tokio_postgres::Error>(())
        };
        match attempt.await {
            Ok(()) => {
                tx.batch_execute("RELEASE SAVEPOINT switchyard_set")
                    .await
                    .map_err(err)?;
                Ok(None)
            }
            Err(e) if is_row_error(&e) => {
                tx.batch_execute(
                    "ROLLBACK TO SAVEPOINT switchyard_set; RELEASE SAVEPOINT switchyard_set",
                )
                .await
                .map_err(err)?;
                Ok(Some(row_error_message(&e)))
            }
            Err(e) => Err(err(e)),
        }
    }

    /// Applies `log` one operation at a time in source order; see [`super::replay`].
    pub async fn replay(&self, tx: &Transaction<'_>, log: &[Op]) -> Result<Replayed, WriteError> {
        let replay = self
            .staged
            .as_ref()
            .and_then(|s| s.replay.as_ref())
            .expect("the follow's writers can replay");
        replay.run(tx, log).await.map_err(|source| WriteError {
            table: self.table.clone(),
            source,
        })
    }

    /// Writes `rows`, in the output's format, returning the rows the target refused (already
    /// rolled back).
    pub async fn write(
        &self,
        tx: &Transaction<'_>,
        rows: &OutputRows,
    ) -> Result<Vec<Refused>, WriteError> {
        let encoded = if self.binary {
            Encoded::Binary
        } else {
            Encoded::Text
        };
        self.write_encoded(tx, encoded, rows).await
    }

    /// Writes `rows` given as COPY text lines: a binary output's rows its encoder left to the
    /// target's input functions ([`crate::transform::copy_binary`]).
    pub async fn write_text(
        &self,
        tx: &Transaction<'_>,
        rows: &OutputRows,
    ) -> Result<Vec<Refused>, WriteError> {
        self.write_encoded(tx, Encoded::Text, rows).await
    }

    async fn write_encoded(
        &self,
        tx: &Transaction<'_>,
        encoded: Encoded,
        rows: &OutputRows,
    ) -> Result<Vec<Refused>, WriteError> {
        let mut refused = Vec::new();
        if !rows.is_empty() {
            self.write_range(tx, encoded, rows, 0..rows.len(), &mut refused)
                .await?;
        }
        Ok(refused)
    }

    fn write_range<'a>(
        &'a self,
        tx: &'a Transaction<'_>,
        encoded: Encoded,
        rows: &'a OutputRows,
        range: Range<usize>,
        refused: &'a mut Vec<Refused>,
    ) -> Pin<Box<dyn Future<Output = Result<(), WriteError>> + Send + 'a>> {
        Box::pin(async move {
            let err = |source| WriteError {
                table: self.table.clone(),
                source,
            };
            tx.batch_execute("SAVEPOINT switchyard_batch")
                .await
                .map_err(err)?;
            match self.attempt(tx, encoded, rows.slice(range.clone())).await {
                Ok(()) => {
                    tx.batch_execute("RELEASE SAVEPOINT switchyard_batch")
                        .await
                        .map_err(err)?;
                    Ok(())
                }
                Err(e) if is_row_error(&e) => {
                    tx.batch_execute("ROLLBACK TO SAVEPOINT switchyard_batch; RELEASE SAVEPOINT switchyard_batch")
                        .await
                        .map_err(err)?;
                    if range.len() == 1 {
                        refused.push((range.start, row_error_message(&e)));
                        return Ok(());
                    }
                    let mid = range.start + range.len() / 2;
                    self.write_range(tx, encoded, rows, range.start..mid, refused)
                        .await?;
                    self.write_range(tx, encoded, rows, mid..range.end, refused)
                        .await
                }
                Err(e) => Err(err(e)),
            }
        })
    }

    async fn attempt(
        &self,
        tx: &Transaction<'_>,
        encoded: Encoded,
        data: &[u8],
    ) -> Result<(), tokio_postgres::Error> {
        match encoded {
            Encoded::Binary => {
                let parts = [copy_binary::HEADER, data, copy_binary::TRAILER];
                copy_parts(tx, &self.copy_sql, &parts).await?
            }
            Encoded::Text => copy(tx, &self.copy_text_sql, data).await?,
        };
        if let Some(staged) = &self.staged {
            tx.batch_execute(&staged.merge).await?;
        }
        Ok(())
    }
}

impl crate::error::Classify for WriteError {
    fn class(&self) -> crate::error::ErrorClass {
        self.source.class()
    }
}
