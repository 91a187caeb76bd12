//! Lookup ids for verification, read from the target and never written.
//!
//! The backfill's [`crate::sink::lookup::LookupCache`] inserts a value it has not seen; verify
//! must leave the target as it found it. A miss here means the target has no id for the value,
//! so no target row can hold the transformed row's id: the row cannot match. Instead of
//! rejecting the whole source row (which would hide its output key), a miss gets a *placeholder
//! id* that no lookup row has (below the table's smallest id, one per missed value), so the row
//! still takes part in the comparison by key, differs from the target in that column, and the
//! report can name the reason (`project_stages has no row for 'x'`).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, RwLock};

use tokio_postgres::Client;

use crate::pg::ident::quote_ident;
use crate::plan::LookupPlan;
use crate::transform::eval::{EvalError, Lookups};

/// One lookup table as loaded, plus the placeholders handed out for its misses.
struct Table {
    name: String,
    ids: HashMap<String, i64>,
    /// The next placeholder: always below every real id of the table.
    next_placeholder: i64,
}

/// Read-only lookups, refreshed at every round (the consumer adds values while verify runs).
pub struct ReadOnlyLookups {
    tables: Vec<RwLock<Table>>,
    misses: Mutex<Misses>,
}

#[derive(Default)]
struct Misses {
    /// `(lookup, placeholder id)` -> the reason, for every placeholder ever handed out, so a
    /// row image recorded in an early round can still be explained.
    by_placeholder: HashMap<(usize, i64), String>,
    /// `(lookup, value)` -> its placeholder: a value missing in several rounds keeps its
    /// placeholder, so its row image stays the same and the recheck sees a stable difference.
    by_value: HashMap<(usize, String), i64>,
    /// The reasons of the current round.
    this_round: BTreeSet<String>,
}

impl ReadOnlyLookups {
    /// Loads every lookup table of the plan from `target` with plain `SELECT`s.
    pub async fn load(
        target: &Client,
        lookups: &[LookupPlan],
    ) -> Result<ReadOnlyLookups, tokio_postgres::Error> {
        let mut tables = Vec::with_capacity(lookups.len());
        for l in lookups {
            let ids = read_table(target, l).await?;
            let lowest = ids.values().copied().min().unwrap_or(1).min(1);
            tables.push(RwLock::new(Table {
                name: l.table.name.clone(),
                ids,
                next_placeholder: lowest - 1,
            }));
        }
        Ok(ReadOnlyLookups {
            tables,
            misses: Mutex::new(Misses::default()),
        })
    }

    /// Reads the lookup tables again for a new round; placeholders keep their reasons.
    pub async fn refresh(
        &self,
        target: &Client,
        lookups: &[LookupPlan],
    ) -> Result<(), tokio_postgres::Error> {
        for (table, l) in self.tables.iter().zip(lookups) {
            let ids = read_table(target, l).await?;
            let lowest = ids.values().copied().min().unwrap_or(1);
            let mut table = table.write().expect("lookup poisoned");
            table.next_placeholder = table.next_placeholder.min(lowest - 1);
            table.ids = ids;
        }
        self.misses
            .lock()
            .expect("lookup misses poisoned")
            .this_round
            .clear();
        Ok(())
    }

    /// Why a value of a lookup column is not a real id, when it is a placeholder.
    pub fn miss_reason(&self, id: i64) -> Option<String> {
        let misses = self.misses.lock().expect("lookup misses poisoned");
        (0..self.tables.len()).find_map(|l| misses.by_placeholder.get(&(l, id)).cloned())
    }

    /// The misses of the current round, sorted.
    pub fn miss_reasons(&self) -> Vec<String> {
        let misses = self.misses.lock().expect("lookup misses poisoned");
        misses.this_round.iter().cloned().collect()
    }
}

async fn read_table(
    target: &Client,
    l: &LookupPlan,
) -> Result<HashMap<String, i64>, tokio_postgres::Error> {
    let rows = target
        .query(
            &format!(
                "SELECT {}::text, {}::int8 FROM {}",
                quote_ident(&l.value_column),
                quote_ident(&l.id_column),
                l.table.quoted()
            ),
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

impl Lookups for ReadOnlyLookups {
    fn id(&self, lookup: usize, name: &str) -> Result<i64, EvalError> {
        let table = &self.tables[lookup];
        if let Some(id) = table.read().expect("lookup poisoned").ids.get(name) {
            return Ok(*id);
        }
        let mut table = table.write().expect("lookup poisoned");
        if let Some(id) = table.ids.get(name) {
            return Ok(*id);
        }
        let mut misses = self.misses.lock().expect("lookup misses poisoned");
        let placeholder = match misses.by_value.get(&(lookup, name.to_owned())) {
            Some(p) => *p,
            None => {
                let p = table.next_placeholder;
                table.next_placeholder -= 1;
                misses.by_value.insert((lookup, name.to_owned()), p);
                p
            }
        };
        table.ids.insert(name.to_owned(), placeholder);
        let reason = format!("{} has no row for '{name}'", table.name);
        misses.this_round.insert(reason.clone());
        misses.by_placeholder.insert((lookup, placeholder), reason);
        Ok(placeholder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stages() -> ReadOnlyLookups {
        ReadOnlyLookups {
            tables: vec![RwLock::new(Table {
                name: "project_stages".to_owned(),
                ids: HashMap::from([("design".to_owned(), 1), ("build".to_owned(), 2)]),
                next_placeholder: 0,
            })],
            misses: Mutex::new(Misses::default()),
        }
    }

    #[test]
    fn a_miss_gets_a_placeholder_no_row_has_and_a_reason() {
        let lookups = stages();
        assert_eq!(lookups.id(0, "build").unwrap(), 2);
        let x = lookups.id(0, "x").unwrap();
        let y = lookups.id(0, "y").unwrap();
        assert!(x <= 0 && y <= 0 && x != y);
        assert_eq!(lookups.id(0, "x").unwrap(), x, "one placeholder per value");
        assert_eq!(
            lookups.miss_reason(x).as_deref(),
            Some("project_stages has no row for 'x'")
        );
        assert_eq!(lookups.miss_reason(2), None);
        assert_eq!(lookups.miss_reasons().len(), 2);
    }
}
