//! `switchyard pause`, `resume` and `throttle`: write the migration's row in
//! `switchyard.control`, which every running backfill worker and consumer reads (see
//! `crate::pipeline::control`). Nothing reaches the running process itself, so these work from
//! any machine that can reach the target; the running process prints what it obeys.

use std::process::ExitCode;

use anyhow::{bail, Context};
use tokio::sync::watch;
use tokio_postgres::Client;

use crate::checkpoint;
use crate::cli::{ControlArgs, ThrottleArgs};
use crate::pg::connect::connect;
use crate::pg::conninfo::ConnInfo;
use crate::pipeline::control::ControlState;
use crate::plan::Plan;

/// `pause` (`paused` true) or `resume`.
pub async fn pause(args: ControlArgs, paused: bool) -> anyhow::Result<ExitCode> {
    let (plan, target) = open(&args, if paused { "pause" } else { "resume" }).await?;
    let by = who(&target).await?;
    checkpoint::set_paused(&target, &plan.name, paused, &by).await?;
    if paused {
        println!(
            "migration {} paused by {by}: within a second the backfill takes no new chunk (those in flight finish) and the consumer applies nothing more (its slot retains WAL meanwhile; `switchyard watch` shows it). `switchyard resume` goes on.",
            plan.name
        );
    } else {
        println!("migration {} resumed by {by}", plan.name);
    }
    Ok(ExitCode::SUCCESS)
}

/// `throttle --rows-per-sec N | --off`.
pub async fn throttle(args: ThrottleArgs) -> anyhow::Result<ExitCode> {
    let (plan, target) = open(&args.control, "throttle").await?;
    let by = who(&target).await?;
    let cap = if args.off { None } else { args.rows_per_sec };
    checkpoint::set_throttle(&target, &plan.name, cap, &by).await?;
    match cap {
        Some(n) => println!(
            "migration {} capped at {n} rows/s by {by} (the backfill's source rows, all workers together; the consumer's changes)",
            plan.name
        ),
        None => println!("migration {}: cap lifted by {by}", plan.name),
    }
    Ok(ExitCode::SUCCESS)
}

/// The plan, and a session on the target, once the migration is known there.
async fn open(args: &ControlArgs, command: &str) -> anyhow::Result<(Plan, Client)> {
    let plan = Plan::load(&args.plan.plan)?;
    let target = connect(
        &ConnInfo::parse(&args.target)?,
        &format!("switchyard {command}"),
    )
    .await?;
    if checkpoint::load(&target, &plan.name).await?.is_none() {
        bail!(
            "there is no migration {} in the target: nothing to {command} (is --target the backfill's?)",
            plan.name
        );
    }
    // State made by an older switchyard lacks the control table.
    checkpoint::ensure_schema(&target).await?;
    Ok((plan, target))
}

/// `user@host (role r)`: who set a control, as `status` and `watch` show it.
async fn who(target: &Client) -> anyhow::Result<String> {
    let role: String = target
        .query_one("SELECT current_user::text", &[])
        .await
        .context("reading the current role")?
        .get(0);
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "?".to_owned());
    let host = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "?".to_owned());
    Ok(format!("{user}@{host} (role {role})"))
}

/// Prints what a running consumer obeys as it changes (the backfill shows it in its display).
pub async fn announce(mut state: watch::Receiver<ControlState>) {
    let mut shown = None;
    loop {
        let now = state.borrow_and_update().waiting();
        if now != shown {
            match &now {
                Some(why) => println!("consumer {why}"),
                None => println!("consumer running at full speed"),
            }
            shown = now;
        }
        if state.changed().await.is_err() {
            return;
        }
    }
}
