//! How far the consumer is behind the source, as any process can read it: the tool's state in
//! the target (what the consumer applied, its heartbeat, the backfill's chunks) against the
//! migration's slot on the source. `watch` prints it; the cutover waits on it before the lock.
//!
//! ```text
//!   source WAL ─────────────────────────────────────────────────────────▶ now
//!              restart_lsn          max(confirmed_flush_lsn, applied_lsn)
//!                   │◀──────────── slot_retained_bytes ───────────────────▶│
//!                                                  │◀─── bytes_behind ────▶│
//! ```
//!
//! - bytes behind: current WAL position minus what the target has applied (the slot's
//!   confirmed position, which the consumer advances only after a target commit, and which also
//!   moves over WAL that holds no change for this migration);
//! - seconds behind: now minus the commit time of the oldest source transaction the consumer
//!   holds unapplied (written by its heartbeat, `crate::pipeline::heartbeat`); 0 when caught
//!   up and idle.
//!
//! It sits beside `checkpoint` rather than in `pipeline/` (wiring only, no SQL) or `source/`
//! (it reads the target as much as the source): it reads both databases and drives no work.

use std::time::Duration;

use tokio_postgres::Client;

use crate::checkpoint::{self, ChunkStatus};
use crate::pg::lsn::Lsn;
use crate::plan::Plan;
use crate::source::slot;

/// A heartbeat older than this means the consumer is not running.
const STALE_HEARTBEAT: Duration = Duration::from_secs(5);

/// Why the lag could not be read: a query failed on one of the two databases. Nothing was
/// changed; reading again later is safe.
#[derive(Debug, thiserror::Error)]
pub enum LagError {
    #[error("reading the migration's state in the target")]
    Target(#[source] tokio_postgres::Error),
    #[error("reading the migration's slot on the source")]
    Source(#[source] tokio_postgres::Error),
    #[error("reading the migration's pause and throttle in the target")]
    Control(#[source] checkpoint::CheckpointError),
    #[error(transparent)]
    Workers(#[from] checkpoint::CheckpointError),
}

/// One reading of the migration's state. `Default` lets displays' tests build one with only
/// the fields they look at.
#[derive(Debug, Clone, Default, serde::Serialize)]
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
    /// Who paused the migration and when, while it is paused (`switchyard pause`).
    pub paused: Option<checkpoint::SetBy>,
    /// The operator's cap (`switchyard throttle`), while one is set.
    pub throttle_rows_per_sec: Option<i64>,
    /// Who set the cap and when.
    pub throttled: Option<checkpoint::SetBy>,
    /// Every backfill process that copied chunks (the first one and each `backfill --join`).
    pub workers: Vec<checkpoint::WorkerState>,
}

/// The migration's lag now; `None` when the target holds no such migration (nor, before the
/// first backfill, the tool's schema).
pub async fn sample(
    source: &Client,
    target: &Client,
    plan: &Plan,
) -> Result<Option<Sample>, LagError> {
    if !checkpoint::state_exists(target)
        .await
        .map_err(LagError::Target)?
    {
        return Ok(None);
    }
    let Some(m) = target
        .query_opt(
            "SELECT status, applied_lsn, changes_applied,
                    coalesce(extract(epoch FROM now() - heartbeat_at)::float8 < $2::float8, false),
                    extract(epoch FROM now() - pending_since)::float8,
                    coalesce(applied_lsn >= consistent_lsn, false),
                    (SELECT count(*) FILTER (WHERE status = $3) FROM switchyard.chunks c WHERE c.migration = m.name),
                    (SELECT count(*) FROM switchyard.chunks c WHERE c.migration = m.name)
               FROM switchyard.migrations m WHERE name = $1",
            &[
                &plan.name,
                &STALE_HEARTBEAT.as_secs_f64(),
                &ChunkStatus::Done.as_str(),
            ],
        )
        .await
        .map_err(LagError::Target)?
    else {
        return Ok(None);
    };
    let applied: Option<Lsn> = m.get(1);
    let slot = slot::state(source, &plan.slot_name())
        .await
        .map_err(LagError::Source)?;
    let control = checkpoint::control(target, &plan.name)
        .await
        .map_err(LagError::Control)?;
    let running: bool = m.get(3);
    let pending: Option<f64> = m.get(4);
    let bytes_behind = slot.as_ref().map(|s| bytes_behind(s, applied));
    let workers = checkpoint::workers(target, &plan.name).await?;
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
        slot_retained_bytes: slot.as_ref().and_then(slot::SlotState::retained_bytes),
        applied_lsn: applied.map(|l| l.to_string()),
        consistent: m.get(5),
        chunks_done: m.get(6),
        chunks_total: m.get(7),
        paused: control.paused,
        throttle_rows_per_sec: control.rows_per_sec,
        throttled: control.throttled,
        workers,
    }))
}

/// WAL between the source's position and what the target has applied: the slot's confirmed
/// position, or the applied LSN when the consumer recorded it before confirming (as
/// PostgreSQL's `greatest()`, which skips a NULL); never below zero.
fn bytes_behind(slot: &slot::SlotState, applied: Option<Lsn>) -> i64 {
    let applied = slot
        .confirmed_flush_lsn
        .max(applied)
        .unwrap_or(Lsn::INVALID);
    slot::bytes(slot.wal_lsn.saturating_bytes_since(applied))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(restart: Option<u64>, confirmed: Option<u64>, now: u64) -> slot::SlotState {
        slot::SlotState {
            name: "s".to_owned(),
            logical: true,
            in_current_database: true,
            active: true,
            active_pid: Some(1),
            walsender_application: None,
            restart_lsn: restart.map(Lsn),
            confirmed_flush_lsn: confirmed.map(Lsn),
            wal_status: None,
            safe_wal_size: None,
            wal_lsn: Lsn(now),
        }
    }

    #[test]
    fn bytes_behind_counts_from_the_later_of_confirmed_and_applied() {
        assert_eq!(
            bytes_behind(&slot(Some(10), Some(60), 100), Some(Lsn(80))),
            20
        );
        assert_eq!(
            bytes_behind(&slot(Some(10), Some(90), 100), Some(Lsn(80))),
            10
        );
        assert_eq!(bytes_behind(&slot(Some(10), None, 100), Some(Lsn(70))), 30);
        assert_eq!(bytes_behind(&slot(Some(10), Some(40), 100), None), 60);
        assert_eq!(bytes_behind(&slot(None, None, 100), None), 100);
        // A position recorded ahead of the one sampled reads as caught up, not negative.
        assert_eq!(bytes_behind(&slot(Some(10), Some(120), 100), None), 0);
    }

    #[test]
    fn an_invalidated_slot_retains_nothing_it_can_name() {
        assert_eq!(slot(Some(10), Some(60), 100).retained_bytes(), Some(90));
        assert_eq!(slot(None, Some(60), 100).retained_bytes(), None);
    }
}

/// How far the reverse stream (`cutover --keep-reverse`) is behind the new tables: what it
/// applied, recorded beside the legacy tables, against the new tables' server's WAL.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReverseLag {
    pub applied_lsn: String,
    /// The new tables' server's WAL position minus what the legacy side applied (it also
    /// counts WAL holding no change of the new tables, as the forward lag does).
    pub bytes_behind: i64,
    pub changes_applied: i64,
    /// Seconds since the reverse consumer's last heartbeat; `None` before the first.
    pub heartbeat_age_s: Option<f64>,
    /// The heartbeat is older than 5 s: no reverse consumer is running.
    pub stale: bool,
}

/// The reverse stream's lag, if the migration has one that was not ended.
pub async fn reverse(
    legacy: &Client,
    target: &Client,
    migration: &str,
) -> Result<Option<ReverseLag>, LagError> {
    let Some(p) = checkpoint::reverse::load(legacy, migration)
        .await
        .map_err(|e| LagError::Source(e.into_postgres()))?
    else {
        return Ok(None);
    };
    if p.ended {
        return Ok(None);
    }
    let age = p.heartbeat_age_s;
    let now: Lsn = target
        .query_one("SELECT pg_current_wal_lsn()", &[])
        .await
        .map_err(LagError::Target)?
        .get(0);
    Ok(Some(ReverseLag {
        applied_lsn: p.applied.to_string(),
        bytes_behind: slot::bytes(now.saturating_bytes_since(p.applied)),
        changes_applied: p.changes_applied,
        heartbeat_age_s: age,
        stale: age.is_none_or(|a| a > STALE_HEARTBEAT.as_secs_f64()),
    }))
}
