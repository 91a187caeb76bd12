//! A decoded row change (pgoutput Insert, Update, Delete) turned into operations on the
//! outputs, with the same compiled transforms as the backfill: a row streamed and a row copied
//! come out identical.
//!
//! ```text
//!   Insert new             -> upsert each output whose `when` holds
//!   Update new [old key]   -> upsert where `when` holds; delete by key from the upsert outputs
//!                             it no longer reaches (a vortex_item gaining a parent moves from
//!                             tasks to sub_tasks); if the source key changed, delete the old
//!                             key's rows first
//!   Delete old key         -> delete by key from every upsert output
//! ```
//! A change whose new version the transforms reject deletes its key from the upsert outputs
//! (see [`rejected_ops`]). Insert-if-absent outputs (teams, members) are never deleted. Deletes need an output's key
//! from the source key alone, which `check` verifies
//! ([`super::program::SourcePlan::key_from_source_key`]).

use std::borrow::Cow;

use crate::transform::program::{SourcePlan, WriteMode};

use super::eval::{EvalError, Scope};
use super::memo::Memo;
use super::row::{encode_value, transform_values, Env, OutputKeys, RowOut};
use super::value::Value;

/// What to do to one output for one change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputOp {
    /// The output row, as a COPY text line (with its `\n`), and its key, as a delete's.
    Upsert {
        output: usize,
        row: Vec<u8>,
        key: Vec<u8>,
    },
    /// The output key, as COPY text fields of the key columns (with its `\n`).
    Delete { output: usize, key: Vec<u8> },
}

/// A source change with its columns in the plan's order (see [`SourcePlan::columns`]).
#[derive(Debug)]
pub enum RowChange<'r> {
    Insert {
        new: Vec<Value<'r>>,
    },
    Update {
        old_key: Option<Vec<Value<'r>>>,
        new: Vec<Value<'r>>,
    },
    Delete {
        old_key: Vec<Value<'r>>,
    },
}

/// Appends the operations of one change to `ops`.
pub fn change_ops(
    source: &SourcePlan,
    env: &Env<'_>,
    memo: &mut Memo,
    change: &RowChange<'_>,
    ops: &mut Vec<OutputOp>,
) -> Result<(), EvalError> {
    match change {
        RowChange::Insert { new } => upsert_ops(source, env, memo, new, false, ops),
        RowChange::Update { old_key, new } => {
            if let Some(old) = old_key {
                if old[..source.key.len()] != new[..source.key.len()] {
                    delete_ops(source, env, old, ops)?;
                }
            }
            upsert_ops(source, env, memo, new, true, ops)
        }
        RowChange::Delete { old_key } => delete_ops(source, env, old_key, ops),
    }
}

/// The operations for a change whose new version the transforms rejected: the row is
/// dead-lettered, and its key (and the old key, when the update changed it) leaves every upsert
/// output, as if the row had been deleted. The backfill writes nothing for a rejected row, and
/// `verify` expects nothing for it, so all three agree: a source row the transforms reject has
/// no output rows, only a dead letter. A row's previous version never stays in the target
/// looking current.
pub fn rejected_ops(
    source: &SourcePlan,
    env: &Env<'_>,
    change: &RowChange<'_>,
    ops: &mut Vec<OutputOp>,
) -> Result<(), EvalError> {
    match change {
        RowChange::Insert { new } => delete_ops(source, env, new, ops),
        RowChange::Update { old_key, new } => {
            if let Some(old) = old_key {
                if old[..source.key.len()] != new[..source.key.len()] {
                    delete_ops(source, env, old, ops)?;
                }
            }
            delete_ops(source, env, new, ops)
        }
        RowChange::Delete { .. } => Ok(()),
    }
}

fn upsert_ops(
    source: &SourcePlan,
    env: &Env<'_>,
    memo: &mut Memo,
    new: &[Value<'_>],
    may_move: bool,
    ops: &mut Vec<OutputOp>,
) -> Result<(), EvalError> {
    let mut buffers: Vec<Vec<u8>> = vec![Vec::new(); source.outputs.len()];
    let (mut derived, mut marks) = (Vec::new(), Vec::new());
    let mut keys = OutputKeys::default();
    let out = RowOut {
        rows: &mut buffers,
        text_rows: &mut [],
        keys: Some(&mut keys),
    };
    transform_values(source, env, new, memo, &mut derived, &mut marks, out)?;
    let mut unreached = Vec::new();
    for (output, (row, key)) in buffers.into_iter().zip(keys.keys).enumerate() {
        if !row.is_empty() {
            ops.push(OutputOp::Upsert { output, row, key });
        } else if may_move && source.outputs[output].mode == WriteMode::Upsert {
            unreached.push(output);
        }
    }
    if !unreached.is_empty() {
        key_ops(source, env, new, &unreached, ops)?;
    }
    Ok(())
}

fn delete_ops(
    source: &SourcePlan,
    env: &Env<'_>,
    old_key: &[Value<'_>],
    ops: &mut Vec<OutputOp>,
) -> Result<(), EvalError> {
    let outputs: Vec<usize> = (0..source.outputs.len())
        .filter(|o| source.outputs[*o].mode == WriteMode::Upsert)
        .collect();
    key_ops(source, env, old_key, &outputs, ops)
}

/// Delete operations for `outputs`, their keys computed from the source key columns of `row`
/// (the other columns read as NULL, as they may be absent from an old key tuple).
fn key_ops(
    source: &SourcePlan,
    env: &Env<'_>,
    row: &[Value<'_>],
    outputs: &[usize],
    ops: &mut Vec<OutputOp>,
) -> Result<(), EvalError> {
    let columns: Vec<Value<'_>> = (0..source.columns.len())
        .map(|i| {
            if i < source.key.len() {
                borrow(&row[i])
            } else {
                Value::Null
            }
        })
        .collect();
    let mut derived: Vec<Value<'_>> = Vec::with_capacity(source.derived.len());
    for (name, expr) in &source.derived {
        let scope = Scope {
            columns: &columns,
            derived: &derived,
            maps: env.maps,
            lookups: env.lookups,
        };
        let v = expr
            .eval(&scope)
            .map_err(|e| EvalError::new(format!("{name}: {e}")))?;
        derived.push(v);
    }
    let scope = Scope {
        columns: &columns,
        derived: &derived,
        maps: env.maps,
        lookups: env.lookups,
    };
    for &output in outputs {
        let plan = &source.outputs[output];
        let mut key = Vec::new();
        for (i, &position) in plan.key_positions.iter().enumerate() {
            if i > 0 {
                key.push(b'\t');
            }
            let v = plan.exprs[position].eval(&scope)?;
            encode_value(&v, &mut key);
        }
        key.push(b'\n');
        ops.push(OutputOp::Delete { output, key });
    }
    Ok(())
}

fn borrow<'r>(v: &'r Value<'_>) -> Value<'r> {
    match v {
        Value::Text(t) => Value::Text(Cow::Borrowed(t.as_ref())),
        other => other.clone().into_owned(),
    }
}
