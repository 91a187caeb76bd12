//! `switchyard watch`: a live view of a migration from any machine. It reads only the tool's
//! schema in the target and the slot on the source, nothing local: each second a
//! [`crate::lag::Sample`] (bytes and seconds behind, WAL retained by the slot, the backfill's
//! chunks and, while it copies, each of its worker processes), kept for a minute in a
//! [`LagHistory`] that gives the apply rate, the ETA and the trend.
//!
//! On a terminal the screen is one [`Frame`] redrawn in place; otherwise (and with `--once`)
//! a line per sample; `--json` an object per sample.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::checkpoint;
use crate::cli::WatchArgs;
use crate::lag::{sample, Sample};
use crate::pg::connect::connect;
use crate::pg::conninfo::ConnInfo;
use crate::plan::Plan;
use crate::progress::history::LagHistory;
use crate::progress::lag_frame::{controls_line, plain_line, Frame, TableChunks};
use crate::progress::live::LiveText;
use crate::source::slot;

use super::signal::Stop;

pub async fn run(args: WatchArgs) -> anyhow::Result<ExitCode> {
    let plan = Arc::new(Plan::load(&args.plan.plan)?);
    let (source, target) = (
        ConnInfo::parse(&args.connections.source)?,
        ConnInfo::parse(&args.connections.target)?,
    );
    let _metrics = super::serve_metrics(&args.metrics, &plan, &source, &target).await?;
    let source = connect(&source, "switchyard watch").await?;
    let target = connect(&target, "switchyard watch").await?;
    // Ctrl-C (or SIGTERM) is how a watch ends, so it is a clean exit 0, and it works whatever
    // disposition the process inherited (a non-interactive shell's `&` ignores SIGINT).
    let stop = Stop::on_signals();
    let live = match args.json || args.once {
        true => None,
        false => LiveText::on_stdout(),
    };
    let wal_keep_limit = match &live {
        Some(_) => slot::wal_keep_limit(&source).await?,
        None => None,
    };
    let started = Instant::now();
    let mut history = LagHistory::default();
    loop {
        let Some(sampled) = stop.unless_stopped(sample(&source, &target, &plan)).await else {
            break;
        };
        let Some(now) = sampled? else {
            println!("migration {}: not started", plan.name);
            return Ok(ExitCode::FAILURE);
        };
        let cut_over = now.status == "cut_over";
        history.push(started.elapsed(), now);
        // After `cutover --keep-reverse`: the reverse stream's lag.
        let reverse = match cut_over {
            true => crate::lag::reverse(&source, &target, &plan.name).await?,
            false => None,
        };
        if args.json {
            let mut v = serde_json::to_value(history.latest())?;
            v["changes_per_s"] = history.apply_rate().into();
            v["eta_s"] = history.eta().map(|d| d.as_secs_f64()).into();
            v["reverse"] = serde_json::to_value(&reverse)?;
            println!("{v}");
        } else if let Some(live) = &live {
            let latest = history.latest().expect("just pushed");
            let (tables, message) = details(&target, &plan, latest).await?;
            let message = message.or(reverse
                .as_ref()
                .map(crate::progress::lag_frame::reverse_line));
            let frame = Frame {
                migration: &plan.name,
                history: &history,
                tables: &tables,
                wal_keep_limit,
                message: message.as_deref(),
            };
            live.show(&frame.render());
        } else {
            println!("{}", plain_line(&plan.name, &history));
            if let Some(reverse) = &reverse {
                println!("  {}", crate::progress::lag_frame::reverse_line(reverse));
            }
            let latest = history.latest().expect("just pushed");
            if let Some(line) = controls_line(latest) {
                println!("  {line}");
            }
            if latest.chunks_done < latest.chunks_total {
                for worker in latest.workers.iter().filter(|w| !w.finished) {
                    println!("  backfill worker {worker}");
                }
            }
        }
        if args.once {
            break;
        }
        let pause = tokio::time::sleep(Duration::from_secs(1));
        if stop.unless_stopped(pause).await.is_none() {
            break;
        }
    }
    if let Some(live) = live {
        live.finish();
    }
    Ok(ExitCode::SUCCESS)
}

/// What the terminal's frame shows beyond the sample: each table's chunks while the backfill
/// copies, and the recorded reason once the migration stopped.
async fn details(
    target: &Client,
    plan: &Plan,
    now: &Sample,
) -> anyhow::Result<(Vec<TableChunks>, Option<String>)> {
    let tables = if now.chunks_done < now.chunks_total {
        checkpoint::chunk_progress(target, &plan.name)
            .await?
            .into_iter()
            .map(
                |(table, chunks_done, chunks_total, row_count)| TableChunks {
                    table,
                    chunks_done,
                    chunks_total,
                    row_count,
                },
            )
            .collect()
    } else {
        Vec::new()
    };
    let message = match now.status.as_str() {
        "stopped" => checkpoint::load(target, &plan.name)
            .await?
            .and_then(|m| m.message),
        _ => None,
    };
    Ok((tables, message))
}
