//! A pgoutput Insert, Update or Delete turned into a [`RowChange`] of its plan source: the
//! plan's columns in plan order, with the values the stream does not carry filled in.
//!
//! ```text
//!   new tuple column   'u' (unchanged TOASTed) or not sent (generated column)
//!        │
//!        ├─ a key column ──────────> the old-key tuple's value (PostgreSQL logs the identity
//!        │                            whenever it has external values), else stop
//!        ├─ old tuple under FULL ──> its value
//!        └─ otherwise ─────────────> the row as it is now on the source (current_row), or
//!                                    nothing to apply when it is gone: its delete follows
//! ```
//! <https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html>

use crate::pg::pgoutput::{DeleteBody, InsertBody, OldTuple, TupleData, UpdateBody};
use crate::plan::Plan;
use crate::transform::change::RowChange;
use crate::transform::value::Value;

use super::current_row::{CurrentRow, CurrentRows, FetchError};
use super::relations::{fields, Field, RelationError, Relations};

/// A pgoutput message that changes a row.
#[derive(Debug, Clone, Copy)]
pub enum ChangeMessage<'m> {
    Insert(&'m InsertBody),
    Update(&'m UpdateBody),
    Delete(&'m DeleteBody),
}

/// A change of a followed table.
#[derive(Debug)]
pub struct SourceChange<'m> {
    /// The plan source it belongs to.
    pub source: usize,
    pub change: RowChange<'m>,
}

/// What a change message is to the consumer.
#[derive(Debug)]
pub enum RowChangeOf<'m> {
    /// A row change of a plan source.
    Change(SourceChange<'m>),
    /// A change of a table the plan does not read.
    NotFollowed,
    /// An update whose values the stream does not carry, of a row the source no longer holds
    /// (deleted since, or its key changed): nothing to apply, a later change of the stream
    /// supersedes it. It is still one source change consumed, and counts as one.
    Superseded,
}

/// Why a change cannot be turned into a row change: each stops the consumer, except a failed
/// read, which a restart may get past.
#[derive(Debug, thiserror::Error)]
pub enum RowChangeError {
    #[error(transparent)]
    Relation(#[from] RelationError),
    #[error(transparent)]
    Key(#[from] KeyMissing),
    #[error(transparent)]
    Read(#[from] FetchError),
}

/// A change whose plan key cannot be found in what the stream sent: applying it by key is
/// impossible, and skipping it would lose it.
#[derive(Debug, thiserror::Error)]
pub enum KeyMissing {
    #[error("a change of source table {table} arrived without key column {column} in its old-key tuple: the replica identity of the table (or of the partition the row is in) does not cover the plan's key, so the change cannot be applied by key. switchyard stops rather than skip it: give it a replica identity on the key (`REPLICA IDENTITY USING INDEX` a unique index on it, or `FULL`), then `switchyard abort` and backfill again")]
    NotInOldKey { table: String, column: String },
    #[error("an update of source table {table} carries no value for key column {column}, in neither its new nor its old tuple, so it cannot be applied by key; switchyard stops rather than skip it. Report this with the table's definition")]
    NotSent { table: String, column: String },
}

/// The row change of `message`, or why there is none to apply (see [`RowChangeOf`]).
/// Values borrow from the message, or from the current row read into `fetched`: no copy per
/// column.
pub async fn row_change<'m>(
    plan: &Plan,
    relations: &Relations,
    current: &mut CurrentRows<'_>,
    message: ChangeMessage<'m>,
    fetched: &'m mut Option<CurrentRow>,
) -> Result<RowChangeOf<'m>, RowChangeError> {
    let (relation_id, old, new): (u32, Option<&'m OldTuple>, Option<&'m TupleData>) = match message
    {
        ChangeMessage::Insert(i) => (i.relation_id, None, Some(&i.new_tuple)),
        ChangeMessage::Update(u) => (u.relation_id, u.old_tuple.as_ref(), Some(&u.new_tuple)),
        ChangeMessage::Delete(d) => (d.relation_id, Some(&d.old_tuple), None),
    };
    let Some(relation) = relations.get(relation_id)? else {
        return Ok(RowChangeOf::NotFollowed);
    };
    let source = &plan.sources[relation.source];
    let table = source.table.to_string();
    let old_fields = old
        .map(|o| fields(relation, o.tuple(), &table, &source.columns))
        .transpose()?;
    let key_len = source.key.len();
    // An old-key tuple carries the replica identity's columns; a plan key column NULL there
    // means the identity of the row's table (or partition) does not cover the plan's key, and
    // the change cannot be found by key.
    if let (Some(OldTuple::Key(_)), Some(old)) = (old, &old_fields) {
        if let Some(i) = (0..key_len).find(|&i| old[i] == Field::Value(Value::Null)) {
            return Err(KeyMissing::NotInOldKey {
                table,
                column: source.columns[i].clone(),
            }
            .into());
        }
    }
    let mut new_fields = new
        .map(|n| fields(relation, n, &table, &source.columns))
        .transpose()?;
    if let Some(new) = &mut new_fields {
        // A key column stored out of line and left unchanged is marked unchanged in the new
        // tuple; PostgreSQL then sends it in the old-key tuple (`ExtractReplicaIdentity` in
        // heapam.c logs the identity whenever it has external values).
        for (i, field) in new[..key_len].iter_mut().enumerate() {
            if *field == Field::Unchanged {
                match old_fields.as_ref().map(|o| &o[i]) {
                    Some(Field::Value(v)) if *v != Value::Null => *field = Field::Value(v.clone()),
                    _ => {
                        return Err(KeyMissing::NotSent {
                            table,
                            column: source.columns[i].clone(),
                        }
                        .into())
                    }
                }
            }
        }
    }
    // Values the stream does not carry (unchanged TOASTed values, generated columns): from
    // the old tuple under REPLICA IDENTITY FULL where it has them, else the row as it is now
    // on the source. A key tuple (sent when the key changed or is stored out of line) carries
    // the key columns alone, every other column as NULL.
    let full_old = matches!(old, Some(OldTuple::Full(_)));
    let mut fetched_row: Option<&'m CurrentRow> = None;
    if let Some(new) = &new_fields {
        let missing = new.iter().enumerate().any(|(i, f)| {
            *f == Field::Unchanged
                && !(full_old
                    && matches!(old_fields.as_ref().map(|o| &o[i]), Some(Field::Value(_))))
        });
        if missing {
            let key: Vec<Option<String>> = new[..key_len].iter().map(field_text).collect();
            let row = current
                .fetch(source, relation.source, &key)
                .await
                .map_err(RowChangeError::Read)?;
            match row {
                Some(row) => fetched_row = Some(fetched.insert(row)),
                // Deleted since (or its key changed): that change follows.
                None => return Ok(RowChangeOf::Superseded),
            }
        }
    }
    let values = |fs: &[Field<'m>], fallback: Option<&[Field<'m>]>| -> Vec<Value<'m>> {
        fs.iter()
            .enumerate()
            .map(|(i, f)| match f {
                Field::Value(v) => v.clone(),
                Field::Unchanged => match (fallback.map(|o| &o[i]), fetched_row) {
                    (Some(Field::Value(v)), _) => v.clone(),
                    (_, Some(row)) => row.get(i).map_or(Value::Null, Value::text),
                    _ => Value::Null,
                },
            })
            .collect()
    };
    let change = match (message, old_fields.as_deref(), new_fields.as_deref()) {
        (ChangeMessage::Insert(_), _, Some(new)) => RowChange::Insert {
            new: values(new, None),
        },
        (ChangeMessage::Update(_), old, Some(new)) => RowChange::Update {
            old_key: old.map(|o| values(o, None)),
            new: values(new, old.filter(|_| full_old)),
        },
        (ChangeMessage::Delete(_), Some(old), _) => RowChange::Delete {
            old_key: values(old, None),
        },
        // An insert and an update always carry a new tuple, a delete an old one.
        _ => return Ok(RowChangeOf::NotFollowed),
    };
    Ok(RowChangeOf::Change(SourceChange {
        source: relation.source,
        change,
    }))
}

/// A key field as a query parameter: `None` for NULL.
fn field_text(f: &Field<'_>) -> Option<String> {
    match f {
        Field::Value(Value::Null) | Field::Unchanged => None,
        Field::Value(v) => Some(v.to_string()),
    }
}
