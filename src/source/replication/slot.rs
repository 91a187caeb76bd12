//! CREATE_REPLICATION_SLOT with an exported snapshot: the point where backfill and follow meet.
//!
//! ```text
//!   replication connection            copy workers (ordinary sessions)
//!   ----------------------            --------------------------------
//!   CREATE_REPLICATION_SLOT s
//!     LOGICAL pgoutput
//!     (SNAPSHOT 'export')
//!   -> consistent_point, snapshot
//!   (run nothing else here) ------->  BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;
//!                                     SET TRANSACTION SNAPSHOT '<snapshot>';
//!                                     COPY ... (sees exactly the data up to consistent_point)
//!   all workers imported? then
//!   START_REPLICATION SLOT s
//!     LOGICAL <consistent_point>  -> every change committed after the snapshot, once
//! ```
//!
//! The snapshot dies as soon as this connection runs another command or closes, so the caller
//! must hold the connection idle until every worker has imported it.
//!
//! <https://www.postgresql.org/docs/15/protocol-replication.html#PROTOCOL-REPLICATION-CREATE-REPLICATION-SLOT>

use tokio::io::{AsyncRead, AsyncWrite};

use super::connection::ReplicationConnection;
use super::error::ReplicationError;
use super::simple_query::single_row;
use crate::pg::lsn::Lsn;

/// The output plugin switchyard decodes: built into PostgreSQL 10+, no extension to install.
pub const OUTPUT_PLUGIN: &str = "pgoutput";

/// A freshly created logical slot and the snapshot that matches it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatedSlot {
    pub slot_name: String,
    /// Changes committed after this position are streamed; everything before is in the
    /// snapshot.
    pub consistent_point: Lsn,
    /// For `SET TRANSACTION SNAPSHOT`, e.g. `00000003-00000002-1`.
    pub snapshot_name: String,
}

impl<S> ReplicationConnection<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// Creates the logical slot `slot` (pgoutput) and exports a snapshot consistent with it.
    ///
    /// The exported snapshot stays valid only while this connection stays open **and runs no
    /// other command**: keep it idle (no `simple_query`, no `start_logical_replication`, no
    /// `close`) until every importer has run `SET TRANSACTION SNAPSHOT`. Each importer keeps the
    /// snapshot for the rest of its own transaction.
    ///
    /// Fails with a definite error when the slot exists (42710) or when the server's
    /// `wal_level` is not `logical` (55000); both errors name the fix.
    pub async fn create_logical_slot_exporting_snapshot(
        &mut self,
        slot: &str,
    ) -> Result<CreatedSlot, ReplicationError> {
        self.create_slot_exporting_snapshot(slot, "").await
    }

    /// As [`Self::create_logical_slot_exporting_snapshot`], but `TEMPORARY`: the slot lives
    /// only as long as this connection (and is dropped on any error), so a process that dies
    /// leaves nothing holding WAL. Stream it on this same connection.
    pub async fn create_temporary_slot_exporting_snapshot(
        &mut self,
        slot: &str,
    ) -> Result<CreatedSlot, ReplicationError> {
        self.create_slot_exporting_snapshot(slot, " TEMPORARY")
            .await
    }

    async fn create_slot_exporting_snapshot(
        &mut self,
        slot: &str,
        temporary: &str,
    ) -> Result<CreatedSlot, ReplicationError> {
        let command = format!(
            "CREATE_REPLICATION_SLOT {}{temporary} LOGICAL {OUTPUT_PLUGIN} (SNAPSHOT 'export')",
            quote_identifier(slot)
        );
        let rows = self.simple_query(&command).await?;
        let transport = &self.transport;
        let row = single_row(transport, "CREATE_REPLICATION_SLOT", rows, 3)?;
        let bad =
            |what: &str| transport.protocol_error(format!("CREATE_REPLICATION_SLOT: bad {what}"));
        let mut row = row.into_iter();
        let slot_name = row.next().flatten().ok_or_else(|| bad("slot_name"))?;
        let consistent_point = row
            .next()
            .flatten()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| bad("consistent_point"))?;
        let snapshot_name = row.next().flatten().ok_or_else(|| bad("snapshot_name"))?;
        Ok(CreatedSlot {
            slot_name,
            consistent_point,
            snapshot_name,
        })
    }
}

/// `"name"` with inner quotes doubled, as the replication grammar reads identifiers.
pub(super) fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_identifiers() {
        assert_eq!(quote_identifier("s1"), "\"s1\"");
        assert_eq!(quote_identifier("a\"b"), "\"a\"\"b\"");
    }
}
