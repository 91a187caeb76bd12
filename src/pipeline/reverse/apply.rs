//! One batch into the legacy tables, in one legacy transaction with the applied LSN.
//!
//! ```text
//!  rows now   per rule, in plan order: the rule's SELECT over the changed rows as they are now
//!             in the new tables; a NULL legacy key is allocated (see `keys`) before the next
//!             rule runs, so a rule referencing those keys sees them
//!  rows gone  per rule: its legacy key over each old row (updates, deletes)
//!  write      legacy transaction: delete the keys gone and not produced again, upsert the rows
//!             now, record the applied LSN (and the fence), commit
//! ```
//!
//! Reading the rows as they are now, not as each change left them, makes the batch's result
//! independent of the order of its changes (a row deleted from `tasks` and inserted into
//! `sub_tasks` under the same legacy key, in either order, leaves that legacy row) and makes
//! a replay after a crash write the same rows again: exactly once by idempotence, with the LSN
//! committed beside the rows.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

use crate::checkpoint::reverse as progress;
use crate::pg::lsn::Lsn;
use crate::plan::{OnError, Plan, ReverseTable};

use super::batch::{Batch, OldRow};
use super::dead_letters::{savepoint, DeadLetter};
use super::error::ReverseError;
use super::keys::{self, KeySpace};
use super::legacy::LegacyTable;
use super::output::{OutputTable, Reference};

/// What the apply needs, resolved once by the consumer.
pub struct Applier {
    pub migration: String,
    /// `outputs[..rules_read]` are the tables rules read; the rest are only referenced by them.
    pub rules_read: usize,
    /// The plan, whose `[reverse]` rules the consumer checked are there.
    pub plan: Arc<Plan>,
    pub outputs: Vec<OutputTable>,
    /// Per rule (index into `reverse.tables`), its output's index in `outputs`.
    pub output_of_rule: Vec<usize>,
    /// Per plan source fed by a rule, the legacy table.
    pub legacy_tables: HashMap<usize, LegacyTable>,
    /// Foreign keys between the outputs: a changed parent row marks its children changed.
    pub references: Vec<Reference>,
    /// The new tables' session: the rules' SELECTs and the allocated keys.
    pub target: Client,
    /// The legacy side's session: the writes (replica role, see `consumer`).
    pub legacy: Client,
}

/// The rows one rule produces now: key and columns as text, by legacy key.
struct Produced {
    rule: usize,
    /// By legacy key: the output row's key (as `reverse_keys` keeps it) and the values.
    rows: BTreeMap<Vec<String>, (String, Vec<Option<String>>)>,
}

impl Applier {
    /// Applies `batch`; with `through`, records that everything up to it is applied (a batch
    /// cut inside a large source transaction records nothing: it is applied again with the
    /// rest, which writes the same rows).
    pub async fn apply(&mut self, batch: &Batch, through: Option<Lsn>) -> Result<(), ReverseError> {
        let plan = self.plan.clone();
        let rules = &plan.reverse.as_ref().expect("checked at start").tables;
        let touched = self.with_children(&batch.touched).await?;
        let mut produced = Vec::new();
        let mut present: HashMap<usize, BTreeSet<Vec<String>>> = HashMap::new();
        for (index, rule) in rules.iter().enumerate() {
            let touched = &touched[self.output_of_rule[index]];
            if touched.is_empty() {
                continue;
            }
            let rows = self.rows_now(index, rule, touched).await?;
            let seen = present.entry(rule.source).or_default();
            if let Some(key) = rows.keys().find(|k| seen.contains(*k)) {
                return Err(ReverseError::Unmappable(format!(
                    "two rows of the new tables map to legacy row {} of {} at once (one of them through reverse rule {}): the legacy table can hold only one. Nothing past the last applied change was confirmed; give one of them another legacy key, then start `switchyard follow --reverse` again",
                    key.join(", "),
                    rule.table,
                    rule.field
                )));
            }
            seen.extend(rows.keys().cloned());
            produced.push(Produced { rule: index, rows });
        }
        let mut gone: HashMap<usize, BTreeSet<Vec<String>>> = HashMap::new();
        for (index, rule) in rules.iter().enumerate() {
            let old = &batch.old_rows[self.output_of_rule[index]];
            if old.is_empty() {
                continue;
            }
            let keys = self.old_keys(index, rule, old).await?;
            gone.entry(rule.source).or_default().extend(keys);
        }
        self.claims(&mut produced, &mut present, &gone).await?;
        self.write(batch, through, produced, present, gone).await
    }

    /// Every row of the new tables that claims, now, a legacy row this batch writes or
    /// deletes, whether or not it changed in the batch. A legacy key two rows claim would keep
    /// one of them silently (a key set by hand on one, a key allocated that another row already
    /// has), so it stops the stream; a legacy row this batch would delete that another row
    /// still claims (a legacy key moved back) is written from that row instead.
    async fn claims(
        &self,
        produced: &mut Vec<Produced>,
        present: &mut HashMap<usize, BTreeSet<Vec<String>>>,
        gone: &HashMap<usize, BTreeSet<Vec<String>>>,
    ) -> Result<(), ReverseError> {
        let plan = self.plan.clone();
        let rules = &plan.reverse.as_ref().expect("checked at start").tables;
        for (&source, table) in &self.legacy_tables {
            let mut keys: BTreeSet<Vec<String>> = present.get(&source).cloned().unwrap_or_default();
            keys.extend(gone.get(&source).into_iter().flatten().cloned());
            if keys.is_empty() {
                continue;
            }
            // Who claims each key in this batch: (output table, output key).
            let mut owner: BTreeMap<Vec<String>, (String, String)> = BTreeMap::new();
            for p in produced.iter().filter(|p| rules[p.rule].source == source) {
                for (key, (output_key, _)) in &p.rows {
                    owner.insert(
                        key.clone(),
                        (rules[p.rule].from.to_string(), output_key.clone()),
                    );
                }
            }
            let arrays = transpose(
                keys.iter().map(|k| k.iter().cloned().map(Some).collect()),
                table.key.len(),
            );
            for (index, rule) in rules.iter().enumerate().filter(|(_, r)| r.source == source) {
                let output = &self.outputs[self.output_of_rule[index]];
                // By the rows' own key expressions, and by the keys allocated to them: two
                // queries, each served by an index (an OR of the two would scan the table).
                let mut queries = vec![(output.claiming_rows_sql(rule, &table.key), &arrays[..])];
                let allocated = match (&rule.sequence, table.key.len()) {
                    (Some(_), 1) => {
                        output.allocated_rows_sql(rule, &self.migration, &rule.table.name)
                    }
                    _ => None,
                };
                if let Some(sql) = allocated {
                    queries.push((sql, &arrays[..1]));
                }
                let mut rows = Vec::new();
                for (sql, arrays) in &queries {
                    rows.extend(self.target.query(sql, &params(arrays)).await.map_err(
                        ReverseError::target(format!(
                            "finding the rows that claim the legacy rows of reverse rule {} ({} from {})",
                            rule.field, rule.table, rule.from
                        )),
                    )?);
                }
                let width = output.key.len();
                let mut found: Vec<(String, Vec<Option<String>>)> = rows
                    .iter()
                    .map(|r| {
                        let output_key =
                            output_key((0..width).map(|i| r.get::<_, String>(i)).collect());
                        (output_key, (width..r.len()).map(|i| r.get(i)).collect())
                    })
                    .collect();
                let unkeyed: Vec<String> = found
                    .iter()
                    .filter(|(_, v)| v[..rule.key.len()].iter().any(Option::is_none))
                    .map(|(o, _)| o.clone())
                    .collect();
                if !unkeyed.is_empty() {
                    let space = KeySpace {
                        migration: &self.migration,
                        legacy_table: &rule.table.name,
                        output_table: &rule.from.name,
                    };
                    let kept = keys::kept(&self.target, &space, &unkeyed).await?;
                    for (o, values) in &mut found {
                        if let Some(k) = kept.get(o) {
                            values[0] = Some(k.clone());
                        }
                    }
                }
                let mut extra = BTreeMap::new();
                for (output_key, values) in found {
                    let Some(key) = values[..rule.key.len()]
                        .iter()
                        .cloned()
                        .collect::<Option<Vec<String>>>()
                    else {
                        continue;
                    };
                    let claimant = (rule.from.to_string(), output_key.clone());
                    match owner.get(&key) {
                        Some(o) if *o == claimant => {}
                        Some((from, other)) => {
                            return Err(ReverseError::Unmappable(format!(
                                "row {other} of {from} and row {output_key} of {} both map to legacy row {} of {} now: the legacy table can hold only one, and writing one would silently replace the other. Nothing past the last applied change was confirmed; give one of them another legacy key, then start `switchyard follow --reverse` again (a key the stream allocated is kept in switchyard.reverse_keys: delete its row there, and set the legacy sequence past the keys set by hand, to have another allocated)",
                                rule.from,
                                key.join(", "),
                                rule.table
                            )));
                        }
                        None => {
                            owner.insert(key.clone(), claimant);
                            present.entry(source).or_default().insert(key.clone());
                            extra.insert(key, (output_key, values));
                        }
                    }
                }
                if !extra.is_empty() {
                    match produced.iter_mut().find(|p| p.rule == index) {
                        Some(p) => p.rows.extend(extra),
                        None => produced.push(Produced {
                            rule: index,
                            rows: extra,
                        }),
                    }
                }
            }
        }
        Ok(())
    }

    /// The changed rows and, through the foreign keys between the outputs, the rows
    /// referencing them (their children's children too, once per reference and round).
    async fn with_children(
        &self,
        touched: &[BTreeSet<Vec<String>>],
    ) -> Result<Vec<BTreeSet<Vec<String>>>, ReverseError> {
        let mut all = touched.to_vec();
        let mut fresh = touched.to_vec();
        // Each round follows every reference once from the rows the last round added; as many
        // rounds as outputs reach every descendant (the references form no cycle longer).
        for _ in 0..self.outputs.len() {
            let mut added = vec![BTreeSet::new(); all.len()];
            for r in &self.references {
                if fresh[r.parent].is_empty() || r.child == r.parent {
                    continue;
                }
                let width = self.outputs[r.parent].key.len();
                let arrays = transpose(
                    fresh[r.parent]
                        .iter()
                        .map(|k| k.iter().cloned().map(Some).collect()),
                    width,
                );
                let rows = self
                    .target
                    .query(&r.children_sql(&self.outputs), &params(&arrays))
                    .await
                    .map_err(ReverseError::target(format!(
                        "finding the rows of {} referencing changed rows of {}",
                        self.outputs[r.child].table, self.outputs[r.parent].table
                    )))?;
                for row in rows {
                    let key: Vec<String> = (0..row.len()).map(|i| row.get(i)).collect();
                    if all[r.child].insert(key.clone()) {
                        added[r.child].insert(key);
                    }
                }
            }
            if added.iter().all(BTreeSet::is_empty) {
                break;
            }
            fresh = added;
        }
        Ok(all)
    }

    /// The rule's rows for these output keys as the new tables hold them now.
    async fn rows_now(
        &self,
        index: usize,
        rule: &ReverseTable,
        touched: &BTreeSet<Vec<String>>,
    ) -> Result<BTreeMap<Vec<String>, (String, Vec<Option<String>>)>, ReverseError> {
        let output = &self.outputs[self.output_of_rule[index]];
        let width = output.key.len();
        let arrays = transpose(
            touched
                .iter()
                .map(|k| k.iter().cloned().map(Some).collect()),
            width,
        );
        let rows = self
            .target
            .query(&output.current_rows_sql(rule), &params(&arrays))
            .await
            .map_err(ReverseError::target(format!(
                "evaluating reverse rule {} ({} from {})",
                rule.field, rule.table, rule.from
            )))?;
        let keys = rule.key.len();
        let mut found: Vec<(String, Vec<Option<String>>)> = rows
            .iter()
            .map(|r| {
                let output_key = output_key((0..width).map(|i| r.get::<_, String>(i)).collect());
                let values = (width..r.len()).map(|i| r.get(i)).collect();
                (output_key, values)
            })
            .collect();
        let unkeyed: Vec<String> = found
            .iter()
            .filter(|(_, v)| v[..keys].iter().any(Option::is_none))
            .map(|(k, _)| k.clone())
            .collect();
        if !unkeyed.is_empty() {
            let allocated = self.allocate(rule, &unkeyed).await?;
            for (output_key, values) in &mut found {
                if let Some(legacy_key) = allocated.get(output_key) {
                    values[0] = Some(legacy_key.clone());
                }
            }
        }
        let mut rows: BTreeMap<Vec<String>, (String, Vec<Option<String>>)> = BTreeMap::new();
        for (output_key, values) in found {
            let key: Vec<String> = values[..keys].iter().flatten().cloned().collect();
            if let Some((other, _)) = rows.get(&key) {
                return Err(claimed_twice(rule, &key, other, &output_key));
            }
            rows.insert(key, (output_key, values));
        }
        Ok(rows)
    }

    /// Legacy keys for rows whose key expression gave NULL: rows the new application created.
    async fn allocate(
        &self,
        rule: &ReverseTable,
        output_keys: &[String],
    ) -> Result<HashMap<String, String>, ReverseError> {
        let Some(sequence) = rule.sequence.as_deref().filter(|_| rule.key.len() == 1) else {
            return Err(ReverseError::Unmappable(format!(
                "{} row {} has no legacy key ({} gave NULL) and reverse rule {} has no `sequence` to allocate one{}: give the rule a `sequence` (the legacy table's), or have the application set the legacy key, then start `switchyard follow --reverse` again. Nothing past the last applied change was confirmed",
                rule.from,
                output_keys[0],
                rule.key.iter().map(|(c, e)| format!("{c} = {e}")).collect::<Vec<_>>().join(", "),
                rule.field,
                if rule.key.len() > 1 { " (keys of several columns are never allocated)" } else { "" }
            )));
        };
        let space = KeySpace {
            migration: &self.migration,
            legacy_table: &rule.table.name,
            output_table: &rule.from.name,
        };
        keys::allocate(&self.target, &self.legacy, &space, sequence, output_keys).await
    }

    /// The legacy keys the old rows had under `rule` (rows its `when` did not hold for had
    /// none); an allocated key is looked up, never allocated.
    async fn old_keys(
        &self,
        index: usize,
        rule: &ReverseTable,
        old: &[OldRow],
    ) -> Result<Vec<Vec<String>>, ReverseError> {
        let output = &self.outputs[self.output_of_rule[index]];
        let width = output.key.len();
        let keys = rule.key.len();
        let mut found: Vec<(String, Vec<Option<String>>)> = Vec::new();
        for group in old.chunk_by(|a, b| Arc::ptr_eq(&a.0, &b.0)) {
            let columns = &group[0].0;
            let arrays = transpose(group.iter().map(|(_, row)| row.clone()), columns.len());
            let rows = self
                .target
                .query(&output.tuple_rows_sql(rule, columns), &params(&arrays))
                .await
                .map_err(ReverseError::target(format!(
                    "evaluating the legacy key of reverse rule {} over old rows of {}",
                    rule.field, rule.from
                )))?;
            found.extend(rows.iter().map(|r| {
                let output_key = output_key((0..width).map(|i| r.get::<_, String>(i)).collect());
                let key = (width..width + keys).map(|i| r.get(i)).collect();
                (output_key, key)
            }));
        }
        let unkeyed: Vec<String> = found
            .iter()
            .filter(|(_, k)| k.iter().any(Option::is_none))
            .map(|(o, _)| o.clone())
            .collect();
        let kept = if unkeyed.is_empty() || keys != 1 {
            HashMap::new()
        } else {
            let space = KeySpace {
                migration: &self.migration,
                legacy_table: &rule.table.name,
                output_table: &rule.from.name,
            };
            keys::kept(&self.target, &space, &unkeyed).await?
        };
        Ok(found
            .into_iter()
            .filter_map(|(output_key, key)| match key.iter().all(Option::is_some) {
                true => Some(key.into_iter().flatten().collect()),
                false => kept.get(&output_key).map(|k| vec![k.clone()]),
            })
            .collect())
    }

    /// The legacy transaction: deletes, upserts, the applied LSN.
    async fn write(
        &mut self,
        batch: &Batch,
        through: Option<Lsn>,
        produced: Vec<Produced>,
        present: HashMap<usize, BTreeSet<Vec<String>>>,
        gone: HashMap<usize, BTreeSet<Vec<String>>>,
    ) -> Result<(), ReverseError> {
        let plan = self.plan.clone();
        let tx = self
            .legacy
            .transaction()
            .await
            .map_err(ReverseError::legacy("beginning a transaction"))?;
        for (source, keys) in &gone {
            let keep = present.get(source);
            let deleted: Vec<&Vec<String>> = keys
                .iter()
                .filter(|k| keep.is_none_or(|p| !p.contains(*k)))
                .collect();
            if deleted.is_empty() {
                continue;
            }
            let table = &self.legacy_tables[source];
            let arrays = transpose(
                deleted
                    .iter()
                    .map(|k| k.iter().cloned().map(Some).collect()),
                table.key.len(),
            );
            tx.execute(&table.delete_sql(), &params(&arrays))
                .await
                .map_err(ReverseError::legacy(format!(
                    "deleting from {}",
                    table.name
                )))?;
        }
        let dead_letter = plan.on_error == OnError::DeadLetter;
        let mut letters = Vec::new();
        for p in &produced {
            if p.rows.is_empty() {
                continue;
            }
            let rule = &plan.reverse.as_ref().expect("checked at start").tables[p.rule];
            let table = &self.legacy_tables[&rule.source];
            let names: Vec<&str> = rule.all_columns().map(|(c, _)| c.as_str()).collect();
            let columns = table.typed(&names)?;
            let sql = table.upsert_sql(&columns);
            let context = || {
                format!(
                    "writing {} rows of reverse rule {} into {}",
                    p.rows.len(),
                    rule.field,
                    table.name
                )
            };
            let arrays = transpose(p.rows.values().map(|(_, v)| v.clone()), columns.len());
            if !dead_letter {
                tx.execute(&sql, &params(&arrays))
                    .await
                    .map_err(ReverseError::legacy(context()))?;
                continue;
            }
            // Under `on_error = "dead-letter"`, a row the legacy table refuses is recorded and
            // the others go on: the batch first, then row by row only if it is refused.
            let refused = savepoint(&tx, async { tx.execute(&sql, &params(&arrays)).await })
                .await
                .map_err(ReverseError::legacy(context()))?;
            let Some(_) = refused else { continue };
            for (key, (_, values)) in &p.rows {
                let one = transpose(std::iter::once(values.clone()), columns.len());
                let refused = savepoint(&tx, async { tx.execute(&sql, &params(&one)).await })
                    .await
                    .map_err(ReverseError::legacy(context()))?;
                if let Some(reason) = refused {
                    letters.push(DeadLetter::new(
                        rule,
                        &table.name,
                        &columns,
                        key,
                        values,
                        reason,
                    ));
                }
            }
        }
        if !letters.is_empty() {
            // Kept before the legacy commit: a crash between the two records them again on
            // the replay, never loses them.
            DeadLetter::record(&self.target, &self.migration, &letters).await?;
        }
        if let Some(lsn) = through {
            let fence = batch.fence.as_ref().map(|(id, at)| (id.as_str(), *at));
            progress::record_applied(&tx, &self.migration, lsn, batch.changes, fence).await?;
        }
        tx.commit()
            .await
            .map_err(ReverseError::legacy("committing"))?;
        Ok(())
    }
}

/// Two output rows gave one legacy key: writing both would keep one silently.
fn claimed_twice(rule: &ReverseTable, key: &[String], one: &str, other: &str) -> ReverseError {
    ReverseError::Unmappable(format!(
        "rows {one} and {other} of {} both map to legacy row {} of {} (reverse rule {}): the legacy table can hold only one. Nothing past the last applied change was confirmed; give one of them another legacy key, then start `switchyard follow --reverse` again",
        rule.from,
        key.join(", "),
        rule.table,
        rule.field
    ))
}

/// One output row's key as `switchyard.reverse_keys` keeps it: the value for a one-column
/// key, a JSON array of the values otherwise.
fn output_key(values: Vec<String>) -> String {
    match <[String; 1]>::try_from(values) {
        Ok([one]) => one,
        Err(values) => serde_json::to_string(&values).expect("strings serialize"),
    }
}

/// Rows into one text array per column.
fn transpose(
    rows: impl Iterator<Item = Vec<Option<String>>>,
    width: usize,
) -> Vec<Vec<Option<String>>> {
    let mut columns = vec![Vec::new(); width];
    for row in rows {
        for (column, value) in columns.iter_mut().zip(row) {
            column.push(value);
        }
    }
    columns
}

fn params(arrays: &[Vec<Option<String>>]) -> Vec<&(dyn ToSql + Sync)> {
    arrays.iter().map(|a| a as &(dyn ToSql + Sync)).collect()
}
