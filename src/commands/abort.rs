//! `switchyard abort`: drop the slot (so the source stops keeping WAL for it) and the
//! publication, and mark the migration aborted. The target tables are left as they are: the
//! plan's rollback SQL removes them. On a migration cut over with a reverse stream, it ends
//! that stream instead and the migration stays cut over (`end_reverse_stream`).

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
    if let Some(ended) = end_reverse_stream(&plan, &source, &target).await? {
        println!("{ended}");
        return Ok(ExitCode::SUCCESS);
    }
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

/// On a migration cut over with a reverse stream (`cutover --keep-reverse`), `abort` ends the
/// stream instead: the new model has proven itself, the legacy tables stop following it, and
/// the new tables' server stops keeping WAL for the slot. The migration stays `cut_over`; a
/// `rollback` after this brings back nothing written since (it says so). `None` when there is
/// no such stream.
async fn end_reverse_stream(
    plan: &Plan,
    source: &ConnInfo,
    target: &ConnInfo,
) -> anyhow::Result<Option<String>> {
    let state = connect(target, "switchyard abort").await?;
    let cut_over = checkpoint::load(&state, &plan.name)
        .await?
        .is_some_and(|m| m.status == MigrationStatus::CutOver);
    if !cut_over {
        return Ok(None);
    }
    let legacy = connect(source, "switchyard abort").await?;
    let Some(stream) = checkpoint::reverse::load(&legacy, &plan.name).await? else {
        return Ok(None);
    };
    if !stream.ended {
        checkpoint::reverse::end(&legacy, &plan.name).await?;
    }
    let dropped =
        crate::cutover::reverse_stream::discard(plan, &state, std::time::Duration::from_secs(5))
            .await;
    let mut reset = String::new();
    for t in crate::cutover::reverse_stream::fed_tables(plan) {
        reset.push_str(&format!(
            "ALTER TABLE {} REPLICA IDENTITY DEFAULT;\n",
            t.quoted()
        ));
    }
    let identity = match state
        .batch_execute(&format!(
            "SET lock_timeout = '5s';\n{reset}RESET lock_timeout;"
        ))
        .await
    {
        Ok(()) => "the new tables' REPLICA IDENTITY is DEFAULT again".to_owned(),
        Err(e) => format!(
            "the new tables keep REPLICA IDENTITY FULL ({}): set DEFAULT when they are quiet",
            crate::error::Chain::new(&e)
        ),
    };
    Ok(Some(format!(
        "migration {} stays cut over; its reverse stream ended (the legacy tables no longer follow the new ones, and a rollback would not bring back what is written from now on): {dropped}; {identity}",
        plan.name
    )))
}
