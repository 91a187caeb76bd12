//! Once a second, the migration's state as any process can read it: [`crate::lag::sample`]
//! (lag, slot, chunks, status), the dead letters and the last fence, on sessions of its own
//! named `switchyard metrics`. A failed reading leaves the last values in place and is tried
//! again on the next tick, on new sessions when those were lost: the metrics must never stop
//! the work they describe.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use super::exposition::Metrics;
use crate::checkpoint;
use crate::lag;
use crate::pg::connect::connect;
use crate::pg::conninfo::ConnInfo;
use crate::plan::Plan;

/// How often the target's state is read: what `watch` shows, at the same pace.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Counting the dead letters reads all of the migration's rows in `switchyard.dead_letters`
/// (the table has no index on the migration): often enough for a scrape every 15 s, rarely
/// enough that a migration with millions of them does not scan them every second.
const COUNT_DEAD_LETTERS_EVERY: Duration = Duration::from_secs(10);

/// The application name of the sampler's sessions, as `pg_stat_activity` shows it.
const APPLICATION_NAME: &str = "switchyard metrics";

/// Reads the migration's state into `metrics` every second until the process ends.
pub async fn sample_every_second(
    metrics: Arc<Metrics>,
    plan: Arc<Plan>,
    source: ConnInfo,
    target: ConnInfo,
) {
    let mut sessions: Option<(Client, Client)> = None;
    let mut counted_at: Option<Instant> = None;
    loop {
        if sessions.is_none() {
            sessions = match tokio::try_join!(
                connect(&source, APPLICATION_NAME),
                connect(&target, APPLICATION_NAME)
            ) {
                Ok(pair) => Some(pair),
                Err(e) => {
                    tracing::debug!("metrics: connecting: {}", crate::error::Chain::new(&e));
                    None
                }
            };
        }
        if let Some((source, target)) = &sessions {
            let count = counted_at.is_none_or(|at| at.elapsed() >= COUNT_DEAD_LETTERS_EVERY);
            match read(&metrics, source, target, &plan, count).await {
                Ok(()) if count => counted_at = Some(Instant::now()),
                Ok(()) => {}
                Err(e) => {
                    tracing::debug!("metrics: sampling: {}", crate::error::Chain::new(&*e));
                    // A query refused on a live session (a state older than this version,
                    // say) is read again next time; a lost session is replaced.
                    if source.is_closed() || target.is_closed() {
                        sessions = None;
                    }
                }
            }
        }
        metrics.read_in_process();
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
}

/// One reading; `count_dead_letters` also counts them.
async fn read(
    metrics: &Metrics,
    source: &Client,
    target: &Client,
    plan: &Plan,
    count_dead_letters: bool,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // Before the backfill recorded the migration there is nothing to read yet.
    let Some(sample) = lag::sample(source, target, plan).await? else {
        return Ok(());
    };
    metrics.observe_sample(&sample);
    metrics.observe_control(
        sample.paused.is_some(),
        sample.throttle_rows_per_sec.map(|n| n as f64),
    );
    if let Some((lsn, at)) = checkpoint::last_fence(target, &plan.name).await? {
        metrics.observe_fence(lsn, at);
    }
    if count_dead_letters {
        metrics.observe_dead_letters(checkpoint::dead_letter_count(target, &plan.name).await?);
    }
    Ok(())
}
