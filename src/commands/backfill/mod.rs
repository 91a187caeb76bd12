//! `switchyard backfill`: record the migration, create the target schema, the publication and
//! the slot, copy every chunk under the slot's snapshot, then run the after-backfill SQL.
//!
//! ```text
//!  check ─> record migration ─> before SQL ─> publication ─> slot + exported snapshot
//!        ─> readers and a holder import it ─> slot connection closes ─> chunk list
//!        ─> worker pool leasing chunks (with every `--join`, see `join.rs`) until all are done
//!        ─> holder closes ─> after SQL ─> reports ─> status backfilled (the slot waits for
//!           the consumer)
//! ```
//! A failure or a stop (Ctrl-C, SIGTERM) once the chunk list is recorded keeps slot and chunk
//! list and records why in the migration's message: `--resume` goes on, `abort` removes them.
//! One before that leaves nothing behind that this run made. A run killed before that point
//! (SIGKILL) leaves status `created`: the next `backfill` drops its slot and starts over.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::{StreamExt, TryStreamExt};
use tokio_postgres::Client;

use crate::checkpoint::{self, Migration, MigrationStatus};
use crate::pg::connect::connect;
use crate::pg::lsn::Lsn;
use crate::pipeline::backfill::copy_chunks;
use crate::pipeline::chunk_copy::ChunkContext;
use crate::pipeline::control::{ControlState, Controls, Gate};
use crate::progress::{BackfillProgress, Display};
use crate::sink::key_index;
use crate::sink::lookup::LookupCache;
use crate::source::chunks::{plan_chunks, table_size};
use crate::source::preflight::Severity;
use crate::source::replication::ReplicationConnection;
use crate::source::{identity, publication, slot, snapshot};
use crate::transform::copy_binary::RowFormat;

use super::check::check_all;
use super::signal::{Interrupted, Stop};
use after_backfill::{run_stages, AfterBackfillState};
use failure::{backend_pid, Made};
pub use job::BackfillJob;
use job::Copying;
pub use join::{JoinError, Joined};
use snapshot_wait::snapshot_wait;
use worker::ThisProcess;

/// The after-backfill SQL's stages on several sessions.
mod after_backfill;
/// What a failed or stopped run keeps and removes.
mod failure;
mod job;
/// `backfill --join`: another process copying the same migration's chunks.
mod join;
/// Naming the transactions the slot's snapshot waits for, and bounding the wait.
mod snapshot_wait;
/// This process among the migration's workers: its lease name and its row.
mod worker;

/// How often the display's "slot holds" figure is refreshed from the source.
const SLOT_POLL: Duration = Duration::from_secs(2);

/// SQLSTATE duplicate_object: the slot was created by someone else after our check.
const DUPLICATE_OBJECT: &str = "42710";

/// What a finished backfill reports.
#[derive(Debug, Clone)]
pub struct BackfillSummary {
    pub rows: u64,
    pub rejected: u64,
    pub elapsed: Duration,
    pub consistent_lsn: Lsn,
    pub reports: Vec<(String, i64)>,
}

impl BackfillJob {
    /// Runs the backfill; a stop request (Ctrl-C, SIGTERM) ends it with [`Interrupted`] at
    /// once, with what was recorded and how to go on.
    pub async fn run(self, stop: &Stop) -> anyhow::Result<BackfillSummary> {
        let started = Instant::now();
        let plan = Arc::clone(&self.plan);
        let checked = stop
            .unless_stopped(check_all(&plan, &self.source, &self.target))
            .await
            .ok_or_else(|| Interrupted("during the checks; nothing was created".into()))??;
        let errors: Vec<String> = checked
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .map(ToString::to_string)
            .collect();
        if !errors.is_empty() {
            bail!("the migration cannot start:\n{}", errors.join("\n"));
        }
        tracing::info!(elapsed = ?started.elapsed(), "checks passed");
        for line in checked.formats.describe(plan.outputs().map(|(_, o)| o)) {
            tracing::info!("COPY into {line}");
        }
        let source = connect(&self.source, "switchyard backfill").await?;
        crate::source::ctype::use_source_ctype(&source).await?;
        let mut target = connect(&self.target, "switchyard backfill").await?;
        // Read now: once a stop leaves a statement running on it, this session cannot answer.
        let session = backend_pid(&target).await;
        checkpoint::ensure_schema(&target).await?;
        // Before anything is made: a throttle query that cannot be used stops the run here.
        let controls = self.controls().await?;
        let existing = checkpoint::load(&target, &plan.name).await?;
        let progress = Arc::clone(&self.progress);

        let copying = match (&existing, self.resume) {
            (Some(m), _) if m.status == MigrationStatus::Created => {
                self.discard_unfinished_first_run(&source).await?;
                self.fresh_snapshot(&source, &mut target, &progress, stop)
                    .await?
            }
            (Some(m), true) => {
                let resumed = stop
                    .unless_stopped(self.resume_snapshot(&target, m, &progress))
                    .await;
                self.resumable(
                    resumed,
                    "while resuming; nothing new was copied",
                    &Vec::from_iter(session),
                )
                .await?
            }
            (Some(m), false) if m.status != MigrationStatus::Aborted => bail!(
                "migration {} already exists (status {}): run `switchyard backfill --resume` to go on, or `switchyard abort` to start over",
                plan.name,
                m.status
            ),
            (None, true) => bail!("there is no migration {} to resume; run `switchyard backfill` without --resume", plan.name),
            _ => self.fresh_snapshot(&source, &mut target, &progress, stop).await?,
        };

        tracing::info!(elapsed = ?started.elapsed(), "snapshot ready");
        let Copying {
            readers,
            holder,
            snapshot,
            consistent_lsn,
        } = copying;
        let me = ThisProcess::new();
        me.register(&target, &plan.name).await?;
        let ctx = self
            .chunk_context(
                &progress,
                checked.formats.formats.into(),
                &me,
                &snapshot,
                controls.gate(),
            )
            .await?;
        let display = Display::start(Arc::clone(&progress), self.display);
        let shown = tokio::spawn(show_waiting(controls.subscribe(), Arc::clone(&progress)));
        let poller = tokio::spawn(poll_slot(Arc::clone(&progress), source, plan.slot_name()));
        let tally = Arc::default();
        // Waits for every chunk, the joiners' too: the after-backfill SQL needs them all.
        let copied = stop
            .unless_stopped(copy_chunks(ctx, readers, &self.target, self.resume, tally))
            .await;
        poller.abort();
        shown.abort();
        drop(controls);
        display.finish().await;
        if matches!(copied, Some(Ok(()))) {
            // Nothing is left to join: a late `--join` says so instead of importing.
            checkpoint::set_exported_snapshot(&target, &plan.name, None, Some(&snapshot)).await?;
        }
        drop(holder);
        let (done, total) = progress.tables.iter().fold((0, 0), |(d, t), table| {
            (
                d + table.chunks_done.load(Ordering::Relaxed),
                t + table.chunks_total.load(Ordering::Relaxed),
            )
        });
        let interrupted = format!(
            "{done} of {total} chunks are copied and recorded, the chunks in flight were rolled back"
        );
        self.resumable(
            copied.map(|c| c.map_err(anyhow::Error::new)),
            &interrupted,
            &[],
        )
        .await?;

        tracing::info!(elapsed = ?started.elapsed(), rows = progress.total_rows(), "chunks copied");
        let after = AfterBackfillState::default();
        let finished = stop.unless_stopped(self.finish(&target, &after)).await;
        let mut in_flight: Vec<i32> = session.into_iter().collect();
        in_flight.extend(after.pids());
        let reports = self
            .resumable(finished, &after.describe_stop(), &in_flight)
            .await?;
        tracing::info!(elapsed = ?started.elapsed(), "after-backfill SQL and reports done");
        Ok(BackfillSummary {
            rows: progress.total_rows(),
            rejected: progress.rejected.load(Ordering::Relaxed),
            elapsed: started.elapsed(),
            consistent_lsn,
            reports,
        })
    }

    /// The pause, throttle and load controls of this run, on sessions of their own.
    async fn controls(&self) -> anyhow::Result<Controls> {
        let target = connect(&self.target, "switchyard control").await?;
        let load = match self.load.is_set() {
            true => Some((
                connect(&self.source, "switchyard control").await?,
                self.load.clone(),
            )),
            false => None,
        };
        Ok(Controls::start(target, &self.plan.name, load).await?)
    }

    /// What every worker of this process needs: the plan, the lookups, and who holds the
    /// leases under which snapshot.
    async fn chunk_context(
        &self,
        progress: &Arc<BackfillProgress>,
        formats: Arc<[RowFormat]>,
        me: &ThisProcess,
        snapshot: &str,
        gate: Gate,
    ) -> anyhow::Result<Arc<ChunkContext>> {
        let lookup_client = connect(&self.target, "switchyard lookups").await?;
        let lookups = Arc::new(
            LookupCache::start(lookup_client, &self.plan.lookups)
                .await
                .context("loading lookup tables")?,
        );
        Ok(Arc::new(ChunkContext {
            plan: Arc::clone(&self.plan),
            migration: self.plan.name.clone(),
            lookups,
            on_error: self.on_error,
            progress: Arc::clone(progress),
            formats,
            lease_owner: me.owner.clone(),
            snapshot: snapshot.to_owned(),
            gate,
        }))
    }

    /// The end of the backfill: helper indexes out, the after-backfill SQL, the reports.
    async fn finish(
        &self,
        target: &Client,
        after: &AfterBackfillState,
    ) -> anyhow::Result<Vec<(String, i64)>> {
        let plan = &self.plan;
        for output in plan.sources.iter().flat_map(|s| &s.outputs) {
            key_index::drop_helper(target, &output.table).await?;
        }
        run_stages(
            &plan.phases.after_backfill,
            &self.target,
            self.jobs,
            self.maintenance_work_mem,
            after,
        )
        .await?;
        // The reports are independent counts: up to --jobs at a time, each on its own session.
        let reports = futures_util::stream::iter(&plan.reports)
            .map(|(name, sql)| async move {
                let session = connect(&self.target, "switchyard backfill").await?;
                let count: i64 = session
                    .query_one(sql.as_str(), &[])
                    .await
                    .with_context(|| format!("report {name:?}"))?
                    .get(0);
                Ok::<_, anyhow::Error>((name.clone(), count))
            })
            .buffered(self.jobs.max(1))
            .try_collect::<Vec<_>>()
            .await?;
        checkpoint::set_status(target, &plan.name, MigrationStatus::Backfilled, None).await?;
        Ok(reports)
    }

    async fn prepare_fresh(
        &self,
        source: &Client,
        target: &mut Client,
        progress: &BackfillProgress,
        made: &mut Made,
    ) -> anyhow::Result<Copying> {
        let plan = &self.plan;
        if slot::state(source, &plan.slot_name()).await?.is_some() {
            bail!(
                "replication slot {} already exists on the source, but the target has no migration using it: \
                 if no other migration needs it, drop it with SELECT pg_drop_replication_slot('{}');",
                plan.slot_name(),
                plan.slot_name()
            );
        }
        checkpoint::create(
            target,
            &Migration {
                name: plan.name.clone(),
                plan_checksum: plan.checksum.clone(),
                status: MigrationStatus::Created,
                slot_name: plan.slot_name(),
                publication: plan.publication_name(),
                snapshot_lsn: None,
                consistent_lsn: None,
                applied_lsn: None,
                message: None,
            },
        )
        .await?;
        for file in &plan.phases.before_backfill {
            target
                .batch_execute(&file.sql)
                .await
                .with_context(|| format!("running {}", file.path.display()))?;
        }
        let tables: Vec<_> = plan.sources.iter().map(|s| &s.table).collect();
        made.publication = publication::ensure(source, &plan.publication_name(), &tables)
            .await
            .context("creating the publication")?;
        let mut replication = ReplicationConnection::connect(&self.source).await?;
        // Set before the slot is asked for: a stop while it is being created must remove it
        // (dropping one that is not there is a no-op). Unless another run made it meanwhile.
        made.slot = true;
        let created = snapshot_wait(
            source,
            replication.create_logical_slot_exporting_snapshot(&plan.slot_name()),
            self.snapshot_timeout,
        )
        .await?
        .inspect_err(|e| {
            made.slot = e.server_error().is_none_or(|s| s.code != DUPLICATE_OBJECT);
        })?;
        let readers = snapshot::open_readers(&self.source, self.jobs, &created.snapshot_name).await;
        let held = match &readers {
            Ok(_) => Some(snapshot::hold(&self.source, &created.snapshot_name).await),
            Err(_) => None,
        };
        // The snapshot is imported (or failed): the slot connection is no longer needed.
        let _ = replication.close().await;
        let readers = readers?;
        let (holder, exported) = held.expect("held once the readers imported")?;
        // The tables this snapshot copies, by identity: the consumer follows these OIDs, and
        // their rows in the publication, which must stay the same.
        let oids = identity::resolve(&readers[0], plan)
            .await
            .context("reading the source tables' OIDs")?;
        let mut relations = Vec::new();
        for (s, oid) in plan.sources.iter().zip(oids) {
            if let Some(oid) = oid {
                relations.push(checkpoint::SourceRelation {
                    table: s.table.to_string(),
                    oid,
                    publication_rel: None,
                });
            }
        }
        let found: Vec<u32> = relations.iter().map(|r| r.oid).collect();
        let rels = identity::memberships(&readers[0], &found, &plan.publication_name())
            .await
            .context("reading the source tables' publication rows")?;
        for (relation, rel) in relations.iter_mut().zip(rels) {
            relation.publication_rel = rel;
        }
        checkpoint::record_source_relations(target, &plan.name, &relations).await?;
        checkpoint::set_lsns(
            target,
            &plan.name,
            Some(created.consistent_point),
            created.consistent_point,
        )
        .await?;
        let mut chunks = Vec::new();
        for (source_plan, table_progress) in plan.sources.iter().zip(&progress.tables) {
            let size = table_size(&readers[0], &source_plan.table).await?;
            let table_chunks = plan_chunks(&source_plan.table, size, self.jobs);
            table_progress
                .estimated_rows
                .store(size.estimated_rows.max(0) as u64, Ordering::Relaxed);
            table_progress
                .chunks_total
                .store(table_chunks.len() as u64, Ordering::Relaxed);
            chunks.extend(table_chunks);
        }
        checkpoint::insert_chunks(target, &plan.name, &chunks).await?;
        checkpoint::set_exported_snapshot(target, &plan.name, Some(&exported), None).await?;
        // From here on the migration is resumable: a failure keeps the slot for --resume.
        checkpoint::set_status(target, &plan.name, MigrationStatus::Backfilling, None).await?;
        Ok(Copying {
            readers,
            holder,
            snapshot: exported,
            consistent_lsn: created.consistent_point,
        })
    }

    /// Resume: the exported snapshot is gone; a fresh one reads the chunks not yet done.
    async fn resume_snapshot(
        &self,
        target: &Client,
        m: &Migration,
        progress: &BackfillProgress,
    ) -> anyhow::Result<Copying> {
        let plan = &self.plan;
        if !plan.has_checksum(&m.plan_checksum) {
            bail!("the plan or its SQL files changed since the backfill started; `switchyard abort` and start over");
        }
        if m.status != MigrationStatus::Backfilling {
            bail!(
                "migration {} is {}, not an interrupted backfill",
                plan.name,
                m.status
            );
        }
        let probe = connect(&self.source, "switchyard backfill").await?;
        if slot::state(&probe, &m.slot_name).await?.is_none() {
            bail!("slot {} is gone, so changes since the snapshot are lost: `switchyard abort` and start over", m.slot_name);
        }
        let (holder, snapshot_name, lsn) = snapshot::export_fresh(&self.source).await?;
        let readers = snapshot::open_readers(&self.source, self.jobs, &snapshot_name).await?;
        checkpoint::set_lsns(target, &plan.name, None, lsn).await?;
        // Resumed chunks upsert (they may meet rows already copied): the keys need an index.
        for output in plan.sources.iter().flat_map(|s| &s.outputs) {
            key_index::ensure_unique_key(target, &output.table, &output.key).await?;
        }
        for (table, done, total, rows) in checkpoint::chunk_progress(target, &plan.name).await? {
            let Some(i) = plan
                .sources
                .iter()
                .position(|s| s.table.to_string() == table)
            else {
                continue;
            };
            progress.tables[i]
                .chunks_done
                .store(done as u64, Ordering::Relaxed);
            progress.tables[i]
                .chunks_total
                .store(total as u64, Ordering::Relaxed);
            progress.tables[i]
                .rows
                .store(rows as u64, Ordering::Relaxed);
        }
        estimate_rows(&readers[0], plan, progress).await?;
        // Recorded last, once the helper indexes exist: workers still reading under an older
        // snapshot (plain inserts) stop taking chunks from here on; see `checkpoint::leases`.
        checkpoint::set_exported_snapshot(target, &plan.name, Some(&snapshot_name), None).await?;
        Ok(Copying {
            readers,
            holder,
            snapshot: snapshot_name,
            consistent_lsn: lsn,
        })
    }
}

/// Each table's estimated rows, for the display's bars.
async fn estimate_rows(
    reader: &Client,
    plan: &crate::plan::Plan,
    progress: &BackfillProgress,
) -> anyhow::Result<()> {
    for (source_plan, table_progress) in plan.sources.iter().zip(&progress.tables) {
        let size = table_size(reader, &source_plan.table).await?;
        table_progress
            .estimated_rows
            .store(size.estimated_rows.max(0) as u64, Ordering::Relaxed);
    }
    Ok(())
}

async fn poll_slot(progress: Arc<BackfillProgress>, source: Client, slot_name: String) {
    loop {
        if let Ok(Some(state)) = slot::state(&source, &slot_name).await {
            progress
                .slot_retained_bytes
                .store(state.retained_bytes().unwrap_or(0), Ordering::Relaxed);
        }
        tokio::time::sleep(SLOT_POLL).await;
    }
}

/// Keeps the display's "waiting: ..." line up to date with the controls.
async fn show_waiting(
    mut state: tokio::sync::watch::Receiver<ControlState>,
    progress: Arc<BackfillProgress>,
) {
    loop {
        progress.set_waiting(state.borrow_and_update().waiting());
        if state.changed().await.is_err() {
            return;
        }
    }
}
