use bytes::{BufMut, Bytes, BytesMut};

use super::{decode, decode_streamed, payload, ALL_FIXTURES};
use crate::pg::pgoutput::fixtures::*;
use crate::pg::pgoutput::*;

/// A hand-made payload.
fn raw(build: impl FnOnce(&mut BytesMut)) -> Bytes {
    let mut buf = BytesMut::new();
    build(&mut buf);
    buf.freeze()
}

#[test]
fn every_fixture_decodes_and_every_strict_prefix_is_an_error() {
    for (hex, in_stream) in ALL_FIXTURES {
        let full = payload(hex);
        LogicalReplicationMessage::decode(full.clone(), in_stream)
            .unwrap_or_else(|e| panic!("{hex}: {e}"));
        for len in 0..full.len() {
            let result = LogicalReplicationMessage::decode(full.slice(..len), in_stream);
            assert!(result.is_err(), "{hex} cut at {len} decoded: {result:?}");
        }
    }
}

#[test]
fn trailing_bytes_are_an_error() {
    for (hex, in_stream) in ALL_FIXTURES {
        let mut longer = BytesMut::from(&payload(hex)[..]);
        longer.put_u8(0);
        let error = LogicalReplicationMessage::decode(longer.freeze(), in_stream).unwrap_err();
        assert!(
            matches!(error, DecodeError::TrailingBytes { count: 1, .. }),
            "{hex}: {error}"
        );
    }
}

#[test]
fn empty_and_unknown_tags_are_typed_errors() {
    assert_eq!(
        LogicalReplicationMessage::decode(Bytes::new(), false),
        Err(DecodeError::Empty)
    );
    assert_eq!(decode("58"), Err(DecodeError::UnknownTag { tag: 'X' }));
    assert_eq!(decode("ff00"), Err(DecodeError::UnknownTag { tag: 'ÿ' }));
}

#[test]
fn counts_larger_than_the_payload_fail_before_allocating() {
    // Relation claiming i16::MAX columns in a few bytes.
    let relation = raw(|b| {
        b.put_u8(RELATION_TAG);
        b.put_u32(1);
        b.put_slice(b"s\0t\0d");
        b.put_i16(i16::MAX);
        b.put_slice(&[0; 20]);
    });
    let error = LogicalReplicationMessage::decode(relation, false).unwrap_err();
    assert!(
        matches!(
            error,
            DecodeError::BadCount {
                count: 32767,
                remaining: 20,
                ..
            }
        ),
        "{error}"
    );
    // Truncate claiming i32::MAX relations, and a negative count.
    for count in [i32::MAX, -1] {
        let truncate = raw(|b| {
            b.put_u8(TRUNCATE_TAG);
            b.put_i32(count);
            b.put_u8(0);
            b.put_u32(7);
        });
        let error = LogicalReplicationMessage::decode(truncate, false).unwrap_err();
        assert!(matches!(error, DecodeError::BadCount { .. }), "{error}");
    }
    // TupleData with a negative column count.
    let insert = raw(|b| {
        b.put_u8(INSERT_TAG);
        b.put_u32(1);
        b.put_u8(NEW_TUPLE_TAG);
        b.put_i16(-1);
    });
    let error = LogicalReplicationMessage::decode(insert, false).unwrap_err();
    assert!(
        matches!(error, DecodeError::BadCount { count: -1, .. }),
        "{error}"
    );
}

#[test]
fn value_lengths_are_checked() {
    let insert = |length: i32| {
        raw(|b| {
            b.put_u8(INSERT_TAG);
            b.put_u32(1);
            b.put_u8(NEW_TUPLE_TAG);
            b.put_i16(1);
            b.put_u8(COLUMN_TEXT);
            b.put_i32(length);
            b.put_slice(b"abc");
        })
    };
    assert!(matches!(
        LogicalReplicationMessage::decode(insert(-1), false),
        Err(DecodeError::NegativeLength { length: -1, .. })
    ));
    assert!(matches!(
        LogicalReplicationMessage::decode(insert(i32::MAX), false),
        Err(DecodeError::Truncated { remaining: 3, .. })
    ));
    assert!(LogicalReplicationMessage::decode(insert(3), false).is_ok());
}

#[test]
fn names_must_be_terminated_utf8() {
    let relation = |name: &[u8]| {
        raw(|b| {
            b.put_u8(RELATION_TAG);
            b.put_u32(1);
            b.put_slice(b"public\0");
            b.put_slice(name);
            b.put_slice(b"\0d");
            b.put_i16(0);
        })
    };
    let error = LogicalReplicationMessage::decode(relation(b"caf\xe9"), false).unwrap_err();
    assert_eq!(
        error,
        DecodeError::NotUtf8 {
            message: "Relation",
            field: "relation name"
        }
    );
    assert!(LogicalReplicationMessage::decode(relation("café".as_bytes()), false).is_ok());
    assert_eq!(
        decode("4f0000000000abcdef7570"),
        Err(DecodeError::Unterminated {
            message: "Origin",
            field: "origin name"
        })
    );
}

#[test]
fn unknown_identity_column_kind_and_tuple_tags_are_named() {
    let mut relation = payload(V1_RELATION_LEDGER).to_vec();
    let identity = relation.iter().position(|&b| b == b'f').unwrap();
    relation[identity] = b'x';
    assert_eq!(
        LogicalReplicationMessage::decode(relation.into(), false),
        Err(DecodeError::UnknownReplicaIdentity { identity: 'x' })
    );
    // Insert (1 column, kind 'z'), Insert with K instead of N, Delete with N.
    assert!(matches!(
        decode("49000000014e00017a"),
        Err(DecodeError::UnknownColumnKind { kind: 'z', .. })
    ));
    assert!(matches!(
        decode("49000000014b00016e"),
        Err(DecodeError::UnexpectedTupleTag { found: 'K', .. })
    ));
    assert!(matches!(
        decode("44000000014e00016e"),
        Err(DecodeError::UnexpectedTupleTag { found: 'N', .. })
    ));
}

#[test]
fn row_changes_decoded_with_the_wrong_stream_state_fail() {
    // Type and Relation can happen to parse either way; row changes do not.
    for hex in [V1_INSERT_WITH_NULLS, V1_UPDATE_KEY_CHANGED, V1_DELETE_KEY] {
        assert!(decode_streamed(hex).is_err(), "{hex}");
    }
    for hex in [V2_STREAMED_INSERT, V2_STREAMED_INSERT_SUBTRANSACTION] {
        assert!(decode(hex).is_err(), "{hex}");
    }
}

#[test]
fn stream_abort_reads_the_parallel_streaming_tail() {
    let abort = raw(|b| {
        b.put_u8(STREAM_ABORT_TAG);
        b.put_u32(10);
        b.put_u32(11);
        b.put_u64(0x1234);
        b.put_i64(99);
    });
    let LogicalReplicationMessage::StreamAbort(abort) =
        LogicalReplicationMessage::decode(abort, false).unwrap()
    else {
        panic!("not a Stream Abort");
    };
    assert_eq!((abort.xid, abort.subxid), (10, 11));
    assert_eq!(abort.abort_lsn, Some(crate::pg::lsn::Lsn(0x1234)));
    assert_eq!(
        abort.abort_timestamp,
        Some(crate::pg::replication_message::PgTimestamp(99))
    );
}

#[test]
fn decoder_rejects_chunks_out_of_order_and_keeps_its_state() {
    let mut decoder = Decoder::new();
    assert_eq!(
        decoder.decode(payload(V2_STREAM_STOP)),
        Err(DecodeError::StreamStopOutsideStream)
    );
    decoder.decode(payload(V2_STREAM_START_FIRST)).unwrap();
    assert_eq!(
        decoder.decode(payload(V2_STREAM_START_NEXT)),
        Err(DecodeError::NestedStreamStart {
            open_xid: 742,
            xid: 742
        })
    );
    for (hex, message) in [
        (V1_BEGIN, "Begin"),
        (V1_COMMIT, "Commit"),
        (V2_STREAM_COMMIT, "Stream Commit"),
        (V2_STREAM_ABORT, "Stream Abort"),
    ] {
        assert_eq!(
            decoder.decode(payload(hex)),
            Err(DecodeError::NotAllowedInStream {
                message,
                open_xid: 742
            })
        );
    }
    assert_eq!(decoder.open_stream(), Some(742));
    decoder.decode(payload(V2_STREAMED_INSERT)).unwrap();
    decoder.decode(payload(V2_STREAM_STOP)).unwrap();
    assert_eq!(decoder.open_stream(), None);
    decoder.decode(payload(V2_STREAM_COMMIT)).unwrap();
}
