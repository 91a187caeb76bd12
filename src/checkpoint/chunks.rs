//! `switchyard.chunks`: the backfill's chunk list. A chunk turns [`ChunkStatus::Done`] in the same target
//! transaction that writes its rows, so a chunk lands exactly once.

use std::error::Error;

use bytes::BytesMut;
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use tokio_postgres::{Client, GenericClient};

use super::leases::LeaseOwner;
use super::{ctx, CheckpointError};

/// Where a chunk stands, stored as text in `switchyard.chunks.status`. Each variant says who
/// sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkStatus {
    /// `backfill` recorded the chunk list (also the column's default); `backfill --resume`
    /// copies these again.
    Pending,
    /// The chunk copy wrote the chunk's rows; set in that same target transaction.
    Done,
}

impl ChunkStatus {
    /// The column's value; existing state keeps being read, so these never change.
    pub fn as_str(self) -> &'static str {
        match self {
            ChunkStatus::Pending => "pending",
            ChunkStatus::Done => "done",
        }
    }
}

/// Travels as the text the column holds.
impl ToSql for ChunkStatus {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        self.as_str().to_sql(ty, out)
    }

    fn accepts(ty: &Type) -> bool {
        <&str as ToSql>::accepts(ty)
    }

    to_sql_checked!();
}

/// One chunk of a source table: a range of heap blocks, copied in one target transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub source_table: String,
    pub chunk_no: i32,
    pub first_block: i64,
    /// `None` for a table's last chunk, open-ended so rows in pages added later are included.
    pub end_block: Option<i64>,
}

pub async fn insert_chunks(
    client: &Client,
    migration: &str,
    chunks: &[Chunk],
) -> Result<(), CheckpointError> {
    let tables: Vec<&str> = chunks.iter().map(|c| c.source_table.as_str()).collect();
    let nos: Vec<i32> = chunks.iter().map(|c| c.chunk_no).collect();
    let firsts: Vec<i64> = chunks.iter().map(|c| c.first_block).collect();
    let ends: Vec<Option<i64>> = chunks.iter().map(|c| c.end_block).collect();
    client
        .execute(
            "INSERT INTO switchyard.chunks
                    (migration, source_table, chunk_no, first_block, end_block, status)
             SELECT $1, *, $6 FROM unnest($2::text[], $3::int[], $4::int8[], $5::int8[])",
            &[
                &migration,
                &tables,
                &nos,
                &firsts,
                &ends,
                &ChunkStatus::Pending,
            ],
        )
        .await
        .map_err(ctx("recording the chunk list"))?;
    Ok(())
}

/// Marks a chunk done, inside the transaction that wrote its rows, if `owner` still holds its
/// lease; `false` when it does not (taken over after the lease expired): the caller must roll
/// the transaction back. Why that makes every chunk land once: see [`super::leases`].
pub async fn finish_chunk(
    tx: &impl GenericClient,
    migration: &str,
    chunk: &Chunk,
    owner: &LeaseOwner,
    row_count: i64,
    rejected_count: i64,
) -> Result<bool, CheckpointError> {
    let marked = tx
        .execute(
            "UPDATE switchyard.chunks SET status = $6, row_count = $4, rejected_count = $5,
                    finished_at = clock_timestamp(), copied_by = $7, lease_expires_at = NULL
              WHERE migration = $1 AND source_table = $2 AND chunk_no = $3
                AND lease_owner = $7 AND status <> $6",
            &[
                &migration,
                &chunk.source_table,
                &chunk.chunk_no,
                &row_count,
                &rejected_count,
                &ChunkStatus::Done,
                &owner.0,
            ],
        )
        .await
        .map_err(ctx("marking a chunk done"))?;
    Ok(marked == 1)
}

/// Per source table: (chunks done, chunks in all, rows copied).
pub async fn chunk_progress(
    client: &Client,
    migration: &str,
) -> Result<Vec<(String, i64, i64, i64)>, CheckpointError> {
    let rows = client
        .query(
            "SELECT source_table, count(*) FILTER (WHERE status = $2), count(*),
                    coalesce(sum(row_count), 0)::int8
               FROM switchyard.chunks WHERE migration = $1 GROUP BY 1 ORDER BY 1",
            &[&migration, &ChunkStatus::Done],
        )
        .await
        .map_err(ctx("reading chunk progress"))?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect())
}

/// Forgets the chunks of a migration recorded anew (see [`super::create`]).
pub(super) async fn clear(client: &Client, migration: &str) -> Result<(), CheckpointError> {
    client
        .execute(
            "DELETE FROM switchyard.chunks WHERE migration = $1",
            &[&migration],
        )
        .await
        .map_err(ctx("clearing old chunks"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_status_travels_as_the_text_existing_state_holds() {
        for (status, stored) in [
            (ChunkStatus::Pending, "pending"),
            (ChunkStatus::Done, "done"),
        ] {
            let mut out = BytesMut::new();
            status.to_sql_checked(&Type::TEXT, &mut out).unwrap();
            assert_eq!(&out[..], stored.as_bytes());
        }
        let mut out = BytesMut::new();
        assert!(ChunkStatus::Done
            .to_sql_checked(&Type::INT4, &mut out)
            .is_err());
    }
}
