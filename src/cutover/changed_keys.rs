//! The keys of the source rows changed since the count baseline, read from the cutover's own
//! temporary slot: a second decoding of the source's WAL, independent of the consumer's.
//!
//! ```text
//!  baseline   CREATE_REPLICATION_SLOT tmp TEMPORARY LOGICAL pgoutput (SNAPSHOT 'export')
//!               consistent point L; counting sessions import the snapshot (rows as of L)
//!  reader     START_REPLICATION tmp from L (task): every Insert, Update (old key too when it
//!               changed) and Delete adds its replica identity key to its table's set
//!  the lock   fence F: the reader reads on until F's message, so the sets hold every key
//!               changed between L and F, and nothing else can change under the lock
//! ```
//! A table whose changes cannot be named by a key (REPLICA IDENTITY FULL or NOTHING, a key
//! value left out as an unchanged TOAST value, a TRUNCATE, a change of the key's columns, more
//! than [`MAX_KEYS`] keys) is marked; the cutover then counts it by a scan under the lock, and
//! says so in the report.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustc_hash::FxHashSet;
use tokio::sync::Notify;

use crate::pg::ident::TableName;
use crate::pg::pgoutput::{LogicalReplicationMessage, RelationBody, TupleColumn, TupleData};
use crate::source::fence::{fence_id, Fence};
use crate::source::wal_stream::{WalEvent, WalStream};

/// Keys held at most, over all tables: about 100 MB of short keys. Past it, every table is
/// counted by a scan under the lock (a cutover attempted during a burst of that size).
pub const MAX_KEYS: usize = 1_000_000;

/// One key: the text of each key column, in the key's column order.
pub type Key = Vec<String>;

/// What the reader knows of one source table.
#[derive(Debug, Default, Clone)]
pub struct TableKeys {
    pub keys: FxHashSet<Key>,
    /// Why the keys do not cover every change, if they do not.
    pub unreadable: Option<String>,
}

#[derive(Default)]
struct Collected {
    tables: Vec<TableKeys>,
    /// Fence ids met, in order (a cutover writes a few).
    fences: Vec<String>,
    total: usize,
    /// Why the stream stopped, if it did.
    ended: Option<String>,
}

/// The reader task's findings, shared with the cutover.
pub struct ChangedKeys {
    collected: Arc<Mutex<Collected>>,
    progressed: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

/// A source table's replica identity key, as the catalog gives it before the lock.
#[derive(Debug, Clone)]
pub struct KeyColumns {
    pub table: TableName,
    /// (column name, its type as `format_type` prints it); empty when the table has no key to
    /// look rows up by.
    pub columns: Vec<(String, String)>,
}

impl ChangedKeys {
    /// Reads `stream` (started at the baseline's consistent point) in a task until dropped.
    pub fn start(stream: WalStream, tables: Vec<KeyColumns>, migration: String) -> ChangedKeys {
        let collected = Arc::new(Mutex::new(Collected {
            tables: tables
                .iter()
                .map(|t| TableKeys {
                    keys: FxHashSet::default(),
                    unreadable: t.columns.is_empty().then(|| {
                        "no primary key or replica identity index to look rows up by".to_owned()
                    }),
                })
                .collect(),
            ..Collected::default()
        }));
        let progressed = Arc::new(Notify::new());
        let task = tokio::spawn(read(
            stream,
            tables,
            migration,
            Arc::clone(&collected),
            Arc::clone(&progressed),
        ));
        ChangedKeys {
            collected,
            progressed,
            task,
        }
    }

    /// Waits until the reader has met `fence`, then returns the keys changed since the
    /// baseline per table (in the order of the tables given to [`ChangedKeys::start`]). An
    /// error says why not (the stream ended, or `limit` passed): the caller counts by scanning.
    pub async fn through(&self, fence: &Fence, limit: Duration) -> Result<Vec<TableKeys>, String> {
        let wait = async {
            loop {
                let notified = self.progressed.notified();
                {
                    let c = self.collected.lock().expect("the reader never panics");
                    if c.fences.contains(&fence.id) {
                        return Ok(c.tables.clone());
                    }
                    if let Some(why) = &c.ended {
                        return Err(why.clone());
                    }
                }
                notified.await;
            }
        };
        tokio::time::timeout(limit, wait).await.unwrap_or_else(|_| {
            Err("the cutover's own slot did not reach the fence in time".into())
        })
    }
}

impl Drop for ChangedKeys {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The reader task: records keys until the stream ends or the task is aborted.
async fn read(
    mut stream: WalStream,
    tables: Vec<KeyColumns>,
    migration: String,
    collected: Arc<Mutex<Collected>>,
    progressed: Arc<Notify>,
) {
    // Relation id -> (table number, positions of the key columns in the relation's tuples).
    let mut relations: HashMap<u32, (usize, Result<Vec<usize>, String>)> = HashMap::new();
    let ended = loop {
        let event = match stream.next(Duration::from_secs(1)).await {
            Ok(event) => event,
            Err(e) => break format!("the cutover's own slot: {}", crate::error::Chain::new(&e)),
        };
        let message = match event {
            WalEvent::Message { message, .. } => message,
            WalEvent::CaughtUp { wal_end } => {
                // Nothing is applied from this slot: confirm what was read, so it keeps no WAL.
                if let Err(e) = stream.flushed(wal_end).await {
                    break format!("the cutover's own slot: {}", crate::error::Chain::new(&e));
                }
                continue;
            }
            WalEvent::Idle => continue,
            WalEvent::Ended => break "the cutover's own slot ended its stream".to_owned(),
        };
        let mut c = collected.lock().expect("the reader never panics");
        match &message {
            LogicalReplicationMessage::Relation(r) => {
                if let Some(number) = tables.iter().position(|t| names(&t.table, r)) {
                    relations.insert(r.relation_id, (number, key_positions(&tables[number], r)));
                }
            }
            LogicalReplicationMessage::Insert(i) => {
                c.add(&relations, i.relation_id, &i.new_tuple);
            }
            LogicalReplicationMessage::Update(u) => {
                if let Some(old) = &u.old_tuple {
                    c.add(&relations, u.relation_id, old.tuple());
                }
                c.add(&relations, u.relation_id, &u.new_tuple);
            }
            LogicalReplicationMessage::Delete(d) => {
                c.add(&relations, d.relation_id, d.old_tuple.tuple());
            }
            LogicalReplicationMessage::Truncate(t) => {
                for id in &t.relation_ids {
                    if let Some((number, _)) = relations.get(id) {
                        c.tables[*number]
                            .unreadable
                            .get_or_insert_with(|| "truncated during the cutover".to_owned());
                    }
                }
            }
            LogicalReplicationMessage::Message(m) => {
                if let Some(id) = fence_id(&m.prefix, &m.content, &migration) {
                    c.fences.push(id.to_owned());
                    drop(c);
                    progressed.notify_waiters();
                }
            }
            _ => {}
        }
    };
    collected.lock().expect("the reader never panics").ended = Some(ended);
    progressed.notify_waiters();
}

impl Collected {
    /// Adds the key of `tuple`, a row of relation `id`.
    fn add(
        &mut self,
        relations: &HashMap<u32, (usize, Result<Vec<usize>, String>)>,
        id: u32,
        tuple: &TupleData,
    ) {
        let Some((number, positions)) = relations.get(&id) else {
            // A published relation the plan does not name (a partition published on its
            // own, say): where its rows count is unknown, so no table's keys are trusted.
            for table in &mut self.tables {
                table.unreadable.get_or_insert_with(|| {
                    format!("a change of relation {id}, which is not a table of the plan")
                });
            }
            return;
        };
        let table = &mut self.tables[*number];
        if table.unreadable.is_some() {
            return;
        }
        let positions = match positions {
            Ok(p) => p,
            Err(why) => {
                table.unreadable = Some(why.clone());
                return;
            }
        };
        let mut key = Vec::with_capacity(positions.len());
        for &p in positions {
            match tuple.columns.get(p) {
                Some(TupleColumn::Text(v)) => key.push(String::from_utf8_lossy(v).into_owned()),
                _ => {
                    table.unreadable =
                        Some("a change whose key value the WAL does not carry".to_owned());
                    table.keys = FxHashSet::default();
                    return;
                }
            }
        }
        if self.total >= MAX_KEYS {
            table.unreadable = Some(format!("more than {MAX_KEYS} changed rows"));
            table.keys = FxHashSet::default();
            return;
        }
        if table.keys.insert(key) {
            self.total += 1;
        }
    }
}

fn names(table: &TableName, r: &RelationBody) -> bool {
    table.schema == r.namespace && table.name == r.name
}

/// Where the catalog's key columns are in the relation's tuples; an error when the WAL's key
/// is not that key (the identity changed, or is FULL).
fn key_positions(table: &KeyColumns, r: &RelationBody) -> Result<Vec<usize>, String> {
    let wal_key: Vec<&str> = r
        .columns
        .iter()
        .filter(|c| c.is_key())
        .map(|c| c.name.as_str())
        .collect();
    let catalog_key: Vec<&str> = table.columns.iter().map(|(n, _)| n.as_str()).collect();
    let mut sorted_wal = wal_key.clone();
    let mut sorted_catalog = catalog_key.clone();
    sorted_wal.sort_unstable();
    sorted_catalog.sort_unstable();
    if sorted_wal != sorted_catalog {
        return Err(format!(
            "the WAL's key ({}) is not the key read before the lock ({})",
            wal_key.join(", "),
            catalog_key.join(", ")
        ));
    }
    Ok(catalog_key
        .iter()
        .map(|name| {
            r.columns
                .iter()
                .position(|c| c.name == *name)
                .expect("every key column is in the relation")
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::pgoutput::{Column, ReplicaIdentity, COLUMN_FLAG_KEY};

    fn relation(key: &[&str], columns: &[&str]) -> RelationBody {
        RelationBody {
            xid: None,
            relation_id: 7,
            namespace: "public".into(),
            name: "items".into(),
            replica_identity: ReplicaIdentity::Default,
            columns: columns
                .iter()
                .map(|c| Column {
                    flags: if key.contains(c) { COLUMN_FLAG_KEY } else { 0 },
                    name: (*c).into(),
                    type_id: 20,
                    type_modifier: -1,
                })
                .collect(),
        }
    }

    fn items(key: &[&str]) -> KeyColumns {
        KeyColumns {
            table: TableName {
                schema: "public".into(),
                name: "items".into(),
            },
            columns: key.iter().map(|k| ((*k).into(), "bigint".into())).collect(),
        }
    }

    fn tuple(values: &[Option<&str>]) -> TupleData {
        TupleData {
            columns: values
                .iter()
                .map(|v| match v {
                    Some(v) => TupleColumn::Text(v.as_bytes().to_vec().into()),
                    None => TupleColumn::UnchangedToast,
                })
                .collect(),
        }
    }

    #[test]
    fn a_key_is_read_in_the_catalogs_column_order_whatever_the_tuples_order() {
        let r = relation(&["b", "a"], &["x", "b", "a"]);
        assert_eq!(key_positions(&items(&["a", "b"]), &r), Ok(vec![2, 1]));
        let mut c = Collected {
            tables: vec![TableKeys::default()],
            ..Collected::default()
        };
        let relations = HashMap::from([(7, (0, key_positions(&items(&["a", "b"]), &r)))]);
        c.add(&relations, 7, &tuple(&[Some("x"), Some("2"), Some("1")]));
        c.add(&relations, 7, &tuple(&[Some("y"), Some("2"), Some("1")]));
        assert_eq!(c.total, 1, "one key, seen twice");
        assert!(c.tables[0]
            .keys
            .contains(&vec!["1".to_owned(), "2".to_owned()]));
    }

    #[test]
    fn a_key_the_wal_does_not_carry_or_a_changed_identity_makes_the_table_scanned() {
        let r = relation(&["a"], &["a", "x"]);
        let relations = HashMap::from([(7, (0, key_positions(&items(&["a"]), &r)))]);
        let mut c = Collected {
            tables: vec![TableKeys::default()],
            ..Collected::default()
        };
        c.add(&relations, 7, &tuple(&[None, Some("x")]));
        assert!(c.tables[0].unreadable.is_some());
        assert!(c.tables[0].keys.is_empty());
        // The WAL's key is not the catalog's: the identity changed since the baseline.
        assert!(key_positions(&items(&["x"]), &r).is_err());
        // A change of a relation the plan does not name: no table is trusted.
        let mut c = Collected {
            tables: vec![TableKeys::default()],
            ..Collected::default()
        };
        c.add(&relations, 8, &tuple(&[Some("1"), Some("x")]));
        assert!(c.tables[0].unreadable.is_some());
    }
}
