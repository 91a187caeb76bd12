//! The follow's fallback: one output's operations of a group applied one by one, in source
//! order, when its set-based write was refused.
//!
//! Why: coalescing per key applies the *last* version of every row in one statement, an order
//! the source never had. Rows that exchanged a unique value (a swap through a temporary value,
//! a 3-cycle, a value moved from a deleted or updated row to a new one, within one source
//! transaction or across the group's transactions) are each refused by the other's old value,
//! although every state the source went through was valid. Replayed in source order, each
//! intermediate state is one the source accepted, so a refusal here is the target's own (a
//! constraint or a type the source does not have), never the tool's order.
//!
//! How, without a round trip per operation:
//! ```text
//!   COPY log (seq, is_delete, output columns) ──> DO block: FOR op IN log ORDER BY seq
//!        1. all or nothing, under a savepoint: the common fallback (a swap) costs no
//!           subtransaction per operation
//!        2. only if 1 was refused: each operation in its own subtransaction (BEGIN ...
//!           EXCEPTION), refusals recorded in pg_temp.switchyard_refused
//! ```
//! Deferrable constraints are checked when PostgreSQL checks them (end of statement, or the
//! group's commit for `INITIALLY DEFERRED`); a refusal at commit stops the consumer with the
//! constraint's name rather than lose a row.

use tokio_postgres::{Client, Transaction};

use crate::pg::ident::quote_ident;
use crate::transform::program::OutputPlan;

use super::copy::{copy, is_row_error};

/// One operation on an output, with the change it came from (for dead letters).
#[derive(Debug)]
pub enum Op {
    /// The output row, as a COPY text line.
    Upsert { row: Vec<u8>, origin: u32 },
    /// The output key, as COPY text fields of the key columns.
    Delete { key: Vec<u8>, origin: u32 },
}

impl Op {
    pub(super) fn origin(&self) -> u32 {
        match self {
            Op::Upsert { origin, .. } | Op::Delete { origin, .. } => *origin,
        }
    }
}

/// What a replay refused: (index in the log, PostgreSQL's message).
#[derive(Debug, Default)]
pub struct Replayed {
    pub refused: Vec<(usize, String)>,
}

/// The SQL of one output's replay, built once per apply session.
pub struct ReplaySql {
    copy_log: String,
    /// Every operation in one subtransaction, then the log's truncation.
    all_or_nothing: String,
    /// Every operation in a subtransaction of its own, then the log's truncation.
    one_by_one: String,
    key_positions: Vec<usize>,
    column_count: usize,
}

impl ReplaySql {
    /// Creates the output's log table (and the session's refusal table) on `client`. Not `ON
    /// COMMIT DELETE ROWS`: PostgreSQL truncates every such table at each commit that touched
    /// a temporary table, which would tax every group; a replay empties both itself, and a
    /// rolled-back group takes their rows with it.
    pub async fn new(
        client: &Client,
        index: usize,
        output: &OutputPlan,
        action: &str,
    ) -> Result<ReplaySql, tokio_postgres::Error> {
        let table = output.table.quoted();
        let log = quote_ident(&format!("switchyard_log_{index}"));
        let columns: Vec<String> = output.columns.iter().map(|c| quote_ident(c)).collect();
        let key: Vec<String> = output.key.iter().map(|c| quote_ident(c)).collect();
        client
            .batch_execute(&format!(
                "CREATE TEMP TABLE IF NOT EXISTS {log} AS
                 SELECT NULL::int4 AS switchyard_seq, NULL::bool AS switchyard_delete, {columns}
                   FROM {table} WITH NO DATA;
                 CREATE TEMP TABLE IF NOT EXISTS switchyard_refused (seq int4, reason text)",
                columns = columns.join(", ")
            ))
            .await?;
        let fields: Vec<String> = columns
            .iter()
            .map(|c| format!("switchyard_op.{c}"))
            .collect();
        let matches: Vec<String> = key
            .iter()
            .map(|k| format!("t.{k} = switchyard_op.{k}"))
            .collect();
        let statement = format!(
            "IF switchyard_op.switchyard_delete THEN
                 DELETE FROM {table} t WHERE {matches};
             ELSE
                 INSERT INTO {table} ({columns}) OVERRIDING SYSTEM VALUE VALUES ({fields})
                 ON CONFLICT ({key}) {action};
             END IF;",
            matches = matches.join(" AND "),
            columns = columns.join(", "),
            fields = fields.join(", "),
            key = key.join(", "),
        );
        let guarded = format!(
            "BEGIN
                 {statement}
             EXCEPTION WHEN integrity_constraint_violation OR data_exception THEN
                 GET STACKED DIAGNOSTICS switchyard_detail = PG_EXCEPTION_DETAIL;
                 INSERT INTO pg_temp.switchyard_refused
                 VALUES (switchyard_op.switchyard_seq,
                         SQLSTATE || ': ' || SQLERRM || coalesce(' (' || nullif(switchyard_detail, '') || ')', ''));
             END;"
        );
        let block = |body: &str| {
            // A dollar-quote tag no identifier of the output contains.
            let mut tag = "$switchyard_replay$".to_owned();
            while body.contains(&tag) {
                tag.insert(tag.len() - 1, '_');
            }
            format!(
                "DO {tag}
                 #variable_conflict use_column
                 DECLARE
                     switchyard_op record;
                     switchyard_detail text;
                 BEGIN
                     FOR switchyard_op IN SELECT * FROM pg_temp.{log} ORDER BY switchyard_seq LOOP
                         {body}
                     END LOOP;
                 END
                 {tag};
                 TRUNCATE pg_temp.{log}"
            )
        };
        Ok(ReplaySql {
            copy_log: format!(
                "COPY pg_temp.{log} (switchyard_seq, switchyard_delete, {}) FROM STDIN",
                columns.join(", ")
            ),
            all_or_nothing: block(&statement),
            one_by_one: block(&guarded),
            key_positions: output.key_positions.clone(),
            column_count: output.columns.len(),
        })
    }

    /// Applies `log` in order inside `tx`; returns the operations the target refused (already
    /// rolled back, each alone).
    pub async fn run(
        &self,
        tx: &Transaction<'_>,
        log: &[Op],
    ) -> Result<Replayed, tokio_postgres::Error> {
        copy(tx, &self.copy_log, &self.log_text(log)).await?;
        tx.batch_execute("SAVEPOINT switchyard_replay").await?;
        match tx.batch_execute(&self.all_or_nothing).await {
            Ok(()) => {
                tx.batch_execute("RELEASE SAVEPOINT switchyard_replay")
                    .await?;
                return Ok(Replayed::default());
            }
            Err(e) if is_row_error(&e) => {
                tx.batch_execute(
                    "ROLLBACK TO SAVEPOINT switchyard_replay; RELEASE SAVEPOINT switchyard_replay",
                )
                .await?;
            }
            Err(e) => return Err(e),
        }
        tx.batch_execute(&self.one_by_one).await?;
        let refused = tx
            .query(
                "DELETE FROM pg_temp.switchyard_refused RETURNING seq, reason",
                &[],
            )
            .await?
            .iter()
            .map(|r| (r.get::<_, i32>(0) as usize, r.get(1)))
            .collect();
        Ok(Replayed { refused })
    }

    /// The log as COPY text: sequence, whether it is a delete, then the output's columns (a
    /// delete carries its key columns only, the others NULL).
    fn log_text(&self, log: &[Op]) -> Vec<u8> {
        let mut text = Vec::with_capacity(log.len() * 64);
        let mut fields: Vec<&[u8]> = Vec::with_capacity(self.column_count);
        for (seq, op) in log.iter().enumerate() {
            text.extend_from_slice(seq.to_string().as_bytes());
            match op {
                Op::Upsert { row, .. } => {
                    text.extend_from_slice(b"\tf\t");
                    text.extend_from_slice(row);
                }
                Op::Delete { key, .. } => {
                    text.extend_from_slice(b"\tt");
                    fields.clear();
                    fields.resize(self.column_count, b"\\N");
                    let key = key.strip_suffix(b"\n").unwrap_or(key);
                    for (field, &position) in key.split(|b| *b == b'\t').zip(&self.key_positions) {
                        fields[position] = field;
                    }
                    for field in &fields {
                        text.push(b'\t');
                        text.extend_from_slice(field);
                    }
                    text.push(b'\n');
                }
            }
        }
        text
    }
}
