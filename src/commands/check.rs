//! `switchyard check`: everything that can be known before work starts, reported together.

use std::process::ExitCode;

use anyhow::Context;

use crate::cli::CheckArgs;
use crate::cutover::{access, reverse_rules};
use crate::pg::connect::connect;
use crate::pg::conninfo::ConnInfo;
use crate::plan::Plan;
use crate::sink;
use crate::sink::preflight::TargetChecked;
use crate::source::preflight::{self, Finding, Severity};
use crate::source::unreplicated;

pub async fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let plan = Plan::load(&args.plan.plan)?;
    let source = ConnInfo::parse(&args.connections.source)?;
    let target = ConnInfo::parse(&args.connections.target)?;
    let TargetChecked {
        mut findings,
        formats,
    } = check_all(&plan, &source, &target).await?;
    // What the cutover will do to objects bound to the legacy tables: here, not in
    // `check_all`, since they block the cutover and not the backfill.
    findings.extend(dependents(&plan, &source, &target).await?);
    // Not in check_all: these block the cutover, not the backfill.
    let access = access::check(&plan, &source, &target)
        .await
        .context("reading the legacy tables' grants and row-level security")?;
    findings.extend(access.findings);
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    for note in &access.notes {
        println!("note: {note}");
    }
    for line in formats.describe(plan.outputs().map(|(_, o)| o)) {
        println!("note: COPY into {line}");
    }
    for f in &findings {
        println!("{f}");
    }
    let errors = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    println!(
        "{}: {errors} error(s), {} warning(s)",
        plan.path.display(),
        findings.len() - errors
    );
    Ok(if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Source and target checks, errors first, and the COPY format of each output.
pub async fn check_all(
    plan: &Plan,
    source: &ConnInfo,
    target: &ConnInfo,
) -> anyhow::Result<TargetChecked> {
    let source_client = connect(source, "switchyard check").await?;
    let mut target_client = connect(target, "switchyard check").await?;
    let mut findings = preflight::check(&source_client, plan)
        .await
        .context("checking the source")?;
    findings.extend(
        unreplicated::check(&source_client, plan)
            .await
            .context("checking what the WAL does not carry")?,
    );
    findings.extend(
        crate::cutover::standbys::check(&source_client, plan)
            .await
            .context("reading the source's physical standbys")?,
    );
    let types = sink::preflight::source_column_types(&source_client, plan)
        .await
        .context("reading source column types")?;
    let legacy = reverse_rules::legacy_columns(&source_client, plan)
        .await
        .context("reading the legacy tables' columns for the reverse rules")?;
    findings.extend(
        reverse_rules::sequences(&source_client, plan)
            .await
            .context("reading the reverse rules' sequences")?,
    );
    let target_checked = sink::preflight::check(&mut target_client, plan, &types, async |tx| {
        let mut found = crate::cutover::sequences::check(tx, plan).await?;
        found.extend(reverse_rules::check(tx, plan, &legacy).await?);
        Ok(found)
    })
    .await
    .context("checking the target")?;
    findings.extend(target_checked.findings);
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    Ok(TargetChecked {
        findings,
        formats: target_checked.formats,
    })
}

/// The objects bound to the legacy tables, each with what the plan does with it (see
/// [`crate::cutover::dependents`]).
async fn dependents(
    plan: &Plan,
    source: &ConnInfo,
    target: &ConnInfo,
) -> anyhow::Result<Vec<Finding>> {
    let source_client = connect(source, "switchyard check").await?;
    let target_client = connect(target, "switchyard check").await?;
    crate::cutover::dependents::findings(plan, &source_client, &target_client)
        .await
        .context("reading the objects bound to the legacy tables")
}
