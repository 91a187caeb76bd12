//! PostgreSQL building blocks shared by source and sink: COPY text, quoting, positions in the
//! WAL, connection strings, ordinary client connections, the replication protocol's message
//! framing, and the pgoutput messages inside it.
//!
//! Everything here except [`connect`] is a codec: it takes bytes or text and returns values,
//! without I/O, so it is unit-tested without a server.

pub mod connect;
pub mod conninfo;
pub mod copy_binary;
pub mod copy_text;
pub mod ident;
pub mod lsn;
pub mod pgoutput;
pub mod replication_message;
pub mod tls;
