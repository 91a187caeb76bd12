//! The decoder against bytes PostgreSQL 15 really sent, against hand-made hostile payloads, and
//! against arbitrary bytes.

/// Protocol 2 streamed chunks through the stateful decoder; protocol 3 rejected.
mod captured_streaming;
/// Protocol 1 fixtures, decoded field by field.
mod captured_v1;
/// Truncated, oversized, mis-tagged and out-of-order payloads give typed errors.
mod hostile;
/// Arbitrary bytes and mutated fixtures never panic.
mod never_panics;
/// Relation, Insert, Update and Delete built by a test encoder decode to what was encoded.
mod round_trip;

use bytes::Bytes;

use super::fixtures::*;
use super::{DecodeError, LogicalReplicationMessage};

/// Every captured fixture with whether it was sent inside a streamed chunk.
const ALL_FIXTURES: [(&str, bool); 29] = [
    (V1_BEGIN, false),
    (V1_TYPE_MOOD, false),
    (V1_RELATION_ACCOUNTS, false),
    (V1_INSERT_WITH_NULLS, false),
    (V1_COMMIT, false),
    (V1_UPDATE_UNCHANGED_TOAST, false),
    (V1_UPDATE_KEY_CHANGED, false),
    (V1_DELETE_KEY, false),
    (V1_RELATION_LEDGER, false),
    (V1_UPDATE_FULL_UNCHANGED_TOAST, false),
    (V1_DELETE_FULL, false),
    (V1_TRUNCATE_TWO_TABLES, false),
    (V1_TRUNCATE_CASCADE_RESTART_IDENTITY, false),
    (V1_MESSAGE_TRANSACTIONAL, false),
    (V1_MESSAGE_NON_TRANSACTIONAL, false),
    (V1_BEGIN_WITH_ORIGIN, false),
    (V1_ORIGIN, false),
    (V1_BINARY_INSERT, false),
    (V2_STREAM_START_FIRST, false),
    (V2_STREAMED_TYPE, true),
    (V2_STREAMED_RELATION, true),
    (V2_STREAMED_INSERT, true),
    (V2_STREAM_STOP, true),
    (V2_STREAM_START_NEXT, false),
    (V2_STREAMED_MESSAGE, true),
    (V2_STREAMED_INSERT_SUBTRANSACTION, true),
    (V2_STREAM_ABORT_SUBTRANSACTION, false),
    (V2_STREAM_COMMIT, false),
    (V2_STREAM_ABORT, false),
];

/// A fixture's bytes.
fn payload(hex: &str) -> Bytes {
    assert!(hex.len().is_multiple_of(2), "odd hex length");
    let digit = |c: u8| char::from(c).to_digit(16).expect("hex digit") as u8;
    hex.as_bytes()
        .chunks(2)
        .map(|pair| digit(pair[0]) << 4 | digit(pair[1]))
        .collect::<Vec<u8>>()
        .into()
}

/// Decodes a fixture sent outside a streamed chunk.
fn decode(hex: &str) -> Result<LogicalReplicationMessage, DecodeError> {
    LogicalReplicationMessage::decode(payload(hex), false)
}

/// Decodes a fixture sent inside a streamed chunk.
fn decode_streamed(hex: &str) -> Result<LogicalReplicationMessage, DecodeError> {
    LogicalReplicationMessage::decode(payload(hex), true)
}

/// A text column holding `value`.
fn text(value: &str) -> super::TupleColumn {
    super::TupleColumn::Text(Bytes::copy_from_slice(value.as_bytes()))
}
