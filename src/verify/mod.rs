//! `verify`: every output table of a plan against the *transformed source*, by key, online.
//!
//! ```text
//!  round 0   source: snapshot S ── fence ──> consumer applies ──> target has >= S
//!            read lookups (read-only) ── COPY out ── transform_batch ── COPY into temp tables
//!            per output: bucket hashes on both sides ── differing buckets: FULL JOIN by key
//!                        ──> suspects (missing / extra / different / retained)
//!  round 1.. (up to --recheck, only while candidates remain; a short pause first)
//!            new snapshot + fence, transform again, compare the suspect keys again
//!            matched once or changed between rounds ──> in flight; same difference every
//!            round ──> divergence
//!  then      the plan's [reports] (orphans) on the target; the report
//! ```
//!
//! Verify writes nothing but temp tables: the lookups are read into a map that never inserts
//! ([`lookups`]). The tool streams one batch at a time; whole tables only ever sit in temp
//! tables on the target, where PostgreSQL compares values by their types ([`buckets`]).
//!
//! [`verify`] is the library entry point; the cutover calls it under its lock, where no write
//! is in flight and a single round is conclusive.

mod buckets;
mod consumer;
mod error;
mod fence;
mod findings;
mod large_objects;
mod lookups;
mod orphans;
mod outputs;
mod recheck;
mod report;
mod scan;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::pg::connect::connect;
use crate::pg::conninfo::ConnInfo;
use crate::plan::Plan;

pub use error::VerifyError;
pub use report::{
    ColumnDifference, ConsumerState, Finding, Findings, Orphans, RejectedRows, TableReport,
    VerifyReport,
};

use findings::Verdict;
use lookups::ReadOnlyLookups;
use outputs::OutputSpec;
use scan::SourceScan;

/// How hard to look.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Recheck rounds for keys that differ (0: the first comparison is the verdict).
    pub recheck_rounds: u32,
    /// How long to wait for the consumer to apply a fence before comparing anyway.
    pub fence_timeout: Duration,
    /// Pause before each recheck round, so that writes in flight can land.
    pub recheck_pause: Duration,
    /// Told at once, before the comparison, what a person waiting for the report should know
    /// (no consumer runs); the command prints it, the cutover's verify ignores it.
    pub notice: fn(&str),
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            recheck_rounds: 3,
            fence_timeout: Duration::from_secs(30),
            recheck_pause: Duration::from_millis(500),
            notice: |_| {},
        }
    }
}

/// Compares every output table of `plan` in `target` with the transformed rows of `source`.
/// `plan` is shared with the transform workers (rayon threads), hence the `Arc`.
pub async fn verify(
    plan: &Arc<Plan>,
    source: &ConnInfo,
    target: &ConnInfo,
    options: VerifyOptions,
) -> Result<VerifyReport, VerifyError> {
    let started = Instant::now();
    let specs = OutputSpec::from_plan(plan).map_err(VerifyError::Plan)?;
    let target_client = connect(target, "switchyard verify").await?;
    let reader = connect(source, "switchyard verify reader").await?;
    crate::source::ctype::use_source_ctype(&reader)
        .await
        .map_err(VerifyError::source("read the source database's LC_CTYPE"))?;
    let mut gate = fence::Gate::open(
        source,
        target,
        &target_client,
        &plan.name,
        options.fence_timeout,
    )
    .await?;
    if let Some(why) = &gate.why_not {
        (options.notice)(&format!(
            "verify {}: no consumer runs ({why}); comparing without a fence: rows written meanwhile may show as differences",
            plan.name
        ));
    }
    scan::create_temp_tables(&target_client, &specs).await?;
    buckets::create_suspects(&target_client).await?;
    let lookups = Arc::new(
        ReadOnlyLookups::load(&target_client, &plan.lookups)
            .await
            .map_err(VerifyError::target("reading the lookup tables"))?,
    );
    let round = Round {
        plan,
        specs: &specs,
        reader: &reader,
        target: &target_client,
        lookups: &lookups,
    };

    let all: Vec<usize> = (0..specs.len()).collect();
    let scans = round.run(&mut gate, &all).await?;
    let lookup_misses = lookups.miss_reasons();
    let mut summaries = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        summaries.push(buckets::compare(&target_client, i, spec).await?);
    }

    let mut recheck_rounds = 0;
    while recheck_rounds < options.recheck_rounds {
        let candidates = recheck::outputs_with_candidates(&target_client).await?;
        if candidates.is_empty() {
            break;
        }
        tokio::time::sleep(options.recheck_pause).await;
        round.run(&mut gate, &candidates).await?;
        for &i in &candidates {
            recheck::recheck(&target_client, i, &specs[i]).await?;
        }
        recheck_rounds += 1;
    }

    let mut tables = Vec::with_capacity(specs.len());
    for ((i, spec), summary) in specs.iter().enumerate().zip(summaries) {
        let read = |verdict| findings::findings(&target_client, i, verdict, &lookups);
        tables.push(TableReport {
            table: spec.table.to_string(),
            mode: if spec.keys_only() {
                "insert_if_absent"
            } else {
                "upsert"
            },
            source_rows: summary.source_rows,
            target_rows: summary.target_rows,
            buckets: summary.buckets,
            differing_buckets: summary.differing_buckets,
            missing: read(Verdict::Diverged("missing")).await?,
            extra: read(Verdict::Diverged("extra")).await?,
            different: read(Verdict::Diverged("different")).await?,
            retained: read(Verdict::Retained).await?,
            in_flight: read(Verdict::InFlight).await?,
        });
    }
    let orphans = orphans::count(&target_client, plan).await?;
    let large_objects = large_objects::columns(&target_client, &specs).await?;
    Ok(VerifyReport {
        migration: plan.name.clone(),
        consumer: if !gate.running {
            ConsumerState::NotRunning
        } else if gate.caught_up {
            ConsumerState::CaughtUp
        } else {
            ConsumerState::NotCaughtUp
        },
        consumer_detail: gate.why_not.clone(),
        recheck_rounds,
        elapsed_s: started.elapsed().as_secs_f64(),
        tables,
        rejected: rejected_rows(plan, &scans),
        lookup_misses,
        orphans,
        large_objects,
    })
}

/// What every round shares.
struct Round<'a> {
    plan: &'a Arc<Plan>,
    specs: &'a [OutputSpec],
    reader: &'a Client,
    target: &'a Client,
    lookups: &'a Arc<ReadOnlyLookups>,
}

impl Round<'_> {
    /// Takes a new snapshot, waits for the consumer to pass it, and refills the temp tables of
    /// outputs `wanted` with the transformed source; returns one scan per source read.
    async fn run(
        &self,
        gate: &mut fence::Gate,
        wanted: &[usize],
    ) -> Result<Vec<(usize, SourceScan)>, VerifyError> {
        self.reader
            .batch_execute(
                "ROLLBACK; BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT pg_current_wal_lsn()",
            )
            .await
            .map_err(VerifyError::source("taking a snapshot"))?;
        gate.pass().await?;
        self.lookups
            .refresh(self.target, &self.plan.lookups)
            .await
            .map_err(VerifyError::target("reading the lookup tables"))?;
        for &i in wanted {
            self.target
                .batch_execute(&format!("TRUNCATE {}", scan::temp_table(i)))
                .await
                .map_err(VerifyError::target("emptying a temp table"))?;
        }
        let mut sources: Vec<usize> = wanted
            .iter()
            .flat_map(|&i| self.specs[i].feeds.iter().map(|&(s, _)| s))
            .collect();
        sources.sort_unstable();
        sources.dedup();
        let mut scans = Vec::with_capacity(sources.len());
        for source in sources {
            let scan = scan::scan_source(
                self.reader,
                self.target,
                self.plan,
                self.lookups,
                self.specs,
                wanted,
                source,
            )
            .await?;
            scans.push((source, scan));
        }
        self.reader
            .batch_execute("COMMIT")
            .await
            .map_err(VerifyError::source("ending the snapshot"))?;
        Ok(scans)
    }
}

fn rejected_rows(plan: &Plan, scans: &[(usize, SourceScan)]) -> Vec<RejectedRows> {
    scans
        .iter()
        .filter(|(_, scan)| scan.rejected_rows > 0)
        .map(|(source, scan)| RejectedRows {
            source_table: plan.sources[*source].table.to_string(),
            count: scan.rejected_rows,
            first: scan
                .rejected
                .iter()
                .map(|r| (r.key.clone(), r.reason.clone()))
                .collect(),
        })
        .collect()
}
