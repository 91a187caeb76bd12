use bytes::Bytes;

use super::{decode, text};
use crate::pg::lsn::Lsn;
use crate::pg::pgoutput::fixtures::*;
use crate::pg::pgoutput::*;
use crate::pg::replication_message::PgTimestamp;

/// The commit time of the fixtures' first transaction, as the server sent it.
const FIRST_COMMIT_TIME: PgTimestamp = PgTimestamp(0x0003_03d1_09c8_cdc8);
/// Oids the capture run gave the tables and the enum.
const ACCOUNTS_OID: u32 = 16389;
const LEDGER_OID: u32 = 16397;
const EVENTS_OID: u32 = 16402;
const MOOD_OID: u32 = 16385;
/// Built-in type oids.
const INT4_OID: u32 = 23;
const INT8_OID: u32 = 20;
const TEXT_OID: u32 = 25;
const VARCHAR_OID: u32 = 1043;
const NUMERIC_OID: u32 = 1700;

fn column(flags: u8, name: &str, type_id: u32, type_modifier: i32) -> Column {
    Column {
        flags,
        name: name.to_string(),
        type_id,
        type_modifier,
    }
}

#[test]
fn begin_and_commit_carry_the_commit_positions_and_time() {
    assert_eq!(
        decode(V1_BEGIN).unwrap(),
        LogicalReplicationMessage::Begin(BeginBody {
            final_lsn: "0/1512970".parse().unwrap(),
            commit_timestamp: FIRST_COMMIT_TIME,
            xid: 732,
        })
    );
    // end_lsn is what the peek reported as the Commit's own lsn.
    assert_eq!(
        decode(V1_COMMIT).unwrap(),
        LogicalReplicationMessage::Commit(CommitBody {
            flags: 0,
            commit_lsn: "0/1512970".parse().unwrap(),
            end_lsn: "0/15129A0".parse().unwrap(),
            commit_timestamp: FIRST_COMMIT_TIME,
        })
    );
}

#[test]
fn type_names_a_user_defined_enum() {
    assert_eq!(
        decode(V1_TYPE_MOOD).unwrap(),
        LogicalReplicationMessage::Type(TypeBody {
            xid: None,
            type_id: MOOD_OID,
            namespace: "public".into(),
            name: "mood".into(),
        })
    );
}

#[test]
fn relation_lists_columns_with_key_flags_types_and_typmods() {
    let LogicalReplicationMessage::Relation(relation) = decode(V1_RELATION_ACCOUNTS).unwrap()
    else {
        panic!("not a Relation");
    };
    assert_eq!(relation.xid, None);
    assert_eq!(relation.relation_id, ACCOUNTS_OID);
    assert_eq!(
        (&*relation.namespace, &*relation.name),
        ("public", "accounts")
    );
    assert_eq!(relation.replica_identity, ReplicaIdentity::Default);
    assert_eq!(
        relation.columns,
        [
            column(COLUMN_FLAG_KEY, "id", INT4_OID, -1),
            // varchar(40): 40 + VARHDRSZ.
            column(0, "email", VARCHAR_OID, 44),
            // numeric(10, 2): (10 << 16 | 2) + VARHDRSZ.
            column(0, "balance", NUMERIC_OID, (10 << 16 | 2) + 4),
            column(0, "mood", MOOD_OID, -1),
            column(0, "bio", TEXT_OID, -1),
        ]
    );
    assert!(relation.columns[0].is_key());
    assert!(!relation.columns[1].is_key());
}

#[test]
fn replica_identity_full_marks_every_column_as_key() {
    let LogicalReplicationMessage::Relation(relation) = decode(V1_RELATION_LEDGER).unwrap() else {
        panic!("not a Relation");
    };
    assert_eq!(relation.relation_id, LEDGER_OID);
    assert_eq!(relation.replica_identity, ReplicaIdentity::Full);
    assert_eq!(
        relation.columns,
        [
            column(COLUMN_FLAG_KEY, "id", INT8_OID, -1),
            column(COLUMN_FLAG_KEY, "note", TEXT_OID, -1),
            column(COLUMN_FLAG_KEY, "big", TEXT_OID, -1),
        ]
    );
}

#[test]
fn insert_carries_text_values_and_nulls() {
    assert_eq!(
        decode(V1_INSERT_WITH_NULLS).unwrap(),
        LogicalReplicationMessage::Insert(InsertBody {
            xid: None,
            relation_id: ACCOUNTS_OID,
            new_tuple: TupleData {
                columns: vec![
                    text("2"),
                    text("bob@example.com"),
                    TupleColumn::Null,
                    TupleColumn::Null,
                    text("short bio"),
                ],
            },
        })
    );
}

#[test]
fn text_values_are_slices_of_the_payload() {
    let payload = super::payload(V1_INSERT_WITH_NULLS);
    let range = payload.as_ptr_range();
    let message = LogicalReplicationMessage::decode(payload.clone(), false).unwrap();
    let LogicalReplicationMessage::Insert(insert) = message else {
        panic!("not an Insert");
    };
    let TupleColumn::Text(email) = &insert.new_tuple.columns[1] else {
        panic!("not text");
    };
    assert!(range.contains(&email.as_ptr()));
}

#[test]
fn update_leaving_a_toasted_value_alone_says_unchanged_toast_without_old_tuple() {
    assert_eq!(
        decode(V1_UPDATE_UNCHANGED_TOAST).unwrap(),
        LogicalReplicationMessage::Update(UpdateBody {
            xid: None,
            relation_id: ACCOUNTS_OID,
            old_tuple: None,
            new_tuple: TupleData {
                columns: vec![
                    text("1"),
                    text("ada@example.com"),
                    text("99.99"),
                    text("calm"),
                    TupleColumn::UnchangedToast,
                ],
            },
        })
    );
}

#[test]
fn update_changing_the_key_sends_the_old_key_with_nulls_outside_it() {
    let key_only = |id| TupleData {
        columns: vec![
            text(id),
            TupleColumn::Null,
            TupleColumn::Null,
            TupleColumn::Null,
            TupleColumn::Null,
        ],
    };
    assert_eq!(
        decode(V1_UPDATE_KEY_CHANGED).unwrap(),
        LogicalReplicationMessage::Update(UpdateBody {
            xid: None,
            relation_id: ACCOUNTS_OID,
            old_tuple: Some(OldTuple::Key(key_only("2"))),
            new_tuple: TupleData {
                columns: vec![
                    text("20"),
                    text("bob@example.com"),
                    TupleColumn::Null,
                    TupleColumn::Null,
                    text("short bio"),
                ],
            },
        })
    );
    assert_eq!(
        decode(V1_DELETE_KEY).unwrap(),
        LogicalReplicationMessage::Delete(DeleteBody {
            xid: None,
            relation_id: ACCOUNTS_OID,
            old_tuple: OldTuple::Key(key_only("20")),
        })
    );
}

#[test]
fn replica_identity_full_sends_the_toasted_value_in_the_old_tuple_only() {
    let big = "ledger".repeat(350);
    assert_eq!(
        decode(V1_UPDATE_FULL_UNCHANGED_TOAST).unwrap(),
        LogicalReplicationMessage::Update(UpdateBody {
            xid: None,
            relation_id: LEDGER_OID,
            old_tuple: Some(OldTuple::Full(TupleData {
                columns: vec![text("1"), text("opened"), text(&big)],
            })),
            new_tuple: TupleData {
                columns: vec![text("1"), text("audited"), TupleColumn::UnchangedToast],
            },
        })
    );
    assert_eq!(
        decode(V1_DELETE_FULL).unwrap(),
        LogicalReplicationMessage::Delete(DeleteBody {
            xid: None,
            relation_id: LEDGER_OID,
            old_tuple: OldTuple::Full(TupleData {
                columns: vec![text("2"), text("small"), text("tiny")],
            }),
        })
    );
}

#[test]
fn truncate_lists_relations_and_options() {
    let LogicalReplicationMessage::Truncate(two) = decode(V1_TRUNCATE_TWO_TABLES).unwrap() else {
        panic!("not a Truncate");
    };
    assert_eq!(two.relation_ids, [ACCOUNTS_OID, EVENTS_OID]);
    assert_eq!(
        (two.options, two.cascade(), two.restart_identity()),
        (0, false, false)
    );
    let LogicalReplicationMessage::Truncate(one) =
        decode(V1_TRUNCATE_CASCADE_RESTART_IDENTITY).unwrap()
    else {
        panic!("not a Truncate");
    };
    assert_eq!(one.xid, None);
    assert_eq!(one.relation_ids, [LEDGER_OID]);
    assert!(one.cascade() && one.restart_identity());
}

#[test]
fn logical_decoding_messages_say_whether_they_are_transactional() {
    assert_eq!(
        decode(V1_MESSAGE_TRANSACTIONAL).unwrap(),
        LogicalReplicationMessage::Message(MessageBody {
            xid: None,
            flags: MESSAGE_FLAG_TRANSACTIONAL,
            // The end of the message's WAL record: here the start of the commit record, so the
            // same as its transaction's Begin final_lsn.
            lsn: "0/1516658".parse().unwrap(),
            prefix: "switchyard".into(),
            content: Bytes::from_static(b"fence"),
        })
    );
    let LogicalReplicationMessage::Message(alone) = decode(V1_MESSAGE_NON_TRANSACTIONAL).unwrap()
    else {
        panic!("not a Message");
    };
    assert!(!alone.is_transactional());
    assert_eq!(alone.lsn, "0/15166D0".parse::<Lsn>().unwrap());
    assert_eq!(
        (&*alone.prefix, &alone.content[..]),
        ("switchyard", &b"heartbeat"[..])
    );
}

#[test]
fn origin_follows_a_begin_that_carries_the_origin_commit_time() {
    // pg_replication_origin_xact_setup('0/ABCDEF', '2024-01-02 03:04:05+00'): the transaction
    // commits with the origin's timestamp, which Begin reports.
    let origin_time = PgTimestamp::from_unix_micros(1_704_164_645 * 1_000_000);
    assert_eq!(
        decode(V1_BEGIN_WITH_ORIGIN).unwrap(),
        LogicalReplicationMessage::Begin(BeginBody {
            final_lsn: "0/1516A30".parse().unwrap(),
            commit_timestamp: origin_time,
            xid: 741,
        })
    );
    assert_eq!(
        decode(V1_ORIGIN).unwrap(),
        LogicalReplicationMessage::Origin(OriginBody {
            commit_lsn: "0/ABCDEF".parse().unwrap(),
            name: "upstream".into(),
        })
    );
}

#[test]
fn binary_mode_sends_typsend_bytes() {
    let binary = |bytes: &[u8]| TupleColumn::Binary(Bytes::copy_from_slice(bytes));
    assert_eq!(
        decode(V1_BINARY_INSERT).unwrap(),
        LogicalReplicationMessage::Insert(InsertBody {
            xid: None,
            relation_id: ACCOUNTS_OID,
            new_tuple: TupleData {
                columns: vec![
                    binary(&3i32.to_be_bytes()),
                    binary(b"cy@example.com"),
                    // numeric 1.00: ndigits 1, weight 0, sign +, dscale 2, digits [1].
                    binary(&[0, 1, 0, 0, 0, 0, 0, 2, 0, 1]),
                    // enum_send sends the label.
                    binary(b"busy"),
                    TupleColumn::Null,
                ],
            },
        })
    );
}
