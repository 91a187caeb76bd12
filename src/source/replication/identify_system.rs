//! IDENTIFY_SYSTEM: which cluster, timeline and WAL position the connection sees.
//!
//! switchyard records the system id with its checkpoint so that a resumed migration can tell
//! when the source was swapped for a restored copy or a promoted replica, whose WAL positions
//! mean something else.
//!
//! <https://www.postgresql.org/docs/15/protocol-replication.html>

use tokio::io::{AsyncRead, AsyncWrite};

use super::connection::ReplicationConnection;
use super::error::ReplicationError;
use super::simple_query::single_row;
use crate::pg::lsn::Lsn;

/// The answer to IDENTIFY_SYSTEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemIdentity {
    /// The cluster's unique id (`pg_control_system().system_identifier`), as decimal text.
    pub system_id: String,
    pub timeline: u32,
    /// The current WAL flush position.
    pub xlog_pos: Lsn,
    /// The database this connection is bound to (`None` for physical replication).
    pub dbname: Option<String>,
}

impl<S> ReplicationConnection<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    pub async fn identify_system(&mut self) -> Result<SystemIdentity, ReplicationError> {
        let rows = self.simple_query("IDENTIFY_SYSTEM").await?;
        let transport = &self.transport;
        let mut row = single_row(transport, "IDENTIFY_SYSTEM", rows, 4)?.into_iter();
        let mut next = || row.next().flatten();
        let bad = |what: &str| transport.protocol_error(format!("IDENTIFY_SYSTEM: bad {what}"));
        let system_id = next().ok_or_else(|| bad("systemid"))?;
        let timeline = next()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| bad("timeline"))?;
        let xlog_pos = next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| bad("xlogpos"))?;
        let dbname = next();
        Ok(SystemIdentity {
            system_id,
            timeline,
            xlog_pos,
            dbname,
        })
    }
}
