//! The write lock on the source tables, taken so that it can never stall the application for
//! long: `EXCLUSIVE` mode (reads go on, writes wait) with a short `lock_timeout`, and never
//! queued behind a transaction that already holds a conflicting lock for longer than that (a
//! waiting `LOCK` blocks every writer that arrives after it: the lock-queue pile-up gh-ost and
//! spirit users report).

use std::time::Duration;

use tokio_postgres::Client;

use crate::pg::ident::TableName;

/// SQLSTATE `lock_not_available`: `lock_timeout` expired.
const LOCK_NOT_AVAILABLE: &str = "55P03";

/// A session holding a lock that conflicts with ours, and for how long its transaction ran.
#[derive(Debug, Clone)]
pub struct Blocker {
    pub pid: i32,
    pub mode: String,
    pub table: String,
    pub transaction_age: Duration,
    pub state: String,
    pub application: String,
    /// An autovacuum worker: PostgreSQL cancels it for a waiting lock after `deadlock_timeout`
    /// (unless it prevents wraparound), so queuing behind it is how to get past it.
    pub autovacuum: bool,
}

impl std::fmt::Display for Blocker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} ({}, application {:?}) holds {} on {} in a transaction open for {:.1}s",
            self.pid,
            self.state,
            self.application,
            self.mode,
            self.table,
            self.transaction_age.as_secs_f64()
        )
    }
}

/// Sessions holding a lock on `tables` that conflicts with `EXCLUSIVE`, in transactions older
/// than `older_than`: queuing behind them would block the application's writes until they end.
pub async fn long_blockers(
    client: &Client,
    tables: &[TableName],
    older_than: Duration,
) -> Result<Vec<Blocker>, tokio_postgres::Error> {
    let names: Vec<String> = tables.iter().map(TableName::quoted).collect();
    let rows = client
        .query(
            "SELECT l.pid, l.mode, l.relation::regclass::text,
                    extract(epoch FROM now() - a.xact_start)::float8,
                    coalesce(a.state, ''), coalesce(a.application_name, ''),
                    a.backend_type = 'autovacuum worker'
               FROM pg_locks l JOIN pg_stat_activity a USING (pid)
              WHERE l.granted AND l.pid <> pg_backend_pid()
                AND l.relation = ANY (SELECT to_regclass(t) FROM unnest($1::text[]) t)
                AND l.mode <> 'AccessShareLock'
                AND a.xact_start < now() - $2 * interval '1 second'
              ORDER BY a.xact_start",
            &[&names, &older_than.as_secs_f64()],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Blocker {
            pid: r.get(0),
            mode: r.get(1),
            table: r.get(2),
            transaction_age: Duration::from_secs_f64(r.get::<_, f64>(3).max(0.0)),
            state: r.get(4),
            application: r.get(5),
            autovacuum: r.get(6),
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
