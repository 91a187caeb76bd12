//! Physical standbys of the source, which replay the swap's ACCESS EXCLUSIVE lock.
//!
//! An ACCESS EXCLUSIVE lock is WAL-logged; a hot standby's startup process takes it again when
//! it replays that WAL. There it waits behind any standby query holding a lock on the same
//! table, for up to the standby's `max_standby_streaming_delay` (then cancels those queries),
//! and every standby query on the table queues behind the waiting replay meanwhile: standby
//! readers stall for up to that delay while the primary reports a window of milliseconds.
//! `hot_standby_feedback` does not help: it prevents cleanup conflicts, not lock conflicts.
//! See <https://www.postgresql.org/docs/15/hot-standby.html#HOT-STANDBY-CONFLICT>.
//! EXCLUSIVE (the write lock) is not WAL-logged, so only the swap's lock matters here.

use serde::Serialize;
use tokio_postgres::GenericClient;

use crate::pg::ident::TableName;
use crate::plan::Plan;
use crate::source::preflight::Finding;
use crate::source::slot;

use super::swap_lock;
use super::write_lock::Mode;

/// A walsender streaming WAL to a physical standby (or any physical receiver).
#[derive(Debug, Clone, Serialize)]
pub struct Standby {
    pub pid: i32,
    pub application_name: String,
    /// Its address, or `local socket`.
    pub client: String,
    /// `pg_stat_replication.state` (empty when this role may not see it).
    pub state: String,
    /// The primary's `max_standby_streaming_delay`; the standby's own setting is what counts.
    pub primary_max_standby_streaming_delay: String,
    /// What the operator should know, in one sentence.
    pub warning: String,
}

/// Walsenders not taking a base backup; those serving a logical slot are left out after.
const WALSENDERS_SQL: &str = "
SELECT r.pid, coalesce(r.application_name, ''), coalesce(host(r.client_addr), 'local socket'),
       coalesce(r.state, ''), current_setting('max_standby_streaming_delay')
  FROM pg_stat_replication r
 WHERE r.state IS DISTINCT FROM 'backup'
 ORDER BY r.pid";

/// The source's physical standbys, each with the warning about replaying `tables`' ACCESS
/// EXCLUSIVE lock. Empty when the swap takes no such lock (`mode` EXCLUSIVE).
pub async fn physical(
    client: &impl GenericClient,
    tables: &[TableName],
    mode: Mode,
) -> Result<Vec<Standby>, tokio_postgres::Error> {
    if mode != Mode::AccessExclusive {
        return Ok(Vec::new());
    }
    let names: Vec<String> = tables.iter().map(|t| t.to_string()).collect();
    let rows = client.query(WALSENDERS_SQL, &[]).await?;
    // The slots are read after the walsenders (as a subquery would be), so a walsender that
    // took its logical slot meanwhile is still known as that slot's.
    let decoding: Vec<i32> = slot::all(client)
        .await?
        .into_iter()
        .filter(|s| s.logical)
        .filter_map(|s| s.active_pid)
        .collect();
    Ok(rows
        .iter()
        .filter(|r| !decoding.contains(&r.get::<_, i32>(0)))
        .map(|r| {
            let (pid, application_name, addr, state, delay): (i32, String, String, String, String) =
                (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
            let warning = format!(
                "physical standby {application_name:?} (walsender pid {pid}, {addr}{}) replays the swap's ACCESS EXCLUSIVE lock on {}: \
                 there the replay waits behind standby queries on those tables for up to the standby's max_standby_streaming_delay \
                 (the primary's is {delay}; the standby's own setting decides, -1 waits forever), and the standby's readers of those \
                 tables wait behind it meanwhile, however short the window on the primary. Before the cutover end long queries on \
                 the standby, or lower max_standby_streaming_delay there so that they are cancelled instead; hot_standby_feedback \
                 does not avoid this conflict",
                if state.is_empty() { String::new() } else { format!(", {state}") },
                names.join(", ")
            );
            Standby {
                pid,
                application_name,
                client: addr,
                state,
                primary_max_standby_streaming_delay: delay,
                warning,
            }
        })
        .collect())
}

/// For `check`: one warning per physical standby when the plan's swap takes ACCESS EXCLUSIVE.
pub async fn check(
    client: &impl GenericClient,
    plan: &Plan,
) -> Result<Vec<Finding>, tokio_postgres::Error> {
    let tables: Vec<TableName> = plan.sources.iter().map(|s| s.table.clone()).collect();
    Ok(physical(client, &tables, swap_lock::mode(plan))
        .await?
        .into_iter()
        .map(|s| {
            Finding::warning(
                format!("source standby {}", s.application_name),
                s.warning,
                "during the cutover set max_standby_streaming_delay on the standby to what its readers can wait (e.g. 1s) and reload it, or run the cutover when no long query runs there",
            )
        })
        .collect())
}
