//! Replication slots as seen through SQL: their state, read by the one query of
//! `pg_replication_slots` every caller shares, and dropping the migration's slot.
//! (Creating it needs the replication protocol: see [`super::replication`].)

use tokio_postgres::{Client, GenericClient};

use crate::pg::lsn::Lsn;

/// One row of `pg_replication_slots`, with what the server says about it at the same moment.
/// Every reader of the view goes through [`read`], on whichever server it asks (the source, or
/// a cluster of its subscribers), so the columns mean the same everywhere.
/// <https://www.postgresql.org/docs/15/view-pg-replication-slots.html>
#[derive(Debug, Clone)]
pub struct SlotState {
    pub name: String,
    /// `slot_type = 'logical'` (a physical slot serves a standby or a base backup).
    pub logical: bool,
    /// The slot belongs to the database this session is connected to (`database =
    /// current_database()`); a physical slot belongs to none.
    pub in_current_database: bool,
    pub active: bool,
    /// The process streaming from the slot: a walsender, or a backend decoding through SQL.
    pub active_pid: Option<i32>,
    /// `pg_stat_replication.application_name` of that walsender; `None` when no walsender
    /// holds the slot.
    pub walsender_application: Option<String>,
    /// The oldest WAL the slot keeps; `None` once it was invalidated.
    pub restart_lsn: Option<Lsn>,
    /// What its consumer has confirmed (logical slots only).
    pub confirmed_flush_lsn: Option<Lsn>,
    /// `lost` or `unreserved` mean the slot can no longer stream what it promised.
    pub wal_status: Option<String>,
    /// Bytes of WAL that can still be written before `max_slot_wal_keep_size` invalidates
    /// the slot; `None` when that setting is unlimited.
    pub safe_wal_size: Option<i64>,
    /// The server's WAL position when the row was read (the replayed position on a standby,
    /// which has no insert position), the end every "bytes behind" is measured to.
    pub wal_lsn: Lsn,
}

impl SlotState {
    /// WAL the slot keeps on the server's disk (its position minus `restart_lsn`); `None`
    /// once the slot was invalidated and keeps nothing.
    pub fn retained_bytes(&self) -> Option<i64> {
        self.restart_lsn
            .map(|r| bytes(self.wal_lsn.saturating_bytes_since(r)))
    }
}

/// A WAL distance as PostgreSQL's `(pg_lsn - pg_lsn)::int8` gives it.
pub fn bytes(distance: u64) -> i64 {
    i64::try_from(distance).unwrap_or(i64::MAX)
}

/// The one query of `pg_replication_slots`: every slot, or the one named `$1`.
const SLOTS_SQL: &str = "
SELECT s.slot_name::text, s.slot_type = 'logical', coalesce(s.database = current_database(), false),
       s.active, s.active_pid, r.application_name, s.restart_lsn, s.confirmed_flush_lsn,
       s.wal_status, s.safe_wal_size,
       coalesce(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END,
                '0/0')
  FROM pg_replication_slots s LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid
 WHERE $1::text IS NULL OR s.slot_name::text = $1::text
 ORDER BY s.slot_name";

/// The slots on the server `client` is connected to: all of them, or the one named `slot`.
pub async fn read(
    client: &impl GenericClient,
    slot: Option<&str>,
) -> Result<Vec<SlotState>, tokio_postgres::Error> {
    let rows = client.query(SLOTS_SQL, &[&slot]).await?;
    Ok(rows
        .iter()
        .map(|r| SlotState {
            name: r.get(0),
            logical: r.get(1),
            in_current_database: r.get(2),
            active: r.get(3),
            active_pid: r.get(4),
            walsender_application: r.get(5),
            restart_lsn: r.get(6),
            confirmed_flush_lsn: r.get(7),
            wal_status: r.get(8),
            safe_wal_size: r.get(9),
            wal_lsn: r.get(10),
        })
        .collect())
}

/// The slot named `slot`, if it exists.
pub async fn state(
    client: &impl GenericClient,
    slot: &str,
) -> Result<Option<SlotState>, tokio_postgres::Error> {
    Ok(read(client, Some(slot)).await?.pop())
}

/// Every slot on the server, by name.
pub async fn all(client: &impl GenericClient) -> Result<Vec<SlotState>, tokio_postgres::Error> {
    read(client, None).await
}

/// The server's `max_slot_wal_keep_size` in bytes, past which it invalidates a slot; `None`
/// when unlimited (`-1`, the default).
pub async fn wal_keep_limit(client: &Client) -> Result<Option<i64>, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT pg_size_bytes(current_setting('max_slot_wal_keep_size'))",
            &[],
        )
        .await?;
    Ok(Some(row.get::<_, i64>(0)).filter(|b| *b >= 0))
}

/// How long a terminated walsender may take to let go of its slot.
const RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Drops the slot if it exists; a slot still in use by a walsender is terminated first. The
/// two statements that act on the slot select it from `pg_replication_slots` themselves, so
/// that a slot gone in between is no error.
pub async fn drop(client: &Client, slot: &str) -> Result<bool, tokio_postgres::Error> {
    client
        .execute(
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots
              WHERE slot_name = $1 AND active_pid IS NOT NULL",
            &[&slot],
        )
        .await?;
    // The terminated walsender releases the slot (or, while it was still creating it, removes
    // it) a moment later; dropping before that fails with "slot is active".
    let deadline = std::time::Instant::now() + RELEASE_WAIT;
    while std::time::Instant::now() < deadline
        && state(client, slot)
            .await?
            .is_some_and(|s| s.active_pid.is_some())
    {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let dropped = client
        .query_opt(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await?;
    Ok(dropped.is_some())
}
