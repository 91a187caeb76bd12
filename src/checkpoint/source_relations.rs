//! `switchyard.source_relations`: the source tables' OIDs under the backfill's snapshot, which
//! the WAL consumer follows by identity whatever the tables are called later.

use tokio_postgres::Client;

use super::{ctx, CheckpointError};

/// A source table as the backfill copied it: `schema.table` as displayed, its OID, and its row
/// in the publication (`pg_publication_rel.oid`, `None` when held otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRelation {
    pub table: String,
    pub oid: u32,
    pub publication_rel: Option<u32>,
}

/// Records the source tables the backfill copies.
pub async fn record_source_relations(
    client: &Client,
    migration: &str,
    relations: &[SourceRelation],
) -> Result<(), CheckpointError> {
    let tables: Vec<&str> = relations.iter().map(|r| r.table.as_str()).collect();
    let oids: Vec<u32> = relations.iter().map(|r| r.oid).collect();
    let rels: Vec<Option<u32>> = relations.iter().map(|r| r.publication_rel).collect();
    client
        .execute(
            "INSERT INTO switchyard.source_relations (migration, source_table, relid, publication_rel)
             SELECT $1, * FROM unnest($2::text[], $3::oid[], $4::oid[])
             ON CONFLICT (migration, source_table)
             DO UPDATE SET relid = EXCLUDED.relid, publication_rel = EXCLUDED.publication_rel",
            &[&migration, &tables, &oids, &rels],
        )
        .await
        .map_err(ctx("recording the source tables' OIDs"))?;
    Ok(())
}

/// The source tables recorded by the backfill.
pub async fn source_relations(
    client: &Client,
    migration: &str,
) -> Result<Vec<SourceRelation>, CheckpointError> {
    let rows = client
        .query(
            "SELECT source_table, relid, publication_rel FROM switchyard.source_relations
              WHERE migration = $1",
            &[&migration],
        )
        .await
        .map_err(ctx("reading the source tables' OIDs"))?;
    Ok(rows
        .iter()
        .map(|r| SourceRelation {
            table: r.get(0),
            oid: r.get(1),
            publication_rel: r.get(2),
        })
        .collect())
}

/// Forgets the source tables of a migration recorded anew (see [`super::create`]).
pub(super) async fn clear(client: &Client, migration: &str) -> Result<(), CheckpointError> {
    client
        .execute(
            "DELETE FROM switchyard.source_relations WHERE migration = $1",
            &[&migration],
        )
        .await
        .map_err(ctx("clearing old source relations"))?;
    Ok(())
}
