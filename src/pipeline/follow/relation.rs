//! The messages about a whole table. Relation: the stream describes a table before its first
//! change after a start and after DDL on it; it is mapped onto the plan by OID
//! ([`Relations::describe`]), and a followed table under another name is checked in the
//! catalog. Truncate: a followed table's stops the consumer.

use crate::pg::pgoutput::{RelationBody, TruncateBody};
use crate::source::relations::{Described, Relations};

use super::super::confirm::{unless_cut_over, verify, Verdict};
use super::super::error::PipelineError;
use super::FollowContext;

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
                None => Err(PipelineError::Stopped(format!(
                    "source table {plan_name} was renamed to {now}, and the catalog could not be read to see whether it has its name back; run `switchyard follow` again"
                ))),
            }
        }
        Err(e) => unless_cut_over(ctx, e.to_string()).await.map(|()| true),
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
            .map_err(|e| PipelineError::Stopped(e.to_string()))?;
        if let Some(r) = followed {
            return Err(PipelineError::Stopped(format!(
                "TRUNCATE of source table {} cannot be followed by key; switchyard stops rather than diverge. \
                 Truncate the output tables the same way if that is intended, then `switchyard abort` and backfill again",
                ctx.plan.sources[r.source].table
            )));
        }
    }
    Ok(())
}
