//! What the consumer may report to the server as flushed (the slot's `confirmed_flush_lsn`):
//! the smaller of what the target committed and what the last identity check proved.
//!
//! ```text
//!   received commit at R ──> identity check passes (a read made after R arrived, so it sees
//!                            every DROP, rename, publication change committed before R)
//!                        ──> proven = R
//!   report min(applied, proven)
//! ```
//! A followed table dropped, replaced, unpublished or set UNLOGGED leaves no message in the
//! stream (see [`crate::source::identity`]); only the catalog tells. The checks run on a task
//! of their own ([`super::identity_watch`]), and the slot never moves past a commit that no
//! check has seen behind it.

use std::time::{Duration, Instant};

use crate::checkpoint::{self, MigrationStatus};
use crate::error::Chain;
use crate::pg::lsn::Lsn;
use crate::source::identity::{self, CheckError};

use super::error::{PipelineError, StopReason};
use super::follow::context::FollowContext;

/// How long a consumer that found a followed table renamed or gone waits for the cutover to be
/// recorded: the cutover's SQL (which may rename the legacy tables) commits on the source just
/// before the target records the cutover.
const CUTOVER_GRACE: Duration = Duration::from_secs(3);

/// The consumer's confirmed position, held back to what the catalog proved.
#[derive(Debug)]
pub(super) struct Confirmed {
    /// Everything up to here is committed in the target (or held nothing for it).
    done: Lsn,
    /// Every commit up to here was received before an identity check that passed.
    proven: Lsn,
}

/// Why the consumer stops after an identity check.
pub(super) enum Verdict {
    /// The followed tables are what the plan names: go on.
    Intact,
    /// The migration was cut over meanwhile: the renamed tables are the cutover's doing.
    CutOver,
}

impl Confirmed {
    /// `start` is the applied LSN the consumer starts from, proven by the check at start.
    pub(super) fn new(start: Lsn) -> Confirmed {
        Confirmed {
            done: start,
            proven: start,
        }
    }

    /// Records that everything up to `lsn` is done; returns the position to report.
    pub(super) fn done(&mut self, lsn: Lsn) -> Lsn {
        self.done = self.done.max(lsn);
        self.position()
    }

    /// The position to report: `min(done, proven)`.
    pub(super) fn position(&self) -> Lsn {
        self.done.min(self.proven)
    }

    /// Records what a check proved (see [`super::identity_watch`]): every commit up to `lsn`.
    pub(super) fn prove(&mut self, lsn: Lsn) {
        self.proven = self.proven.max(lsn);
    }
}

/// Checks the followed tables now, for a Relation message that names one differently.
/// `Ok(None)` when the catalog could not be read.
pub(super) async fn verify(ctx: &FollowContext) -> Result<Option<Verdict>, PipelineError> {
    match identity::check(
        &ctx.source,
        &ctx.plan,
        &ctx.oids,
        &ctx.publication,
        &ctx.publication_rels,
    )
    .await
    {
        Ok(()) => Ok(Some(Verdict::Intact)),
        Err(CheckError::Catalog(e)) => {
            tracing::warn!(
                "could not check the source tables in the catalog ({}); the slot's confirmed position waits for the next check",
                Chain::new(&e)
            );
            Ok(None)
        }
        Err(CheckError::Identity(e)) => unless_cut_over(ctx, e.into())
            .await
            .map(|()| Some(Verdict::CutOver)),
    }
}

/// Stops for `reason`, unless the migration turns out to be cut over within
/// [`CUTOVER_GRACE`] (then `Ok`).
pub(super) async fn unless_cut_over(
    ctx: &FollowContext,
    reason: StopReason,
) -> Result<(), PipelineError> {
    let deadline = Instant::now() + CUTOVER_GRACE;
    loop {
        let status = checkpoint::load(&ctx.monitor, &ctx.plan.name)
            .await?
            .map(|m| m.status);
        if status == Some(MigrationStatus::CutOver) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(reason.into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
