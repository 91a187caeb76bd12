//! The slot's creation waits for every source transaction holding a transaction id to end
//! (see [`crate::source::snapshot_wait`]). While it waits, the operator sees which sessions
//! it waits for, every few seconds; past `--snapshot-timeout` the backfill stops, naming them.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::bail;
use tokio_postgres::Client;

use crate::source::snapshot_wait::{blockers, describe, REPORT_EVERY};

/// Runs `create` (the slot's creation) and, while it has not answered, names the sessions
/// it waits for on `source` (an ordinary connection) every [`REPORT_EVERY`]; gives up after
/// `timeout`, dropping `create`.
pub(super) async fn snapshot_wait<T>(
    source: &Client,
    create: impl Future<Output = T>,
    timeout: Duration,
) -> anyhow::Result<T> {
    tokio::pin!(create);
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::now() + REPORT_EVERY, REPORT_EVERY);
    loop {
        tokio::select! {
            created = &mut create => return Ok(created),
            _ = tokio::time::sleep_until(deadline) => {
                let waiting = blockers(source).await.map(|b| describe(&b)).unwrap_or_else(|e| format!("(could not list them: {e})"));
                bail!(
                    "the replication slot's snapshot waited {timeout:?} for open source transactions to end, and they did not: {waiting}. \
                     Have them commit or roll back (or end them with SELECT pg_terminate_backend(<pid>)), then run `switchyard backfill` again; \
                     or allow a longer wait with --snapshot-timeout"
                );
            }
            _ = tick.tick() => {
                let waiting = blockers(source).await.map(|b| describe(&b)).unwrap_or_else(|e| format!("(could not list them: {e})"));
                eprintln!(
                    "switchyard backfill: creating the replication slot waits ({:.0} s of --snapshot-timeout {timeout:?}) for open source transactions to end: {waiting}",
                    started.elapsed().as_secs_f64()
                );
            }
        }
    }
}
