//! Refuses a `--lock-timeout` at or above the source's `deadlock_timeout`.
//!
//! PostgreSQL looks for a deadlock once per wait, `deadlock_timeout` after a session started
//! waiting, and the session that finds the cycle is the one cancelled
//! (<https://www.postgresql.org/docs/15/runtime-config-locks.html#GUC-DEADLOCK-TIMEOUT>,
//! `src/backend/storage/lmgr/deadlock.c`). The cutover's lock request starts waiting first; an
//! application transaction that holds a lock on one legacy table and then queues behind the
//! cutover's request on another closes a cycle later. With a `lock_timeout` shorter than
//! `deadlock_timeout` the cutover's request always gives up before any such cycle is looked
//! for, so the application's transaction simply waits and goes on; with a longer one the
//! cutover's own check has already passed (the cycle was not there yet) and the application's
//! check, when it fires, finds the cycle and cancels the application's transaction with
//! "deadlock detected".

use std::time::Duration;

use tokio_postgres::Client;

use super::error::CutoverError;
use super::window::Step;

/// The source's `deadlock_timeout` as this session sees it (`pg_settings` reports milliseconds).
pub(super) async fn read(client: &Client) -> Result<Duration, tokio_postgres::Error> {
    let ms: i64 = client
        .query_one(
            "SELECT setting::int8 FROM pg_settings WHERE name = 'deadlock_timeout'",
            &[],
        )
        .await?
        .get(0);
    Ok(Duration::from_millis(ms.max(0) as u64))
}

/// Fails with [`CutoverError::LockTimeoutNotBelowDeadlockTimeout`] when `lock_timeout` is at
/// or above the source's `deadlock_timeout`.
pub(super) async fn refuse_unsafe(
    client: &Client,
    lock_timeout: Duration,
) -> Result<(), CutoverError> {
    let deadlock_timeout = read(client).await.map_err(super::error::db(
        Step::Rehearsal,
        "reading deadlock_timeout",
    ))?;
    if lock_timeout >= deadlock_timeout {
        return Err(CutoverError::LockTimeoutNotBelowDeadlockTimeout {
            lock_timeout,
            deadlock_timeout,
        });
    }
    Ok(())
}
