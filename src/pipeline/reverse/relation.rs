//! What a Relation message maps to (one of the outputs, its columns' types, where its key
//! sits), and the rows a change marks as changed in the batch.

use std::collections::HashMap;
use std::sync::Arc;

use crate::pg::pgoutput::{RelationBody, ReplicaIdentity, TupleColumn, TupleData};

use super::apply::Applier;
use super::batch::Batch;
use super::error::ReverseError;
use super::output::Column;

/// A followed table as the stream's last Relation message described it.
pub(super) struct Followed {
    pub output: usize,
    /// No rule reads it (a lookup, `teams`): only its key matters, for its children.
    pub reference_only: bool,
    pub name: String,
    pub columns: Arc<Vec<Column>>,
    /// Where the primary key's columns sit among `columns`.
    pub key_positions: Vec<usize>,
}

/// A Relation message: one of the rules' output tables, with REPLICA IDENTITY FULL, whose
/// columns' types are read on the target; anything else stops the stream.
pub(super) async fn follow(applier: &Applier, r: &RelationBody) -> Result<Followed, ReverseError> {
    let name = format!("{}.{}", r.namespace, r.name);
    let Some(output) = applier
        .outputs
        .iter()
        .position(|o| o.table.schema == r.namespace && o.table.name == r.name)
    else {
        return Err(ReverseError::Unmappable(format!(
            "the reverse stream carries changes of {name}, which no reverse rule reads: it was added to publication switchyard_reverse_* by hand? Remove it (ALTER PUBLICATION ... DROP TABLE) and start `switchyard follow --reverse` again"
        )));
    };
    let reference_only = output >= applier.rules_read;
    if r.replica_identity != ReplicaIdentity::Full && !reference_only {
        return Err(not_full(&name));
    }
    let types: Vec<u32> = r.columns.iter().map(|c| c.type_id).collect();
    let modifiers: Vec<i32> = r.columns.iter().map(|c| c.type_modifier).collect();
    let rows = applier
        .target
        .query(
            "SELECT format_type(t, m) FROM unnest($1::oid[], $2::int4[]) WITH ORDINALITY AS u(t, m, n) ORDER BY n",
            &[&types, &modifiers],
        )
        .await
        .map_err(ReverseError::target(format!("reading the column types of {name}")))?;
    let columns: Vec<Column> = r
        .columns
        .iter()
        .zip(&rows)
        .map(|(c, row)| Column {
            name: c.name.clone(),
            type_sql: row.get(0),
        })
        .collect();
    let key_positions = applier.outputs[output]
        .key
        .iter()
        .map(|k| {
            columns.iter().position(|c| c.name == k.name).ok_or_else(|| {
                ReverseError::Unmappable(format!(
                    "{name} no longer has its primary key column {}: the reverse stream cannot find its rows",
                    k.name
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Followed {
        output,
        reference_only,
        name,
        columns: Arc::new(columns),
        key_positions,
    })
}

pub(super) fn followed(
    relations: &HashMap<u32, Followed>,
    id: u32,
) -> Result<&Followed, ReverseError> {
    relations.get(&id).ok_or_else(|| {
        ReverseError::Unmappable(format!(
            "a change of relation {id} arrived before its Relation message: the stream is out of step; start `switchyard follow --reverse` again"
        ))
    })
}

pub(super) fn not_full(table: &str) -> ReverseError {
    ReverseError::Unmappable(format!(
        "{table} does not have REPLICA IDENTITY FULL: an update or delete there carries only its key, not the legacy key the old row had, so the reverse stream stops before it (nothing past it is confirmed). Run ALTER TABLE {table} REPLICA IDENTITY FULL; the change already in the WAL stays without its old row: delete or fix its legacy row by hand, advance the slot past it, and start `switchyard follow --reverse` again"
    ))
}

/// Marks the row whose values are `row` (in the Relation's order) as changed.
pub(super) fn touch(batch: &mut Batch, f: &Followed, row: &[Option<String>]) {
    let key = f
        .key_positions
        .iter()
        .map(|&p| row.get(p).cloned().flatten())
        .collect();
    touch_key(batch, f, key);
    batch.changes += 1;
}

/// The primary key's values in `tuple`, read alone: the other columns may be unchanged
/// TOASTed values (`u`) or, in a key tuple, NULL.
pub(super) fn key_of(f: &Followed, tuple: &TupleData) -> Vec<Option<String>> {
    f.key_positions
        .iter()
        .map(|&p| match tuple.columns.get(p) {
            Some(TupleColumn::Text(b)) => std::str::from_utf8(b).ok().map(str::to_owned),
            _ => None,
        })
        .collect()
}

pub(super) fn touch_key(batch: &mut Batch, f: &Followed, key: Vec<Option<String>>) {
    if let Some(key) = key.into_iter().collect::<Option<Vec<String>>>() {
        batch.touched[f.output].insert(key);
    }
}
