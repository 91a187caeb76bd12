//! The consumer's heartbeat: liveness and what it holds unapplied, for `watch`, and the slot's
//! health, checked on the same timer.

use crate::checkpoint::{self, MigrationStatus};
use crate::pg::lsn::Lsn;
use crate::source::slot;

use super::error::{PipelineError, StopReason};
use super::follow::context::FollowContext;

/// Below this much WAL left before `max_slot_wal_keep_size` invalidates the slot, the consumer
/// warns on every heartbeat: the backlog must shrink, or the migration is lost.
pub const SLOT_SAFETY_MARGIN: i64 = 256 * 1024 * 1024;

/// The consumer's heartbeat, and the slot's health: an invalidated slot stops the consumer,
/// a backlog close to `max_slot_wal_keep_size` is reported loudly. Returns whether the
/// migration has been cut over (the consumer's work is then done).
pub(super) async fn beat(
    ctx: &FollowContext,
    received: Lsn,
    pending_since: Option<i64>,
) -> Result<bool, PipelineError> {
    let status =
        checkpoint::heartbeat(&ctx.monitor, &ctx.plan.name, received, pending_since).await?;
    if status == Some(MigrationStatus::CutOver) {
        return Ok(true);
    }
    slot_health(ctx).await?;
    Ok(false)
}

/// The slot's health: gone or invalidated (`max_slot_wal_keep_size` exceeded) stops the
/// consumer with the fix; a backlog close to invalidation is reported loudly. Also asked when
/// the stream fails to start or ends in error, whose raw server error would not say why.
pub async fn slot_health(ctx: &FollowContext) -> Result<(), PipelineError> {
    let slot = slot::state(&ctx.source, &ctx.plan.slot_name())
        .await
        .map_err(|e| PipelineError::source("reading the slot's state", e))?;
    let Some(slot) = slot else {
        return Err(StopReason::SlotGone {
            slot: ctx.plan.slot_name(),
        }
        .into());
    };
    if slot.wal_status.as_deref() == Some("lost") {
        return Err(StopReason::SlotInvalidated {
            slot: ctx.plan.slot_name(),
        }
        .into());
    }
    if let Some(safe) = slot.safe_wal_size.filter(|s| *s < SLOT_SAFETY_MARGIN) {
        let message = format!(
            "the slot's backlog is {safe} bytes from max_slot_wal_keep_size: raise it, or the slot will be invalidated"
        );
        tracing::warn!("{message}");
        let _ = checkpoint::set_status(
            &ctx.monitor,
            &ctx.plan.name,
            MigrationStatus::Following,
            Some(&message),
        )
        .await;
    }
    Ok(())
}
