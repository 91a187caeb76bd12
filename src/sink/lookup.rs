//! Lookup tables (`project_stages`, `task_statuses`, ...): a value's id, created on a miss.
//!
//! Transforms run on rayon threads and ask for ids synchronously; almost every ask is a cache
//! hit. A miss goes to one async task that owns a target connection and runs
//! `INSERT ... ON CONFLICT DO NOTHING RETURNING id` in autocommit, so the new row is visible to
//! every worker at once and is never rolled back with a failed chunk (an unused lookup row is
//! harmless; a missing one is not). Concurrent misses for one value resolve to the same id
//! because the value column is unique.

use std::collections::HashMap;
use std::sync::RwLock;

use tokio::sync::{mpsc, oneshot};
use tokio_postgres::Client;

use crate::error::Chain;
use crate::pg::ident::quote_ident;
use crate::plan::LookupPlan;
use crate::transform::eval::{EvalError, Lookups};

use super::replication_role::{set_replica, ReplicationRoleError};

/// The lookup cache could not start: the session may not be a replica (fix the grant), or
/// reading a lookup table failed.
#[derive(Debug, thiserror::Error)]
pub enum LookupStartError {
    #[error(transparent)]
    ReplicationRole(#[from] ReplicationRoleError),
    #[error("reading a lookup table")]
    Read(#[from] tokio_postgres::Error),
}

/// How many misses may wait for the resolver; misses are rare, so this only bounds a burst.
const MISS_QUEUE: usize = 256;

struct Miss {
    lookup: usize,
    value: String,
    reply: oneshot::Sender<Result<i64, String>>,
}

/// The cache the transforms read; cloneable handle to the resolver.
pub struct LookupCache {
    tables: Vec<RwLock<HashMap<String, i64>>>,
    misses: mpsc::Sender<Miss>,
}

impl LookupCache {
    /// Loads every lookup table into memory and starts the resolver on `client`, a replica
    /// session like every session that writes the plan's tables
    /// ([`super::replication_role`]): the backfill and the follow insert lookup values alike.
    pub async fn start(
        client: Client,
        lookups: &[LookupPlan],
    ) -> Result<LookupCache, LookupStartError> {
        set_replica(&client).await?;
        let mut tables = Vec::with_capacity(lookups.len());
        let mut statements = Vec::with_capacity(lookups.len());
        for l in lookups {
            let (table, id, value) = (
                l.table.quoted(),
                quote_ident(&l.id_column),
                quote_ident(&l.value_column),
            );
            let rows = client
                .query(
                    &format!("SELECT {value}::text, {id}::int8 FROM {table}"),
                    &[],
                )
                .await?;
            tables.push(RwLock::new(
                rows.iter().map(|r| (r.get(0), r.get(1))).collect(),
            ));
            statements.push(format!(
                "WITH ins AS (INSERT INTO {table} ({value}) VALUES ($1) ON CONFLICT ({value}) DO NOTHING RETURNING {id})
                 SELECT {id}::int8 FROM ins UNION ALL SELECT {id}::int8 FROM {table} WHERE {value} = $1 LIMIT 1"
            ));
        }
        let (tx, rx) = mpsc::channel(MISS_QUEUE);
        tokio::spawn(resolve(client, statements, rx));
        Ok(LookupCache { tables, misses: tx })
    }
}

async fn resolve(client: Client, statements: Vec<String>, mut misses: mpsc::Receiver<Miss>) {
    while let Some(miss) = misses.recv().await {
        let result = client
            .query_one(&statements[miss.lookup], &[&miss.value])
            .await
            .map(|row| row.get::<_, i64>(0))
            .map_err(|e| format!("creating lookup value {:?}: {}", miss.value, Chain::new(&e)));
        let _ = miss.reply.send(result);
    }
}

impl Lookups for LookupCache {
    fn id(&self, lookup: usize, name: &str) -> Result<i64, EvalError> {
        if let Some(id) = self.tables[lookup]
            .read()
            .expect("lookup cache poisoned")
            .get(name)
        {
            return Ok(*id);
        }
        let (reply, answer) = oneshot::channel();
        let ask = || {
            self.misses
                .blocking_send(Miss {
                    lookup,
                    value: name.to_owned(),
                    reply,
                })
                .map_err(|_| EvalError::new("lookup resolver stopped"))?;
            answer
                .blocking_recv()
                .map_err(|_| EvalError::new("lookup resolver stopped"))?
                .map_err(EvalError::new)
        };
        // On a rayon thread (the backfill) waiting is fine; on a tokio worker (the follow) the
        // runtime must be told, or it panics rather than block its I/O.
        let id = match tokio::runtime::Handle::try_current() {
            Ok(_) => tokio::task::block_in_place(ask)?,
            Err(_) => ask()?,
        };
        self.tables[lookup]
            .write()
            .expect("lookup cache poisoned")
            .insert(name.to_owned(), id);
        Ok(id)
    }
}
