use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;

use crate::pg::pgoutput::*;

/// Writes a tuple the way pgoutput's `logicalrep_write_tuple` does.
fn put_tuple(buf: &mut BytesMut, tuple: &TupleData) {
    buf.put_i16(tuple.columns.len() as i16);
    for column in &tuple.columns {
        match column {
            TupleColumn::Null => buf.put_u8(COLUMN_NULL),
            TupleColumn::UnchangedToast => buf.put_u8(COLUMN_UNCHANGED_TOAST),
            TupleColumn::Text(value) | TupleColumn::Binary(value) => {
                let kind = match column {
                    TupleColumn::Text(_) => COLUMN_TEXT,
                    _ => COLUMN_BINARY,
                };
                buf.put_u8(kind);
                buf.put_i32(value.len() as i32);
                buf.put_slice(value);
            }
        }
    }
}

fn put_old_tuple(buf: &mut BytesMut, old: &OldTuple) {
    let (tag, tuple) = match old {
        OldTuple::Key(tuple) => (KEY_TUPLE_TAG, tuple),
        OldTuple::Full(tuple) => (OLD_TUPLE_TAG, tuple),
    };
    buf.put_u8(tag);
    put_tuple(buf, tuple);
}

/// The payload of a change message, the inverse of the decoder for the messages the applier
/// depends on most.
fn encode(message: &LogicalReplicationMessage) -> Bytes {
    let mut buf = BytesMut::new();
    let xid = |buf: &mut BytesMut, xid: Option<u32>| {
        if let Some(xid) = xid {
            buf.put_u32(xid);
        }
    };
    match message {
        LogicalReplicationMessage::Relation(r) => {
            buf.put_u8(RELATION_TAG);
            xid(&mut buf, r.xid);
            buf.put_u32(r.relation_id);
            for name in [&r.namespace, &r.name] {
                buf.put_slice(name.as_bytes());
                buf.put_u8(0);
            }
            buf.put_u8(match r.replica_identity {
                ReplicaIdentity::Default => b'd',
                ReplicaIdentity::Nothing => b'n',
                ReplicaIdentity::Full => b'f',
                ReplicaIdentity::Index => b'i',
            });
            buf.put_i16(r.columns.len() as i16);
            for c in &r.columns {
                buf.put_u8(c.flags);
                buf.put_slice(c.name.as_bytes());
                buf.put_u8(0);
                buf.put_u32(c.type_id);
                buf.put_i32(c.type_modifier);
            }
        }
        LogicalReplicationMessage::Insert(i) => {
            buf.put_u8(INSERT_TAG);
            xid(&mut buf, i.xid);
            buf.put_u32(i.relation_id);
            buf.put_u8(NEW_TUPLE_TAG);
            put_tuple(&mut buf, &i.new_tuple);
        }
        LogicalReplicationMessage::Update(u) => {
            buf.put_u8(UPDATE_TAG);
            xid(&mut buf, u.xid);
            buf.put_u32(u.relation_id);
            if let Some(old) = &u.old_tuple {
                put_old_tuple(&mut buf, old);
            }
            buf.put_u8(NEW_TUPLE_TAG);
            put_tuple(&mut buf, &u.new_tuple);
        }
        LogicalReplicationMessage::Delete(d) => {
            buf.put_u8(DELETE_TAG);
            xid(&mut buf, d.xid);
            buf.put_u32(d.relation_id);
            put_old_tuple(&mut buf, &d.old_tuple);
        }
        other => unreachable!("no encoder for {other:?}"),
    }
    buf.freeze()
}

/// Names as PostgreSQL sends them: UTF-8 without NUL.
fn name() -> impl Strategy<Value = String> {
    "[^\u{0}]{0,12}"
}

fn tuple() -> impl Strategy<Value = TupleData> {
    let value = || proptest::collection::vec(any::<u8>(), 0..24).prop_map(Bytes::from);
    let column = prop_oneof![
        Just(TupleColumn::Null),
        Just(TupleColumn::UnchangedToast),
        value().prop_map(TupleColumn::Text),
        value().prop_map(TupleColumn::Binary),
    ];
    proptest::collection::vec(column, 0..8).prop_map(|columns| TupleData { columns })
}

fn old_tuple() -> impl Strategy<Value = OldTuple> {
    prop_oneof![
        tuple().prop_map(OldTuple::Key),
        tuple().prop_map(OldTuple::Full)
    ]
}

fn relation(xid: Option<u32>) -> impl Strategy<Value = LogicalReplicationMessage> {
    let column = (any::<u8>(), name(), any::<u32>(), any::<i32>()).prop_map(
        |(flags, name, type_id, type_modifier)| Column {
            flags,
            name,
            type_id,
            type_modifier,
        },
    );
    let identity = prop_oneof![
        Just(ReplicaIdentity::Default),
        Just(ReplicaIdentity::Nothing),
        Just(ReplicaIdentity::Full),
        Just(ReplicaIdentity::Index),
    ];
    let columns = proptest::collection::vec(column, 0..6);
    (any::<u32>(), name(), name(), identity, columns).prop_map(
        move |(relation_id, namespace, name, replica_identity, columns)| {
            LogicalReplicationMessage::Relation(RelationBody {
                xid,
                relation_id,
                namespace,
                name,
                replica_identity,
                columns,
            })
        },
    )
}

fn change(xid: Option<u32>) -> impl Strategy<Value = LogicalReplicationMessage> {
    prop_oneof![
        relation(xid),
        (any::<u32>(), tuple()).prop_map(move |(relation_id, new_tuple)| {
            LogicalReplicationMessage::Insert(InsertBody {
                xid,
                relation_id,
                new_tuple,
            })
        }),
        (any::<u32>(), proptest::option::of(old_tuple()), tuple()).prop_map(
            move |(relation_id, old_tuple, new_tuple)| {
                LogicalReplicationMessage::Update(UpdateBody {
                    xid,
                    relation_id,
                    old_tuple,
                    new_tuple,
                })
            }
        ),
        (any::<u32>(), old_tuple()).prop_map(move |(relation_id, old_tuple)| {
            LogicalReplicationMessage::Delete(DeleteBody {
                xid,
                relation_id,
                old_tuple,
            })
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encoded_changes_decode_to_themselves(
        message in proptest::option::of(any::<u32>()).prop_flat_map(change),
    ) {
        let in_stream = message.streamed_xid().is_some();
        let decoded = LogicalReplicationMessage::decode(encode(&message), in_stream);
        prop_assert_eq!(decoded, Ok(message));
    }
}
