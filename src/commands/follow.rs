//! `switchyard follow`: (re)start the WAL consumer of a backfilled migration. It resumes from
//! the applied LSN recorded in the target and runs until stopped (Ctrl-C, SIGTERM) or until it
//! meets something it must not apply past.

use std::sync::Arc;

use anyhow::{bail, Context};
use rustc_hash::FxHashMap;
use tokio_postgres::Client;

use crate::checkpoint::{self, MigrationStatus};
use crate::pg::connect::connect;
use crate::pg::conninfo::ConnInfo;
use crate::pipeline::follow::{follow, FollowContext, FollowEnd};
use crate::plan::{OnError, Plan};
use crate::sink::apply::output_numbers;
use crate::sink::copy_in::{OutputWriter, WriterMode};
use crate::sink::lookup::LookupCache;
use crate::sink::replication_role::set_replica;
use crate::source::relations::Relations;
use crate::source::wal_stream::WalStream;

/// A consumer as resolved from the command line (or started by `backfill`).
#[derive(Clone)]
pub struct FollowJob {
    pub plan: Arc<Plan>,
    pub source: ConnInfo,
    pub target: ConnInfo,
    pub on_error: OnError,
}

impl FollowJob {
    /// Runs until an error, or until `stop` turns true (then it ends cleanly between groups).
    pub async fn run(
        self,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> anyhow::Result<FollowEnd> {
        let plan = Arc::clone(&self.plan);
        let mut target = connect(&self.target, "switchyard follow").await?;
        // Native logical replication's apply workers do the same: the new tables' foreign keys
        // and ordinary triggers must not refuse what the legacy application was allowed to do
        // (delete a parent and leave its children); the source is the authority until the
        // cutover. The backfill's sessions do it too, so triggers act alike on both paths.
        set_replica(&target).await?;
        // The key tables of a group have no statistics; without this the planner may join them
        // to a large output table by hashing the whole table, once per group. Deletes by key
        // must probe the key index instead.
        target
            .batch_execute("SET enable_hashjoin = off; SET enable_mergejoin = off")
            .await
            .context("configuring the apply session")?;
        let Some(m) = checkpoint::load(&target, &plan.name).await? else {
            bail!(
                "there is no migration {}: run `switchyard backfill` first",
                plan.name
            );
        };
        if !matches!(
            m.status,
            MigrationStatus::Backfilled | MigrationStatus::Following
        ) {
            bail!(
                "migration {} is {}; the consumer starts after a finished backfill",
                plan.name,
                m.status
            );
        }
        if m.plan_checksum != plan.checksum {
            bail!("the plan or its SQL files changed since the backfill: the stream would be transformed differently from the copy");
        }
        let start = m
            .applied_lsn
            .or(m.snapshot_lsn)
            .context("the migration has no snapshot LSN")?;
        let source = connect(&self.source, "switchyard follow").await?;
        let (types, key_types) = source_types(&source, &plan).await?;
        let lookups = Arc::new(
            LookupCache::start(
                connect(&self.target, "switchyard lookups").await?,
                &plan.lookups,
            )
            .await?,
        );
        let mut writers = Vec::new();
        for (number, output) in output_numbers(&plan.sources)
            .iter()
            .flatten()
            .zip(plan.sources.iter().flat_map(|s| &s.outputs))
        {
            writers.push(OutputWriter::new(&target, *number, output, WriterMode::Follow).await?);
        }
        let stream = WalStream::start(&self.source, &m.slot_name, &m.publication, start).await?;
        checkpoint::set_status(&target, &plan.name, MigrationStatus::Following, None).await?;
        let ctx = FollowContext {
            plan: Arc::clone(&plan),
            lookups,
            on_error: self.on_error,
            source,
            key_types,
            monitor: connect(&self.target, "switchyard monitor").await?,
        };
        let result = follow(
            &ctx,
            &mut target,
            &writers,
            Relations::new(types),
            stream,
            start,
            shutdown,
        )
        .await;
        if let Err(e) = &result {
            let _ = checkpoint::set_status(
                &ctx.monitor,
                &plan.name,
                MigrationStatus::Following,
                Some(&format!("consumer stopped: {e}")),
            )
            .await;
        }
        Ok(result?)
    }
}

/// Whether `e` is a lost connection to the source or the target (anywhere in its chain):
/// the consumer then starts over from the applied LSN the target recorded.
pub fn is_connection_loss(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        if let Some(p) = cause.downcast_ref::<crate::pipeline::error::PipelineError>() {
            p.is_connection_loss()
        } else if let Some(c) = cause.downcast_ref::<crate::pg::connect::ConnectError>() {
            c.is_transient()
        } else if let Some(c) = cause.downcast_ref::<checkpoint::CheckpointError>() {
            crate::pipeline::error::lost(c.postgres())
        } else if let Some(r) =
            cause.downcast_ref::<crate::source::replication::ReplicationError>()
        {
            r.is_transient()
        } else if let Some(w) = cause.downcast_ref::<crate::source::wal_stream::WalStreamError>()
        {
            matches!(w, crate::source::wal_stream::WalStreamError::Replication(r) if r.is_transient())
        } else if let Some(pg) = cause.downcast_ref::<tokio_postgres::Error>() {
            crate::pipeline::error::lost(pg)
        } else {
            false
        }
    })
}

/// Column type oids of the plan's source tables (to detect DDL), and their key columns' types.
async fn source_types(
    client: &Client,
    plan: &Plan,
) -> anyhow::Result<(FxHashMap<String, FxHashMap<String, u32>>, Vec<Vec<String>>)> {
    let mut types = FxHashMap::default();
    let mut key_types = Vec::new();
    for s in &plan.sources {
        let rows = client
            .query(
                "SELECT a.attname::text, a.atttypid, format_type(a.atttypid, a.atttypmod)
                   FROM pg_attribute a
                  WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped",
                &[&s.table.quoted()],
            )
            .await?;
        let by_name: FxHashMap<String, (u32, String)> = rows
            .iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2))))
            .collect();
        key_types.push(
            s.key
                .iter()
                .map(|k| {
                    by_name
                        .get(k)
                        .map_or_else(|| "text".to_owned(), |(_, t)| t.clone())
                })
                .collect(),
        );
        types.insert(
            s.table.to_string(),
            by_name.into_iter().map(|(n, (oid, _))| (n, oid)).collect(),
        );
    }
    Ok((types, key_types))
}
