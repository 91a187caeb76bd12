//! `switchyard follow`: (re)start the WAL consumer of a backfilled migration. It resumes from
//! the applied LSN recorded in the target and runs until stopped (Ctrl-C, SIGTERM) or until it
//! meets something it must not apply past.

use std::sync::Arc;

use anyhow::{bail, Context};
use rustc_hash::FxHashMap;
use tokio_postgres::Client;

use crate::checkpoint::{self, MigrationStatus};
use crate::error::{Chain, Classify, ErrorClass};
use crate::pg::connect::connect;
use crate::pg::conninfo::ConnInfo;
use crate::pg::lsn::Lsn;
use crate::pipeline::control::Controls;
use crate::pipeline::error::{PipelineError, StopReason};
use crate::pipeline::follow::{follow, FollowContext, FollowEnd, LaneSession, Start, Upstream};
use crate::pipeline::heartbeat::slot_health;
use crate::pipeline::identity_watch::{Followed, IdentityWatch};
use crate::plan::{OnError, Plan};
use crate::progress::FollowProgress;
use crate::sink::async_commit::commit_asynchronously;
use crate::sink::copy_in::{OutputWriter, WriterMode};
use crate::sink::lookup::LookupCache;
use crate::sink::replication_role::set_replica;
use crate::source::identity::{self, CheckError};
use crate::source::relations::Relations;
use crate::source::wal_stream::WalStream;

/// A consumer as resolved from the command line (or started by `backfill`).
#[derive(Clone)]
pub struct FollowJob {
    pub plan: Arc<Plan>,
    pub source: ConnInfo,
    pub target: ConnInfo,
    pub on_error: OnError,
    /// Apply lanes: target sessions applying in parallel (1: one transaction per group).
    pub apply_jobs: usize,
    /// After a conflict between lanes: apply every group that starts at or before this LSN
    /// in one transaction (set by the restart, never by a user).
    pub serial_through: Option<Lsn>,
    /// What the consumer applied, across its restarts (the metrics read it).
    pub progress: Arc<FollowProgress>,
}

impl FollowJob {
    /// Runs until an error, or until `stop` turns true (then it ends cleanly between groups).
    pub async fn run(
        self,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> anyhow::Result<FollowEnd> {
        let plan = Arc::clone(&self.plan);
        let target = connect(&self.target, "switchyard follow").await?;
        let Some(m) = checkpoint::load(&target, &plan.name).await? else {
            bail!(
                "there is no migration {}: run `switchyard backfill` first",
                plan.name
            );
        };
        if !matches!(
            m.status,
            MigrationStatus::Backfilled | MigrationStatus::Following | MigrationStatus::Stopped
        ) {
            bail!(
                "migration {} is {}; the consumer starts after a finished backfill",
                plan.name,
                m.status
            );
        }
        if !plan.has_checksum(&m.plan_checksum) {
            bail!("the plan or its SQL files changed since the backfill: the stream would be transformed differently from the copy");
        }
        let lanes = self.apply_jobs.max(1);
        let positions = lane_positions(&target, &plan.name, &m, lanes).await?;
        let start = positions.iter().copied().min().expect("at least one lane");
        let source = connect(&self.source, "switchyard follow").await?;
        crate::source::ctype::use_source_ctype(&source).await?;
        let (oids, publication_rels) = followed(&source, &target, &plan, &m.publication).await?;
        let catalog = identity::catalog(&source, &oids)
            .await
            .context("reading the source tables' columns")?;
        let key_types = plan
            .sources
            .iter()
            .zip(&catalog)
            .map(|(s, c)| {
                s.key
                    .iter()
                    .map(|k| c.columns.get(k).map_or("text", |c| &c.sql_type).to_owned())
                    .collect()
            })
            .collect();
        let lookups = Arc::new(
            LookupCache::start(
                connect(&self.target, "switchyard lookups").await?,
                &plan.lookups,
            )
            .await?,
        );
        let controls = Controls::start(
            connect(&self.target, "switchyard control").await?,
            &plan.name,
            None,
        )
        .await?;
        let _announced = AbortOnDrop(tokio::spawn(super::control::announce(controls.subscribe())));
        let mut sessions = Vec::with_capacity(lanes);
        for lane in 0..lanes {
            sessions.push(apply_session(&self.target, &plan, lane).await?);
        }
        let ctx = FollowContext {
            plan: Arc::clone(&plan),
            lookups,
            on_error: self.on_error,
            source,
            source_conninfo: self.source.clone(),
            key_types,
            monitor: monitor_session(&self.target).await?,
            oids,
            publication_rels,
            publication: m.publication.clone(),
            gate: controls.gate(),
            progress: Arc::clone(&self.progress),
        };
        // Before a single change: the tables are still those the backfill copied, published
        // in full, and the slot is usable.
        let started = async {
            match identity::check(
                &ctx.source,
                &plan,
                &ctx.oids,
                &m.publication,
                &ctx.publication_rels,
            )
            .await
            {
                Err(CheckError::Identity(e)) => return Err(StopReason::Identity(e).into()),
                Err(CheckError::Catalog(e)) => {
                    return Err(PipelineError::source("reading the source catalog", e))
                }
                Ok(()) => {}
            }
            slot_health(&ctx).await?;
            WalStream::start(&self.source, &m.slot_name, &m.publication, start)
                .await
                .map_err(PipelineError::Stream)
        };
        let stream = match started.await {
            Ok(stream) => stream,
            Err(e) => return Err(stopped(&ctx, e).await.into()),
        };
        checkpoint::set_status(&target, &plan.name, MigrationStatus::Following, None).await?;
        let identity = IdentityWatch::start(
            connect(&self.source, "switchyard identity").await?,
            Followed {
                plan: Arc::clone(&plan),
                oids: ctx.oids.clone(),
                publication_rels: ctx.publication_rels.clone(),
                publication: ctx.publication.clone(),
            },
            start,
        );
        let result = follow(
            &ctx,
            sessions,
            Relations::new(catalog),
            Upstream { stream, identity },
            Start {
                positions,
                serial_through: self.serial_through,
            },
            shutdown,
        )
        .await;
        match result {
            Ok(end) => Ok(end),
            Err(e) => Err(stopped(&ctx, e).await.into()),
        }
    }
}

/// Ends a task when the consumer ends, however it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Where each apply lane stands, as the target records it. A migration no consumer followed
/// yet (or whose state predates lanes) gets `lanes` lanes at its applied LSN, or at the
/// backfill's snapshot.
async fn lane_positions(
    target: &Client,
    migration: &str,
    m: &checkpoint::Migration,
    lanes: usize,
) -> anyhow::Result<Vec<Lsn>> {
    // Older state lacks the lanes table: created here, idempotently.
    checkpoint::ensure_schema(target).await?;
    let recorded = checkpoint::lane_positions(target, migration).await?;
    if !recorded.is_empty() {
        return Ok(recorded);
    }
    let start = m
        .applied_lsn
        .or(m.snapshot_lsn)
        .context("the migration has no snapshot LSN")?;
    checkpoint::reset_lanes(target, migration, lanes, start).await?;
    Ok(vec![start; lanes])
}

/// The consumer's own target session: heartbeats, and the summary row whose synchronous
/// commit makes the lanes' asynchronous ones durable before the slot is confirmed, whatever
/// the role's or database's `synchronous_commit`.
async fn monitor_session(target: &ConnInfo) -> anyhow::Result<Client> {
    let client = connect(target, "switchyard monitor").await?;
    client
        .batch_execute("SET synchronous_commit = on")
        .await
        .context("configuring the monitor session")?;
    Ok(client)
}

/// A target session for one apply lane, with its writers.
async fn apply_session(target: &ConnInfo, plan: &Plan, lane: usize) -> anyhow::Result<LaneSession> {
    let client = connect(target, &format!("switchyard follow lane {lane}")).await?;
    // Native logical replication's apply workers do the same: the new tables' foreign keys
    // and ordinary triggers must not refuse what the legacy application was allowed to do
    // (delete a parent and leave its children); the source is the authority until the
    // cutover. The backfill's sessions do it too, so triggers act alike on both paths.
    set_replica(&client).await?;
    // Lane commits are made durable by the consumer's synchronous commits on its monitor
    // session before the slot is confirmed (see `pipeline::follow::lanes`).
    commit_asynchronously(&client)
        .await
        .context("configuring the apply session")?;
    // The key tables of a group have no statistics; without this the planner may join them
    // to a large output table by hashing the whole table, once per group. Deletes by key
    // must probe the key index instead.
    client
        .batch_execute("SET enable_hashjoin = off; SET enable_mergejoin = off")
        .await
        .context("configuring the apply session")?;
    let mut writers = Vec::new();
    for (_, output) in plan.outputs() {
        writers.push(OutputWriter::new(&client, output, WriterMode::Follow, false).await?);
    }
    Ok(LaneSession { client, writers })
}

/// Records why the consumer ended in error: a lost connection leaves the migration
/// `following` (the consumer starts over by itself); anything else marks it `stopped`, with
/// the reason, so that `status` and `watch` say what happened and what to do. A stream that
/// failed because the slot was invalidated is reported as that, with its fix.
async fn stopped(ctx: &FollowContext, e: PipelineError) -> PipelineError {
    let e = if e.class() == ErrorClass::Transient {
        e
    } else {
        match slot_health(ctx).await {
            Err(
                slot @ PipelineError::Stopped(
                    StopReason::SlotGone { .. } | StopReason::SlotInvalidated { .. },
                ),
            ) => slot,
            _ => e,
        }
    };
    let (status, message) = if matches!(e, PipelineError::LaneConflict { .. }) {
        (
            MigrationStatus::Following,
            format!(
                "consumer starting again after a conflict between apply lanes: {}",
                Chain::new(&e)
            ),
        )
    } else if e.class() == ErrorClass::Transient {
        (
            MigrationStatus::Following,
            format!(
                "consumer lost its connection, reconnecting: {}",
                Chain::new(&e)
            ),
        )
    } else {
        (
            MigrationStatus::Stopped,
            format!("consumer stopped: {}", Chain::new(&e)),
        )
    };
    let _ = checkpoint::set_status(&ctx.monitor, &ctx.plan.name, status, Some(&message)).await;
    e
}

/// The tables the backfill copied (recorded under its snapshot): their OIDs and their rows in
/// the publication. A migration backfilled before they were recorded gets today's, recorded
/// now.
async fn followed(
    source: &Client,
    target: &Client,
    plan: &Plan,
    publication: &str,
) -> anyhow::Result<(Vec<u32>, Vec<Option<u32>>)> {
    let recorded: FxHashMap<String, checkpoint::SourceRelation> =
        checkpoint::source_relations(target, &plan.name)
            .await?
            .into_iter()
            .map(|r| (r.table.clone(), r))
            .collect();
    let now = identity::resolve(source, plan)
        .await
        .context("reading the source tables' OIDs")?;
    let mut oids = Vec::with_capacity(now.len());
    let mut missing = Vec::new();
    for (s, now) in plan.sources.iter().zip(now) {
        let table = s.table.to_string();
        match (recorded.get(&table), now) {
            (Some(r), _) => oids.push(r.oid),
            (None, Some(oid)) => {
                missing.push(checkpoint::SourceRelation {
                    table,
                    oid,
                    publication_rel: None,
                });
                oids.push(oid);
            }
            (None, None) => bail!("source table {table} does not exist; the plan names it"),
        }
    }
    if !missing.is_empty() {
        let rels = identity::memberships(source, &oids, publication).await?;
        for r in &mut missing {
            r.publication_rel = oids.iter().position(|o| *o == r.oid).and_then(|i| rels[i]);
        }
        checkpoint::record_source_relations(target, &plan.name, &missing).await?;
    }
    let baseline = plan
        .sources
        .iter()
        .zip(&oids)
        .map(|(s, oid)| {
            recorded
                .get(&s.table.to_string())
                .map(|r| r.publication_rel)
                .unwrap_or_else(|| {
                    missing
                        .iter()
                        .find(|m| m.oid == *oid)
                        .and_then(|m| m.publication_rel)
                })
        })
        .collect();
    Ok((oids, baseline))
}
