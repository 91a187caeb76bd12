//! The snapshot every copy worker reads under.
//!
//! ```text
//!  first run:  CREATE_REPLICATION_SLOT ... (SNAPSHOT 'export')  ── consistent_point C
//!                 │ exported snapshot S (valid while the replication connection is idle)
//!                 ├─ reader 1: BEGIN REPEATABLE READ; SET TRANSACTION SNAPSHOT S
//!                 ├─ reader N: ...
//!                 └─ holder:   the same, then pg_export_snapshot() -> S2, recorded in the
//!                              target for `backfill --join`; then the slot connection closes
//!              every joining worker imports S2 (the same snapshot) while the holder lives
//!              the copy sees exactly the commits before C; the slot streams those after C
//!
//!  resume:     S is gone. A fresh snapshot S' is exported from an ordinary transaction and
//!              the LSN L' at that moment is recorded as `consistent_lsn`. Chunks already done
//!              hold data as of C, the rest as of S' (later). Replaying the slot from C with
//!              idempotent, keyed upserts and deletes brings every row to its latest version,
//!              so once the consumer has applied past L' the target equals the source.
//! ```
//! See <https://www.postgresql.org/docs/15/functions-admin.html#FUNCTIONS-SNAPSHOT-SYNCHRONIZATION>.

use tokio_postgres::Client;

use crate::pg::connect::{connect, ConnectError};
use crate::pg::conninfo::ConnInfo;
use crate::pg::ident::quote_literal;
use crate::pg::lsn::Lsn;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("importing snapshot {snapshot}")]
    Import {
        snapshot: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("exporting a snapshot")]
    Export(#[source] tokio_postgres::Error),
}

/// Opens `count` source connections, each in a read-only repeatable-read transaction that
/// imported `snapshot`.
pub async fn open_readers(
    info: &ConnInfo,
    count: usize,
    snapshot: &str,
) -> Result<Vec<Client>, SnapshotError> {
    let mut readers = Vec::with_capacity(count);
    for _ in 0..count {
        let client = connect(info, "switchyard backfill reader").await?;
        client
            .batch_execute(&format!(
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT {}",
                quote_literal(snapshot)
            ))
            .await
            .map_err(|source| SnapshotError::Import {
                snapshot: snapshot.to_owned(),
                source,
            })?;
        readers.push(client);
    }
    Ok(readers)
}

/// A session that imported `snapshot` and exports it again under a name of its own, valid
/// while the returned client stays open: what `backfill --join` imports on other machines.
/// Holding the slot's replication connection open instead would keep the slot active (taken
/// by that walsender) for the whole copy; an ordinary session holds the same snapshot.
pub async fn hold(info: &ConnInfo, snapshot: &str) -> Result<(Client, String), SnapshotError> {
    let holder = open_readers(info, 1, snapshot)
        .await?
        .pop()
        .expect("one reader was asked for");
    let row = holder
        .query_one("SELECT pg_export_snapshot()", &[])
        .await
        .map_err(SnapshotError::Export)?;
    Ok((holder, row.get(0)))
}

/// A snapshot exported from an ordinary transaction, for a resumed backfill. The returned
/// client holds it and must stay open until the readers (and any `--join`) imported it.
pub async fn export_fresh(info: &ConnInfo) -> Result<(Client, String, Lsn), SnapshotError> {
    let client = connect(info, "switchyard backfill snapshot").await?;
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(SnapshotError::Export)?;
    // The snapshot is taken at the first query; the WAL position read right after it is at or
    // past every commit the snapshot sees.
    let row = client
        .query_one("SELECT pg_export_snapshot(), pg_current_wal_lsn()", &[])
        .await
        .map_err(SnapshotError::Export)?;
    Ok((client, row.get(0), row.get(1)))
}
