//! `switchyard rollback`: after a cutover, swap back by running the plan's rollback SQL (on
//! the side the plan's cutover ran) and lift the read-only triggers a two-server cutover put
//! on the legacy tables. Before a cutover there is nothing to swap back: it is `abort`.
//!
//! What a rollback keeps: the legacy tables hold every write acknowledged before the cutover
//! (the fence proved the new tables had them too). Writes made to the new tables after the
//! cutover stay in the new tables only; nothing copies them back.

use std::process::ExitCode;

use anyhow::{bail, Context};

use crate::checkpoint::{self, MigrationStatus};
use crate::cli::RollbackArgs;
use crate::cutover::read_only;
use crate::pg::connect::connect;
use crate::pg::conninfo::ConnInfo;
use crate::pg::ident::TableName;
use crate::plan::{CutoverSide, Plan};

pub async fn run(args: RollbackArgs) -> anyhow::Result<ExitCode> {
    let plan = Plan::load(&args.plan.plan)?;
    let source = ConnInfo::parse(&args.connections.source)?;
    let target = ConnInfo::parse(&args.connections.target)?;
    let state = connect(&target, "switchyard rollback").await?;
    let Some(m) = checkpoint::load(&state, &plan.name).await? else {
        bail!("there is no migration {}", plan.name);
    };
    match m.status {
        MigrationStatus::CutOver => {}
        MigrationStatus::RolledBack => {
            println!("migration {} is already rolled back", plan.name);
            return Ok(ExitCode::SUCCESS);
        }
        _ => {
            let publication = match super::abort::abort(&plan, &source, &target).await? {
                true => "and publication dropped",
                false => "dropped; the publication belongs to another role and was kept",
            };
            println!(
                "migration {} was not cut over: aborted instead (slot {publication}; the legacy tables were never touched)",
                plan.name
            );
            return Ok(ExitCode::SUCCESS);
        }
    }
    let sql: String = plan
        .phases
        .rollback
        .iter()
        .map(|f| f.sql.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let tables: Vec<TableName> = plan.sources.iter().map(|s| s.table.clone()).collect();
    let mut src = connect(&source, "switchyard rollback").await?;
    let tx = src.transaction().await?;
    read_only::remove(&tx, &tables)
        .await
        .context("removing the read-only triggers from the legacy tables")?;
    let restored = match plan.cutover.side {
        CutoverSide::Source => restore_carried_views(&tx, &plan).await?,
        CutoverSide::Target => restore_carried_views(&state, &plan).await?,
    };
    match plan.cutover.side {
        CutoverSide::Source => tx.batch_execute(&sql).await,
        CutoverSide::Target => state.batch_execute(&sql).await,
    }
    .context("running the plan's rollback SQL (nothing was changed)")?;
    tx.commit().await?;
    checkpoint::set_status(
        &state,
        &plan.name,
        MigrationStatus::RolledBack,
        Some("rolled back by the operator"),
    )
    .await?;
    for view in &restored {
        println!("view {view} restored: it reads the legacy table again");
    }
    println!(
        "migration {} rolled back: the legacy tables are back and writable. Writes made to the new tables since the cutover were not copied back",
        plan.name
    );
    Ok(ExitCode::SUCCESS)
}

/// Views the cutover carried over (`views = "carry"`) read the compatibility views, which the
/// rollback SQL drops: point them back at the renamed legacy tables first, in the rollback's
/// transaction, on the side the cutover carried them (see
/// [`crate::cutover::dependents::carry`]).
async fn restore_carried_views(
    tx: &impl tokio_postgres::GenericClient,
    plan: &Plan,
) -> anyhow::Result<Vec<String>> {
    crate::cutover::dependents::carry::restore(tx, &plan.name)
        .await
        .context("restoring the views the cutover carried over (nothing was changed)")
}
