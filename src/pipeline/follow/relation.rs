//! The messages about a whole table. Relation: the stream describes a table before its first
//! change after a start and after DDL on it; it is mapped onto the plan by OID
//! ([`Relations::describe`]), and a followed table under another name is checked in the
//! catalog. Truncate: a followed table's stops the consumer.

use crate::pg::pgoutput::{RelationBody, TruncateBody};
use crate::source::relations::{Described, Relations};

use super::context::FollowContext;
use crate::pipeline::confirm::{unless_cut_over, verify, Verdict};
use crate::pipeline::error::{PipelineError, StopReason};

/// Records a Relation message. A followed table under another name than the plan's is
/// checked in the catalog: renamed back since, it is followed on; still renamed, the
/// consumer stops. Returns whether the migration was cut over meanwhile (the cutover's SQL
/// may rename the legacy tables).
pub(super) async fn relation(
    ctx: &FollowContext,
    relations: &mut Relations,
    body: &RelationBody,
) -> Result<bool, PipelineError> {
    match relations.describe(&ctx.plan, body) {
        Ok(Described::Mapped | Described::Ignored) => Ok(false),
        Ok(Described::Renamed { source, now }) => {
            let plan_name = &ctx.plan.sources[source].table;
            match verify(ctx).await? {
                Some(Verdict::CutOver) => Ok(true),
                Some(Verdict::Intact) => {
                    tracing::info!("source table {plan_name} was called {now} for a while; it has its name back, so switchyard follows on");
                    Ok(false)
                }
                None => Err(StopReason::RenameUnchecked {
                    table: plan_name.to_string(),
                    now,
                }
                .into()),
            }
        }
        Err(e) => unless_cut_over(ctx, e.into()).await.map(|()| true),
    }
}

/// A TRUNCATE of a followed table stops the consumer.
pub(super) fn truncate(
    ctx: &FollowContext,
    relations: &Relations,
    t: &TruncateBody,
) -> Result<(), PipelineError> {
    for oid in &t.relation_ids {
        let followed = relations
            .get(*oid)
            .map_err(|e| PipelineError::from(StopReason::Relation(e)))?;
        if let Some(r) = followed {
            return Err(StopReason::Truncate {
                table: ctx.plan.sources[r.source].table.to_string(),
            }
            .into());
        }
    }
    Ok(())
}
