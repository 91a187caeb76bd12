//! Rows the legacy tables refuse, under the plan's `on_error = "dead-letter"`: the batch's
//! upsert runs in a savepoint; refused (SQLSTATE class 22 or 23), it runs again row by row, and
//! each row refused goes to `switchyard.dead_letters` on the target with phase `reverse`, the
//! legacy key and the row, while the others are written.

use tokio_postgres::Client;

use crate::plan::ReverseTable;

use super::error::ReverseError;
use super::output::Column;

/// Runs `write` inside a savepoint: `Some(reason)` when the legacy table refused the rows
/// (SQLSTATE classes 22, data exception, and 23, integrity constraint violation), rolled back
/// to the savepoint; any other error is returned.
pub(super) async fn savepoint(
    tx: &tokio_postgres::Transaction<'_>,
    write: impl std::future::Future<Output = Result<u64, tokio_postgres::Error>>,
) -> Result<Option<String>, tokio_postgres::Error> {
    tx.batch_execute("SAVEPOINT switchyard_rows").await?;
    match write.await {
        Ok(_) => {
            tx.batch_execute("RELEASE SAVEPOINT switchyard_rows")
                .await?;
            Ok(None)
        }
        Err(e)
            if e.code()
                .is_some_and(|c| c.code().starts_with("22") || c.code().starts_with("23")) =>
        {
            tx.batch_execute("ROLLBACK TO SAVEPOINT switchyard_rows")
                .await?;
            Ok(Some(crate::error::Chain::new(&e).to_string()))
        }
        Err(e) => Err(e),
    }
}

/// A row a legacy table refused, for `switchyard.dead_letters` (phase `reverse`): the output
/// table it came from, the legacy table, the legacy key and the row as JSON objects.
pub(super) struct DeadLetter {
    output: String,
    legacy: String,
    key: serde_json::Value,
    row: serde_json::Value,
    reason: String,
}

impl DeadLetter {
    pub(super) fn new(
        rule: &ReverseTable,
        legacy: &str,
        columns: &[Column],
        key: &[String],
        values: &[Option<String>],
        reason: String,
    ) -> DeadLetter {
        let object = |pairs: Vec<(&String, serde_json::Value)>| {
            serde_json::Value::Object(pairs.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        };
        DeadLetter {
            output: rule.from.to_string(),
            legacy: legacy.to_owned(),
            key: object(
                rule.key
                    .iter()
                    .zip(key)
                    .map(|((c, _), v)| (c, v.clone().into()))
                    .collect(),
            ),
            row: object(
                columns
                    .iter()
                    .zip(values)
                    .map(|(c, v)| (&c.name, v.clone().into()))
                    .collect(),
            ),
            reason,
        }
    }

    pub(super) async fn record(
        target: &Client,
        migration: &str,
        letters: &[DeadLetter],
    ) -> Result<(), ReverseError> {
        for l in letters {
            target
                .execute(
                    "INSERT INTO switchyard.dead_letters
                            (migration, phase, source_table, output_table, source_key, row_data, reason)
                     VALUES ($1, 'reverse', $2, $3, $4::text::jsonb, $5::text::jsonb, $6)",
                    &[
                        &migration,
                        &l.output,
                        &l.legacy,
                        &l.key.to_string(),
                        &l.row.to_string(),
                        &l.reason,
                    ],
                )
                .await
                .map_err(ReverseError::target(
                    "recording a row the legacy side refused in switchyard.dead_letters",
                ))?;
        }
        Ok(())
    }
}
