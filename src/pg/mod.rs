//! PostgreSQL building blocks shared by source and sink: positions in the WAL, connection
//! strings, ordinary client connections, and the replication protocol's message framing.
//!
//! Everything here except [`connect`] is a codec: it takes bytes or text and returns values,
//! without I/O, so it is unit-tested without a server.

pub mod connect;
pub mod conninfo;
pub mod lsn;
pub mod replication_message;
