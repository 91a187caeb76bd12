//! Maps pgoutput relations (tables by oid, columns in attribute order) onto the plan's sources
//! (columns in the plan's read order), and turns tuples into values.
//!
//! A Relation message arrives before a table's first change in a session and again after any
//! DDL on it. If a column the plan reads is gone, or its type changed, applying on would
//! silently diverge, so the consumer stops and says so.

use rustc_hash::FxHashMap;

use crate::pg::pgoutput::{RelationBody, TupleColumn, TupleData};
use crate::plan::Plan;
use crate::transform::value::Value;

/// One source table as the stream describes it.
#[derive(Debug, Clone)]
pub struct MappedRelation {
    pub source: usize,
    /// For each plan column, its position in the relation's tuples.
    pub positions: Vec<usize>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RelationError {
    #[error("the stream sent a change for relation {0} before describing it")]
    Unknown(u32),
    #[error("DDL on source table {table}: column {column} {what}; switchyard stops rather than diverge. Adjust the plan (and the target), then `switchyard abort` and backfill again")]
    Changed {
        table: String,
        column: String,
        what: String,
    },
    #[error("column {column} of {table} is not valid UTF-8")]
    NotUtf8 { table: String, column: String },
}

/// Relations seen on the stream, by oid.
#[derive(Debug, Default)]
pub struct Relations {
    by_oid: FxHashMap<u32, Option<MappedRelation>>,
    /// `schema.table` -> column name -> type oid, read from the source catalog at start.
    expected_types: FxHashMap<String, FxHashMap<String, u32>>,
}

impl Relations {
    pub fn new(expected_types: FxHashMap<String, FxHashMap<String, u32>>) -> Relations {
        Relations {
            by_oid: FxHashMap::default(),
            expected_types,
        }
    }

    /// Records a Relation message; tables outside the plan map to `None` and are ignored.
    pub fn describe(&mut self, plan: &Plan, body: &RelationBody) -> Result<(), RelationError> {
        let name = format!("{}.{}", body.namespace, body.name);
        let Some(source) = plan
            .sources
            .iter()
            .position(|s| s.table.schema == body.namespace && s.table.name == body.name)
        else {
            self.by_oid.insert(body.relation_id, None);
            return Ok(());
        };
        let expected = self.expected_types.get(&name);
        let mut positions = Vec::with_capacity(plan.sources[source].columns.len());
        for column in &plan.sources[source].columns {
            let Some(at) = body.columns.iter().position(|c| &c.name == column) else {
                return Err(RelationError::Changed {
                    table: name,
                    column: column.clone(),
                    what: "is gone".to_owned(),
                });
            };
            if let Some(&oid) = expected.and_then(|e| e.get(column)) {
                if oid != body.columns[at].type_id {
                    return Err(RelationError::Changed {
                        table: name,
                        column: column.clone(),
                        what: format!("changed type (oid {oid} -> {})", body.columns[at].type_id),
                    });
                }
            }
            positions.push(at);
        }
        self.by_oid
            .insert(body.relation_id, Some(MappedRelation { source, positions }));
        Ok(())
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
    /// Unchanged TOASTed value: not in the WAL record.
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
        .map(|(i, &at)| match tuple.columns.get(at) {
            Some(TupleColumn::Text(bytes)) => std::str::from_utf8(bytes)
                .map(|s| Field::Value(Value::text(s)))
                .map_err(|_| RelationError::NotUtf8 {
                    table: table.to_owned(),
                    column: names[i].clone(),
                }),
            Some(TupleColumn::UnchangedToast) => Ok(Field::Unchanged),
            Some(TupleColumn::Null) | Some(TupleColumn::Binary(_)) | None => {
                Ok(Field::Value(Value::Null))
            }
        })
        .collect()
}
