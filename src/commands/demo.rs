//! `switchyard demo`: the whole story on throwaway clusters it starts itself.
//!
//! ```text
//!  source cluster: legacy tables at --scale, a write load running throughout
//!  target cluster: empty
//!  check ─> backfill (live display) ─> verify against the plain SQL migration ─> summary
//! ```
//! Rows the write load touched after the snapshot are left out of the verification: the copy
//! holds their old version, and the slot holds the change for the WAL consumer.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;

use crate::cli::DemoArgs;
use crate::demo::cluster::{Cluster, ClusterOptions};
use crate::demo::generator::load_legacy;
use crate::demo::verify::{compare, Exclusions};
use crate::demo::write_load::{WriteLoad, WriteLoadOptions};
use crate::pg::conninfo::ConnInfo;
use crate::plan::Plan;
use crate::progress::{human_bytes, DisplayMode};
use crate::source::preflight::Severity;
use crate::source::slot;

use super::backfill::BackfillJob;
use super::check::check_all;

/// The seed plan, relative to the repository root (the demo runs from a checkout).
const SEED_PLAN: &str = "transforms/legacy_to_projects/plan.toml";

pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let plan_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(SEED_PLAN);
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
    let findings = check_all(&plan, &source_info, &target_info).await?;
    for f in &findings {
        println!("   {f}");
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
        resume: false,
        on_error: plan.on_error,
        display: DisplayMode::Auto,
    }
    .run()
    .await?;
    let report = load.stop().await?;
    let slot_bytes = slot::state(&source, &plan.slot_name())
        .await?
        .map_or(-1, |s| s.retained_bytes);

    println!("== verifying against the plain SQL migration of the same rules");
    let target = target_cluster.connect("app").await?;
    let exclusions = Exclusions {
        keys: report
            .acked
            .iter()
            .map(|w| (w.table.to_owned(), w.id))
            .collect(),
    };
    let tables = compare(&source, &target, &exclusions).await?;
    let mut clean = true;
    for t in &tables {
        clean &= t.is_clean();
        println!(
            "   {:<15} {:>8} rows equal, {:>6} changed by the write load (left to the WAL consumer){}",
            t.table,
            t.equal,
            t.excluded,
            if t.is_clean() {
                String::new()
            } else {
                format!(", MISMATCH: missing {:?} extra {:?} different {:?}", t.missing.len(), t.extra.len(), t.different.len())
            }
        );
    }

    println!("== summary");
    let rate = summary.rows as f64 / summary.elapsed.as_secs_f64().max(0.001);
    println!(
        "   backfill: {} source rows in {:.1}s ({rate:.0} rows/s), {} rejected to switchyard.dead_letters",
        summary.rows,
        summary.elapsed.as_secs_f64(),
        summary.rejected
    );
    println!(
        "   write load: {} transactions committed during the run; the slot holds {} of WAL since {}",
        report.counts.committed(),
        human_bytes(slot_bytes),
        summary.consistent_lsn
    );
    for (name, count) in &summary.reports {
        println!("   {name}: {count}");
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
