//! Maps pgoutput relations onto the plan's sources and turns tuples into values.
//!
//! A relation is told by its **identity**, the OID pgoutput sends (`relation_id`), never by its
//! name: a renamed table keeps its OID, and a new table given an old name gets a new one. The
//! OIDs the plan follows are read from the source catalog when the backfill takes its snapshot
//! (see [`crate::source::identity`]); a Relation message carrying another OID but a plan
//! table's name is a replacement, and the consumer stops.
//!
//! A Relation message arrives before a table's first change in a session and again after any
//! DDL on it (`RelationSyncCache` invalidation in PostgreSQL's `pgoutput.c`). If a column the
//! plan reads is gone, its type changed, or the replica identity no longer covers the plan's
//! key, applying on would silently diverge, so the consumer stops and says so.
//!
//! PostgreSQL 15 publishes no generated column (`logicalrep_write_attrs` skips them): a stored
//! generated column the plan reads is marked [`Field::Unchanged`] in every tuple and read from
//! the source row by key, as an unchanged TOASTed value is.

use rustc_hash::FxHashMap;

use crate::pg::pgoutput::{RelationBody, ReplicaIdentity, TupleColumn, TupleData};
use crate::plan::Plan;
use crate::transform::value::Value;

/// What the source catalog says about a plan source, read when the consumer starts.
#[derive(Debug, Clone, Default)]
pub struct CatalogRelation {
    /// The table's OID: what pgoutput's `relation_id` must be.
    pub oid: u32,
    /// Column name -> its type OID and whether it is a stored generated column.
    pub columns: FxHashMap<String, CatalogColumn>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogColumn {
    pub type_id: u32,
    /// `attgenerated = 's'`: never in the WAL stream on PostgreSQL 15.
    pub generated: bool,
    /// `format_type(atttypid, atttypmod)`, to read a row by key through the key's index.
    pub sql_type: String,
}

/// One source table as the stream describes it.
#[derive(Debug, Clone)]
pub struct MappedRelation {
    pub source: usize,
    /// For each plan column, its position in the relation's tuples; `None` for a stored
    /// generated column, which the stream never carries.
    pub positions: Vec<Option<usize>>,
}

/// What a Relation message meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Described {
    /// A plan source, under the plan's name.
    Mapped,
    /// A table the plan does not read.
    Ignored,
    /// A plan source under another name than the plan's (`ALTER TABLE ... RENAME` or
    /// `SET SCHEMA` before this change was written): the caller asks the catalog what the
    /// table is called now. `now` is `schema.table` as the stream spells it.
    Renamed { source: usize, now: String },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RelationError {
    #[error("the stream sent a change for relation {0} before describing it")]
    Unknown(u32),
    #[error("source table {table} was replaced: the stream now carries a table of that name with OID {now}, while switchyard follows OID {followed}, the table the backfill copied (dropped and recreated, or another table renamed into its place). Its rows are not those the backfill copied, so switchyard stops rather than diverge: put the original table back under its name, or `switchyard abort` and backfill again")]
    Replaced {
        table: String,
        followed: u32,
        now: u32,
    },
    #[error("DDL on source table {table}: column {column} {what}; switchyard stops rather than diverge. Adjust the plan (and the target), then `switchyard abort` and backfill again")]
    Changed {
        table: String,
        column: String,
        what: String,
    },
    #[error("source table {table}: key column {column} {what}, so updates and deletes could not be applied by key; switchyard stops rather than diverge. Restore the replica identity (`ALTER TABLE {table} REPLICA IDENTITY DEFAULT`, or `USING INDEX` an index on the plan's key, or `FULL`), then run `switchyard follow` again")]
    KeyNotInIdentity {
        table: String,
        column: String,
        what: &'static str,
    },
    #[error("column {column} of {table} is not valid UTF-8")]
    NotUtf8 { table: String, column: String },
}

/// Relations seen on the stream, by OID.
#[derive(Debug, Default)]
pub struct Relations {
    by_oid: FxHashMap<u32, Option<MappedRelation>>,
    /// Per plan source, in plan order.
    catalog: Vec<CatalogRelation>,
}

impl Relations {
    /// `catalog` holds one entry per plan source, in plan order.
    pub fn new(catalog: Vec<CatalogRelation>) -> Relations {
        Relations {
            by_oid: FxHashMap::default(),
            catalog,
        }
    }

    /// Records a Relation message.
    pub fn describe(
        &mut self,
        plan: &Plan,
        body: &RelationBody,
    ) -> Result<Described, RelationError> {
        let name = format!("{}.{}", body.namespace, body.name);
        let by_identity = self.catalog.iter().position(|c| c.oid == body.relation_id);
        let Some(source) = by_identity else {
            let by_name = plan
                .sources
                .iter()
                .position(|s| s.table.schema == body.namespace && s.table.name == body.name);
            if let Some(source) = by_name {
                return Err(RelationError::Replaced {
                    table: name,
                    followed: self.catalog[source].oid,
                    now: body.relation_id,
                });
            }
            self.by_oid.insert(body.relation_id, None);
            return Ok(Described::Ignored);
        };
        let plan_source = &plan.sources[source];
        let table = plan_source.table.to_string();
        let catalog = &self.catalog[source];
        // A partitioned table published through its root describes the root, whose replica
        // identity is not what its partitions log (each has its own, which `check` verifies):
        // no column carries the key flag then, and there is nothing to compare.
        let identity_known = body.replica_identity == ReplicaIdentity::Full
            || body.columns.iter().any(|c| c.is_key());
        let mut positions = Vec::with_capacity(plan_source.columns.len());
        for (i, column) in plan_source.columns.iter().enumerate() {
            let at = body.columns.iter().position(|c| &c.name == column);
            let known = catalog.columns.get(column);
            let is_key = i < plan_source.key.len();
            match (at, known) {
                (Some(at), known) => {
                    if let Some(known) = known.filter(|k| k.type_id != body.columns[at].type_id) {
                        return Err(RelationError::Changed {
                            table,
                            column: column.clone(),
                            what: format!(
                                "changed type (OID {} -> {})",
                                known.type_id, body.columns[at].type_id
                            ),
                        });
                    }
                    let in_identity =
                        body.replica_identity == ReplicaIdentity::Full || body.columns[at].is_key();
                    if is_key && identity_known && !in_identity {
                        return Err(RelationError::KeyNotInIdentity {
                            table,
                            column: column.clone(),
                            what: "is no longer part of the table's replica identity",
                        });
                    }
                    positions.push(Some(at));
                }
                (None, Some(known)) if known.generated => {
                    if is_key {
                        return Err(RelationError::KeyNotInIdentity {
                            table,
                            column: column.clone(),
                            what: "is a generated column, which PostgreSQL 15 does not publish",
                        });
                    }
                    positions.push(None);
                }
                (None, _) => {
                    return Err(RelationError::Changed {
                        table,
                        column: column.clone(),
                        what: "is gone from the stream: dropped, renamed, or left out of the publication's column list".to_owned(),
                    });
                }
            }
        }
        self.by_oid
            .insert(body.relation_id, Some(MappedRelation { source, positions }));
        if body.namespace != plan_source.table.schema || body.name != plan_source.table.name {
            return Ok(Described::Renamed { source, now: name });
        }
        Ok(Described::Mapped)
    }

    /// The plan source of a relation; `Ok(None)` for a table the plan does not read.
    pub fn get(&self, oid: u32) -> Result<Option<&MappedRelation>, RelationError> {
        self.by_oid
            .get(&oid)
            .map(Option::as_ref)
            .ok_or(RelationError::Unknown(oid))
    }
}

/// A tuple's column for the plan, or a marker that the value was not sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Field<'t> {
    Value(Value<'t>),
    /// Not in the WAL record: an unchanged TOASTed value (`u`), a key column that only the
    /// old-key tuple carries, or a generated column.
    Unchanged,
}

/// The plan's columns of a tuple, in plan order.
pub fn fields<'t>(
    relation: &MappedRelation,
    tuple: &'t TupleData,
    table: &str,
    names: &[String],
) -> Result<Vec<Field<'t>>, RelationError> {
    relation
        .positions
        .iter()
        .enumerate()
        .map(|(i, at)| match at.and_then(|at| tuple.columns.get(at)) {
            Some(TupleColumn::Text(bytes)) => std::str::from_utf8(bytes)
                .map(|s| Field::Value(Value::text(s)))
                .map_err(|_| RelationError::NotUtf8 {
                    table: table.to_owned(),
                    column: names[i].clone(),
                }),
            Some(TupleColumn::UnchangedToast) => Ok(Field::Unchanged),
            None if at.is_none() => Ok(Field::Unchanged),
            Some(TupleColumn::Null) | Some(TupleColumn::Binary(_)) | None => {
                Ok(Field::Value(Value::Null))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
