//! The rayon pool where batches are transformed, for the backfill's chunks and verify's scans
//! alike: the transforms are CPU work and may block on a lookup, so they stay off tokio's
//! threads, which are kept for I/O.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::plan::Plan;
use crate::transform::batch::{transform_batch, TransformedBatch};
use crate::transform::copy_binary::RowFormat;
use crate::transform::eval::Lookups;
use crate::transform::row::Env;

/// The worker transforming a batch panicked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerPanicked;

/// Transforms one batch of `plan.sources[source]` (whole COPY lines of its read columns) on
/// the rayon pool, each output in its format of `formats` (empty: all COPY text).
pub async fn transform_on_pool<L>(
    plan: &Arc<Plan>,
    lookups: &Arc<L>,
    formats: &Arc<[RowFormat]>,
    source: usize,
    batch: Bytes,
) -> Result<TransformedBatch, WorkerPanicked>
where
    L: Lookups + Send + 'static,
{
    let (done, result) = oneshot::channel();
    let (plan, lookups, formats) = (Arc::clone(plan), Arc::clone(lookups), Arc::clone(formats));
    rayon::spawn(move || {
        let env = Env {
            maps: &plan.maps,
            lookups: &*lookups,
            formats: &formats,
        };
        let _ = done.send(transform_batch(&plan.sources[source], &env, &batch));
    });
    result.await.map_err(|_| WorkerPanicked)
}
