//! What each pgoutput message means to the consumer, whether a group is open or not: the one
//! place that decides which messages carry changes, and which transactions were applied
//! before (a restart streams from the applied LSN's transaction boundary, so the first
//! transactions may be ones the target already holds).
//!
//! Every message kind is named here: a new kind (or one switchyard never asks for, such as a
//! streamed transaction) can never fall through silently and drop changes.

use crate::pg::lsn::Lsn;
use crate::pg::pgoutput::{
    BeginBody, CommitBody, LogicalReplicationMessage as Msg, RelationBody, TruncateBody,
};
use crate::source::fence::fence_id;
use crate::source::row_change::ChangeMessage;

use crate::pipeline::error::{PipelineError, StopReason};

/// One message, classified.
#[derive(Debug)]
pub(super) enum Step<'m> {
    /// Nothing to do: a message that changes no row, or one of a transaction already applied.
    Nothing,
    /// A transaction starts.
    Begin(&'m BeginBody),
    /// The stream describes a table: map it onto the plan.
    Relation(&'m RelationBody),
    /// A row change of a transaction not yet applied.
    Change(ChangeMessage<'m>),
    /// A TRUNCATE in a transaction not yet applied.
    Truncate(&'m TruncateBody),
    /// This migration's fence, in a transaction not yet applied (see
    /// [`crate::source::fence`]).
    Fence(&'m str),
    /// A transaction ends; `skipped` when it was applied before.
    Commit { body: &'m CommitBody, skipped: bool },
}

/// The consumer's place in the stream: inside a transaction applied before, or not.
#[derive(Debug)]
pub(super) struct Dispatch {
    /// What the target holds: a transaction committed before it is skipped.
    applied: Lsn,
    skipping: bool,
}

impl Dispatch {
    /// Starts between transactions, with everything up to `applied` in the target.
    pub(super) fn new(applied: Lsn) -> Dispatch {
        Dispatch {
            applied,
            skipping: false,
        }
    }

    /// Logs a Begin met between groups. Not in a group: at the debug level, one line per
    /// transaction under load is noise.
    pub(super) fn trace_begin(&self, b: &BeginBody) {
        tracing::debug!(final_lsn = %b.final_lsn, applied = %self.applied, skipping = self.skipping, "begin");
    }

    /// Classifies `message` of migration `migration`'s stream.
    pub(super) fn step<'m>(
        &mut self,
        message: &'m Msg,
        migration: &str,
    ) -> Result<Step<'m>, PipelineError> {
        let applying = !self.skipping;
        Ok(match message {
            Msg::Begin(b) => {
                self.skipping = b.final_lsn < self.applied;
                Step::Begin(b)
            }
            Msg::Commit(body) => {
                self.skipping = false;
                Step::Commit {
                    body,
                    skipped: !applying,
                }
            }
            // Relations are described whether or not their transaction is skipped: later
            // changes refer to them.
            Msg::Relation(r) => Step::Relation(r),
            Msg::Insert(i) if applying => Step::Change(ChangeMessage::Insert(i)),
            Msg::Update(u) if applying => Step::Change(ChangeMessage::Update(u)),
            Msg::Delete(d) if applying => Step::Change(ChangeMessage::Delete(d)),
            Msg::Truncate(t) if applying => Step::Truncate(t),
            Msg::Insert(_) | Msg::Update(_) | Msg::Delete(_) | Msg::Truncate(_) => Step::Nothing,
            Msg::Message(m) if applying => match fence_id(&m.prefix, &m.content, migration) {
                Some(id) => Step::Fence(id),
                // Another tool's message, or another migration's fence: no row changes.
                None => Step::Nothing,
            },
            Msg::Message(_) => Step::Nothing,
            // A type's OID and name: switchyard reads every value as text.
            Msg::Type(_) => Step::Nothing,
            // Where a replayed transaction came from: its changes are applied all the same.
            Msg::Origin(_) => Step::Nothing,
            Msg::StreamStart(_) => return Err(streamed("Stream Start")),
            Msg::StreamStop => return Err(streamed("Stream Stop")),
            Msg::StreamCommit(_) => return Err(streamed("Stream Commit")),
            Msg::StreamAbort(_) => return Err(streamed("Stream Abort")),
        })
    }
}

/// A streamed in-progress transaction: its changes arrive before it commits, interleaved
/// with other transactions, and would need buffering per xid until Stream Commit.
fn streamed(kind: &'static str) -> PipelineError {
    StopReason::Streamed { kind }.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::pgoutput::{
        InsertBody, StreamAbortBody, StreamCommitBody, StreamStartBody, TupleData,
    };
    use crate::pg::replication_message::PgTimestamp;

    fn begin(final_lsn: u64) -> Msg {
        Msg::Begin(BeginBody {
            final_lsn: Lsn(final_lsn),
            commit_timestamp: PgTimestamp(0),
            xid: 1,
        })
    }

    fn insert() -> Msg {
        Msg::Insert(InsertBody {
            xid: None,
            relation_id: 1,
            new_tuple: TupleData { columns: vec![] },
        })
    }

    #[test]
    fn changes_of_a_transaction_applied_before_are_skipped() {
        let mut dispatch = Dispatch::new(Lsn(100));
        dispatch.step(&begin(50), "m").unwrap();
        assert!(matches!(
            dispatch.step(&insert(), "m").unwrap(),
            Step::Nothing
        ));
        dispatch.step(&begin(150), "m").unwrap();
        assert!(matches!(
            dispatch.step(&insert(), "m").unwrap(),
            Step::Change(_)
        ));
    }

    #[test]
    fn every_streaming_message_stops_the_consumer_even_in_a_skipped_transaction() {
        let messages = [
            (
                Msg::StreamStart(StreamStartBody {
                    xid: 7,
                    first_segment: true,
                }),
                "Stream Start",
            ),
            (Msg::StreamStop, "Stream Stop"),
            (
                Msg::StreamCommit(StreamCommitBody {
                    xid: 7,
                    flags: 0,
                    commit_lsn: Lsn(10),
                    end_lsn: Lsn(11),
                    commit_timestamp: PgTimestamp(0),
                }),
                "Stream Commit",
            ),
            (
                Msg::StreamAbort(StreamAbortBody {
                    xid: 7,
                    subxid: 7,
                    abort_lsn: None,
                    abort_timestamp: None,
                }),
                "Stream Abort",
            ),
        ];
        for (message, kind) in &messages {
            for skipping in [false, true] {
                let mut dispatch = Dispatch::new(Lsn(100));
                if skipping {
                    dispatch.step(&begin(50), "m").unwrap();
                }
                let err = match dispatch.step(message, "m") {
                    Err(e) => e.to_string(),
                    Ok(_) => panic!("{kind} was let through (skipping: {skipping})"),
                };
                assert!(
                    err.contains(kind) && err.contains("switchyard stops"),
                    "{err}"
                );
            }
        }
    }
}
