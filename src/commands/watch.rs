//! `switchyard watch`: a live view of a migration from any machine. It reads only the tool's
//! schema in the target and the slot on the source, nothing local.
//!
//! - bytes behind: current WAL position minus what the target has applied (the slot's
//!   confirmed position, which the consumer advances only after a target commit, and which also
//!   moves over WAL that holds no change for this migration);
//! - seconds behind: now minus the commit time of the oldest source transaction the consumer
//!   holds unapplied; 0 when caught up and idle;
//! - apply rate, WAL retained by the slot, ETA to catch up, and the backfill's chunks.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::cli::WatchArgs;
use crate::pg::connect::connect;
use crate::pg::conninfo::ConnInfo;
use crate::plan::Plan;
use crate::progress::human_bytes;

use super::signal::Stop;

/// A heartbeat older than this means the consumer is not running.
const STALE_HEARTBEAT: Duration = Duration::from_secs(5);

/// One reading of the migration's state.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Sample {
    pub status: String,
    pub bytes_behind: Option<i64>,
    pub seconds_behind: Option<f64>,
    pub consumer_running: bool,
    pub changes_applied: i64,
    pub slot_retained_bytes: Option<i64>,
    pub applied_lsn: Option<String>,
    /// The target equals the source once the applied LSN has passed this point.
    pub consistent: bool,
    pub chunks_done: i64,
    pub chunks_total: i64,
}

pub async fn sample(
    source: &Client,
    target: &Client,
    plan: &Plan,
) -> anyhow::Result<Option<Sample>> {
    let Some(m) = target
        .query_opt(
            "SELECT status, applied_lsn::text, changes_applied,
                    coalesce(extract(epoch FROM now() - heartbeat_at)::float8 < $2::float8, false),
                    extract(epoch FROM now() - pending_since)::float8,
                    coalesce(applied_lsn >= consistent_lsn, false),
                    (SELECT count(*) FILTER (WHERE status = 'done') FROM switchyard.chunks c WHERE c.migration = m.name),
                    (SELECT count(*) FROM switchyard.chunks c WHERE c.migration = m.name)
               FROM switchyard.migrations m WHERE name = $1",
            &[&plan.name, &STALE_HEARTBEAT.as_secs_f64()],
        )
        .await?
    else {
        return Ok(None);
    };
    let applied: Option<String> = m.get(1);
    let slot = source
        .query_opt(
            "SELECT (pg_current_wal_lsn() - greatest(confirmed_flush_lsn, $2::text::pg_lsn))::int8,
                    (pg_current_wal_lsn() - restart_lsn)::int8
               FROM pg_replication_slots WHERE slot_name = $1",
            &[
                &plan.slot_name(),
                &applied.clone().unwrap_or_else(|| "0/0".to_owned()),
            ],
        )
        .await?;
    let running: bool = m.get(3);
    let pending: Option<f64> = m.get(4);
    let bytes_behind: Option<i64> = slot.as_ref().map(|r| r.get::<_, i64>(0).max(0));
    Ok(Some(Sample {
        status: m.get(0),
        bytes_behind,
        seconds_behind: match (running, pending) {
            (true, Some(s)) => Some(s.max(0.0)),
            (true, None) => Some(0.0),
            (false, _) => None,
        },
        consumer_running: running,
        changes_applied: m.get(2),
        slot_retained_bytes: slot.as_ref().map(|r| r.get(1)),
        applied_lsn: applied,
        consistent: m.get(5),
        chunks_done: m.get(6),
        chunks_total: m.get(7),
    }))
}

pub async fn run(args: WatchArgs) -> anyhow::Result<ExitCode> {
    let plan = Plan::load(&args.plan.plan)?;
    let source = connect(
        &ConnInfo::parse(&args.connections.source)?,
        "switchyard watch",
    )
    .await?;
    let target = connect(
        &ConnInfo::parse(&args.connections.target)?,
        "switchyard watch",
    )
    .await?;
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
