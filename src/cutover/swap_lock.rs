//! The swap's own lock: the plan's cutover SQL renames and alters the legacy tables, which
//! takes ACCESS EXCLUSIVE, a stronger lock than the write lock's EXCLUSIVE. Left implicit, that
//! request would wait behind any session still holding ACCESS SHARE (a report idle in its
//! transaction after a plain SELECT) for as long as the window allows, and every read and
//! write of the legacy tables would queue behind it meanwhile. So the cutover takes it itself,
//! explicitly, right before the swap, with a `lock_timeout` no longer than `--lock-timeout`:
//!
//! ```text
//!  blocker check: any lock conflicting with ACCESS EXCLUSIVE (ACCESS SHARE included)
//!  LOCK ... IN EXCLUSIVE MODE        writes wait; reads go on (the counts, the consumer's
//!                                    TOAST reads of the source, the application's SELECTs)
//!  fence, counts, verify
//!  holder waiting for us? ─ yes ─> not requested (it would deadlock), named, attempt failed
//!  LOCK ... IN ACCESS EXCLUSIVE MODE reads wait too, at most min(--lock-timeout, window left)
//!       not granted ─> roll back, name the holders, back off, next lock attempt
//!  sequences, cutover SQL, commit
//! ```
//! Lock modes and what each conflicts with: table 13.2 of
//! <https://www.postgresql.org/docs/15/explicit-locking.html>. An ACCESS EXCLUSIVE lock is
//! WAL-logged and replayed on hot standbys ([`super::standbys`]); EXCLUSIVE is not.

use std::time::Duration;

use tokio_postgres::Client;

use crate::pg::ident::TableName;
use crate::plan::{CutoverSide, Plan};

use super::write_lock::{long_blockers, Blocker, Mode, LOCK_NOT_AVAILABLE};

/// The strongest lock the cutover takes on the source tables: ACCESS EXCLUSIVE when the plan's
/// cutover SQL runs on the source (it may rename, alter or drop them; switchyard cannot tell
/// what arbitrary SQL will lock), EXCLUSIVE otherwise (the read-only triggers of a two-server
/// cutover need SHARE ROW EXCLUSIVE, which EXCLUSIVE already covers).
pub fn mode(plan: &Plan) -> Mode {
    let has_sql = plan.phases.cutover.iter().any(|f| !f.sql.trim().is_empty());
    if has_sql && plan.cutover.side == CutoverSide::Source {
        Mode::AccessExclusive
    } else {
        Mode::Exclusive
    }
}

/// How the request for the swap's lock ended.
#[derive(Debug)]
pub enum Upgrade {
    /// Held until the transaction ends.
    Granted,
    /// Not granted (or not requested, as it would deadlock): the sessions holding conflicting
    /// locks. The transaction still holds the write lock; the caller rolls it back.
    NotGranted(Vec<Blocker>),
}

/// Takes ACCESS EXCLUSIVE on `tables` inside the transaction that holds the write lock on
/// `client`, waiting at most `wait`. Not requested when a session holding a lock on them
/// waits for ours: the request would close a cycle, and PostgreSQL would resolve it by
/// cancelling one of the two after `deadlock_timeout`, perhaps the application's.
pub async fn upgrade(
    client: &Client,
    tables: &[TableName],
    wait: Duration,
) -> Result<Upgrade, tokio_postgres::Error> {
    let holders = long_blockers(client, tables, Duration::ZERO, Mode::AccessExclusive).await?;
    if holders.iter().any(|b| b.waits_for_us) {
        return Ok(Upgrade::NotGranted(holders));
    }
    let list: Vec<String> = tables.iter().map(TableName::quoted).collect();
    // A savepoint keeps the transaction usable after a timeout, to name who was in the way.
    client
        .batch_execute(&format!(
            "SAVEPOINT switchyard_swap_lock; SET LOCAL lock_timeout = {}",
            wait.as_millis().max(1)
        ))
        .await?;
    let locked = client
        .batch_execute(&format!(
            "LOCK TABLE {} IN {} MODE",
            list.join(", "),
            Mode::AccessExclusive.sql()
        ))
        .await;
    match locked {
        Ok(()) => Ok(Upgrade::Granted),
        Err(e) if e.code().map(|c| c.code()) == Some(LOCK_NOT_AVAILABLE) => {
            client
                .batch_execute("ROLLBACK TO SAVEPOINT switchyard_swap_lock")
                .await?;
            let holders =
                long_blockers(client, tables, Duration::ZERO, Mode::AccessExclusive).await?;
            Ok(Upgrade::NotGranted(holders))
        }
        Err(e) => Err(e),
    }
}
