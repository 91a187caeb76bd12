//! Streams a chunk of a source table out with `COPY (SELECT ...) TO STDOUT`, in batches of
//! whole lines, so that memory per worker is a batch, never a chunk or a table.
//!
//! Rows are copied into a batch buffer; a row of a batch's size or more goes out as a batch
//! of its own, as the very bytes the connection read (no copy), so a 100 MB row
//! costs 100 MB here, not 200.

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tokio_postgres::{Client, CopyOutStream};

use crate::checkpoint::Chunk;
use crate::pg::ident::quote_ident;
use crate::transform::program::SourcePlan;

use super::chunks::ctid_predicate;

/// Bytes of COPY text handed to the transform at once: big enough to amortize a hop to the
/// rayon pool and a COPY round trip into the target, small enough to keep memory flat.
pub const BATCH_BYTES: usize = 1024 * 1024;

/// The COPY statement for a chunk: only the columns the plan reads, key columns first.
pub fn copy_sql(source: &SourcePlan, chunk: &Chunk) -> String {
    let columns: Vec<String> = source.columns.iter().map(|c| quote_ident(c)).collect();
    format!(
        "COPY (SELECT {} FROM {} WHERE {}) TO STDOUT",
        columns.join(", "),
        source.table.quoted(),
        ctid_predicate(chunk)
    )
}

/// Starts the COPY of a chunk; `client` is in the worker's snapshot transaction.
pub async fn start(
    client: &Client,
    source: &SourcePlan,
    chunk: &Chunk,
) -> Result<Batches, tokio_postgres::Error> {
    let stream = client.copy_out(&copy_sql(source, chunk)).await?;
    Ok(Batches {
        stream: Box::pin(stream),
        buf: BytesMut::with_capacity(BATCH_BYTES),
        held: None,
        ended: false,
    })
}

/// COPY output regrouped into batches of whole lines (PostgreSQL sends one row per message).
pub struct Batches {
    stream: std::pin::Pin<Box<CopyOutStream>>,
    buf: BytesMut,
    /// A row of `BATCH_BYTES` or more read while `buf` held rows: the next batch, alone.
    held: Option<Bytes>,
    /// The stream must not be polled after its end: the connection has moved on by then.
    ended: bool,
}

impl Batches {
    /// The next batch, or `None` at the end of the chunk.
    pub async fn next(&mut self) -> Result<Option<Bytes>, tokio_postgres::Error> {
        if let Some(row) = self.held.take() {
            return Ok(Some(row));
        }
        while !self.ended && self.buf.len() < BATCH_BYTES {
            match self.stream.next().await {
                Some(row) => {
                    let row = row?;
                    if row.len() < BATCH_BYTES {
                        self.buf.extend_from_slice(&row);
                    } else if self.buf.is_empty() {
                        return Ok(Some(row));
                    } else {
                        self.held = Some(row);
                        break;
                    }
                }
                None => self.ended = true,
            }
        }
        if self.buf.is_empty() {
            return Ok(None);
        }
        Ok(Some(
            std::mem::replace(&mut self.buf, BytesMut::with_capacity(BATCH_BYTES)).freeze(),
        ))
    }
}
