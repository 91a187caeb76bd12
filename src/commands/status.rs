//! `switchyard status`: the migration's state, one shot, read from the target (and the slot
//! from the source when given).

use std::process::ExitCode;

use crate::checkpoint;
use crate::cli::StatusArgs;
use crate::pg::connect::connect;
use crate::pg::conninfo::ConnInfo;
use crate::plan::Plan;
use crate::progress::human;
use crate::source::slot;

pub async fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let plan = Plan::load(&args.plan.plan)?;
    let target = connect(&ConnInfo::parse(&args.target)?, "switchyard status").await?;
    let Some(m) = checkpoint::load(&target, &plan.name).await? else {
        println!("migration {}: not started", plan.name);
        return Ok(ExitCode::SUCCESS);
    };
    let chunks = checkpoint::chunk_progress(&target, &plan.name).await?;
    let control = checkpoint::control(&target, &plan.name).await?;
    let dead = checkpoint::dead_letter_count(&target, &plan.name).await?;
    let (slot_state, reverse) = match &args.source {
        Some(s) => {
            let source = connect(&ConnInfo::parse(s)?, "switchyard status").await?;
            (
                slot::state(&source, &m.slot_name).await?,
                crate::lag::reverse(&source, &target, &plan.name).await?,
            )
        }
        None => (None, None),
    };
    if args.json {
        let tables: Vec<_> = chunks
            .iter()
            .map(|(t, done, total, rows)| serde_json::json!({"table": t, "chunks_done": done, "chunks_total": total, "rows": rows}))
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "migration": m.name, "status": m.status.as_str(),
                "snapshot_lsn": m.snapshot_lsn.map(|l| l.to_string()),
                "consistent_lsn": m.consistent_lsn.map(|l| l.to_string()),
                "applied_lsn": m.applied_lsn.map(|l| l.to_string()),
                "tables": tables, "dead_letters": dead,
                "slot": slot_state.as_ref().map(|s| serde_json::json!({
                    "active": s.active, "retained_bytes": s.retained_bytes().unwrap_or(0), "wal_status": s.wal_status})),
                "message": m.message,
                "paused": control.paused, "throttle_rows_per_sec": control.rows_per_sec,
                "throttled": control.throttled,
                "reverse": reverse,
            })
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("migration {}: {}", m.name, m.status);
    if let Some(msg) = &m.message {
        println!("  message: {msg}");
    }
    if let Some(p) = &control.paused {
        println!(
            "  PAUSED by {} at {} (`switchyard resume` goes on)",
            p.by, p.at
        );
    }
    if let (Some(r), Some(t)) = (control.rows_per_sec, &control.throttled) {
        println!("  throttled to {r} rows/s by {} at {}", t.by, t.at);
    }
    let lsn = |l: Option<crate::pg::lsn::Lsn>| l.map_or("-".to_owned(), |l| l.to_string());
    println!("  slot {} / publication {}", m.slot_name, m.publication);
    println!(
        "  snapshot at {}, target consistent from {}, applied up to {}",
        lsn(m.snapshot_lsn),
        lsn(m.consistent_lsn),
        lsn(m.applied_lsn)
    );
    for (table, done, total, rows) in &chunks {
        println!("  {table:<28} chunks {done}/{total}, {rows} rows");
    }
    println!("  dead letters: {dead}");
    if let Some(s) = slot_state {
        println!(
            "  slot {}: holds {} of WAL{}",
            if s.active { "active" } else { "inactive" },
            human::bytes(s.retained_bytes().unwrap_or(0)),
            s.wal_status
                .map(|w| format!(", wal_status {w}"))
                .unwrap_or_default()
        );
    }
    if let Some(reverse) = &reverse {
        println!("  {}", crate::progress::lag_frame::reverse_line(reverse));
    }
    Ok(ExitCode::SUCCESS)
}
