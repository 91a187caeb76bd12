//! `switchyard abort`: drop the slot (so the source stops keeping WAL for it) and the
//! publication, and mark the migration aborted. The target tables are left as they are: the
//! plan's rollback SQL removes them.

use std::process::ExitCode;

use anyhow::Context;

use crate::checkpoint::{self, MigrationStatus};
use crate::cli::AbortArgs;
use crate::pg::connect::connect;
use crate::pg::conninfo::ConnInfo;
use crate::plan::Plan;
use crate::source::{publication, slot};

pub async fn run(args: AbortArgs) -> anyhow::Result<ExitCode> {
    let plan = Plan::load(&args.plan.plan)?;
    let source = ConnInfo::parse(&args.connections.source)?;
    let target = ConnInfo::parse(&args.connections.target)?;
    abort(&plan, &source, &target).await?;
    println!(
        "migration {} aborted: slot and publication dropped",
        plan.name
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn abort(plan: &Plan, source: &ConnInfo, target: &ConnInfo) -> anyhow::Result<()> {
    let source = connect(source, "switchyard abort").await?;
    let target = connect(target, "switchyard abort").await?;
    let slot_name = plan.slot_name();
    slot::drop(&source, &slot_name)
        .await
        .with_context(|| format!("dropping slot {slot_name}"))?;
    publication::drop(&source, &plan.publication_name())
        .await
        .context("dropping the publication")?;
    if checkpoint::load(&target, &plan.name).await?.is_some() {
        checkpoint::set_status(
            &target,
            &plan.name,
            MigrationStatus::Aborted,
            Some("aborted by the operator"),
        )
        .await?;
    }
    Ok(())
}
