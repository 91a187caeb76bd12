//! The rayon pool where batches are transformed, for the backfill's chunks and verify's scans
//! alike: the transforms are CPU work and may block on a lookup, so they stay off tokio's
//! threads, which are kept for I/O.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::plan::Plan;
use crate::transform::batch::{transform_batch, TransformedBatch};
use crate::transform::eval::Lookups;
use crate::transform::row::Env;

/// The worker transforming a batch panicked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerPanicked;

/// Transforms one batch of `plan.sources[source]` (whole COPY lines of its read columns) on
/// the rayon pool.
pub async fn transform_on_pool<L>(
    plan: &Arc<Plan>,
    lookups: &Arc<L>,
    source: usize,
    batch: Bytes,
) -> Result<TransformedBatch, WorkerPanicked>
where
    L: Lookups + Send + 'static,
{
    let (done, result) = oneshot::channel();
    let (plan, lookups) = (Arc::clone(plan), Arc::clone(lookups));
    rayon::spawn(move || {
        let env = Env {
            maps: &plan.maps,
            lookups: &*lookups,
        };
        let _ = done.send(transform_batch(&plan.sources[source], &env, &batch));
    });
    result.await.map_err(|_| WorkerPanicked)
}
