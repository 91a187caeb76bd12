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
//!   ALTER TABLE t SET UNLOGGED                                    its changes leave no WAL
//!   publication row filter or column list on t                   rows or columns left out
//!   ALTER TABLE t RENAME / SET SCHEMA                             arrives (same OID, new name)
//! ```
//!
//! So the consumer checks the catalog when it starts and on every heartbeat, and reports a
//! position to the server only once a check made *after* the commit at that position was
//! received has passed: whatever happened before that commit is visible to the check, so the
//! slot never moves past a change the stream could not deliver. A toggle undone between two
//! checks (a table dropped from the publication and added back within the second) is not
//! seen: the README lists it under the known limits.

use rustc_hash::FxHashMap;
use tokio_postgres::Client;

use crate::plan::Plan;

use super::relations::{CatalogColumn, CatalogRelation};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    #[error("source table {table} (OID {oid}) was dropped: changes made to a table in its place are in no publication and cannot be followed. switchyard stops before confirming anything past it: `switchyard abort` and backfill again")]
    Dropped { table: String, oid: u32 },
    #[error("source table {table} (OID {oid}) is now called {now} (ALTER TABLE ... RENAME or SET SCHEMA): the plan, the cutover and `verify` name it {table}. switchyard stops before confirming anything past it: rename it back (`ALTER TABLE {now_quoted} RENAME TO ...` / `SET SCHEMA ...`) and run `switchyard follow` again, which picks up where it stopped")]
    Renamed {
        table: String,
        oid: u32,
        now: String,
        now_quoted: String,
    },
    #[error("source table {table} is no longer the table the backfill copied (OID {followed}, now {now}): it was dropped and recreated, or another table was renamed into its place. switchyard stops before confirming anything past it: `switchyard abort` and backfill again")]
    Replaced {
        table: String,
        followed: u32,
        now: u32,
    },
    #[error("source table {table} is UNLOGGED: logical decoding sees none of its changes. switchyard stops before confirming anything past it: `ALTER TABLE {table} SET LOGGED`, then `switchyard abort` and backfill again (changes made while it was unlogged are not in the WAL)")]
    Unlogged { table: String },
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

/// What the catalog says of one followed table now.
struct Seen {
    /// `schema.table`, `None` when the OID is gone.
    name: Option<(String, String)>,
    /// `schema.table` quoted, for the fix in a message.
    quoted: Option<String>,
    unlogged: bool,
    /// The OID that the plan's name resolves to now.
    by_name: Option<u32>,
    /// In the publication (under this name), and with which restrictions.
    published: bool,
    row_filter: Option<String>,
    column_list: Option<Vec<String>>,
}

/// Why [`check`] failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The catalog could not be read: this proves nothing either way.
    #[error("reading the source catalog: {0}")]
    Catalog(#[from] tokio_postgres::Error),
    /// A followed table is not what the plan names: a person must act.
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

/// Checks every followed table against the catalog and the publication: it still exists under
/// the plan's name with the followed OID, is logged (each partition too), and the publication
/// publishes every kind of change of every row and every column the plan reads.
pub async fn check(
    client: &Client,
    plan: &Plan,
    oids: &[u32],
    publication: &str,
) -> Result<(), CheckError> {
    let (seen, publishes) = read(client, plan, oids, publication).await?;
    Ok(judge(plan, oids, publication, &seen, publishes)?)
}

/// The publication's `pubinsert, pubupdate, pubdelete, pubtruncate`, `None` when it is gone.
type Publishes = Option<[bool; 4]>;

async fn read(
    client: &Client,
    plan: &Plan,
    oids: &[u32],
    publication: &str,
) -> Result<(Vec<Seen>, Publishes), tokio_postgres::Error> {
    let modern = client
        .query_one(
            "SELECT current_setting('server_version_num')::int >= 150000",
            &[],
        )
        .await?
        .get::<_, bool>(0);
    // PostgreSQL 15 added row filters and column lists (`pg_publication_tables.rowfilter`,
    // `attnames`).
    let restrictions = if modern {
        "t.rowfilter, t.attnames::text[]"
    } else {
        "NULL::text, NULL::text[]"
    };
    let names: Vec<String> = plan.sources.iter().map(|s| s.table.quoted()).collect();
    let sql = format!(
        "SELECT n.nspname::text, c.relname::text,
                EXISTS (SELECT 1 FROM pg_partition_tree(c.oid) p
                          JOIN pg_class pc ON pc.oid = p.relid WHERE pc.relpersistence = 'u'),
                to_regclass(u.name)::oid,
                t.tablename IS NOT NULL, {restrictions},
                CASE WHEN c.oid IS NOT NULL THEN format('%I.%I', n.nspname, c.relname) END
           FROM unnest($1::oid[], $2::text[]) WITH ORDINALITY AS u(oid, name, i)
           LEFT JOIN pg_class c ON c.oid = u.oid
           LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
           LEFT JOIN pg_publication_tables t
                  ON t.pubname = $3 AND t.schemaname = n.nspname AND t.tablename = c.relname
          ORDER BY u.i"
    );
    let rows = client.query(&sql, &[&oids, &names, &publication]).await?;
    let seen = rows
        .iter()
        .map(|r| {
            let schema: Option<String> = r.get(0);
            let name: Option<String> = r.get(1);
            Seen {
                name: schema.zip(name),
                unlogged: r.get::<_, Option<bool>>(2).unwrap_or(false),
                by_name: r.get(3),
                published: r.get(4),
                row_filter: r.get(5),
                column_list: r.get(6),
                quoted: r.get(7),
            }
        })
        .collect();
    let publishes = client
        .query_opt(
            "SELECT pubinsert, pubupdate, pubdelete, pubtruncate FROM pg_publication WHERE pubname = $1",
            &[&publication],
        )
        .await?
        .map(|r| [r.get(0), r.get(1), r.get(2), r.get(3)]);
    Ok((seen, publishes))
}

/// The verdict on what [`read`] saw; pure, so every case is unit-tested.
fn judge(
    plan: &Plan,
    oids: &[u32],
    publication: &str,
    seen: &[Seen],
    publishes: Publishes,
) -> Result<(), IdentityError> {
    for ((source, &oid), seen) in plan.sources.iter().zip(oids).zip(seen) {
        let table = source.table.to_string();
        let Some((schema, name)) = &seen.name else {
            return Err(match seen.by_name {
                Some(now) => IdentityError::Replaced {
                    table,
                    followed: oid,
                    now,
                },
                None => IdentityError::Dropped { table, oid },
            });
        };
        if *schema != source.table.schema || *name != source.table.name {
            return Err(match seen.by_name {
                Some(now) if now != oid => IdentityError::Replaced {
                    table,
                    followed: oid,
                    now,
                },
                _ => IdentityError::Renamed {
                    table,
                    oid,
                    now: format!("{schema}.{name}"),
                    now_quoted: seen.quoted.clone().unwrap_or_default(),
                },
            });
        }
        if seen.unlogged {
            return Err(IdentityError::Unlogged { table });
        }
        let not_published = |what: String, fix: String| IdentityError::NotPublished {
            table: table.clone(),
            publication: publication.to_owned(),
            what,
            fix,
        };
        let quoted = source.table.quoted();
        let Some(publishes) = publishes else {
            return Err(not_published(
                "is gone".to_owned(),
                "recreate it".to_owned(),
            ));
        };
        if publishes != [true; 4] {
            return Err(not_published(
                "no longer publishes every kind of change (insert, update, delete, truncate)"
                    .to_owned(),
                "`ALTER PUBLICATION ... SET (publish = 'insert, update, delete, truncate')`"
                    .to_owned(),
            ));
        }
        if !seen.published {
            return Err(not_published(
                format!("no longer holds {table}"),
                format!("`ALTER PUBLICATION ... ADD TABLE {quoted}`"),
            ));
        }
        if let Some(filter) = &seen.row_filter {
            return Err(not_published(
                format!("filters the rows of {table} (WHERE {filter})"),
                format!("`ALTER PUBLICATION ... SET TABLE {quoted}` without a WHERE clause"),
            ));
        }
        if let Some(list) = &seen.column_list {
            if let Some(missing) = source.columns.iter().find(|c| !list.contains(c)) {
                return Err(not_published(
                    format!("leaves column {missing} of {table} out of its column list"),
                    format!("`ALTER PUBLICATION ... SET TABLE {quoted}` without a column list"),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
