//! One source row in, zero or more output rows out: the single transform shape shared by the
//! backfill (rows from COPY) and the follow (rows from pgoutput).
//!
//! Output rows are written as COPY text straight into per-output buffers, so a transformed row
//! costs no intermediate structure. A row either produces all its outputs or none: when any
//! expression fails, what it had written is truncated away and the row is rejected with a
//! reason, for the dead-letter table.

use std::ops::Range;

use crate::pg::copy_binary::{self as copy_binary_wire, BinaryType};
use crate::pg::copy_text::{self, RawField};
use crate::transform::program::{OutputPlan, SourcePlan};

use super::copy_binary::{encode_field, RowFormat};
use super::eval::{EvalError, Lookups, Scope, ValueMap};
use super::memo::Memo;
use super::value::Value;

/// A row the transform refused, with what the dead-letter table records about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// The source key as a JSON object, e.g. `{"id": "42"}`.
    pub key: String,
    /// Every column the plan reads, as a JSON object of texts (NULL as null).
    pub row: String,
    pub reason: String,
}

/// The plan-wide things a transform needs besides the row.
pub struct Env<'p> {
    pub maps: &'p [ValueMap],
    pub lookups: &'p dyn Lookups,
    /// Each output's format, indexed by [`OutputPlan::number`]; empty writes every output as
    /// COPY text.
    pub formats: &'p [RowFormat],
}

impl Env<'_> {
    /// The format of output `number`.
    pub fn format(&self, number: usize) -> &RowFormat {
        self.formats.get(number).unwrap_or(&RowFormat::Text)
    }
}

/// Buffers reused from row to row of a batch, so that a row costs no allocation of its own.
#[derive(Debug, Default)]
pub struct RowScratch<'r> {
    fields: Vec<RawField<'r>>,
    columns: Vec<Value<'r>>,
    derived: Vec<Value<'r>>,
    marks: Vec<usize>,
}

/// Transforms one COPY text line (the plan's read columns, in order) into `out`.
pub fn transform_copy_line<'r>(
    source: &'r SourcePlan,
    env: &Env<'r>,
    line: &'r [u8],
    memo: &mut Memo,
    scratch: &mut RowScratch<'r>,
    out: RowOut<'_>,
) -> Result<(), Rejected> {
    let RowScratch {
        fields,
        columns,
        derived,
        marks,
    } = scratch;
    copy_text::split_line(line, fields);
    let result = (|| {
        if fields.len() != source.columns.len() {
            return Err(EvalError::new(format!(
                "COPY line has {} fields, expected {}",
                fields.len(),
                source.columns.len()
            )));
        }
        columns.clear();
        for f in fields.iter() {
            columns.push(match f {
                None => Value::Null,
                Some(raw) => Value::Text(
                    copy_text::decode_field(raw).map_err(|e| EvalError::new(e.to_string()))?,
                ),
            });
        }
        transform_values(source, env, columns, memo, derived, marks, out)
    })();
    result.map_err(|e| reject(source, fields, e))
}

/// The output keys of a row, handed out with it: each output's key columns, taken from the
/// fields as they are written, so that nobody splits the row again to find them.
#[derive(Debug, Default)]
pub struct OutputKeys {
    /// Per output, the key of the row written to it, as COPY text fields of the key columns
    /// (with its `\n`); left as it was for an output the row does not reach.
    pub keys: Vec<Vec<u8>>,
    /// Where each field of the row being written starts and ends in its buffer.
    spans: Vec<Range<usize>>,
}

/// Where [`transform_values`] writes a row, per output of the source (in plan order).
pub struct RowOut<'a> {
    /// Each output's rows, in its [`RowFormat`] (see [`Env::formats`]).
    pub rows: &'a mut [Vec<u8>],
    /// The rows of binary outputs that had to go as COPY text (see [`super::copy_binary`]):
    /// as long as `rows` when any output is binary, else may be empty.
    pub text_rows: &'a mut [Vec<u8>],
    /// With keys, each row written hands out its key; only for text outputs.
    pub keys: Option<&'a mut OutputKeys>,
}

/// Transforms a row given as values (the follow path decodes pgoutput tuples into these).
/// `derived` and `marks` are scratch space.
pub fn transform_values<'r>(
    source: &'r SourcePlan,
    env: &Env<'r>,
    columns: &[Value<'r>],
    memo: &mut Memo,
    derived: &mut Vec<Value<'r>>,
    marks: &mut Vec<usize>,
    out: RowOut<'_>,
) -> Result<(), EvalError> {
    let RowOut {
        rows,
        text_rows,
        mut keys,
    } = out;
    if let Some(keys) = keys.as_deref_mut() {
        keys.keys.resize_with(rows.len(), Vec::new);
    }
    derived.clear();
    for (i, (name, expr)) in source.derived.iter().enumerate() {
        let memo_input = match source.memo_columns[i].map(|c| &columns[c]) {
            _ if !memo.remembers(i) => None,
            Some(Value::Null) => Some(None),
            Some(Value::Text(t)) => Some(Some(t.as_ref())),
            _ => None,
        };
        if let Some(hit) = memo_input.and_then(|input| memo.get(i, input)) {
            derived.push(hit.clone());
            continue;
        }
        let scope = Scope {
            columns,
            derived,
            maps: env.maps,
            lookups: env.lookups,
        };
        let v = expr
            .eval(&scope)
            .map_err(|e| EvalError::new(format!("{name}: {e}")))?;
        if let Some(input) = memo_input {
            memo.insert(i, input, v.clone().into_owned());
        }
        derived.push(v);
    }
    marks.clear();
    marks.extend(rows.iter().chain(text_rows.iter()).map(Vec::len));
    let scope = Scope {
        columns,
        derived,
        maps: env.maps,
        lookups: env.lookups,
    };
    let written = (|| {
        for (number, (output, buf)) in source.outputs.iter().zip(rows.iter_mut()).enumerate() {
            if let Some(when) = &output.when {
                match when.eval(&scope)? {
                    Value::Bool(true) => {}
                    Value::Bool(false) | Value::Null => continue,
                    other => {
                        return Err(EvalError::new(format!(
                            "{}: when must be a boolean, got {}",
                            output.table,
                            other.type_name()
                        )))
                    }
                }
            }
            if let RowFormat::Binary(types) = env.format(output.number) {
                debug_assert!(keys.is_none(), "output keys are COPY text");
                if !binary_row(output, types, &scope, buf)? {
                    text_row(output, &scope, &mut text_rows[number], None)?;
                }
                continue;
            }
            let spans = keys.as_deref_mut().map(|k| &mut k.spans);
            text_row(output, &scope, buf, spans)?;
            if let Some(OutputKeys { keys, spans }) = keys.as_deref_mut() {
                let key = &mut keys[number];
                key.clear();
                for (i, &position) in output.key_positions.iter().enumerate() {
                    if i > 0 {
                        key.push(b'\t');
                    }
                    if let Some(span) = spans.get(position) {
                        key.extend_from_slice(&buf[span.clone()]);
                    }
                }
                key.push(b'\n');
            }
        }
        Ok(())
    })();
    if written.is_err() {
        for (buf, mark) in rows
            .iter_mut()
            .chain(text_rows.iter_mut())
            .zip(marks.iter())
        {
            buf.truncate(*mark);
        }
    }
    written
}

/// Appends one output row as a COPY text line; with `spans`, where each field lies in `buf`.
fn text_row(
    output: &OutputPlan,
    scope: &Scope<'_, '_>,
    buf: &mut Vec<u8>,
    mut spans: Option<&mut Vec<Range<usize>>>,
) -> Result<(), EvalError> {
    if let Some(spans) = spans.as_deref_mut() {
        spans.clear();
    }
    for (i, (name, expr)) in output.columns.iter().zip(&output.exprs).enumerate() {
        if i > 0 {
            buf.push(b'\t');
        }
        let start = buf.len();
        let v = expr
            .eval(scope)
            .map_err(|e| EvalError::new(format!("{}.{name}: {e}", output.table.name)))?;
        encode_value(&v, buf);
        if let Some(spans) = spans.as_deref_mut() {
            spans.push(start..buf.len());
        }
    }
    buf.push(b'\n');
    Ok(())
}

/// Appends one output row as a binary COPY tuple; `false`, with `buf` as it was, when a field
/// cannot be written exactly in binary and the row must go as text.
fn binary_row(
    output: &OutputPlan,
    types: &[BinaryType],
    scope: &Scope<'_, '_>,
    buf: &mut Vec<u8>,
) -> Result<bool, EvalError> {
    let start = buf.len();
    copy_binary_wire::begin_tuple(buf, output.columns.len() as u16);
    for ((name, expr), ty) in output.columns.iter().zip(&output.exprs).zip(types) {
        let v = expr
            .eval(scope)
            .map_err(|e| EvalError::new(format!("{}.{name}: {e}", output.table.name)))?;
        if encode_field(&v, *ty, buf).is_err() {
            buf.truncate(start);
            return Ok(false);
        }
    }
    Ok(true)
}

/// Appends one value in COPY text form.
pub fn encode_value(v: &Value<'_>, buf: &mut Vec<u8>) {
    match v {
        Value::Null => buf.extend_from_slice(copy_text::NULL),
        Value::Text(t) | Value::Json(t) => copy_text::encode_field(t, buf),
        Value::Uuid(u) => {
            let mut text = uuid::Uuid::encode_buffer();
            buf.extend_from_slice(u.hyphenated().encode_lower(&mut text).as_bytes());
        }
        other => {
            use std::io::Write;
            // Typed values never contain tabs, newlines or backslashes.
            let _ = write!(buf, "{other}");
        }
    }
}

/// Describes a source line for the dead-letter table.
pub fn describe(source: &SourcePlan, line: &[u8], reason: String) -> Rejected {
    let mut fields = Vec::with_capacity(source.columns.len());
    copy_text::split_line(line, &mut fields);
    reject(source, &fields, EvalError::new(reason))
}

fn reject(source: &SourcePlan, fields: &[RawField<'_>], e: EvalError) -> Rejected {
    let text = |f: &RawField<'_>| -> serde_json::Value {
        match f {
            None => serde_json::Value::Null,
            Some(raw) => serde_json::Value::String(match copy_text::decode_field(raw) {
                Ok(t) => t.into_owned(),
                Err(_) => String::from_utf8_lossy(raw).into_owned(),
            }),
        }
    };
    let mut key = serde_json::Map::new();
    let mut row = serde_json::Map::new();
    for (i, name) in source.columns.iter().enumerate() {
        let v = fields.get(i).map_or(serde_json::Value::Null, text);
        if i < source.key.len() {
            key.insert(name.clone(), v.clone());
        }
        row.insert(name.clone(), v);
    }
    Rejected {
        key: serde_json::Value::Object(key).to_string(),
        row: serde_json::Value::Object(row).to_string(),
        reason: e.message,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::plan::{seed_plan, Plan};

    /// Lookup ids handed out in order of first sight, like the identity columns would.
    #[derive(Default)]
    struct InMemoryLookups(Mutex<Vec<(usize, String)>>);

    impl Lookups for InMemoryLookups {
        fn id(&self, lookup: usize, name: &str) -> Result<i64, EvalError> {
            let mut seen = self.0.lock().unwrap();
            let key = (lookup, name.to_owned());
            let pos = seen.iter().position(|k| *k == key).unwrap_or_else(|| {
                seen.push(key);
                seen.len() - 1
            });
            Ok(pos as i64 + 1)
        }
    }

    fn run(plan: &Plan, source: usize, line: &str) -> Result<Vec<String>, Rejected> {
        let lookups = InMemoryLookups::default();
        let env = Env {
            maps: &plan.maps,
            lookups: &lookups,
            formats: &[],
        };
        let src = &plan.sources[source];
        let mut outputs = vec![Vec::new(); src.outputs.len()];
        let mut memo = Memo::new(src.derived.len());
        let mut scratch = RowScratch::default();
        let out = RowOut {
            rows: &mut outputs,
            text_rows: &mut [],
            keys: None,
        };
        transform_copy_line(src, &env, line.as_bytes(), &mut memo, &mut scratch, out)?;
        Ok(outputs
            .into_iter()
            .map(|b| String::from_utf8(b).unwrap())
            .collect())
    }

    #[test]
    fn a_project_becomes_a_project_a_team_and_a_member() {
        let plan = seed_plan();
        let src = &plan.sources[0];
        let mut line = String::new();
        for (i, col) in src.columns.iter().enumerate() {
            if i > 0 {
                line.push('\t');
            }
            line.push_str(match col.as_str() {
                "id" => "7",
                "type" => " In-Progress ",
                "status" => "On_Hold",
                "owner_email" => " Ann@X.com",
                "company_id" => "3",
                "name" => "Roof\\tand walls",
                "budget" => "12,500.005",
                "start_date" => "",
                "created_at" => "2024-03-01 10:00:00",
                "updated_at" => "2024-03-02 10:00:00",
                "meta" => "\\N",
                other => panic!("unexpected column {other}"),
            });
        }
        let out = run(&plan, 0, &line).unwrap();
        let project: Vec<&str> = out[0].trim_end().split('\t').collect();
        let id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, b"company_projects:7");
        let team = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, b"company:3");
        assert_eq!(project[0], id.to_string());
        assert_eq!(project[1..3], ["company_projects", "7"]);
        assert_eq!(project[3], team.to_string());
        assert_eq!(project[5], "Roof\\tand walls");
        assert_eq!(project[6], "1", "stage id from the lookup");
        assert_eq!(project[7], "on_hold");
        assert_eq!(project[8], "ann@x.com");
        assert_eq!(project[9], "12500.01");
        assert_eq!(project[10], "\\N", "'' start_date becomes NULL");
        assert_eq!(out[1], format!("{team}\t3\tCompany 3\n"));
        assert_eq!(out[2], format!("{team}\tann@x.com\n"));
    }

    #[test]
    fn a_bad_budget_rejects_the_whole_row_with_its_key() {
        let plan = seed_plan();
        let src = &plan.sources[0];
        let line: Vec<&str> = src
            .columns
            .iter()
            .map(|c| match c.as_str() {
                "id" => "9",
                "budget" => "n/a",
                "company_id" => "1",
                _ => "\\N",
            })
            .collect();
        let rejected = run(&plan, 0, &line.join("\t")).unwrap_err();
        assert_eq!(rejected.key, r#"{"id":"9"}"#);
        assert!(
            rejected.reason.contains("projects.budget"),
            "{}",
            rejected.reason
        );
        assert!(rejected.reason.contains("n/a"), "{}", rejected.reason);
    }

    #[test]
    fn vortex_items_split_into_tasks_and_sub_tasks() {
        let plan = seed_plan();
        let src = &plan.sources[2];
        let make = |parent: &str| -> String {
            src.columns
                .iter()
                .map(|c| match c.as_str() {
                    "id" => "5",
                    "parent_item_id" => parent,
                    "status" => "In Progress",
                    "priority" => "High ",
                    "title" => "t",
                    _ => "\\N",
                })
                .collect::<Vec<_>>()
                .join("\t")
        };
        let task = run(&plan, 2, &make("\\N")).unwrap();
        assert!(!task[0].is_empty() && task[1].is_empty());
        let fields: Vec<&str> = task[0].split('\t').collect();
        assert_eq!(fields[5], "3", "priority 'High ' maps to 3");
        let sub = run(&plan, 2, &make("2")).unwrap();
        assert!(sub[0].is_empty() && !sub[1].is_empty());
    }

    /// The key handed out with an upsert is what a delete of the same row computes and what
    /// the row holds at its key columns (split independently here): coalescing matches an
    /// upsert and a later delete of one key only if all three agree.
    #[test]
    fn the_key_handed_out_with_a_row_is_the_key_a_delete_finds() {
        use crate::transform::change::{change_ops, OutputOp, RowChange};
        let plan = seed_plan();
        let lookups = InMemoryLookups::default();
        let env = Env {
            maps: &plan.maps,
            lookups: &lookups,
            formats: &[],
        };
        let src = &plan.sources[0];
        let values: Vec<Value<'_>> = src
            .columns
            .iter()
            .map(|col| match col.as_str() {
                "id" => Value::Text("7".into()),
                "company_id" => Value::Text("3".into()),
                "name" => Value::Text("Roof\tand\nwalls".into()),
                "budget" => Value::Text("10".into()),
                "created_at" | "updated_at" => Value::Text("2024-03-01 10:00:00".into()),
                "meta" | "start_date" => Value::Null,
                _ => Value::Text("x".into()),
            })
            .collect();
        let mut memo = Memo::new(src.derived.len());
        let (mut upserts, mut deletes) = (Vec::new(), Vec::new());
        let insert = RowChange::Insert {
            new: values.clone(),
        };
        change_ops(src, &env, &mut memo, &insert, &mut upserts).unwrap();
        let delete = RowChange::Delete { old_key: values };
        change_ops(src, &env, &mut memo, &delete, &mut deletes).unwrap();
        let mut compared = 0;
        for op in &upserts {
            let OutputOp::Upsert { output, row, key } = op else {
                panic!("an insert makes upserts: {op:?}");
            };
            let fields: Vec<&[u8]> = row[..row.len() - 1].split(|b| *b == b'\t').collect();
            let mut split = src.outputs[*output]
                .key_positions
                .iter()
                .map(|&p| fields[p])
                .collect::<Vec<_>>()
                .join(&b'\t');
            split.push(b'\n');
            assert_eq!(key, &split, "output {output}");
            if let Some(OutputOp::Delete { key: deleted, .. }) = deletes
                .iter()
                .find(|d| matches!(d, OutputOp::Delete { output: o, .. } if o == output))
            {
                assert_eq!(key, deleted, "output {output}");
                compared += 1;
            }
        }
        assert!(
            compared > 0,
            "no upsert output is deleted by key: {deletes:?}"
        );
    }
}
