//! The source tables the consumer follows, told by identity (OID) and checked against the
//! catalog and the publication.
//!
//! pgoutput decodes by OID and publishes what the publication held *as of each change*; some
//! changes to a table's identity never reach the stream at all:
//!
//! ```text
//!   DROP TABLE t / replace t (drop + rename in one transaction)   no message; the new t is
//!                                                                 in no publication
//!   ALTER PUBLICATION ... DROP TABLE t / SET (publish = 'insert')  t's changes stop arriving
//!   ALTER PUBLICATION ... DROP TABLE t, then ADD TABLE t           a gap; t has a new
//!                                                                 pg_publication_rel row
//!   ALTER TABLE <partition of t> SET UNLOGGED                      its changes leave no WAL
//!   publication row filter or column list on t                   rows or columns left out
//!   CREATE TABLE c () INHERITS (t)                                c's changes arrive as c's
//!   a replica identity (of t or a partition) off the plan's key   old keys without the key
//!   ALTER TABLE t RENAME / SET SCHEMA                             arrives (same OID, new name)
//! ```
//!
//! So the consumer checks the catalog when it starts and every quarter second, and reports a
//! position to the server only once a check made *after* the commit at that position was
//! received has passed: whatever happened before that commit is visible to the check, so the
//! slot never moves past a change the stream could not deliver. A persistence or identity
//! change undone between two checks is not seen: the README lists it under the known limits.
//!
//! `read` asks the catalog, `judge` gives the verdict (pure, unit-tested).

use rustc_hash::FxHashMap;
use tokio_postgres::Client;

use crate::plan::Plan;

use super::relations::{CatalogColumn, CatalogRelation};

mod judge;
mod read;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    #[error("source table {table} (OID {oid}) was dropped: whatever takes its place is not the table the backfill copied, and its changes cannot be followed. switchyard stops before confirming anything past it: `switchyard abort` and backfill again")]
    Dropped { table: String, oid: u32 },
    #[error("source table {table} (OID {oid}) is now called {now} (ALTER TABLE ... RENAME or SET SCHEMA): the plan, the cutover and `verify` name it {table}. switchyard stops before confirming anything past it: rename it back (`ALTER TABLE {now_quoted} RENAME TO ...` / `SET SCHEMA ...`) and run `switchyard follow` again, which picks up where it stopped")]
    Renamed {
        table: String,
        oid: u32,
        now: String,
        now_quoted: String,
    },
    #[error("source table {table} is no longer the table the backfill copied (OID {followed}, now {now}): it was dropped and recreated, or another table was renamed into its place. switchyard stops before confirming anything past it: if the original still exists under another name, rename the newcomer away and the original back, then `switchyard follow`; otherwise `switchyard abort` and backfill again")]
    Replaced {
        table: String,
        followed: u32,
        now: u32,
    },
    #[error("source table {table} is UNLOGGED: logical decoding sees none of its changes. switchyard stops before confirming anything past it: `ALTER TABLE {table} SET LOGGED`, then `switchyard abort` and backfill again (changes made while it was unlogged are not in the WAL)")]
    Unlogged { table: String },
    #[error("source table {table} has inheritance children ({children}): the publication carries their changes as theirs, which the plan does not follow, while the backfill read their rows through {table}. switchyard stops rather than diverge: detach them (`ALTER TABLE ... NO INHERIT {table}`) or name each in the plan as a source of its own with the parent read alone, then `switchyard abort` and backfill again")]
    Children { table: String, children: String },
    #[error("the replica identity of {uncovered} does not cover the plan's key ({key}) of {table}: its deletes and key changes would arrive without the key, and could not be applied. switchyard stops before confirming anything past it: give it a replica identity on the key (a primary key on it, `REPLICA IDENTITY USING INDEX` a unique index on it, or `FULL`), then `switchyard follow`; if rows were deleted or rekeyed meanwhile, `switchyard abort` and backfill again")]
    KeyNotCovered {
        table: String,
        key: String,
        uncovered: String,
    },
    #[error("publication {publication} dropped {table} and added it back (or `SET TABLE` replaced its entry): changes made to {table} while it was out were not published. switchyard stops before confirming anything past them: `switchyard abort` and backfill again")]
    Readded { table: String, publication: String },
    #[error("publication {publication} {what}, so changes to {table} would not reach switchyard. It stops before confirming anything past them: restore the publication ({fix}), then `switchyard abort` and backfill again, since changes made meanwhile were not published")]
    NotPublished {
        table: String,
        publication: String,
        what: String,
        fix: String,
    },
}

/// The OIDs of the plan's source tables by name, as the session (or its snapshot) sees them;
/// `None` for a table that does not exist.
pub async fn resolve(
    client: &Client,
    plan: &Plan,
) -> Result<Vec<Option<u32>>, tokio_postgres::Error> {
    let names: Vec<String> = plan.sources.iter().map(|s| s.table.quoted()).collect();
    let rows = client
        .query(
            "SELECT to_regclass(n)::oid FROM unnest($1::text[]) WITH ORDINALITY AS u(n, i) ORDER BY i",
            &[&names],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Each followed table's columns (type and whether stored generated), read by OID.
pub async fn catalog(
    client: &Client,
    oids: &[u32],
) -> Result<Vec<CatalogRelation>, tokio_postgres::Error> {
    let mut relations = Vec::with_capacity(oids.len());
    for &oid in oids {
        let rows = client
            .query(
                "SELECT attname::text, atttypid, attgenerated = 's', format_type(atttypid, atttypmod)
                   FROM pg_attribute
                  WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped",
                &[&oid],
            )
            .await?;
        let columns: FxHashMap<String, CatalogColumn> = rows
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    CatalogColumn {
                        type_id: r.get(1),
                        generated: r.get(2),
                        sql_type: r.get(3),
                    },
                )
            })
            .collect();
        relations.push(CatalogRelation { oid, columns });
    }
    Ok(relations)
}

/// Why [`check`] failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The catalog could not be read: this proves nothing either way.
    #[error("reading the source catalog")]
    Catalog(#[from] tokio_postgres::Error),
    /// A followed table is not what the plan names: a person must act.
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

/// Checks every followed table against the catalog and the publication: it still exists under
/// the plan's name with the followed OID, is logged (each partition too), and the publication
/// publishes every kind of change of every row and every column the plan reads.
///
/// `baseline` holds each table's `pg_publication_rel` row as the backfill saw it (see
/// [`memberships`]); empty or `None` where unknown.
pub async fn check(
    client: &Client,
    plan: &Plan,
    oids: &[u32],
    publication: &str,
    baseline: &[Option<u32>],
) -> Result<(), CheckError> {
    let (seen, state) = read::read(client, plan, oids, publication).await?;
    Ok(judge::judge(
        plan,
        oids,
        publication,
        &seen,
        state,
        baseline,
    )?)
}

/// What makes a source table's shape unfollowable, for `check`: its inheritance children and
/// the table or partitions whose replica identity does not cover `key` (each `None` when
/// there are none; a table or partition with no replica identity at all is `check`'s own
/// finding).
pub async fn shape(
    client: &Client,
    oid: u32,
    key: &[String],
) -> Result<(Option<String>, Option<String>), tokio_postgres::Error> {
    read::shape(client, oid, key).await
}

/// Each table's `pg_publication_rel` row in `publication` (`None` when the publication holds it
/// otherwise: `FOR ALL TABLES`, `FOR TABLES IN SCHEMA`). A table removed from the publication
/// and added back gets a new row: comparing them tells a toggle that left changes out.
pub async fn memberships(
    client: &Client,
    oids: &[u32],
    publication: &str,
) -> Result<Vec<Option<u32>>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT (SELECT pr.oid FROM pg_publication_rel pr
                       JOIN pg_publication p ON p.oid = pr.prpubid
                      WHERE p.pubname = $2 AND pr.prrelid = u.oid)
               FROM unnest($1::oid[]) WITH ORDINALITY AS u(oid, i) ORDER BY u.i",
            &[&oids, &publication],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

#[cfg(test)]
mod tests;
