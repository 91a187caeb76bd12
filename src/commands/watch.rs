//! `switchyard watch`: a live view of a migration from any machine. It reads only the tool's
//! schema in the target and the slot on the source, nothing local: each second a
//! [`crate::lag::Sample`] (bytes and seconds behind, WAL retained by the slot, the backfill's
//! chunks and, while it copies, each of its worker processes), and from two samples the apply rate and the ETA to catch up.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cli::WatchArgs;
use crate::lag::{sample, Sample};
use crate::pg::connect::connect;
use crate::pg::conninfo::ConnInfo;
use crate::plan::Plan;
use crate::progress::human_bytes;

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
    let mut previous: Option<(Instant, Sample)> = None;
    loop {
        let Some(sampled) = stop.unless_stopped(sample(&source, &target, &plan)).await else {
            return Ok(ExitCode::SUCCESS);
        };
        let Some(now) = sampled? else {
            println!("migration {}: not started", plan.name);
            return Ok(ExitCode::FAILURE);
        };
        let rate = previous.as_ref().map(|(at, p)| {
            (now.changes_applied - p.changes_applied) as f64 / at.elapsed().as_secs_f64().max(0.001)
        });
        let byte_rate = previous.as_ref().and_then(|(at, p)| {
            let drained = p.bytes_behind? - now.bytes_behind?;
            Some(drained as f64 / at.elapsed().as_secs_f64().max(0.001))
        });
        let eta = match (now.bytes_behind, byte_rate) {
            (Some(0), _) => Some(0.0),
            (Some(b), Some(r)) if r > 0.0 => Some(b as f64 / r),
            _ => None,
        };
        if args.json {
            let mut v = serde_json::to_value(&now)?;
            v["changes_per_s"] = rate.into();
            v["eta_s"] = eta.into();
            println!("{v}");
        } else {
            println!(
                "{} {}: {} behind, {} s behind, {} changes/s, slot holds {}, ETA {}{}",
                plan.name,
                now.status,
                now.bytes_behind.map_or("?".to_owned(), human_bytes),
                now.seconds_behind
                    .map_or("? (consumer not running)".to_owned(), |s| format!("{s:.2}")),
                rate.map_or("-".to_owned(), |r| format!("{r:.0}")),
                now.slot_retained_bytes.map_or("?".to_owned(), human_bytes),
                eta.map_or("-".to_owned(), |e| format!("{e:.0}s")),
                if now.chunks_done < now.chunks_total {
                    format!(", backfill chunks {}/{}", now.chunks_done, now.chunks_total)
                } else if now.consistent {
                    ", consistent".to_owned()
                } else {
                    String::new()
                }
            );
            if let Some(line) = controls_line(&now) {
                println!("  {line}");
            }
        }
        if !args.json && now.chunks_done < now.chunks_total {
            for worker in now.workers.iter().filter(|w| !w.finished) {
                println!("  backfill worker {worker}");
            }
        }
        if args.once {
            return Ok(ExitCode::SUCCESS);
        }
        previous = Some((Instant::now(), now));
        let pause = tokio::time::sleep(Duration::from_secs(1));
        if stop.unless_stopped(pause).await.is_none() {
            return Ok(ExitCode::SUCCESS);
        }
    }
}

/// The pause and the cap, with who set them and when; `None` when neither is set.
fn controls_line(now: &Sample) -> Option<String> {
    let paused = now.paused.as_ref().map(|p| {
        format!(
            "PAUSED by {} at {} ({:.0} s ago)",
            p.by, p.at, p.seconds_ago
        )
    });
    let throttled = now.throttle_rows_per_sec.map(|r| {
        let by = now.throttled.as_ref();
        format!(
            "throttled to {r} rows/s by {} at {}",
            by.map_or("?", |t| &t.by),
            by.map_or("?", |t| &t.at)
        )
    });
    match (paused, throttled) {
        (None, None) => None,
        (p, t) => Some(p.into_iter().chain(t).collect::<Vec<_>>().join("; ")),
    }
}
