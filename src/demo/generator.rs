//! The seed migration's legacy data: messy on purpose, and deterministic.
//!
//! The data carries every kind of mess the `legacy_to_projects` rules must clean up (see
//! `rows`). It comes from one fixed-seed PRNG per table, so a scale factor always yields
//! byte-identical tables and runs can be compared.
//!
//! Rows stream into `COPY ... FROM STDIN` (text format) in batches of `COPY_BATCH_BYTES`: a
//! table is never held in memory, and generating the next batch overlaps sending the last one.

mod copy_text;
mod counts;
mod rows;

use bytes::{Bytes, BytesMut};
use futures_util::{pin_mut, SinkExt};
use thiserror::Error;
use tokio_postgres::Client;

use crate::demo::prng::Prng;
use copy_text::CopyRow;
pub use counts::LoadedCounts;
use rows::{item_row, project_row, service_row, LARGE_BODY_BYTES};

pub(crate) use rows::{messy_email, priority, ITEM_STATUSES, PROJECT_STATUSES};

/// The legacy DDL, executed before loading.
pub const LEGACY_SCHEMA_SQL: &str =
    include_str!("../../transforms/legacy_to_projects/legacy_schema.sql");

/// The fixed seed; each table mixes in its own tag so tables do not share a stream.
const SEED: u64 = 0x5357_4954_4348_5944;
/// Per-batch COPY payload: large enough to amortize a round trip, small enough to stream.
const COPY_BATCH_BYTES: usize = 1 << 20;

/// Why loading failed.
#[derive(Debug, Error)]
pub enum GeneratorError {
    #[error("the scale factor must be a positive finite number, got {0}")]
    BadScale(f64),
    #[error("{step} failed")]
    Sql {
        step: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
}

fn sql_error(step: &'static str) -> impl FnOnce(tokio_postgres::Error) -> GeneratorError {
    move |source| GeneratorError::Sql { step, source }
}

/// Create the legacy tables in `client`'s database and fill them at `scale` (1.0 = 100k
/// projects, 20k services, 1M items); then set the sequences past the ids and ANALYZE.
pub async fn load_legacy(client: &Client, scale: f64) -> Result<LoadedCounts, GeneratorError> {
    if !(scale.is_finite() && scale > 0.0) {
        return Err(GeneratorError::BadScale(scale));
    }
    let planned = LoadedCounts::for_scale(scale);
    client
        .batch_execute(LEGACY_SCHEMA_SQL)
        .await
        .map_err(sql_error("creating the legacy tables"))?;

    let mut rng = Prng::new(SEED ^ 1);
    let company_projects = copy_rows(
        client,
        "COPY company_projects (id, company_id, name, type, status, owner_email, budget, \
         start_date, created_at, updated_at, meta) FROM STDIN",
        planned.company_projects,
        |row, id| project_row(row, &mut rng, &planned, id),
    )
    .await?;
    let mut rng = Prng::new(SEED ^ 2);
    let company_services = copy_rows(
        client,
        "COPY company_services (id, company_id, service_name, type, status, contact_email, \
         monthly_fee, created_at, updated_at) FROM STDIN",
        planned.company_services,
        |row, id| service_row(row, &mut rng, &planned, id),
    )
    .await?;
    let mut rng = Prng::new(SEED ^ 3);
    // Top-level items so far with their project (16 bytes each): sub-tasks pick one.
    let mut top_level = Vec::new();
    let vortex_items = copy_rows(
        client,
        "COPY vortex_items (id, project_id, parent_item_id, title, status, priority, \
         assignee_email, due, body, created_at, updated_at) FROM STDIN",
        planned.vortex_items,
        |row, id| item_row(row, &mut rng, &planned, &mut top_level, id),
    )
    .await?;

    client
        .batch_execute(
            "SELECT setval(pg_get_serial_sequence('company_projects', 'id'), max(id)) FROM company_projects;
             SELECT setval(pg_get_serial_sequence('company_services', 'id'), max(id)) FROM company_services;
             SELECT setval(pg_get_serial_sequence('vortex_items', 'id'), max(id)) FROM vortex_items;
             ANALYZE company_projects, company_services, vortex_items;",
        )
        .await
        .map_err(sql_error("setting the sequences and analyzing"))?;
    Ok(LoadedCounts {
        companies: planned.companies,
        company_projects,
        company_services,
        vortex_items,
    })
}

/// Stream `row_count` rows (ids `1..=row_count`) into `statement`, one batch at a time.
async fn copy_rows(
    client: &Client,
    statement: &str,
    row_count: u64,
    mut write_row: impl FnMut(&mut CopyRow, u64),
) -> Result<u64, GeneratorError> {
    let sink = client
        .copy_in::<_, Bytes>(statement)
        .await
        .map_err(sql_error("starting COPY"))?;
    pin_mut!(sink);
    let mut row = CopyRow {
        buf: BytesMut::with_capacity(COPY_BATCH_BYTES + LARGE_BODY_BYTES * 2),
    };
    for id in 1..=row_count {
        write_row(&mut row, id);
        if row.buf.len() >= COPY_BATCH_BYTES {
            let batch = row.buf.split().freeze();
            sink.send(batch)
                .await
                .map_err(sql_error("sending COPY data"))?;
        }
    }
    if !row.buf.is_empty() {
        let batch = row.buf.split().freeze();
        sink.send(batch)
            .await
            .map_err(sql_error("sending COPY data"))?;
    }
    sink.finish().await.map_err(sql_error("finishing COPY"))
}
