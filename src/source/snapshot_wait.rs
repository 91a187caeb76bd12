//! While CREATE_REPLICATION_SLOT waits: the slot's snapshot needs every transaction that
//! holds a transaction id when it starts to end first (PostgreSQL waits for them, silently),
//! so one open transaction on the source holds the backfill back for as long as it stays
//! open. This names those sessions every few seconds, from a second connection, and bounds
//! the wait.
//!
//! <https://www.postgresql.org/docs/15/logicaldecoding-explanation.html#LOGICALDECODING-SNAPSHOT-EXPORT>

use std::fmt;
use std::time::Duration;

use tokio_postgres::Client;

/// How often the waiting sessions are named: often enough to act on, rare enough to read.
pub const REPORT_EVERY: Duration = Duration::from_secs(5);

/// A session whose open transaction the slot's snapshot waits for.
#[derive(Debug, Clone)]
pub struct Blocker {
    pub pid: i32,
    pub application_name: String,
    /// Seconds since its transaction began.
    pub xact_age_s: f64,
    pub state: String,
}

impl fmt::Display for Blocker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pid {} (application {:?}, {}, transaction open for {:.0} s)",
            self.pid, self.application_name, self.state, self.xact_age_s
        )
    }
}

/// Sessions other than switchyard's own slot creation holding a transaction id, oldest first.
pub async fn blockers(client: &Client) -> Result<Vec<Blocker>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT pid, application_name, extract(epoch FROM now() - xact_start)::float8,
                    coalesce(state, '')
               FROM pg_stat_activity
              WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()
                AND backend_type = 'client backend'
              ORDER BY xact_start",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Blocker {
            pid: r.get(0),
            application_name: r.get(1),
            xact_age_s: r.get::<_, Option<f64>>(2).unwrap_or(0.0),
            state: r.get(3),
        })
        .collect())
}

/// The sessions as one line, for a message.
pub fn describe(blockers: &[Blocker]) -> String {
    if blockers.is_empty() {
        return "no session holds a transaction id now (it may have just ended)".to_owned();
    }
    blockers
        .iter()
        .map(Blocker::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
