//! pgoutput payloads from the network: one payload decoded alone (outside and inside a streamed
//! chunk), and the same bytes read as a stream of payloads, each prefixed by a big-endian u16
//! length, through one stateful `Decoder`. Errors are fine; panics and huge allocations are not.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use switchyard::pg::pgoutput::{DecodeError, Decoder, LogicalReplicationMessage};

fn consume(result: Result<LogicalReplicationMessage, DecodeError>) {
    // Formatting walks every field and every error message: it must not panic either.
    match result {
        Ok(message) => drop(format!("{message:?}")),
        Err(error) => drop(error.to_string()),
    }
}

fuzz_target!(|data: &[u8]| {
    let payload = Bytes::copy_from_slice(data);
    for in_stream in [false, true] {
        consume(LogicalReplicationMessage::decode(
            payload.clone(),
            in_stream,
        ));
    }
    let mut decoder = Decoder::new();
    let mut rest = data;
    while let [high, low, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*high, *low])).min(tail.len());
        let (message, tail) = tail.split_at(len);
        consume(decoder.decode(Bytes::copy_from_slice(message)));
        rest = tail;
    }
});
