//! pgoutput, the logical replication protocol's messages: what each XLogData payload of a
//! logical slot holds when the slot's output plugin is `pgoutput`.
//!
//! The WAL consumer reads XLogData ([`replication_message`](crate::pg::replication_message)),
//! hands each payload to a [`Decoder`] and gets a typed [`LogicalReplicationMessage`]. This
//! layer does no I/O, so it is tested on bytes captured from PostgreSQL 15 and on arbitrary
//! bytes, which it must reject without panicking: the payload comes from the network.
//!
//! ```text
//!   B(final_lsn, xid)                        one transaction, protocol 1
//!   O(origin)?                               replayed from another node
//!   Y(type)* R(relation)                     before a table's first change, and after DDL
//!   I / U / D / T / M ...                    changes, by relation oid
//!   C(commit_lsn, end_lsn)                   end_lsn: where to restart once applied
//! ```
//!
//! Protocol 2 adds streamed transactions (see [`Decoder`]). Two things the applier must know,
//! both visible in the fixtures: an Update's new tuple can say `'u'` (unchanged TOAST, see
//! [`TupleColumn::UnchangedToast`]), and old key tuples (`K`) carry every column, NULL outside
//! the key.
//!
//! Supported: protocol versions 1 and 2, the parallel-streaming tail of Stream Abort from 4.
//! Rejected with [`DecodeError::TwoPhase`]: protocol 3's two-phase messages, which switchyard
//! does not request.
//!
//! <https://www.postgresql.org/docs/15/protocol-logicalrep-message-formats.html>

mod decode;
mod decoder;
mod error;
mod message;
mod reader;
mod tuple;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod tests;

pub use decoder::Decoder;
pub use error::DecodeError;
pub use message::{
    BeginBody, Column, CommitBody, DeleteBody, InsertBody, LogicalReplicationMessage, MessageBody,
    OriginBody, RelationBody, ReplicaIdentity, StreamAbortBody, StreamCommitBody, StreamStartBody,
    TruncateBody, TypeBody, UpdateBody, BEGIN_TAG, COLUMN_FLAG_KEY, COMMIT_TAG, DELETE_TAG,
    INSERT_TAG, MESSAGE_FLAG_TRANSACTIONAL, MESSAGE_TAG, ORIGIN_TAG, RELATION_TAG,
    STREAM_ABORT_TAG, STREAM_COMMIT_TAG, STREAM_START_TAG, STREAM_STOP_TAG, TRUNCATE_CASCADE,
    TRUNCATE_RESTART_IDENTITY, TRUNCATE_TAG, TWO_PHASE_TAGS, TYPE_TAG, UPDATE_TAG,
};
pub use tuple::{
    OldTuple, TupleColumn, TupleData, COLUMN_BINARY, COLUMN_NULL, COLUMN_TEXT,
    COLUMN_UNCHANGED_TOAST, KEY_TUPLE_TAG, NEW_TUPLE_TAG, OLD_TUPLE_TAG,
};
