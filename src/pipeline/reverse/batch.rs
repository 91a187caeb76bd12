//! What the reverse consumer gathered from the stream since its last apply: which output rows
//! changed (by primary key) and the old rows of updates and deletes. Nothing else: the apply
//! reads the changed rows as they are now, so the order of changes inside a batch does not
//! matter, and applying a batch twice writes the same rows.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::pg::lsn::Lsn;
use crate::pg::pgoutput::{TupleColumn, TupleData};

use super::error::ReverseError;
use super::output::Column;

/// The old row of an update or delete (values as text, `None` for NULL), with the columns of
/// the Relation that carried it.
pub type OldRow = (Arc<Vec<Column>>, Vec<Option<String>>);

/// A batch of changes, per output table (indices into the consumer's outputs).
#[derive(Debug, Default)]
pub struct Batch {
    /// Primary keys (as text) of the rows changed, per output.
    pub touched: Vec<BTreeSet<Vec<String>>>,
    /// Old rows of updates and deletes, per output, with the columns of the Relation that
    /// carried them (a Relation message after DDL may change them between two rows).
    pub old_rows: Vec<Vec<OldRow>>,
    /// Changes received (inserts, updates, deletes).
    pub changes: i64,
    /// The end of the last commit whose changes are all in this batch.
    pub commit_end: Option<Lsn>,
    /// A fence of this stream that was committed in the batch, with its position.
    pub fence: Option<(String, Lsn)>,
}

impl Batch {
    pub fn new(outputs: usize) -> Batch {
        Batch {
            touched: vec![BTreeSet::new(); outputs],
            old_rows: vec![Vec::new(); outputs],
            ..Batch::default()
        }
    }

    /// Rows held: the bound on a batch's memory.
    pub fn rows(&self) -> usize {
        self.touched.iter().map(BTreeSet::len).sum::<usize>()
            + self.old_rows.iter().map(Vec::len).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.changes == 0 && self.fence.is_none()
    }

    /// Empties the rows, keeping nothing of what was applied.
    pub fn clear(&mut self) {
        let outputs = self.touched.len();
        *self = Batch::new(outputs);
    }
}

/// The values of `tuple` as text (`None` for NULL). An unchanged TOASTed value (`u`) is
/// refused: the old rows come from REPLICA IDENTITY FULL, which carries every value, and the
/// new rows are read again from the table, so one means the table's identity is not FULL.
pub fn text_values(tuple: &TupleData, table: &str) -> Result<Vec<Option<String>>, ReverseError> {
    tuple
        .columns
        .iter()
        .map(|c| match c {
            TupleColumn::Null => Ok(None),
            TupleColumn::Text(bytes) => String::from_utf8(bytes.to_vec())
                .map(Some)
                .map_err(|_| ReverseError::Unmappable(format!(
                    "{table}: a value that is not UTF-8 arrived on the reverse stream (the replication connection asks for UTF-8)"
                ))),
            TupleColumn::UnchangedToast | TupleColumn::Binary(_) => Err(ReverseError::Unmappable(format!(
                "{table}: an old row arrived without all its values: the reverse stream needs REPLICA IDENTITY FULL on the new tables it reads (`cutover --keep-reverse` sets it). Run ALTER TABLE {table} REPLICA IDENTITY FULL and start `switchyard follow --reverse` again"
            ))),
        })
        .collect()
}
