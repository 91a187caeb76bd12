use super::{decode, decode_streamed, payload, text};
use crate::pg::pgoutput::fixtures::*;
use crate::pg::pgoutput::*;
use crate::pg::replication_message::PgTimestamp;

/// The streamed transaction, its rolled-back subtransaction, and the aborted transaction.
const STREAMED_XID: u32 = 742;
const SUBTRANSACTION_XID: u32 = 743;
const ABORTED_XID: u32 = 744;
const EVENTS_OID: u32 = 16402;

#[test]
fn change_messages_inside_a_chunk_carry_the_xid() {
    assert_eq!(
        decode(V2_STREAM_START_FIRST).unwrap(),
        LogicalReplicationMessage::StreamStart(StreamStartBody {
            xid: STREAMED_XID,
            first_segment: true,
        })
    );
    assert_eq!(
        decode_streamed(V2_STREAMED_TYPE).unwrap(),
        LogicalReplicationMessage::Type(TypeBody {
            xid: Some(STREAMED_XID),
            type_id: 16385,
            namespace: "public".into(),
            name: "mood".into(),
        })
    );
    let LogicalReplicationMessage::Relation(relation) =
        decode_streamed(V2_STREAMED_RELATION).unwrap()
    else {
        panic!("not a Relation");
    };
    assert_eq!(relation.xid, Some(STREAMED_XID));
    assert_eq!(
        (relation.relation_id, &*relation.name),
        (EVENTS_OID, "events")
    );
    let names: Vec<&str> = relation.columns.iter().map(|c| &*c.name).collect();
    assert_eq!(names, ["id", "kind", "payload"]);
    assert_eq!(
        decode_streamed(V2_STREAMED_INSERT).unwrap(),
        LogicalReplicationMessage::Insert(InsertBody {
            xid: Some(STREAMED_XID),
            relation_id: EVENTS_OID,
            new_tuple: TupleData {
                columns: vec![text("1"), text("busy"), text("payload 1")],
            },
        })
    );
    let message = decode_streamed(V2_STREAMED_MESSAGE).unwrap();
    assert_eq!(message.streamed_xid(), Some(STREAMED_XID));
    let LogicalReplicationMessage::Message(message) = message else {
        panic!("not a Message");
    };
    assert!(message.is_transactional());
    assert_eq!(&message.content[..], b"in-stream");
}

#[test]
fn changes_of_a_subtransaction_carry_its_own_xid() {
    let insert = decode_streamed(V2_STREAMED_INSERT_SUBTRANSACTION).unwrap();
    assert_eq!(insert.streamed_xid(), Some(SUBTRANSACTION_XID));
    assert_eq!(
        decode(V2_STREAM_ABORT_SUBTRANSACTION).unwrap(),
        LogicalReplicationMessage::StreamAbort(StreamAbortBody {
            xid: STREAMED_XID,
            subxid: SUBTRANSACTION_XID,
            abort_lsn: None,
            abort_timestamp: None,
        })
    );
}

#[test]
fn stream_commit_and_abort_end_streamed_transactions() {
    assert_eq!(
        decode(V2_STREAM_COMMIT).unwrap(),
        LogicalReplicationMessage::StreamCommit(StreamCommitBody {
            xid: STREAMED_XID,
            flags: 0,
            commit_lsn: "0/15A59D8".parse().unwrap(),
            end_lsn: "0/15A5A08".parse().unwrap(),
            commit_timestamp: PgTimestamp(0x0003_03d1_09c9_2ef2),
        })
    );
    assert_eq!(
        decode(V2_STREAM_ABORT).unwrap(),
        LogicalReplicationMessage::StreamAbort(StreamAbortBody {
            xid: ABORTED_XID,
            subxid: ABORTED_XID,
            abort_lsn: None,
            abort_timestamp: None,
        })
    );
}

#[test]
fn decoder_follows_chunks_as_postgres_sent_them() {
    // The order of the capture: a first chunk, a later one, the subtransaction's abort between
    // chunks, then the commit; a plain transaction in between decodes without xids.
    let sequence = [
        V2_STREAM_START_FIRST,
        V2_STREAMED_TYPE,
        V2_STREAMED_RELATION,
        V2_STREAMED_INSERT,
        V2_STREAM_STOP,
        V1_BEGIN,
        V1_INSERT_WITH_NULLS,
        V1_COMMIT,
        V2_STREAM_START_NEXT,
        V2_STREAMED_MESSAGE,
        V2_STREAMED_INSERT_SUBTRANSACTION,
        V2_STREAM_STOP,
        V2_STREAM_ABORT_SUBTRANSACTION,
        V2_STREAM_COMMIT,
    ];
    let mut decoder = Decoder::new();
    let mut open = Vec::new();
    for hex in sequence {
        let message = decoder.decode(payload(hex)).unwrap();
        open.push(decoder.open_stream());
        if let LogicalReplicationMessage::StreamStart(start) = message {
            assert_eq!(start.first_segment, hex == V2_STREAM_START_FIRST);
        }
        let in_chunk = open.last().unwrap().is_some()
            && !matches!(message, LogicalReplicationMessage::StreamStart(_));
        assert_eq!(message.streamed_xid().is_some(), in_chunk, "{message:?}");
    }
    let s = Some(STREAMED_XID);
    let n = None;
    assert_eq!(open, [s, s, s, s, n, n, n, n, s, s, s, n, n, n]);
}

#[test]
fn two_phase_messages_are_rejected_by_name() {
    for (hex, tag, message) in [
        (V3_BEGIN_PREPARE, 'b', "Begin Prepare"),
        (V3_PREPARE, 'P', "Prepare"),
        (V3_COMMIT_PREPARED, 'K', "Commit Prepared"),
    ] {
        let error = Decoder::new().decode(payload(hex)).unwrap_err();
        assert_eq!(error, DecodeError::TwoPhase { tag, message });
        assert!(error.to_string().contains("two_phase"), "{error}");
    }
}
