//! Errors of the backfill's workers and of the WAL consumer, by what the caller must do (see
//! [`crate::error::ErrorClass`]): a lost source or target connection (retry or resume), a bad
//! row under `--on-error stop`, or a stop the consumer must not apply past ([`StopReason`]:
//! DDL, TRUNCATE, a lost slot), each naming its fix.

use crate::checkpoint::CheckpointError;
use crate::error::{Classify, ErrorClass};
use crate::pg::connect::ConnectError;
use crate::sink::copy_in::WriteError;
use crate::sink::dead_letter::BadRow;
use crate::sink::replication_role::ReplicationRoleError;
use crate::source::current_row::FetchError;
use crate::source::identity::IdentityError;
use crate::source::relations::RelationError;
use crate::source::replication::ReplicationError;
use crate::source::row_change::{KeyMissing, RowChangeError};
use crate::source::wal_stream::WalStreamError;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("source: {context}")]
    Source {
        context: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("target: {context}")]
    Target {
        context: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    ReplicationRole(#[from] crate::sink::replication_role::ReplicationRoleError),
    #[error("{table}: row {key} rejected ({reason}); stopping because of --on-error stop. A backfill reads the row again on `--resume`, so fixing it there is enough; the consumer meets this version again on every start, whatever the source holds now, so it goes on only with `--on-error dead-letter` (which records it) or a fixed plan (then `switchyard abort` and backfill again)")]
    BadRow {
        table: String,
        key: String,
        reason: String,
    },
    #[error("a transform worker panicked")]
    WorkerPanicked,
    /// The WAL consumer met something it must not apply past (DDL, TRUNCATE, a lost slot).
    #[error(transparent)]
    Stopped(#[from] StopReason),
    #[error("replication stream")]
    Stream(#[from] crate::source::wal_stream::WalStreamError),
    /// Apply lane `lane`'s share of a group met an order between lanes the source never had
    /// (two rows exchanging a unique value through different lanes, a lock one lane waits for
    /// while another holds it): the consumer starts again from the lanes' positions and
    /// applies every source commit up to `through` in one transaction per group, in source
    /// order (see `pipeline::follow::lane`).
    #[error("apply lane {lane}: {}{reason}; applying up to {through} again in one transaction per group", .table.as_ref().map(|t| format!("writing into {t}: ")).unwrap_or_default())]
    LaneConflict {
        lane: usize,
        table: Option<String>,
        reason: String,
        through: crate::pg::lsn::Lsn,
    },
    /// A `backfill --resume` elsewhere exported a newer snapshot while this process copied
    /// under the old one: it stops taking chunks (they are now copied with upserts).
    #[error("another process resumed the backfill under a new snapshot; this one stops copying. Start `switchyard backfill --join` again to go on helping")]
    SnapshotReplaced,
    /// The server ended the stream (CopyDone): it is shutting down or the walsender was told
    /// to stop.
    #[error("the server ended the replication stream")]
    StreamEnded,
}

impl PipelineError {
    pub fn source(context: impl Into<String>, source: tokio_postgres::Error) -> Self {
        PipelineError::Source {
            context: context.into(),
            source,
        }
    }

    pub fn target(context: impl Into<String>, source: tokio_postgres::Error) -> Self {
        PipelineError::Target {
            context: context.into(),
            source,
        }
    }
}

/// The class of each variant; `BadRow` alone is the row's, and `--on-error` decides.
impl Classify for PipelineError {
    fn class(&self) -> ErrorClass {
        match self {
            PipelineError::Source { source, .. } | PipelineError::Target { source, .. } => {
                source.class()
            }
            PipelineError::Write(w) => w.class(),
            PipelineError::Checkpoint(c) => c.class(),
            PipelineError::Connect(c) => c.class(),
            PipelineError::ReplicationRole(r) => r.class(),
            PipelineError::Stream(s) => s.class(),
            PipelineError::StreamEnded | PipelineError::LaneConflict { .. } => {
                ErrorClass::Transient
            }
            PipelineError::BadRow { .. } => ErrorClass::Input,
            PipelineError::WorkerPanicked
            | PipelineError::Stopped(_)
            | PipelineError::SnapshotReplaced => ErrorClass::Definite,
        }
    }
}

impl PipelineError {
    /// A deadlock or serialization failure: the transaction was rolled back and may simply be
    /// run again.
    pub fn is_retryable(&self) -> bool {
        let code = match self {
            PipelineError::Source { source, .. } | PipelineError::Target { source, .. } => {
                source.code()
            }
            PipelineError::Write(w) => w.source.code(),
            _ => None,
        };
        code.is_some_and(|c| {
            *c == tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED
                || *c == tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE
        })
    }
}

/// Why the WAL consumer stopped rather than apply past a change: applying on would diverge from
/// the source, and retrying meets the same change again. Each message names the fix.
#[derive(Debug, thiserror::Error)]
pub enum StopReason {
    #[error("TRUNCATE of source table {table} cannot be followed by key; switchyard stops rather than diverge. \
             Truncate the output tables the same way if that is intended, then `switchyard abort` and backfill again")]
    Truncate { table: String },
    /// DDL seen on the stream (a column gone or retyped, a replica identity that no longer
    /// covers the key, a replaced table), or a change the relations cannot map.
    #[error(transparent)]
    Relation(#[from] RelationError),
    /// A followed table is not what the plan names (the identity checks on the catalog).
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("source table {table} was renamed to {now}, and the catalog could not be read to see whether it has its name back; run `switchyard follow` again")]
    RenameUnchecked { table: String, now: String },
    #[error("replication slot {slot} is gone: the changes since the backfill cannot be streamed. `switchyard abort` and backfill again")]
    SlotGone { slot: String },
    #[error("replication slot {slot} was invalidated (max_slot_wal_keep_size exceeded): WAL it needed is gone. \
             `switchyard abort` and backfill again, with a larger max_slot_wal_keep_size or a faster consumer")]
    SlotInvalidated { slot: String },
    /// A change whose plan key the stream did not send.
    #[error(transparent)]
    Key(#[from] KeyMissing),
    /// The replication stream streamed an in-progress transaction, which switchyard never
    /// asks for; `kind` is the message (Stream Start, Stop, Commit, Abort).
    #[error("the replication stream sent a {kind} message: a large transaction streamed before it committed, which switchyard does not ask for (it starts pgoutput without `streaming`) and cannot apply in order; switchyard stops rather than drop its changes. Make sure nothing else consumes or alters the slot, then run `switchyard follow` again")]
    Streamed { kind: &'static str },
}

impl From<BadRow> for PipelineError {
    fn from(BadRow { table, key, reason }: BadRow) -> Self {
        PipelineError::BadRow { table, key, reason }
    }
}

impl From<RowChangeError> for PipelineError {
    fn from(e: RowChangeError) -> Self {
        match e {
            RowChangeError::Read(FetchError::Read(e)) => {
                PipelineError::source("reading a row for a value the stream does not carry", e)
            }
            RowChangeError::Read(FetchError::Connect(e)) => PipelineError::Connect(e),
            RowChangeError::Relation(e) => StopReason::Relation(e).into(),
            RowChangeError::Key(e) => StopReason::Key(e).into(),
        }
    }
}

/// The class of an error anywhere in an `anyhow` chain: `Transient` when any link is (a
/// definite-looking wrapper around a lost connection is still a lost connection), else the
/// class of the outermost link that has one, else `Definite`.
pub fn class_of(e: &anyhow::Error) -> ErrorClass {
    let classes: Vec<ErrorClass> = e.chain().filter_map(class_of_link).collect();
    if classes.contains(&ErrorClass::Transient) {
        ErrorClass::Transient
    } else {
        classes.first().copied().unwrap_or(ErrorClass::Definite)
    }
}

/// The class of one link, when its type has one.
fn class_of_link(link: &(dyn std::error::Error + 'static)) -> Option<ErrorClass> {
    fn as_class<E: Classify + std::error::Error + 'static>(
        link: &(dyn std::error::Error + 'static),
    ) -> Option<ErrorClass> {
        link.downcast_ref::<E>().map(Classify::class)
    }
    as_class::<PipelineError>(link)
        .or_else(|| as_class::<ConnectError>(link))
        .or_else(|| as_class::<CheckpointError>(link))
        .or_else(|| as_class::<ReplicationError>(link))
        .or_else(|| as_class::<WalStreamError>(link))
        .or_else(|| as_class::<WriteError>(link))
        .or_else(|| as_class::<ReplicationRoleError>(link))
        .or_else(|| as_class::<tokio_postgres::Error>(link))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_is_definite_and_a_bad_row_is_input() {
        let stop: PipelineError = StopReason::Truncate {
            table: "public.t".into(),
        }
        .into();
        assert_eq!(stop.class(), ErrorClass::Definite);
        let bad_row = PipelineError::BadRow {
            table: "public.t".into(),
            key: "1".into(),
            reason: "no".into(),
        };
        assert_eq!(bad_row.class(), ErrorClass::Input);
    }

    #[test]
    fn a_lost_connection_anywhere_in_the_chain_is_transient() {
        let e = anyhow::Error::new(PipelineError::StreamEnded).context("following");
        assert_eq!(class_of(&e), ErrorClass::Transient);
        let closed = ReplicationError::Closed { dsn: "x".into() };
        let e = anyhow::Error::new(WalStreamError::Replication(closed)).context("following");
        assert_eq!(class_of(&e), ErrorClass::Transient);
    }

    #[test]
    fn the_outermost_class_answers_when_nothing_is_transient() {
        let bad_row = PipelineError::BadRow {
            table: "public.t".into(),
            key: "1".into(),
            reason: "no".into(),
        };
        assert_eq!(
            class_of(&anyhow::Error::new(bad_row).context("following")),
            ErrorClass::Input
        );
        assert_eq!(class_of(&anyhow::anyhow!("no plan")), ErrorClass::Definite);
    }
}
