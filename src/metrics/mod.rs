//! `--metrics-addr HOST:PORT`: a migration's metrics for Prometheus, on `backfill`, `follow`
//! and `watch`. Like [`crate::progress`], it only reads: counters the work bumps, and the
//! target's state; it never drives work, and knows nothing of the commands that start it.
//!
//! ```text
//!   backfill workers ──bump──> BackfillProgress ─┐  read at each scrape
//!   apply lanes      ──bump──> FollowProgress   ─┤  (in-process counters)
//!                                                ├──> Metrics ──encode──> GET /metrics
//!   sampler, every 1 s: lag::sample, dead     ───┘  (gauges: the migration as any
//!   letters, last fence (source + target)            process reads it, as `watch` does)
//! ```
//!
//! Counters (`_total`) count what this process did and start over with it, as Prometheus
//! expects (`rate()` handles the reset); gauges describe the migration wherever its work runs.

mod exposition;
mod observe;
mod sampler;
mod server;

use std::sync::Arc;

use crate::pg::conninfo::ConnInfo;
use crate::plan::Plan;

pub use exposition::{Metrics, CONTENT_TYPE};
pub use server::{serve, BindError};

/// Serves the metrics of `plan`'s migration on `addr` and starts sampling its state from
/// `source` and `target`; fails, having started nothing, when `addr` cannot be listened on.
/// Returns the metrics, for the command to attach its counters, and the address bound.
pub async fn start(
    addr: &str,
    plan: Arc<Plan>,
    source: ConnInfo,
    target: ConnInfo,
) -> Result<(Arc<Metrics>, std::net::SocketAddr), BindError> {
    let metrics = Metrics::new(&plan.name);
    let bound = serve(addr, Arc::clone(&metrics)).await?;
    tokio::spawn(sampler::sample_every_second(
        Arc::clone(&metrics),
        plan,
        source,
        target,
    ));
    Ok((metrics, bound))
}
