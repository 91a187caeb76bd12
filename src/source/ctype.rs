//! Reads the source database's `LC_CTYPE`, which decides what PostgreSQL's `upper` and `lower`
//! return there, and hands it to the transforms (see [`crate::transform::case_map`]).
//!
//! Every command that transforms rows (backfill, follow, verify) calls [`use_source_ctype`]
//! before its first row, so the backfill, the consumer and `verify` map case alike.

use tokio_postgres::Client;

use crate::transform::case_map::{self, CaseMapping};

/// The case mapping of the database `client` is connected to. `datlocprovider` is read through
/// `to_jsonb` because servers before 15 have no such column (their provider is always libc).
pub async fn case_mapping(client: &Client) -> Result<(CaseMapping, String), tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT datctype::text, coalesce(to_jsonb(d) ->> 'datlocprovider', 'c')
               FROM pg_database d WHERE datname = current_database()",
            &[],
        )
        .await?;
    let (ctype, provider): (String, String) = (row.get(0), row.get(1));
    Ok((CaseMapping::for_ctype(&ctype, &provider), ctype))
}

/// Reads the source's mapping and makes it the one this process's transforms use.
pub async fn use_source_ctype(client: &Client) -> Result<(), tokio_postgres::Error> {
    let (mapping, ctype) = case_mapping(client).await?;
    if !mapping.is_exact() {
        tracing::warn!(
            ctype,
            "upper() and lower() of non-ASCII text go to the dead-letter table: switchyard \
             carries the case tables of the C, POSIX and C.UTF-8 ctypes only"
        );
    }
    case_map::set(mapping);
    Ok(())
}
