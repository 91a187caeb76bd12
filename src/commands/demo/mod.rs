//! `switchyard demo`: the whole story on throwaway clusters it starts itself.
//!
//! ```text
//!  source cluster: legacy tables at --scale, a write load running throughout
//!  target cluster: empty
//!  check ─> backfill (live display) ─> follow, lag converging ─> cutover under the load
//!        ─> verify against the plain SQL migration of the same rules
//!        ─> the round trip: writes to the new tables, rollback through the reverse stream
//!        ─> summary
//! ```
//! After the cutover the legacy tables are read-only, so the verification compares the target
//! with the source exactly as the last acknowledged write left it.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::cli::DemoArgs;
use crate::cutover::{cutover, CutoverOptions};
use crate::demo::cluster::{Cluster, ClusterOptions};
use crate::demo::generator::load_legacy;
use crate::demo::prerequisites;
use crate::demo::verify::{compare, Exclusions};
use crate::demo::write_load::{AckedWrite, WriteKind, WriteLoad, WriteLoadOptions};
use crate::lag;
use crate::pg::conninfo::ConnInfo;
use crate::plan::Plan;
use crate::progress::{human, BackfillProgress, DisplayMode};
use crate::source::preflight::Severity;
use crate::source::slot;
use crate::verify::{verify, VerifyOptions};

use super::backfill::BackfillJob;
use super::check::check_all;
use super::follow::FollowJob;

mod round_trip;

/// How long the demo keeps the write load running while it follows.
const FOLLOW_WITH_LOAD: Duration = Duration::from_secs(8);

/// The demo's cutover limit: the operator's default.
const CUTOVER_MAX_BLOCKED: Duration = Duration::from_secs(5);

/// The seed plan, relative to the repository root (the demo runs from a checkout).
const SEED_PLAN: &str = "transforms/legacy_to_projects/plan.toml";

pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let repo_root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    prerequisites::ensure(repo_root)?;
    let plan_path = repo_root.join(SEED_PLAN);
    let plan = Arc::new(Plan::load(&plan_path)?);

    println!("== starting throwaway source and target clusters");
    let source_cluster =
        Cluster::start(ClusterOptions::default()).context("starting the source cluster")?;
    let target_cluster =
        Cluster::start(ClusterOptions::default()).context("starting the target cluster")?;
    source_cluster.create_database("legacy").await?;
    target_cluster.create_database("app").await?;
    let (source_url, target_url) = (source_cluster.url("legacy"), target_cluster.url("app"));
    let source = source_cluster.connect("legacy").await?;

    println!("== loading the legacy tables at scale {}", args.scale);
    let loaded = Instant::now();
    let counts = load_legacy(&source, args.scale).await?;
    println!(
        "   {} company_projects, {} company_services, {} vortex_items in {:.1}s",
        counts.company_projects,
        counts.company_services,
        counts.vortex_items,
        loaded.elapsed().as_secs_f64()
    );
    // The independent expected result, before any write: rows the load touches are excluded.
    let expected_sql = std::fs::read_to_string(plan_path.with_file_name("expected.sql"))?;
    source
        .batch_execute(&expected_sql)
        .await
        .context("computing the expected result")?;

    println!(
        "== starting a write load of {} tx/s on the source",
        args.write_rate
    );
    let load = WriteLoad::start(
        &source_url,
        WriteLoadOptions {
            target_rate: Some(f64::from(args.write_rate)),
            record_acks: true,
            ..WriteLoadOptions::default()
        },
    )
    .await?;

    let (source_info, target_info) = (ConnInfo::parse(&source_url)?, ConnInfo::parse(&target_url)?);
    println!("== switchyard check");
    let checked = check_all(&plan, &source_info, &target_info).await?;
    let findings = checked.findings;
    for f in &findings {
        println!("   {f}");
    }
    for line in checked.formats.describe(plan.outputs().map(|(_, o)| o)) {
        println!("   note: COPY into {line}");
    }
    anyhow::ensure!(
        findings.iter().all(|f| f.severity != Severity::Error),
        "check found errors"
    );

    println!("== switchyard backfill --jobs {}", args.jobs);
    let summary = BackfillJob {
        plan: Arc::clone(&plan),
        source: source_info,
        target: target_info,
        jobs: args.jobs,
        maintenance_work_mem: crate::cli::DEFAULT_MAINTENANCE_WORK_MEM,
        resume: false,
        snapshot_timeout: Duration::from_secs(600),
        on_error: plan.on_error,
        display: DisplayMode::Auto,
        load: Default::default(),
        progress: BackfillProgress::of_plan(&plan),
    }
    .run(&super::signal::Stop::never())
    .await?;
    let slot_bytes = slot::state(&source, &plan.slot_name())
        .await?
        .map_or(-1, |s| s.retained_bytes().unwrap_or(0));
    println!(
        "== following the WAL with the write load still running (the slot held {} after the copy)",
        human::bytes(slot_bytes)
    );
    let (stop_consumer, consumer_stop) = tokio::sync::watch::channel(false);
    let consumer = tokio::spawn(
        FollowJob {
            plan: Arc::clone(&plan),
            source: ConnInfo::parse(&source_url)?,
            target: ConnInfo::parse(&target_url)?,
            on_error: plan.on_error,
            apply_jobs: crate::cli::DEFAULT_APPLY_JOBS,
            serial_through: None,
            progress: Default::default(),
        }
        .run(consumer_stop),
    );
    let target = target_cluster.connect("app").await?;
    let mut max_lag = (0i64, 0.0f64);
    let followed = Instant::now();
    let mut last_changes = 0;
    while followed.elapsed() < FOLLOW_WITH_LOAD {
        tokio::time::sleep(Duration::from_secs(1)).await;
        anyhow::ensure!(
            !consumer.is_finished(),
            "the consumer stopped: {:?}",
            consumer.await
        );
        if let Some(s) = lag::sample(&source, &target, &plan).await? {
            let (bytes, secs) = (s.bytes_behind.unwrap_or(0), s.seconds_behind.unwrap_or(0.0));
            max_lag = (max_lag.0.max(bytes), max_lag.1.max(secs));
            println!(
                "   lag {:>9} / {:>5}, {:>6} changes/s applied, slot holds {}",
                human::bytes(bytes),
                human::seconds(secs),
                human::count((s.changes_applied - last_changes) as f64),
                human::bytes(s.slot_retained_bytes.unwrap_or(-1))
            );
            last_changes = s.changes_applied;
        }
    }
    let changes = lag::sample(&source, &target, &plan)
        .await?
        .map_or(0, |s| s.changes_applied);
    let follow_rate = changes as f64 / followed.elapsed().as_secs_f64();

    println!(
        "== switchyard cutover --max-blocked {}s, with the write load still running",
        CUTOVER_MAX_BLOCKED.as_secs()
    );
    let say = |line: String| println!("   {line}");
    crate::cutover::reverse_stream::prepare(&plan, &target, &source)
        .await
        .context("preparing the reverse stream")?;
    let cut = cutover(
        &plan,
        &ConnInfo::parse(&source_url)?,
        &ConnInfo::parse(&target_url)?,
        &CutoverOptions {
            max_blocked: CUTOVER_MAX_BLOCKED,
            max_lag: 1 << 20,
            catch_up_timeout: Duration::from_secs(60),
            lock_timeout: Duration::from_millis(500),
            lock_attempts: 10,
            dry_run: false,
            verify: false,
            keep_reverse: true,
        },
        &say,
    )
    .await;
    let cut = match cut {
        Ok(report) => report,
        Err(e) => {
            let _ = stop_consumer.send(true);
            let _ = load.stop().await;
            return Err(e.into());
        }
    };
    for step in &cut.steps {
        println!("   {:<55} {:>8.1} ms", step.step.describe(), step.ms);
    }
    println!(
        "   committed: writes were blocked for {:.0} ms; {}",
        cut.window_ms,
        cut.slot.as_deref().unwrap_or("")
    );
    let report = load.stop().await?;
    println!(
        "== write load stopped: {} transactions acknowledged, {} refused after the cutover (the legacy tables are read-only)",
        report.counts.committed(),
        report.counts.errors
    );
    // The consumer saw the cutover and stops by itself.
    match tokio::time::timeout(Duration::from_secs(30), consumer).await {
        Ok(joined) => {
            joined??;
        }
        Err(_) => {
            let _ = stop_consumer.send(true);
            anyhow::bail!("the consumer did not stop after the cutover");
        }
    }

    println!("== verifying against the plain SQL migration of the same rules, on the source as it is now");
    source
        .batch_execute(&expected_sql)
        .await
        .context("computing the expected result")?;
    let tables = compare(&source, &target, &Exclusions::default()).await?;
    let mut clean = true;
    for t in &tables {
        clean &= t.is_clean();
        println!(
            "   {:<15} {:>8} rows equal{}",
            t.table,
            t.equal,
            if t.is_clean() {
                String::new()
            } else {
                format!(
                    ", MISMATCH: missing {:?} extra {:?} different {:?}",
                    t.missing.len(),
                    t.extra.len(),
                    t.different.len()
                )
            }
        );
    }
    println!("== switchyard verify: every output table against the transformed source, by key");
    let verified = verify(
        &plan,
        &ConnInfo::parse(&source_url)?,
        &ConnInfo::parse(&target_url)?,
        VerifyOptions::default(),
    )
    .await?;
    for line in verified.render().lines() {
        println!("   {line}");
    }
    clean &= !verified.diverged();
    let acked_found = acked_writes_found(&target, &report.acked).await?;
    println!("== the round trip: the new application writes the new tables; the reverse stream the cutover started brings them back");
    let round_trip = round_trip::run(
        &plan,
        &plan_path,
        (&source_url, &target_url),
        (&source, &target),
    )
    .await?;
    clean &= round_trip;

    println!("== summary");
    let rate = summary.rows as f64 / summary.elapsed.as_secs_f64().max(0.001);
    println!(
        "   backfill: {} source rows in {} ({}), {} rejected to switchyard.dead_letters",
        summary.rows,
        human::duration(summary.elapsed),
        human::rate(rate, "rows"),
        summary.rejected
    );
    println!(
        "   follow: {changes} changes applied ({}), at most {} / {} behind while the load ran",
        human::rate(follow_rate, "changes"),
        human::bytes(max_lag.0),
        human::seconds(max_lag.1)
    );
    println!(
        "   cutover: writes blocked for {:.0} ms (limit {:.0} ms), lock granted at attempt {}",
        cut.window_ms, cut.max_blocked_ms, cut.lock_attempts
    );
    println!(
        "   write load: {} transactions acknowledged; {} of {} acknowledged inserts and updates found in the target",
        report.counts.committed(),
        acked_found.0,
        acked_found.1
    );
    println!(
        "   round trip: writes made to the new tables after the cutover are {} in the legacy tables after `rollback`",
        if round_trip { "all" } else { "NOT all" }
    );
    for o in &verified.orphans {
        println!("   {}: {}", o.name, o.count);
    }
    println!(
        "   verification: {}",
        if clean {
            "target equals the transformed source"
        } else {
            "MISMATCH"
        }
    );
    println!("== removing the throwaway clusters");
    drop(source);
    drop(target);
    drop(source_cluster);
    drop(target_cluster);
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Of the acknowledged inserts and updates of items whose row still exists on the source, how
/// many have a task or sub-task in the target (found, checked).
async fn acked_writes_found(
    target: &tokio_postgres::Client,
    acked: &[AckedWrite],
) -> anyhow::Result<(i64, i64)> {
    let ids: Vec<i64> = acked
        .iter()
        .filter(|w| {
            matches!(
                w.kind,
                WriteKind::InsertItem | WriteKind::InsertSubTask | WriteKind::UpdateItem
            )
        })
        .map(|w| w.id)
        .collect();
    let deleted: Vec<i64> = acked
        .iter()
        .filter(|w| w.kind == WriteKind::DeleteItem)
        .map(|w| w.id)
        .collect();
    let row = target
        .query_one(
            "SELECT count(*) FILTER (WHERE EXISTS (SELECT FROM tasks t WHERE t.legacy_id = i)
                                        OR EXISTS (SELECT FROM sub_tasks s WHERE s.legacy_id = i)),
                    count(*)
               FROM (SELECT DISTINCT i FROM unnest($1::int8[]) i WHERE i <> ALL ($2::int8[])) ids",
            &[&ids, &deleted],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}
