//! Splits a source table into chunks of heap blocks (`ctid` ranges).
//!
//! PostgreSQL 14+ scans `ctid >= '(a,0)' AND ctid < '(b,0)'` with a TID Range Scan: sequential
//! I/O, no index, and it works for tables without a primary key. Under one snapshot every row
//! version has exactly one ctid, so chunks never overlap. The last chunk is open-ended because
//! the table may have grown since its size was read. Chunks outnumber workers, and are pulled
//! from a queue, because visible rows are not spread evenly over blocks. A partitioned table
//! is chunked through its root: `ctid` ranges apply to each leaf partition alike.

use tokio_postgres::GenericClient;

use crate::checkpoint::Chunk;
use crate::pg::ident::TableName;

/// Heap bytes per chunk: large enough that per-chunk costs (a target transaction, a chunk
/// record) vanish, small enough that a crash loses little work and workers balance well.
pub const CHUNK_HEAP_BYTES: i64 = 8 * 1024 * 1024;

/// Chunks per worker at least, so that a slow chunk does not leave the others idle.
pub const MIN_CHUNKS_PER_WORKER: i64 = 4;

/// Upper bound on a table's chunks, which keeps the chunk list small for huge tables.
pub const MAX_CHUNKS_PER_TABLE: i64 = 4096;

/// A table's size as the snapshot sees it.
#[derive(Debug, Clone, Copy)]
pub struct TableSize {
    pub blocks: i64,
    pub block_size: i64,
    /// The planner's row estimate (`reltuples`), for progress; -1 when never analyzed.
    pub estimated_rows: i64,
}

pub async fn table_size(
    client: &impl GenericClient,
    table: &TableName,
) -> Result<TableSize, tokio_postgres::Error> {
    // A partitioned table has no heap of its own: a ctid range on it selects that block range
    // in every leaf partition (one TID Range Scan each), so the chunks span its largest leaf.
    let row = client
        .query_one(
            "WITH rel AS (SELECT c.oid, c.relkind FROM pg_class c
                            JOIN pg_namespace n ON n.oid = c.relnamespace
                           WHERE n.nspname = $1 AND c.relname = $2),
                  heaps AS (SELECT oid FROM rel WHERE relkind <> 'p'
                            UNION ALL
                            SELECT t.relid FROM rel, pg_partition_tree(rel.oid) t
                             WHERE rel.relkind = 'p' AND t.isleaf)
             SELECT coalesce(max(pg_relation_size(h.oid, 'main')), 0)
                      / current_setting('block_size')::int8,
                    current_setting('block_size')::int8,
                    coalesce(sum(c.reltuples) FILTER (WHERE c.reltuples >= 0), -1)::int8
               FROM heaps h JOIN pg_class c ON c.oid = h.oid",
            &[&table.schema, &table.name],
        )
        .await?;
    Ok(TableSize {
        blocks: row.get(0),
        block_size: row.get(1),
        estimated_rows: row.get(2),
    })
}

/// Block ranges covering the whole table, the last one open-ended.
pub fn plan_chunks(table: &TableName, size: TableSize, workers: usize) -> Vec<Chunk> {
    let blocks = size.blocks.max(1);
    let wanted = (size.blocks * size.block_size)
        .saturating_add(CHUNK_HEAP_BYTES - 1)
        .div_euclid(CHUNK_HEAP_BYTES)
        .max(workers as i64 * MIN_CHUNKS_PER_WORKER)
        .min(MAX_CHUNKS_PER_TABLE)
        .min(blocks);
    let per_chunk = (blocks + wanted - 1) / wanted;
    let count = (blocks + per_chunk - 1) / per_chunk;
    (0..count)
        .map(|i| Chunk {
            source_table: table.to_string(),
            chunk_no: i as i32,
            first_block: i * per_chunk,
            end_block: (i + 1 < count).then_some((i + 1) * per_chunk),
        })
        .collect()
}

/// The `WHERE` clause selecting a chunk's rows.
pub fn ctid_predicate(chunk: &Chunk) -> String {
    match chunk.end_block {
        Some(end) => format!(
            "ctid >= '({},0)'::tid AND ctid < '({end},0)'::tid",
            chunk.first_block
        ),
        None => format!("ctid >= '({},0)'::tid", chunk.first_block),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> TableName {
        TableName::parse("t", "public")
    }

    #[test]
    fn chunks_cover_every_block_once_and_the_last_is_open() {
        let size = TableSize {
            blocks: 1000,
            block_size: 8192,
            estimated_rows: 0,
        };
        let chunks = plan_chunks(&table(), size, 2);
        assert_eq!(chunks.len(), 8);
        assert_eq!(chunks[0].first_block, 0);
        for pair in chunks.windows(2) {
            assert_eq!(pair[0].end_block, Some(pair[1].first_block));
        }
        assert_eq!(chunks.last().unwrap().end_block, None);
    }

    #[test]
    fn an_empty_table_is_one_open_chunk() {
        let size = TableSize {
            blocks: 0,
            block_size: 8192,
            estimated_rows: 0,
        };
        let chunks = plan_chunks(&table(), size, 4);
        assert_eq!(chunks.len(), 1);
        assert_eq!((chunks[0].first_block, chunks[0].end_block), (0, None));
    }

    #[test]
    fn large_tables_get_chunks_by_size() {
        let size = TableSize {
            blocks: 100_000,
            block_size: 8192,
            estimated_rows: 0,
        };
        let chunks = plan_chunks(&table(), size, 2);
        assert_eq!(
            chunks.len() as i64,
            (100_000 * 8192_i64 + CHUNK_HEAP_BYTES - 1) / CHUNK_HEAP_BYTES
        );
    }
}
