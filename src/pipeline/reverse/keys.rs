//! Legacy keys for rows the new application created (their legacy key expression is NULL):
//! allocated from the rule's `sequence` on the legacy side and kept in
//! `switchyard.reverse_keys` on the target (see [`crate::checkpoint::reverse`]), so that later
//! changes of the same row, and rules referencing it through `switchyard.legacy_key`, find the
//! same legacy row.
//!
//! The allocation commits on the target before the legacy rows are written: a crash between
//! the two replays the change, which finds the key already kept. A crash between `nextval` and
//! that commit leaves a gap in the sequence, nothing else.

use std::collections::HashMap;

use tokio_postgres::Client;

use super::error::ReverseError;

/// What identifies an allocation: the migration, the legacy table as the rule names it, and
/// the output table (for the operator reading `switchyard.reverse_keys`).
pub struct KeySpace<'a> {
    pub migration: &'a str,
    pub legacy_table: &'a str,
    pub output_table: &'a str,
}

/// The legacy keys kept for these output keys, by output key.
pub async fn kept(
    target: &Client,
    space: &KeySpace<'_>,
    output_keys: &[String],
) -> Result<HashMap<String, String>, ReverseError> {
    let rows = target
        .query(
            "SELECT output_key, legacy_key FROM switchyard.reverse_keys
              WHERE migration = $1 AND legacy_table = $2 AND output_key = ANY($3)",
            &[&space.migration, &space.legacy_table, &output_keys],
        )
        .await
        .map_err(ReverseError::target(
            "reading the allocated legacy keys (switchyard.reverse_keys)",
        ))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The legacy keys of these output keys: the ones kept, and new ones from `sequence` (on the
/// legacy side) for the others, kept before this returns.
pub async fn allocate(
    target: &Client,
    legacy: &Client,
    space: &KeySpace<'_>,
    sequence: &str,
    output_keys: &[String],
) -> Result<HashMap<String, String>, ReverseError> {
    let mut keys = kept(target, space, output_keys).await?;
    let missing: Vec<String> = output_keys
        .iter()
        .filter(|k| !keys.contains_key(*k))
        .cloned()
        .collect();
    if missing.is_empty() {
        return Ok(keys);
    }
    let count = i64::try_from(missing.len()).unwrap_or(i64::MAX);
    let rows = legacy
        .query(
            "SELECT nextval($1::text::regclass)::text FROM generate_series(1::bigint, $2)",
            &[&sequence, &count],
        )
        .await
        .map_err(ReverseError::legacy(format!(
            "allocating {count} legacy keys from sequence {sequence}"
        )))?;
    let fresh: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    target
        .execute(
            "INSERT INTO switchyard.reverse_keys
                    (migration, legacy_table, output_table, output_key, legacy_key)
             SELECT $1, $2, $3, o, l FROM unnest($4::text[], $5::text[]) AS u(o, l)
             ON CONFLICT DO NOTHING",
            &[
                &space.migration,
                &space.legacy_table,
                &space.output_table,
                &missing,
                &fresh,
            ],
        )
        .await
        .map_err(ReverseError::target(
            "keeping the allocated legacy keys (switchyard.reverse_keys)",
        ))?;
    keys.extend(kept(target, space, &missing).await?);
    Ok(keys)
}
