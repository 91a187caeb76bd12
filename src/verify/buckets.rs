//! Bucket hashes on both sides, then rows by key only where a bucket differs.
//!
//! ```text
//!  bucket(row) = (hashtextextended(ROW(key)::text, 0) & max int8) % B      B = rows / BUCKET_ROWS
//!  per bucket, on each side:  count(*), sum(hashtextextended(ROW(columns)::text, 0))
//!  buckets equal on both sides -> done; the others -> FULL JOIN by key -> suspects
//! ```
//!
//! Both sides are aggregated independently, by the same SQL over the same column types (the
//! transformed rows sit in a temp table `LIKE` the output), so a value compares by its type's
//! output text: `2024-01-01 10:00` written into a `timestamptz` column and the target's
//! `2024-01-01 10:00:00+00` are the same value. Only differing buckets are joined row by row,
//! and the differences land in a temp table (`suspects`), never in the tool's memory.
//!
//! `insert_if_absent` outputs compare the *distinct keys* only: many source rows make one
//! output row, and output rows outlive their source rows by design, so an extra key is
//! `retained`, not a difference.

use std::collections::HashMap;

use tokio_postgres::Client;

use crate::pg::ident::{quote_ident, quote_literal};

use super::error::VerifyError;
use super::outputs::OutputSpec;
use super::scan::temp_table;

/// Rows per bucket aimed at: a differing bucket costs a join of this many rows per side.
pub const BUCKET_ROWS: i64 = 10_000;

/// The temp table of keys that differed, with what each side held, across all outputs.
pub const SUSPECTS: &str = "pg_temp.switchyard_verify_suspects";

/// What comparing the buckets of one output found.
#[derive(Debug, Clone, Default)]
pub struct BucketSummary {
    pub source_rows: i64,
    pub target_rows: i64,
    pub buckets: i64,
    pub differing_buckets: i64,
}

/// Creates the suspects table. `kind` is `missing`, `extra`, `different` or `retained`;
/// `equal_seen` and `stable` are updated by the rechecks.
pub async fn create_suspects(target: &Client) -> Result<(), VerifyError> {
    target
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {SUSPECTS};
             CREATE TEMP TABLE {} (
                 spec int NOT NULL, k text NOT NULL, kind text NOT NULL,
                 source_row text, target_row text, detail text,
                 equal_seen bool NOT NULL DEFAULT false, stable bool NOT NULL DEFAULT true)",
            SUSPECTS.trim_start_matches("pg_temp.")
        ))
        .await
        .map_err(VerifyError::target("creating the suspects table"))
}

/// The transformed rows of `spec` as a relation aliased `x` (distinct keys for keys-only).
pub fn source_relation(spec_index: usize, spec: &OutputSpec) -> String {
    let temp = temp_table(spec_index);
    if spec.keys_only() {
        let key: Vec<String> = spec.key.iter().map(|c| quote_ident(c)).collect();
        format!("(SELECT DISTINCT {} FROM {temp}) x", key.join(", "))
    } else {
        format!("{temp} x")
    }
}

/// The output table as a relation aliased `x`.
pub fn target_relation(spec: &OutputSpec) -> String {
    format!("{} x", spec.table.quoted())
}

fn bucket_of(spec: &OutputSpec) -> String {
    format!(
        "(hashtextextended({}, 0) & 9223372036854775807) % $1::int8",
        spec.key_text("x")
    )
}

/// Compares `spec` bucket by bucket and records every differing key in [`SUSPECTS`].
pub async fn compare(
    target: &Client,
    spec_index: usize,
    spec: &OutputSpec,
) -> Result<BucketSummary, VerifyError> {
    let (source, output) = (source_relation(spec_index, spec), target_relation(spec));
    let counting = format!("counting the rows of {}", spec.table);
    let counts = target
        .query_one(
            &format!("SELECT (SELECT count(*) FROM {source}), (SELECT count(*) FROM {output})"),
            &[],
        )
        .await
        .map_err(VerifyError::target(counting))?;
    let (source_rows, target_rows): (i64, i64) = (counts.get(0), counts.get(1));
    let buckets = (source_rows.max(target_rows) + BUCKET_ROWS - 1) / BUCKET_ROWS;
    let buckets = buckets.max(1);
    let hashes = |relation: &str| {
        format!(
            "SELECT {}, count(*), sum(hashtextextended({}, 0))::text FROM {relation} GROUP BY 1",
            bucket_of(spec),
            spec.row_text("x")
        )
    };
    let hashing = format!("hashing the buckets of {}", spec.table);
    let read = |rows: Vec<tokio_postgres::Row>| -> HashMap<i64, (i64, String)> {
        rows.iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2))))
            .collect()
    };
    let source_buckets = read(
        target
            .query(&hashes(&source), &[&buckets])
            .await
            .map_err(VerifyError::target(hashing.clone()))?,
    );
    let target_buckets = read(
        target
            .query(&hashes(&output), &[&buckets])
            .await
            .map_err(VerifyError::target(hashing))?,
    );
    let mut differing: Vec<i64> = (0..buckets)
        .filter(|b| source_buckets.get(b) != target_buckets.get(b))
        .collect();
    differing.sort_unstable();
    if !differing.is_empty() {
        record_suspects(target, spec_index, spec, buckets, &differing).await?;
    }
    Ok(BucketSummary {
        source_rows,
        target_rows,
        buckets,
        differing_buckets: differing.len() as i64,
    })
}

/// FULL JOIN by key over the differing buckets; every key not equal on both sides becomes a
/// suspect with both row images and, for a changed row, the columns that differ.
async fn record_suspects(
    target: &Client,
    spec_index: usize,
    spec: &OutputSpec,
    buckets: i64,
    differing: &[i64],
) -> Result<(), VerifyError> {
    let side = |relation: &str| {
        let values: Vec<String> = spec
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!("x.{}::text AS c{i}", quote_ident(c)))
            .collect();
        format!(
            "SELECT {} AS k, {} AS r{}{} FROM {relation} WHERE {} = ANY($2::int8[])",
            spec.key_text("x"),
            spec.row_text("x"),
            if spec.keys_only() { "" } else { ", " },
            if spec.keys_only() {
                String::new()
            } else {
                values.join(", ")
            },
            bucket_of(spec)
        )
    };
    let detail = if spec.keys_only() {
        "NULL".to_owned()
    } else {
        let columns: Vec<String> = spec
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                format!(
                    "CASE WHEN s.c{i} IS DISTINCT FROM t.c{i} THEN jsonb_build_array({}, t.c{i}, s.c{i}) END",
                    quote_literal(c)
                )
            })
            .collect();
        format!(
            "CASE WHEN s.k IS NOT NULL AND t.k IS NOT NULL THEN to_jsonb(array_remove(ARRAY[{}]::jsonb[], NULL))::text END",
            columns.join(", ")
        )
    };
    let extra = if spec.keys_only() {
        "retained"
    } else {
        "extra"
    };
    let sql = format!(
        "INSERT INTO {SUSPECTS} (spec, k, kind, source_row, target_row, detail)
         SELECT $3::int4, coalesce(s.k, t.k),
                CASE WHEN t.k IS NULL THEN 'missing' WHEN s.k IS NULL THEN '{extra}' ELSE 'different' END,
                s.r, t.r, {detail}
           FROM ({}) s FULL JOIN ({}) t ON s.k = t.k
          WHERE s.k IS NULL OR t.k IS NULL OR s.r IS DISTINCT FROM t.r",
        side(&source_relation(spec_index, spec)),
        side(&target_relation(spec))
    );
    target
        .execute(&sql, &[&buckets, &differing, &(spec_index as i32)])
        .await
        .map_err(VerifyError::target(format!(
            "comparing the differing buckets of {} row by row",
            spec.table
        )))?;
    Ok(())
}
