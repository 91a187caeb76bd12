//! The write lock on the source tables, taken so that it can never stall the application for
//! long: `EXCLUSIVE` mode (reads go on, writes wait) with a short `lock_timeout`, and never
//! queued behind a transaction that already holds a conflicting lock for longer than that (a
//! waiting `LOCK` blocks every session that arrives after it and conflicts with it: the
//! lock-queue pile-up gh-ost and spirit users report).
//!
//! Which locks conflict is PostgreSQL's table 13.2
//! (<https://www.postgresql.org/docs/15/explicit-locking.html#TABLE-LOCK-COMPATIBILITY>):
//!
//! ```text
//!  requested          conflicts with locks held in mode
//!  EXCLUSIVE          every mode but ACCESS SHARE (plain SELECTs go on, writes wait)
//!  ACCESS EXCLUSIVE   every mode, ACCESS SHARE included (a SELECT, even one whose
//!                     transaction has gone idle, holds ACCESS SHARE until it ends)
//! ```
//! The blocker check looks for holders of any mode that conflicts with the strongest lock the
//! cutover will take (see [`super::swap_lock`]): the swap's ACCESS EXCLUSIVE when its SQL runs
//! on the source, so an idle reader is named before any lock is requested.

use std::time::Duration;

use tokio_postgres::Client;

use crate::pg::ident::TableName;

/// SQLSTATE `lock_not_available`: `lock_timeout` expired.
pub(super) const LOCK_NOT_AVAILABLE: &str = "55P03";

/// A table lock mode the cutover takes (table 13.2 of the PostgreSQL documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Blocks writes; plain reads (ACCESS SHARE) go on.
    Exclusive,
    /// Blocks every access, plain reads included: what `ALTER TABLE ... RENAME`, `DROP` and
    /// most `ALTER TABLE` forms take.
    AccessExclusive,
}

impl Mode {
    /// As `LOCK TABLE ... IN <mode> MODE` spells it.
    pub fn sql(self) -> &'static str {
        match self {
            Mode::Exclusive => "EXCLUSIVE",
            Mode::AccessExclusive => "ACCESS EXCLUSIVE",
        }
    }

    /// The `pg_locks.mode` names a request in this mode waits for (table 13.2).
    fn conflicts(self) -> Vec<&'static str> {
        let mut all = vec![
            "RowShareLock",
            "RowExclusiveLock",
            "ShareUpdateExclusiveLock",
            "ShareLock",
            "ShareRowExclusiveLock",
            "ExclusiveLock",
            "AccessExclusiveLock",
        ];
        if self == Mode::AccessExclusive {
            all.push("AccessShareLock");
        }
        all
    }
}

/// A session holding a lock that conflicts with ours, and for how long its transaction ran.
#[derive(Debug, Clone)]
pub struct Blocker {
    pub pid: i32,
    /// The modes it holds, comma-separated.
    pub mode: String,
    /// The tables it holds them on, comma-separated.
    pub table: String,
    pub transaction_age: Duration,
    /// When its transaction started (UTC).
    pub since: String,
    pub state: String,
    pub application: String,
    /// Its current (or, idle, last) statement, shortened.
    pub query: String,
    /// It waits for a lock the cutover holds: asking for a lock it conflicts with closes a
    /// cycle, a deadlock.
    pub waits_for_us: bool,
    /// An autovacuum worker: PostgreSQL cancels it for a waiting lock after `deadlock_timeout`
    /// (unless it prevents wraparound), so queuing behind it is how to get past it.
    pub autovacuum: bool,
}

impl std::fmt::Display for Blocker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} ({}, application {:?}) holds {} on {} in a transaction open since {} UTC ({:.1}s){}; its last query: {:?}",
            self.pid,
            self.state,
            self.application,
            self.mode,
            self.table,
            self.since,
            self.transaction_age.as_secs_f64(),
            if self.waits_for_us {
                " and waits for the cutover's lock"
            } else {
                ""
            },
            self.query
        )
    }
}

/// How much of a blocker's query to show.
const QUERY_SHOWN_CHARS: i32 = 200;

/// Sessions holding a lock on `tables` that conflicts with `mode`, in transactions older than
/// `older_than` (`Duration::ZERO`: every holder): queuing behind them would block the
/// application until they end. One entry per session, oldest transaction first.
pub async fn long_blockers(
    client: &Client,
    tables: &[TableName],
    older_than: Duration,
    mode: Mode,
) -> Result<Vec<Blocker>, tokio_postgres::Error> {
    let names: Vec<String> = tables.iter().map(TableName::quoted).collect();
    let conflicts = mode.conflicts();
    // clock_timestamp, not now(): the caller may be inside the lock's transaction.
    let rows = client
        .query(
            "SELECT a.pid, string_agg(DISTINCT l.mode, ', '),
                    string_agg(DISTINCT l.relation::regclass::text, ', '),
                    extract(epoch FROM clock_timestamp() - min(a.xact_start))::float8,
                    to_char(min(a.xact_start) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS'),
                    coalesce(min(a.state), ''), coalesce(min(a.application_name), ''),
                    bool_or(a.backend_type = 'autovacuum worker'),
                    left(coalesce(min(a.query), ''), $4),
                    bool_or(pg_backend_pid() = ANY (pg_blocking_pids(a.pid)))
               FROM pg_locks l JOIN pg_stat_activity a USING (pid)
              WHERE l.granted AND l.pid <> pg_backend_pid() AND l.locktype = 'relation'
                AND l.relation = ANY (SELECT to_regclass(t) FROM unnest($1::text[]) t)
                AND l.mode = ANY ($3::text[])
                AND a.xact_start <= clock_timestamp() - $2 * interval '1 second'
              GROUP BY a.pid
              ORDER BY min(a.xact_start)",
            &[
                &names,
                &older_than.as_secs_f64(),
                &conflicts,
                &QUERY_SHOWN_CHARS,
            ],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Blocker {
            pid: r.get(0),
            mode: r.get(1),
            table: r.get(2),
            transaction_age: Duration::from_secs_f64(r.get::<_, f64>(3).max(0.0)),
            since: r.get(4),
            state: r.get(5),
            application: r.get(6),
            autovacuum: r.get(7),
            query: r.get(8),
            waits_for_us: r.get(9),
        })
        .collect())
}

/// How one attempt to lock ended.
#[derive(Debug)]
pub enum Attempt {
    /// Granted: `client` is inside the transaction that holds the lock.
    Granted,
    /// `lock_timeout` expired; the transaction was rolled back and the queued writers went on.
    TimedOut,
}

/// Opens a transaction on `client` and locks `tables` in `EXCLUSIVE` mode, waiting at most
/// `lock_timeout`.
pub async fn lock(
    client: &Client,
    tables: &[TableName],
    lock_timeout: Duration,
) -> Result<Attempt, tokio_postgres::Error> {
    let list: Vec<String> = tables.iter().map(TableName::quoted).collect();
    client
        .batch_execute(&format!(
            "BEGIN; SET LOCAL lock_timeout = {}",
            lock_timeout.as_millis().max(1)
        ))
        .await?;
    let locked = client
        .batch_execute(&format!("LOCK TABLE {} IN EXCLUSIVE MODE", list.join(", ")))
        .await;
    match locked {
        Ok(()) => Ok(Attempt::Granted),
        Err(e) => {
            client.batch_execute("ROLLBACK").await?;
            if e.code().map(|c| c.code()) == Some(LOCK_NOT_AVAILABLE) {
                Ok(Attempt::TimedOut)
            } else {
                Err(e)
            }
        }
    }
}

/// The pause before attempt `n` (1-based) after a failed one: exponential from 100 ms, capped
/// at 5 s, with jitter so that retries do not fall into step with the application's bursts.
pub fn backoff(n: u32) -> Duration {
    let base = 100u64
        .saturating_mul(1 << n.saturating_sub(1).min(6))
        .min(5_000);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    Duration::from_millis(base / 2 + nanos % (base / 2 + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(1) <= Duration::from_millis(100));
        assert!(backoff(3) >= Duration::from_millis(200));
        for n in 1..40 {
            assert!(backoff(n) <= Duration::from_secs(5));
        }
    }
}
