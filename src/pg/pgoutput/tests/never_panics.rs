use bytes::Bytes;
use proptest::prelude::*;

use super::{payload, ALL_FIXTURES};
use crate::pg::pgoutput::*;

/// Every tag the decoder knows, the two-phase ones, and the tuple tags, so that arbitrary
/// bodies reach past the first byte.
const TAGS: &[u8] = b"BCORYIUDTMSEcAbPKrpNnutx";

/// One edit to a captured payload.
#[derive(Clone, Debug)]
enum Mutation {
    Set(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Remove),
        any::<usize>().prop_map(Mutation::Truncate),
        // Counts and lengths are big-endian: 0x7f / 0xff in high bytes make them huge.
        (
            any::<usize>(),
            prop_oneof![Just(0x7f_u8), Just(0x80), Just(0xff), Just(0)]
        )
            .prop_map(|(i, b)| Mutation::Set(i, b)),
    ]
}

fn apply(bytes: &mut Vec<u8>, mutation: &Mutation) {
    let len = bytes.len();
    match *mutation {
        Mutation::Set(i, b) if len > 0 => bytes[i % len] = b,
        Mutation::Insert(i, b) => bytes.insert(i % (len + 1), b),
        Mutation::Remove(i) if len > 0 => {
            bytes.remove(i % len);
        }
        Mutation::Truncate(i) => bytes.truncate(i % (len + 1)),
        _ => {}
    }
}

/// Decoding is microseconds; many cases are cheap.
const CASES: u32 = 2048;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512),
                                   in_stream: bool) {
        let _ = LogicalReplicationMessage::decode(Bytes::from(bytes), in_stream);
    }

    #[test]
    fn arbitrary_bodies_after_a_known_tag_never_panic(
        tag in proptest::sample::select(TAGS),
        body in proptest::collection::vec(any::<u8>(), 0..256),
        in_stream: bool,
    ) {
        let mut bytes = vec![tag];
        bytes.extend(body);
        let _ = LogicalReplicationMessage::decode(Bytes::from(bytes), in_stream);
    }

    #[test]
    fn mutated_fixtures_never_panic(
        index in 0..ALL_FIXTURES.len(),
        mutations in proptest::collection::vec(mutation(), 1..6),
        flip_stream: bool,
    ) {
        let (hex, in_stream) = ALL_FIXTURES[index];
        let mut bytes = payload(hex).to_vec();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        let _ = LogicalReplicationMessage::decode(Bytes::from(bytes), in_stream ^ flip_stream);
    }

    #[test]
    fn decoder_never_panics_on_any_sequence(
        picks in proptest::collection::vec((0..ALL_FIXTURES.len(), any::<usize>()), 0..40),
    ) {
        let mut decoder = Decoder::new();
        for (index, cut) in picks {
            let bytes = payload(ALL_FIXTURES[index].0);
            // Mostly whole messages, sometimes cut short.
            let cut = if cut.is_multiple_of(4) { cut % (bytes.len() + 1) } else { bytes.len() };
            let _ = decoder.decode(bytes.slice(..cut));
        }
    }
}
