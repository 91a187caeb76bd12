//! `switchyard cutover`: the operator's command in the maintenance window (see
//! [`crate::cutover`]). When no consumer is running (the slot is idle), it runs one in this
//! process for the duration of the command, so the cutover does not depend on a second
//! terminal; a consumer running elsewhere keeps running if the cutover aborts.

use std::process::ExitCode;
use std::sync::Arc;

use std::time::Duration;

use anyhow::Context;

use crate::cli::CutoverArgs;
use crate::cutover::{
    cutover, dependents, reverse_stream, CutoverError, CutoverOptions, CutoverReport,
};
use crate::error::Chain;
use crate::pg::connect::connect;
use crate::pg::conninfo::ConnInfo;
use crate::plan::Plan;
use crate::source::slot;

use super::follow::FollowJob;
use super::signal::Stop;

pub async fn run(args: CutoverArgs) -> anyhow::Result<ExitCode> {
    let plan = Arc::new(Plan::load(&args.plan.plan)?);
    let source = ConnInfo::parse(&args.connections.source)?;
    let target = ConnInfo::parse(&args.connections.target)?;
    let options = CutoverOptions {
        max_blocked: args.max_blocked,
        max_lag: args.max_lag,
        catch_up_timeout: args.catch_up_timeout,
        lock_timeout: args.lock_timeout,
        lock_attempts: args.lock_attempts.max(1),
        dry_run: args.dry_run,
        verify: args.verify,
        keep_reverse: args.keep_reverse,
    };
    let json = args.json;
    // The reverse stream's slot and publication come before any lock (see `reverse_stream`);
    // a dry run only checks that the plan has reverse rules.
    let reverse = args.keep_reverse && !args.dry_run;
    if args.keep_reverse {
        reverse_stream::require_rules(&plan)?;
    }
    if reverse {
        let (t, l) = (
            connect(&target, "switchyard cutover").await?,
            connect(&source, "switchyard cutover").await?,
        );
        reverse_stream::prepare(&plan, &t, &l).await.context(
            "preparing the reverse stream (before any lock: the cutover has not started)",
        )?;
    }
    let consumer = start_consumer_if_idle(&plan, &source, &target, json).await?;
    let say = move |line: String| {
        if !json {
            println!("cutover: {line}");
        }
    };
    let result = cutover(&plan, &source, &target, &options, &say).await;
    if let Some((stop, task)) = consumer {
        // After a committed cutover the consumer stops by itself; otherwise it is stopped here
        // (cleanly, between groups), and `switchyard follow` takes over again.
        let _ = stop.send(true);
        if let Ok(Err(e)) = task.await {
            eprintln!(
                "the in-process consumer stopped with an error: {}",
                Chain::from(&e)
            );
        }
    }
    if reverse {
        let kept = matches!(&result, Ok(r) if r.committed)
            || matches!(&result, Err(CutoverError::HalfCommitted { .. }));
        if !kept {
            let t = connect(&target, "switchyard cutover").await?;
            let said = reverse_stream::discard(&plan, &t, Duration::ZERO).await;
            if !json {
                println!("cutover: not cut over, so no reverse stream: {said}");
            }
        }
    }
    match result {
        Ok(report) => {
            print_report(&report, json);
            if reverse && report.committed {
                println!("cutover: following the reverse stream in this process (Ctrl-C stops it; `switchyard follow --reverse` starts it again)");
                return super::follow_reverse::run(plan, &source, &target, Stop::on_signals())
                    .await;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(CutoverError::Overrun {
            overrun,
            limit,
            report,
        }) => {
            print_report(&report, json);
            Err(CutoverError::Overrun {
                overrun,
                limit,
                report,
            }
            .into())
        }
        Err(e) => Err(e.into()),
    }
}

type Consumer = (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<anyhow::Result<crate::pipeline::follow::FollowEnd>>,
);

/// Starts a consumer in this process when the migration's slot is not in use.
async fn start_consumer_if_idle(
    plan: &Arc<Plan>,
    source: &ConnInfo,
    target: &ConnInfo,
    json: bool,
) -> anyhow::Result<Option<Consumer>> {
    let client = connect(source, "switchyard cutover").await?;
    let active = slot::state(&client, &plan.slot_name())
        .await?
        .map(|s| s.active);
    if active != Some(false) {
        // In use by a running consumer, or missing (the cutover reports why).
        return Ok(None);
    }
    if !json {
        println!("cutover: no consumer is running; starting one in this process");
    }
    let job = FollowJob {
        plan: Arc::clone(plan),
        source: source.clone(),
        target: target.clone(),
        on_error: plan.on_error,
        apply_jobs: crate::cli::DEFAULT_APPLY_JOBS,
        serial_through: None,
        progress: Default::default(),
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    Ok(Some((stop, tokio::spawn(job.run(stopped)))))
}

fn print_report(r: &CutoverReport, json: bool) {
    if json {
        println!("{}", serde_json::to_string(r).expect("a report serializes"));
        return;
    }
    let verdict = if r.dry_run {
        "dry run, rolled back: nothing changed"
    } else if r.committed {
        "committed"
    } else {
        "rolled back: nothing changed"
    };
    println!(
        "cutover {verdict}. Writes blocked for {:.0} ms (limit {:.0} ms); lock granted at attempt {}",
        r.window_ms, r.max_blocked_ms, r.lock_attempts
    );
    println!(
        "  strongest lock on the legacy tables: {}{}",
        r.swap_lock,
        if r.swap_lock == "ACCESS EXCLUSIVE" {
            " (taken just before the swap; reads wait for it too)"
        } else {
            ""
        }
    );
    for s in &r.steps {
        // The steps under the lock say what they read: a constant, the changed rows, or (in
        // capitals) the table's size, which makes the window grow with the data.
        match &s.reads {
            Some(reads) => println!(
                "  {:<55} {:>8.1} ms  reads {reads}",
                s.step.describe(),
                s.ms
            ),
            None => println!("  {:<55} {:>8.1} ms", s.step.describe(), s.ms),
        }
    }
    let sized: Vec<&str> = r
        .steps
        .iter()
        .filter(|s| {
            s.reads
                .as_deref()
                .is_some_and(|x| x.starts_with("TABLE SIZE"))
        })
        .map(|s| s.step.describe())
        .collect();
    if sized.is_empty() {
        println!("  scaling: no step under the lock reads in proportion to a table's size");
    } else {
        println!(
            "  scaling: the window grows with the tables' size at: {}",
            sized.join("; ")
        );
    }
    for c in &r.counts {
        let mark = if c.expected == c.actual {
            "ok"
        } else {
            "DIFFERS"
        };
        println!(
            "  count {:<30} source {:>10}  target {:>10}  {mark}",
            c.table, c.expected, c.actual
        );
    }
    for (table, why) in &r.unchecked {
        println!("  not counted {table}: {why} (`switchyard verify` compares it)");
    }
    for s in &r.sequences {
        let what = match (s.moved, r.dry_run) {
            (true, false) => format!("set to {}", s.value),
            (true, true) => format!("would be set to {}", s.value),
            (false, _) => format!("left as it is, already at {}", s.value),
        };
        println!(
            "  sequence {} {what} (drawn by {})",
            s.sequence,
            s.columns.join(", ")
        );
    }
    for u in &r.unplaced {
        println!(
            "  NOT SET: {} (default {}): {}; set it past the column's largest value yourself before writes resume",
            u.column, u.default, u.reason
        );
    }
    for d in &r.dependents.dependents {
        println!("  bound to a legacy table: {}", dependents::line(d));
    }
    for v in &r.dependents.carried {
        println!("  view {v} carried over: it now reads what took the legacy name");
    }
    for a in &r.access {
        println!(
            "  {} of {} ({} = \"{}\"): {}",
            a.kind, a.legacy, a.kind, a.disposition, a.what
        );
    }
    if r.dry_run {
        println!("  the swap ran and was rolled back; the real cutover commits instead (sequences are then set)");
    }
    for s in &r.standbys {
        println!("  WARNING: {}", s.warning);
    }
    if let Some(slot) = &r.slot {
        println!("  slot {slot}");
    }
    if let Some(boundary) = &r.reverse_boundary {
        println!("  reverse stream from {boundary} on the new tables' server: the application's writes to them go back into the legacy tables");
    }
    for note in &r.notes {
        println!("  note: {note}");
    }
}
