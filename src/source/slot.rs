//! The replication slot as seen through SQL: whether it exists, the WAL it holds, dropping it.
//! (Creating it needs the replication protocol: see [`super::replication`].)

use tokio_postgres::Client;

/// The slot's state on the source.
#[derive(Debug, Clone)]
pub struct SlotState {
    pub active: bool,
    /// WAL the slot keeps on the source's disk (current WAL position minus restart_lsn).
    pub retained_bytes: i64,
    /// `lost` or `unreserved` mean the slot can no longer stream what it promised.
    pub wal_status: Option<String>,
}

pub async fn state(
    client: &Client,
    slot: &str,
) -> Result<Option<SlotState>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT active, coalesce((pg_current_wal_lsn() - restart_lsn)::int8, 0), wal_status
               FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await?;
    Ok(row.map(|r| SlotState {
        active: r.get(0),
        retained_bytes: r.get(1),
        wal_status: r.get(2),
    }))
}

/// How long a terminated walsender may take to let go of its slot.
const RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Drops the slot if it exists; a slot still in use by a walsender is terminated first.
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
        && client
            .query_opt(
                "SELECT FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL",
                &[&slot],
            )
            .await?
            .is_some()
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
