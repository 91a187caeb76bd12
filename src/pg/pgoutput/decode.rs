//! The stateless parser: one payload plus "are we inside a streamed chunk" in, one typed message
//! out.
//!
//! Whether a change message starts with an xid depends on where it arrives, not on its bytes,
//! so the caller says so with `in_stream`; [`Decoder`](super::Decoder) keeps that bit for a
//! whole stream. Every message must be consumed exactly: trailing bytes are an error. That
//! catches fields from a newer protocol than the one requested, and a wrong `in_stream` on row
//! changes (a Type or Relation read with the wrong bit can still parse, into nonsense, which is
//! why the stream state belongs to the decoder rather than to each caller).

use bytes::Bytes;

use super::error::DecodeError;
use super::message::*;
use super::reader::Reader;
use super::tuple::{read_new_tuple, read_new_tuple_after, read_old_tuple_after};

/// The smallest Relation column on the wire: flags, an empty name's NUL, type oid, typmod.
const MIN_RELATION_COLUMN_LEN: usize = 1 + 1 + 4 + 4;
/// Each Truncate relation is one oid.
const TRUNCATE_RELATION_LEN: usize = 4;
/// Stream Abort's optional tail (protocol 4, parallel streaming): abort LSN and timestamp.
const STREAM_ABORT_PARALLEL_LEN: usize = 8 + 8;

impl LogicalReplicationMessage {
    /// Decodes one pgoutput message (the body of one XLogData). `in_stream` says whether it
    /// arrived between Stream Start and Stream Stop, where change messages carry an xid.
    /// Never panics; strings are copied, tuple values and message content share `data`.
    pub fn decode(data: Bytes, in_stream: bool) -> Result<LogicalReplicationMessage, DecodeError> {
        let Some(&tag) = data.first() else {
            return Err(DecodeError::Empty);
        };
        if let Some(&(_, message)) = TWO_PHASE_TAGS.iter().find(|(t, _)| *t == tag) {
            return Err(DecodeError::TwoPhase {
                tag: char::from(tag),
                message,
            });
        }
        let unknown = DecodeError::UnknownTag {
            tag: char::from(tag),
        };
        let Some(name) = message_name(tag) else {
            return Err(unknown);
        };
        let mut r = Reader::new(data.slice(1..), name);
        let streamed = |r: &mut Reader| -> Result<Option<u32>, DecodeError> {
            in_stream.then(|| r.u32("xid")).transpose()
        };
        let message = match tag {
            BEGIN_TAG => LogicalReplicationMessage::Begin(BeginBody {
                final_lsn: r.lsn("final LSN")?,
                commit_timestamp: r.timestamp("commit timestamp")?,
                xid: r.u32("xid")?,
            }),
            COMMIT_TAG => LogicalReplicationMessage::Commit(CommitBody {
                flags: r.u8("flags")?,
                commit_lsn: r.lsn("commit LSN")?,
                end_lsn: r.lsn("end LSN")?,
                commit_timestamp: r.timestamp("commit timestamp")?,
            }),
            ORIGIN_TAG => LogicalReplicationMessage::Origin(OriginBody {
                commit_lsn: r.lsn("origin commit LSN")?,
                name: r.string("origin name")?,
            }),
            RELATION_TAG => {
                LogicalReplicationMessage::Relation(relation(streamed(&mut r)?, &mut r)?)
            }
            TYPE_TAG => LogicalReplicationMessage::Type(TypeBody {
                xid: streamed(&mut r)?,
                type_id: r.u32("type oid")?,
                namespace: r.string("namespace")?,
                name: r.string("type name")?,
            }),
            INSERT_TAG => LogicalReplicationMessage::Insert(InsertBody {
                xid: streamed(&mut r)?,
                relation_id: r.u32("relation oid")?,
                new_tuple: read_new_tuple(&mut r)?,
            }),
            UPDATE_TAG => LogicalReplicationMessage::Update(update(streamed(&mut r)?, &mut r)?),
            DELETE_TAG => LogicalReplicationMessage::Delete(delete(streamed(&mut r)?, &mut r)?),
            TRUNCATE_TAG => {
                LogicalReplicationMessage::Truncate(truncate(streamed(&mut r)?, &mut r)?)
            }
            MESSAGE_TAG => LogicalReplicationMessage::Message(MessageBody {
                xid: streamed(&mut r)?,
                flags: r.u8("flags")?,
                lsn: r.lsn("message LSN")?,
                prefix: r.string("prefix")?,
                content: r.counted_bytes("content")?,
            }),
            STREAM_START_TAG => LogicalReplicationMessage::StreamStart(StreamStartBody {
                xid: r.u32("xid")?,
                first_segment: r.u8("first segment flag")? == 1,
            }),
            STREAM_STOP_TAG => LogicalReplicationMessage::StreamStop,
            STREAM_COMMIT_TAG => LogicalReplicationMessage::StreamCommit(StreamCommitBody {
                xid: r.u32("xid")?,
                flags: r.u8("flags")?,
                commit_lsn: r.lsn("commit LSN")?,
                end_lsn: r.lsn("end LSN")?,
                commit_timestamp: r.timestamp("commit timestamp")?,
            }),
            STREAM_ABORT_TAG => LogicalReplicationMessage::StreamAbort(stream_abort(&mut r)?),
            _ => return Err(unknown),
        };
        r.finish()?;
        Ok(message)
    }
}

/// The protocol's name for a message tag this decoder understands.
fn message_name(tag: u8) -> Option<&'static str> {
    Some(match tag {
        BEGIN_TAG => "Begin",
        COMMIT_TAG => "Commit",
        ORIGIN_TAG => "Origin",
        RELATION_TAG => "Relation",
        TYPE_TAG => "Type",
        INSERT_TAG => "Insert",
        UPDATE_TAG => "Update",
        DELETE_TAG => "Delete",
        TRUNCATE_TAG => "Truncate",
        MESSAGE_TAG => "Message",
        STREAM_START_TAG => "Stream Start",
        STREAM_STOP_TAG => "Stream Stop",
        STREAM_COMMIT_TAG => "Stream Commit",
        STREAM_ABORT_TAG => "Stream Abort",
        _ => return None,
    })
}

fn relation(xid: Option<u32>, r: &mut Reader) -> Result<RelationBody, DecodeError> {
    let relation_id = r.u32("relation oid")?;
    let namespace = r.string("namespace")?;
    let name = r.string("relation name")?;
    let identity = r.u8("replica identity")?;
    let replica_identity =
        ReplicaIdentity::from_byte(identity).ok_or(DecodeError::UnknownReplicaIdentity {
            identity: char::from(identity),
        })?;
    let count = r.i16("column count")?;
    let count = r.count(count.into(), MIN_RELATION_COLUMN_LEN, "column count")?;
    let mut columns = Vec::with_capacity(count);
    for _ in 0..count {
        columns.push(Column {
            flags: r.u8("column flags")?,
            name: r.string("column name")?,
            type_id: r.u32("column type oid")?,
            type_modifier: r.i32("column type modifier")?,
        });
    }
    Ok(RelationBody {
        xid,
        relation_id,
        namespace,
        name,
        replica_identity,
        columns,
    })
}

fn update(xid: Option<u32>, r: &mut Reader) -> Result<UpdateBody, DecodeError> {
    let relation_id = r.u32("relation oid")?;
    let tag = r.u8("old or new tuple tag")?;
    let old_tuple = read_old_tuple_after(tag, r)?;
    let new_tuple = match old_tuple {
        Some(_) => read_new_tuple(r)?,
        None => read_new_tuple_after(tag, r)?,
    };
    Ok(UpdateBody {
        xid,
        relation_id,
        old_tuple,
        new_tuple,
    })
}

fn delete(xid: Option<u32>, r: &mut Reader) -> Result<DeleteBody, DecodeError> {
    let relation_id = r.u32("relation oid")?;
    let tag = r.u8("old tuple tag")?;
    let old_tuple = read_old_tuple_after(tag, r)?.ok_or(DecodeError::UnexpectedTupleTag {
        message: r.message(),
        expected: "K (key) or O (old tuple)",
        found: char::from(tag),
    })?;
    Ok(DeleteBody {
        xid,
        relation_id,
        old_tuple,
    })
}

fn truncate(xid: Option<u32>, r: &mut Reader) -> Result<TruncateBody, DecodeError> {
    let count = r.i32("relation count")?;
    let options = r.u8("options")?;
    let count = r.count(count.into(), TRUNCATE_RELATION_LEN, "relation count")?;
    let mut relation_ids = Vec::with_capacity(count);
    for _ in 0..count {
        relation_ids.push(r.u32("relation oid")?);
    }
    Ok(TruncateBody {
        xid,
        options,
        relation_ids,
    })
}

fn stream_abort(r: &mut Reader) -> Result<StreamAbortBody, DecodeError> {
    let xid = r.u32("xid")?;
    let subxid = r.u32("subtransaction xid")?;
    let (abort_lsn, abort_timestamp) = if r.remaining() == STREAM_ABORT_PARALLEL_LEN {
        (
            Some(r.lsn("abort LSN")?),
            Some(r.timestamp("abort timestamp")?),
        )
    } else {
        (None, None)
    };
    Ok(StreamAbortBody {
        xid,
        subxid,
        abort_lsn,
        abort_timestamp,
    })
}
