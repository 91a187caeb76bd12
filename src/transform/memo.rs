//! Memoized derives: a derived value that depends on a single non-key source column is
//! computed once per distinct input within a batch. Free-text columns such as `status`, `type`
//! or `priority` hold a handful of distinct values over millions of rows, and their
//! normalization (lower, regexp_replace, trim, a value map) is the costliest per-row work.

use rustc_hash::FxHashMap;

use super::value::Value;

/// Distinct inputs remembered per derive; past this the table is cleared, which keeps memory
/// flat when a column turns out to have many distinct values.
pub const MEMO_CAPACITY: usize = 4096;

/// Lookups after which a table that hits less than [`MIN_HIT_RATE`] of the time is switched
/// off for the rest of the batch: hashing and copying every distinct e-mail or date costs more
/// than evaluating its cheap expression again.
pub const PROBE_LOOKUPS: u32 = 1024;
/// The hit rate, as a fraction, that keeps a table on after [`PROBE_LOOKUPS`].
pub const MIN_HIT_RATE: f64 = 0.25;

/// Per-batch memo tables, one per derive of a source.
#[derive(Debug, Default)]
pub struct Memo {
    tables: Vec<Table>,
}

#[derive(Debug, Default)]
struct Table {
    by_text: FxHashMap<Box<str>, Value<'static>>,
    for_null: Option<Value<'static>>,
    lookups: u32,
    hits: u32,
    off: bool,
}

impl Memo {
    pub fn new(derive_count: usize) -> Memo {
        Memo {
            tables: (0..derive_count).map(|_| Table::default()).collect(),
        }
    }

    /// Whether derive `i` is memoized (still) in this batch.
    pub fn remembers(&self, i: usize) -> bool {
        self.tables.get(i).is_some_and(|t| !t.off)
    }

    /// The remembered value of derive `i` for this input, if any.
    pub fn get(&mut self, i: usize, input: Option<&str>) -> Option<&Value<'static>> {
        let table = self.tables.get_mut(i)?;
        if table.off {
            return None;
        }
        table.lookups += 1;
        if table.lookups == PROBE_LOOKUPS
            && f64::from(table.hits) < MIN_HIT_RATE * f64::from(PROBE_LOOKUPS)
        {
            table.off = true;
            table.by_text = FxHashMap::default();
            return None;
        }
        let hit = match input {
            None => table.for_null.as_ref(),
            Some(text) => table.by_text.get(text),
        };
        if hit.is_some() {
            table.hits += 1;
        }
        hit
    }

    pub fn insert(&mut self, i: usize, input: Option<&str>, value: Value<'static>) {
        let Some(table) = self.tables.get_mut(i).filter(|t| !t.off) else {
            return;
        };
        match input {
            None => table.for_null = Some(value),
            Some(text) => {
                if table.by_text.len() >= MEMO_CAPACITY {
                    table.by_text.clear();
                }
                table.by_text.insert(text.into(), value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_derive_whose_inputs_rarely_repeat_stops_being_memoized() {
        let mut memo = Memo::new(2);
        for n in 0..2 * PROBE_LOOKUPS {
            let distinct = n.to_string();
            let repeated = (n % 10).to_string();
            for (i, input) in [(0, distinct.as_str()), (1, repeated.as_str())] {
                if memo.get(i, Some(input)).is_none() {
                    memo.insert(i, Some(input), Value::Int(i64::from(n)));
                }
            }
        }
        assert!(!memo.remembers(0), "every input distinct: off");
        assert!(memo.remembers(1), "ten inputs: on");
        assert_eq!(memo.get(1, Some("3")), Some(&Value::Int(3)));
    }
}
