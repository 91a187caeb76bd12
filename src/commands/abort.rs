//! `switchyard abort`: drop the slot (so the source stops keeping WAL for it) and the
//! publication, and mark the migration aborted. The target tables are left as they are: the
//! plan's rollback SQL removes them.

use std::process::ExitCode;

use anyhow::Context;

use crate::checkpoint::{self, MigrationStatus};
use crate::cli::AbortArgs;
use crate::pg::connect::connect;
use crate::pg::conninfo::ConnInfo;
use crate::pg::ident::quote_ident;
use crate::plan::Plan;
use crate::source::{publication, slot};

pub async fn run(args: AbortArgs) -> anyhow::Result<ExitCode> {
    let plan = Plan::load(&args.plan.plan)?;
    let source = ConnInfo::parse(&args.connections.source)?;
    let target = ConnInfo::parse(&args.connections.target)?;
    let publication_dropped = abort(&plan, &source, &target).await?;
    if publication_dropped {
        println!(
            "migration {} aborted: slot and publication dropped",
            plan.name
        );
    } else {
        println!(
            "migration {} aborted: slot dropped; publication {} belongs to another role and was kept: its owner drops it with DROP PUBLICATION {};",
            plan.name,
            plan.publication_name(),
            quote_ident(&plan.publication_name())
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Returns whether the publication is gone (one owned by another role is kept).
pub async fn abort(plan: &Plan, source: &ConnInfo, target: &ConnInfo) -> anyhow::Result<bool> {
    let source = connect(source, "switchyard abort").await?;
    let target = connect(target, "switchyard abort").await?;
    let slot_name = plan.slot_name();
    slot::drop(&source, &slot_name)
        .await
        .with_context(|| format!("dropping slot {slot_name}"))?;
    let publication_dropped = publication::drop(&source, &plan.publication_name())
        .await
        .context("dropping the publication")?;
    // A cutover that died leaves its row tally's triggers on the new tables.
    crate::cutover::tally::remove_leftovers(&target, plan)
        .await
        .context("dropping the cutover's row-tally triggers")?;
    if checkpoint::load(&target, &plan.name).await?.is_some() {
        checkpoint::set_status(
            &target,
            &plan.name,
            MigrationStatus::Aborted,
            Some("aborted by the operator"),
        )
        .await?;
    }
    Ok(publication_dropped)
}
