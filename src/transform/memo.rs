//! Memoized derives: a derived value that depends on a single non-key source column is
//! computed once per distinct input within a batch. Free-text columns such as `status`, `type`
//! or `priority` hold a handful of distinct values over millions of rows, and their
//! normalization (lower, regexp_replace, trim, a value map) is the costliest per-row work.

use rustc_hash::FxHashMap;

use super::value::Value;

/// Distinct inputs remembered per derive; past this the table is cleared, which keeps memory
/// flat when a column turns out to have many distinct values.
pub const MEMO_CAPACITY: usize = 4096;

/// Per-batch memo tables, one per derive of a source.
#[derive(Debug, Default)]
pub struct Memo {
    tables: Vec<Table>,
}

#[derive(Debug, Default)]
struct Table {
    by_text: FxHashMap<Box<str>, Value<'static>>,
    for_null: Option<Value<'static>>,
}

impl Memo {
    pub fn new(derive_count: usize) -> Memo {
        Memo {
            tables: (0..derive_count).map(|_| Table::default()).collect(),
        }
    }

    /// The remembered value of derive `i` for this input, if any.
    pub fn get(&self, i: usize, input: Option<&str>) -> Option<&Value<'static>> {
        let table = self.tables.get(i)?;
        match input {
            None => table.for_null.as_ref(),
            Some(text) => table.by_text.get(text),
        }
    }

    pub fn insert(&mut self, i: usize, input: Option<&str>, value: Value<'static>) {
        let Some(table) = self.tables.get_mut(i) else {
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
