//! `switchyard.dead_letters`: rows that could not be transformed or that the target refused.
//! They are written in the same transaction as the rows of their chunk, so a chunk's rows and
//! its rejects land together or not at all.

use tokio_postgres::GenericClient;

use crate::transform::row::Rejected;

/// A rejected row and where it was going.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub rejected: Rejected,
    /// The output table the target refused it for; `None` when the transform rejected it.
    pub output_table: Option<String>,
}

pub async fn write(
    client: &impl GenericClient,
    migration: &str,
    phase: &str,
    source_table: &str,
    letters: &[DeadLetter],
) -> Result<(), tokio_postgres::Error> {
    if letters.is_empty() {
        return Ok(());
    }
    let outputs: Vec<Option<&str>> = letters.iter().map(|l| l.output_table.as_deref()).collect();
    let keys: Vec<&str> = letters.iter().map(|l| l.rejected.key.as_str()).collect();
    let rows: Vec<&str> = letters.iter().map(|l| l.rejected.row.as_str()).collect();
    let reasons: Vec<&str> = letters.iter().map(|l| l.rejected.reason.as_str()).collect();
    client
        .execute(
            "INSERT INTO switchyard.dead_letters
                    (migration, phase, source_table, output_table, source_key, row_data, reason)
             SELECT $1, $2, $3, o, k::jsonb, r::jsonb, why
               FROM unnest($4::text[], $5::text[], $6::text[], $7::text[]) AS u(o, k, r, why)",
            &[
                &migration,
                &phase,
                &source_table,
                &outputs,
                &keys,
                &rows,
                &reasons,
            ],
        )
        .await?;
    Ok(())
}
