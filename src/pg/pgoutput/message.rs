//! The typed pgoutput messages, one body per protocol message, named as in PostgreSQL's
//! "Logical Replication Message Formats" page.
//!
//! Inside a streamed chunk (protocol version 2, between Stream Start and Stream Stop) the change
//! messages Relation, Type, Insert, Update, Delete, Truncate and Message start with the xid of
//! the transaction they belong to, which can be a subtransaction's. Their bodies carry it as
//! `xid: Option<u32>`: `Some` exactly when the message came inside a streamed chunk.
//!
//! <https://www.postgresql.org/docs/15/protocol-logicalrep-message-formats.html>

use bytes::Bytes;

use super::tuple::{OldTuple, TupleData};
use crate::pg::lsn::Lsn;
use crate::pg::replication_message::PgTimestamp;

pub const BEGIN_TAG: u8 = b'B';
pub const COMMIT_TAG: u8 = b'C';
pub const ORIGIN_TAG: u8 = b'O';
pub const RELATION_TAG: u8 = b'R';
pub const TYPE_TAG: u8 = b'Y';
pub const INSERT_TAG: u8 = b'I';
pub const UPDATE_TAG: u8 = b'U';
pub const DELETE_TAG: u8 = b'D';
pub const TRUNCATE_TAG: u8 = b'T';
pub const MESSAGE_TAG: u8 = b'M';
pub const STREAM_START_TAG: u8 = b'S';
pub const STREAM_STOP_TAG: u8 = b'E';
pub const STREAM_COMMIT_TAG: u8 = b'c';
pub const STREAM_ABORT_TAG: u8 = b'A';

/// Two-phase commit messages (protocol version 3, `two_phase 'on'`). switchyard never asks for
/// them; the decoder names them in its error instead of calling them unknown.
pub const TWO_PHASE_TAGS: [(u8, &str); 5] = [
    (b'b', "Begin Prepare"),
    (b'P', "Prepare"),
    (b'K', "Commit Prepared"),
    (b'r', "Rollback Prepared"),
    (b'p', "Stream Prepare"),
];

/// Relation column flag: the column is part of the replica identity key. Under REPLICA
/// IDENTITY FULL every column carries it.
pub const COLUMN_FLAG_KEY: u8 = 1;
/// Truncate option: `TRUNCATE ... CASCADE`.
pub const TRUNCATE_CASCADE: u8 = 1;
/// Truncate option: `TRUNCATE ... RESTART IDENTITY`.
pub const TRUNCATE_RESTART_IDENTITY: u8 = 2;
/// Message flag: the message was emitted as part of its transaction (`pg_logical_emit_message
/// (true, ...)`) and is sent between Begin and Commit; otherwise it is sent at once, alone.
pub const MESSAGE_FLAG_TRANSACTIONAL: u8 = 1;

/// One pgoutput message: the payload of one XLogData.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogicalReplicationMessage {
    Begin(BeginBody),
    Commit(CommitBody),
    Origin(OriginBody),
    Relation(RelationBody),
    Type(TypeBody),
    Insert(InsertBody),
    Update(UpdateBody),
    Delete(DeleteBody),
    Truncate(TruncateBody),
    /// A logical decoding message (`pg_logical_emit_message`), sent with `messages 'true'`.
    Message(MessageBody),
    StreamStart(StreamStartBody),
    StreamStop,
    StreamCommit(StreamCommitBody),
    StreamAbort(StreamAbortBody),
}

impl LogicalReplicationMessage {
    /// The xid a change message carries inside a streamed chunk; `None` outside one and for
    /// messages that never carry it there.
    pub fn streamed_xid(&self) -> Option<u32> {
        match self {
            LogicalReplicationMessage::Relation(body) => body.xid,
            LogicalReplicationMessage::Type(body) => body.xid,
            LogicalReplicationMessage::Insert(body) => body.xid,
            LogicalReplicationMessage::Update(body) => body.xid,
            LogicalReplicationMessage::Delete(body) => body.xid,
            LogicalReplicationMessage::Truncate(body) => body.xid,
            LogicalReplicationMessage::Message(body) => body.xid,
            _ => None,
        }
    }
}

/// `B`: a transaction starts; its changes follow, then Commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BeginBody {
    /// The LSN of the commit record (the Commit's `commit_lsn`).
    pub final_lsn: Lsn,
    /// The commit time; for a transaction replayed with a replication origin, the origin's.
    pub commit_timestamp: PgTimestamp,
    pub xid: u32,
}

/// `C`: the transaction started by the last Begin has committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitBody {
    /// Currently unused (0).
    pub flags: u8,
    pub commit_lsn: Lsn,
    /// The end of the commit record: where to restart after applying this transaction, and
    /// what to report as flushed once it is durable in the target.
    pub end_lsn: Lsn,
    pub commit_timestamp: PgTimestamp,
}

/// `O`: the transaction was replayed from another node (after Begin, or after Stream Start).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginBody {
    /// The commit's LSN on the origin server; `0/0` after Stream Start.
    pub commit_lsn: Lsn,
    pub name: String,
}

/// `R`: the shape of a table, sent before its first change in a session and again after any
/// change to it (DDL, TRUNCATE). Later changes name the table only by `relation_id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelationBody {
    pub xid: Option<u32>,
    pub relation_id: u32,
    /// Empty for `pg_catalog`.
    pub namespace: String,
    pub name: String,
    pub replica_identity: ReplicaIdentity,
    pub columns: Vec<Column>,
}

/// The table's REPLICA IDENTITY: which old values Update and Delete carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReplicaIdentity {
    /// `d`: the primary key's columns.
    Default,
    /// `n`: nothing; updates and deletes cannot be applied by key.
    Nothing,
    /// `f`: every column.
    Full,
    /// `i`: the columns of a chosen unique index.
    Index,
}

impl ReplicaIdentity {
    /// `relreplident` as sent on the wire.
    pub fn from_byte(byte: u8) -> Option<ReplicaIdentity> {
        match byte {
            b'd' => Some(ReplicaIdentity::Default),
            b'n' => Some(ReplicaIdentity::Nothing),
            b'f' => Some(ReplicaIdentity::Full),
            b'i' => Some(ReplicaIdentity::Index),
            _ => None,
        }
    }
}

/// One column of a Relation, in table order (dropped and generated columns are left out).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// [`COLUMN_FLAG_KEY`] or 0.
    pub flags: u8,
    pub name: String,
    pub type_id: u32,
    /// `atttypmod`: -1 for none, else type-specific (`varchar(40)` is 44, length + 4).
    pub type_modifier: i32,
}

impl Column {
    /// Part of the replica identity key.
    pub fn is_key(&self) -> bool {
        self.flags & COLUMN_FLAG_KEY != 0
    }
}

/// `Y`: a non-built-in type (enum, domain, extension type) used by the next Relation, so the
/// client can map its oid to a name. Sent again before every Relation that uses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeBody {
    pub xid: Option<u32>,
    pub type_id: u32,
    /// Empty for `pg_catalog`.
    pub namespace: String,
    pub name: String,
}

/// `I`: a new row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InsertBody {
    pub xid: Option<u32>,
    pub relation_id: u32,
    pub new_tuple: TupleData,
}

/// `U`: a changed row. The new row may hold [`TupleColumn::UnchangedToast`](super::TupleColumn)
/// for TOASTed values the update did not touch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdateBody {
    pub xid: Option<u32>,
    pub relation_id: u32,
    /// `K` when the key changed (REPLICA IDENTITY DEFAULT or INDEX), `O` always under FULL,
    /// absent otherwise: then the key is in `new_tuple`.
    pub old_tuple: Option<OldTuple>,
    pub new_tuple: TupleData,
}

/// `D`: a deleted row, identified by its key (`K`) or by all its values (`O`, under FULL).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeleteBody {
    pub xid: Option<u32>,
    pub relation_id: u32,
    pub old_tuple: OldTuple,
}

/// `T`: `TRUNCATE` of one or more published tables in one statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TruncateBody {
    pub xid: Option<u32>,
    /// [`TRUNCATE_CASCADE`] | [`TRUNCATE_RESTART_IDENTITY`].
    pub options: u8,
    pub relation_ids: Vec<u32>,
}

impl TruncateBody {
    pub fn cascade(&self) -> bool {
        self.options & TRUNCATE_CASCADE != 0
    }

    pub fn restart_identity(&self) -> bool {
        self.options & TRUNCATE_RESTART_IDENTITY != 0
    }
}

/// `M`: a logical decoding message, switchyard's fence marker among them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageBody {
    pub xid: Option<u32>,
    /// [`MESSAGE_FLAG_TRANSACTIONAL`] or 0.
    pub flags: u8,
    /// The message's position. Observed on PostgreSQL 15: the end of its WAL record, so in a
    /// transaction that holds only the message it equals the Commit's `commit_lsn`.
    pub lsn: Lsn,
    pub prefix: String,
    /// Arbitrary bytes, a slice of the received payload.
    pub content: Bytes,
}

impl MessageBody {
    pub fn is_transactional(&self) -> bool {
        self.flags & MESSAGE_FLAG_TRANSACTIONAL != 0
    }
}

/// `S` (protocol 2): a chunk of an in-progress transaction's changes follows, until Stream
/// Stop. A transaction arrives as several chunks, then Stream Commit or Stream Abort.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamStartBody {
    pub xid: u32,
    /// The first chunk of this transaction.
    pub first_segment: bool,
}

/// `c` (protocol 2): the streamed transaction `xid` committed; apply its chunks now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamCommitBody {
    pub xid: u32,
    /// Currently unused (0).
    pub flags: u8,
    pub commit_lsn: Lsn,
    pub end_lsn: Lsn,
    pub commit_timestamp: PgTimestamp,
}

/// `A` (protocol 2): discard the streamed changes of `subxid`; when it equals `xid`, the whole
/// transaction rolled back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamAbortBody {
    pub xid: u32,
    pub subxid: u32,
    /// Protocol 4 with `streaming 'parallel'` (PostgreSQL 16+) only; `None` before.
    pub abort_lsn: Option<Lsn>,
    /// Present together with `abort_lsn`.
    pub abort_timestamp: Option<PgTimestamp>,
}
