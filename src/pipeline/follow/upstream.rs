//! What the consumer reads from the source between two messages: the WAL stream, the heartbeat
//! that says whether the migration was cut over, and the identity checks' news, which say how
//! far the slot may be confirmed.

use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::pg::lsn::Lsn;
use crate::pg::pgoutput::LogicalReplicationMessage as Msg;
use crate::source::wal_stream::{WalEvent, WalStream, STATUS_INTERVAL};

use super::context::{FollowContext, IDLE_COMMIT};
use crate::pipeline::confirm::{unless_cut_over, Confirmed};
use crate::pipeline::error::PipelineError;
use crate::pipeline::heartbeat::beat;
use crate::pipeline::identity_watch::{Checked, IdentityWatch};
use crate::pipeline::wal_pump::WalPump;

/// What the consumer reads from the source: the WAL stream, and the identity checks that say
/// how far it may be confirmed.
pub struct Upstream {
    pub stream: WalStream,
    pub identity: IdentityWatch,
}

/// With groups sent to the lanes and not yet committed, the stream's silence is cut this
/// short to take the lanes' reports (the fence and the slot wait on them).
const IN_FLIGHT_POLL: Duration = Duration::from_millis(10);

/// What the consumer holds unapplied, which decides how long a silence of the stream lasts.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pending {
    /// A group is open.
    pub(super) open: bool,
    /// A transaction of the open group committed: it may end now.
    pub(super) committed: bool,
    /// Groups were sent to the lanes and not yet committed by all of them.
    pub(super) in_flight: bool,
    /// When the oldest source commit not yet applied committed.
    pub(super) first_commit_micros: Option<i64>,
}

/// The stream as the consumer follows it.
pub(super) struct Feed {
    stream: WalPump,
    identity: IdentityWatch,
    confirmed: Confirmed,
    /// The end of the last commit (or keepalive) received.
    pub(super) received: Lsn,
    last_heartbeat: Instant,
    /// The migration was cut over: nothing more is the consumer's to apply.
    pub(super) cut_over: bool,
}

impl Feed {
    /// Streams from `applied`, which the target holds.
    pub(super) fn start(upstream: Upstream, applied: Lsn) -> Feed {
        let Upstream { stream, identity } = upstream;
        Feed {
            stream: WalPump::start(stream, applied),
            identity,
            confirmed: Confirmed::new(applied),
            received: applied,
            last_heartbeat: Instant::now(),
            cut_over: false,
        }
    }

    /// The next message; `None` when the stream is idle or caught up. With a transaction of
    /// the open group committed, a short silence is idle; with groups in flight, the lanes'
    /// reports are looked at again soon.
    pub(super) async fn next(
        &mut self,
        ctx: &FollowContext,
        pending: Pending,
    ) -> Result<Option<Msg>, PipelineError> {
        if self.last_heartbeat.elapsed() >= STATUS_INTERVAL {
            self.cut_over = beat(ctx, self.received, pending.first_commit_micros).await?;
            self.last_heartbeat = Instant::now();
        }
        if !self.cut_over {
            self.cut_over = self.checked(ctx).await?;
        }
        let idle = if pending.committed {
            IDLE_COMMIT
        } else if pending.in_flight {
            IN_FLIGHT_POLL
        } else {
            STATUS_INTERVAL
        };
        match self
            .stream
            .next(idle)
            .await
            .map_err(PipelineError::Stream)?
        {
            WalEvent::Message { message, .. } => Ok(Some(message)),
            WalEvent::Idle => Ok(None),
            WalEvent::Ended => Err(PipelineError::StreamEnded),
            WalEvent::CaughtUp { wal_end } => {
                self.received = self.received.max(wal_end);
                if !pending.open && !pending.in_flight {
                    // Between transactions, with nothing applied still pending: all done up to it.
                    self.done(wal_end);
                }
                Ok(None)
            }
        }
    }

    /// Everything up to `lsn` is applied (or needs nothing): reports how far the server may
    /// consider it confirmed.
    pub(super) fn done(&mut self, lsn: Lsn) {
        self.stream.flushed(self.confirmed.done(lsn));
    }

    /// Waits while the migration is paused, reading nothing: the pump stops once its queue is
    /// full and keeps the connection alive with status messages that confirm nothing new, so
    /// the slot retains the WAL written meanwhile. The heartbeat goes on (`watch` sees a
    /// running consumer, and a cutover is noticed). Returns when the pause is lifted, a stop
    /// is requested or the migration was cut over; the caller looks at which.
    pub(super) async fn paused(
        &mut self,
        ctx: &FollowContext,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), PipelineError> {
        tracing::info!("paused: applying nothing until `switchyard resume`");
        while ctx.gate.paused() && !*shutdown.borrow() && !self.cut_over {
            if self.last_heartbeat.elapsed() >= STATUS_INTERVAL {
                self.cut_over = beat(ctx, self.received, None).await?;
                self.last_heartbeat = Instant::now();
            }
            tokio::select! {
                _ = ctx.gate.unpaused() => {}
                Ok(()) = shutdown.changed() => {}
                _ = tokio::time::sleep(STATUS_INTERVAL) => {}
            }
        }
        tracing::info!("resumed");
        Ok(())
    }

    /// Ends the stream cleanly.
    pub(super) async fn close(self) -> Result<(), PipelineError> {
        self.stream.close().await.map_err(PipelineError::Stream)
    }

    /// Takes the identity checks' news: a proof advances the position reported to the server, a
    /// failure stops the consumer (unless the migration was cut over meanwhile: then `true`).
    async fn checked(&mut self, ctx: &FollowContext) -> Result<bool, PipelineError> {
        self.identity.received(self.received);
        match self.identity.latest() {
            Some(Checked::Proven(lsn)) => {
                self.confirmed.prove(lsn);
                self.stream.flushed(self.confirmed.position());
                Ok(false)
            }
            Some(Checked::Failed(why)) => unless_cut_over(ctx, why.into()).await.map(|()| true),
            Some(Checked::Nothing) | None => Ok(false),
        }
    }
}
