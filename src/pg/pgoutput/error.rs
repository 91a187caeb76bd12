//! Why a payload is not a pgoutput message switchyard can use.
//!
//! Every variant is definite: the bytes will not decode differently on a retry, so the WAL
//! consumer stops and reports. Either the stream is not what was asked for (an unknown or
//! two-phase tag: check the START_REPLICATION options), or it was cut or corrupted, or the
//! decoder lost track of streamed chunks. Each error names the protocol message and field, so
//! a report can be checked against the message formats page.

/// A pgoutput payload that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty pgoutput message")]
    Empty,

    #[error("unknown pgoutput message tag {tag:?}")]
    UnknownTag { tag: char },

    #[error(
        "pgoutput {message} ({tag:?}) is a two-phase commit message (protocol version 3); \
         start replication without the two_phase option"
    )]
    TwoPhase { tag: char, message: &'static str },

    #[error("pgoutput {message} ends inside {field}: it needs {need} bytes, {remaining} are left")]
    Truncated {
        message: &'static str,
        field: &'static str,
        need: usize,
        remaining: usize,
    },

    #[error("pgoutput {message}: {field} has no terminating NUL")]
    Unterminated {
        message: &'static str,
        field: &'static str,
    },

    #[error("pgoutput {message}: {field} is not valid UTF-8 (is client_encoding UTF8?)")]
    NotUtf8 {
        message: &'static str,
        field: &'static str,
    },

    /// A count that is negative or promises more entries than the bytes left could hold.
    #[error("pgoutput {message}: {field} {count} does not fit in the {remaining} bytes left")]
    BadCount {
        message: &'static str,
        field: &'static str,
        count: i64,
        remaining: usize,
    },

    #[error("pgoutput {message}: {field} is negative ({length})")]
    NegativeLength {
        message: &'static str,
        field: &'static str,
        length: i32,
    },

    #[error("pgoutput Relation: unknown replica identity {identity:?}")]
    UnknownReplicaIdentity { identity: char },

    #[error("pgoutput {message}: unknown tuple column kind {kind:?}, expected n, u, t or b")]
    UnknownColumnKind { message: &'static str, kind: char },

    #[error("pgoutput {message}: expected {expected} but found {found:?}")]
    UnexpectedTupleTag {
        message: &'static str,
        expected: &'static str,
        found: char,
    },

    #[error("pgoutput {message} has {count} bytes after its last field")]
    TrailingBytes { message: &'static str, count: usize },

    #[error("pgoutput Stream Start of transaction {xid} inside the open stream of {open_xid}")]
    NestedStreamStart { open_xid: u32, xid: u32 },

    #[error("pgoutput Stream Stop outside a streamed chunk")]
    StreamStopOutsideStream,

    #[error("pgoutput {message} inside the streamed chunk of transaction {open_xid}")]
    NotAllowedInStream {
        message: &'static str,
        open_xid: u32,
    },
}
