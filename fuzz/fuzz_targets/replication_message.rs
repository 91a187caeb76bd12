//! CopyData payloads of a replication connection: XLogData and keepalive framing, the pgoutput
//! message inside XLogData, and the CopyBothResponse that opens the stream.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use switchyard::pg::pgoutput::Decoder;
use switchyard::pg::replication_message::{take_copy_both_response, ReplicationMessage};

fuzz_target!(|data: &[u8]| {
    match ReplicationMessage::decode(Bytes::copy_from_slice(data)) {
        Ok(ReplicationMessage::XLogData(xlog)) => {
            let _ = Decoder::new().decode(xlog.data);
        }
        Ok(ReplicationMessage::PrimaryKeepalive(_)) => {}
        Err(error) => drop(error.to_string()),
    }
    let mut buf = BytesMut::from(data);
    // Each Some(true) consumes at least the tag byte, so this ends.
    while take_copy_both_response(&mut buf) == Some(true) {}
});
