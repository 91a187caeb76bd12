//! `rollback` with a reverse stream: a cutover in the other direction (see
//! [`crate::pipeline::reverse`]).
//!
//! ```text
//!  no lock     the function of the new tables' read-only triggers
//!  LOCK the new tables the reverse rules read, and those they reference, IN EXCLUSIVE MODE
//!      (their own session on the new tables' server), with lock_timeout; not granted: roll
//!      back, back off, retry
//!  ─ granted ─ fence: a logical message on the new tables' server; the reverse consumer
//!  (window)       applies everything committed before it and records it on the legacy side
//!              read-only triggers on the new tables, in the lock's transaction
//!              [the caller: one legacy transaction removes the legacy tables' guards, runs
//!               the plan's rollback SQL, ends the stream; committed]
//!  ── COMMIT ── of the lock's transaction: locks released, the new tables refuse writes
//! ```
//!
//! Writers of the new tables hold ROW EXCLUSIVE, which EXCLUSIVE conflicts with, so every
//! write the application had acknowledged committed before the fence, and the fence proves
//! the legacy tables hold it. Until the lock's transaction commits, nothing is changed on the
//! new tables' side: any failure rolls it back and the stream goes on.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use tokio_postgres::Client;

use crate::checkpoint::reverse as progress;
use crate::pg::connect::connect;
use crate::pg::conninfo::ConnInfo;
use crate::pg::ident::TableName;
use crate::pipeline::reverse::fence_name;
use crate::plan::Plan;
use crate::source::fence;

use super::read_only::{self, After};
use super::reverse_stream::fed_tables;
use super::write_lock::backoff;

/// What the operator asked of the window.
#[derive(Debug, Clone)]
pub struct WindowOptions {
    pub max_blocked: Duration,
    pub lock_timeout: Duration,
    pub lock_attempts: u32,
}

/// The new tables locked and fenced: the legacy tables hold every acknowledged write.
pub struct Blocked {
    lock: Client,
    granted: Instant,
    pub attempts: u32,
    /// From the lock granted to the fence applied on the legacy side.
    pub fence_took: Duration,
    pub tables: Vec<TableName>,
}

/// Locks the new tables, fences, and installs their read-only triggers (uncommitted). An
/// error leaves nothing changed.
pub async fn block_and_fence(
    plan: &Plan,
    target: &ConnInfo,
    legacy: &Client,
    options: &WindowOptions,
    say: &(dyn Fn(String) + Sync),
) -> anyhow::Result<Blocked> {
    let lock = connect(target, "switchyard rollback").await?;
    // The tables the rules read and those they reference (lookups, teams): a write to any of
    // them after the fence could change a legacy row.
    let mut tables = fed_tables(plan);
    tables.extend(crate::pipeline::reverse::referenced_tables(&lock, &tables).await?);
    let fencer = connect(target, "switchyard rollback").await?;
    lock.batch_execute(read_only::ROLLED_BACK_FUNCTION_SQL)
        .await
        .context("creating switchyard.refuse_writes_rolled_back() on the new tables' server")?;
    let quoted: Vec<String> = tables.iter().map(TableName::quoted).collect();
    let mut attempts = 0;
    let granted = loop {
        attempts += 1;
        lock.batch_execute(&format!(
            "BEGIN; SET LOCAL lock_timeout = {}",
            options.lock_timeout.as_millis().max(1)
        ))
        .await?;
        match lock
            .batch_execute(&format!(
                "LOCK TABLE {} IN EXCLUSIVE MODE",
                quoted.join(", ")
            ))
            .await
        {
            Ok(()) => break Instant::now(),
            Err(e) if is_lock_timeout(&e) && attempts < options.lock_attempts => {
                lock.batch_execute("ROLLBACK").await?;
                let pause = backoff(attempts);
                say(format!(
                    "lock attempt {attempts}: the new tables' write lock was not granted within {:?}; retrying in {:.0} ms",
                    options.lock_timeout,
                    pause.as_secs_f64() * 1e3
                ));
                tokio::time::sleep(pause).await;
            }
            Err(e) => {
                let _ = lock.batch_execute("ROLLBACK").await;
                return Err(anyhow!(e).context(format!(
                    "rollback stopped: the write lock on the new tables ({}) was not granted in {attempts} attempts of {:?}. Nothing was changed; the reverse stream goes on",
                    quoted.join(", "),
                    options.lock_timeout
                )));
            }
        }
    };
    let fenced = async {
        let f = fence::emit(&fencer, &fence_name(&plan.name)).await?;
        loop {
            if progress::applied_fence(legacy, &plan.name)
                .await?
                .as_deref()
                == Some(&f.id)
            {
                return Ok::<_, anyhow::Error>(());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let left = options.max_blocked.saturating_sub(granted.elapsed());
    match tokio::time::timeout(left, fenced).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            let _ = lock.batch_execute("ROLLBACK").await;
            return Err(e.context("rollback stopped while fencing; nothing was changed"));
        }
        Err(_) => {
            let _ = lock.batch_execute("ROLLBACK").await;
            bail!(
                "rollback stopped: the reverse consumer did not apply the fence within --max-blocked ({:?}); the new tables' lock was released and nothing was changed. Is `switchyard follow --reverse` running? (`switchyard status` shows its last heartbeat) Then try again, with a larger --max-blocked if it is far behind. If the stream cannot go on, `switchyard abort` ends it, and a rollback without it leaves the writes it did not bring back in the new tables (it lists them)",
                options.max_blocked
            );
        }
    }
    let fence_took = granted.elapsed();
    if let Err(e) = read_only::install(&lock, &tables, &plan.name, After::Rollback).await {
        let _ = lock.batch_execute("ROLLBACK").await;
        return Err(anyhow!(e).context(
            "rollback stopped: installing the read-only triggers on the new tables failed; nothing was changed",
        ));
    }
    Ok(Blocked {
        lock,
        granted,
        attempts,
        fence_took,
        tables,
    })
}

impl Blocked {
    /// Commits the lock's transaction (the new tables' triggers), releasing the lock; returns
    /// the window, from the lock granted to its release.
    pub async fn commit(self) -> anyhow::Result<Duration> {
        self.lock.batch_execute("COMMIT").await.context(
            "the legacy tables are back, but committing the new tables' read-only triggers failed: writes to the new tables are no longer brought back; stop them",
        )?;
        Ok(self.granted.elapsed())
    }

    /// Rolls the lock's transaction back: nothing changed on the new tables' side.
    pub async fn abandon(self) {
        let _ = self.lock.batch_execute("ROLLBACK").await;
    }
}

fn is_lock_timeout(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE)
}
