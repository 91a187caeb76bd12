//! Our own replication-protocol client, on tokio and postgres-protocol.
//!
//! tokio-postgres cannot open a replication connection (no `replication` startup key, no
//! CopyBoth), so this module speaks the protocol itself, over any byte stream: TCP, a Unix
//! socket, or TLS (rustls, with libpq's `sslmode` rules). One file per operation:
//!
//! ```text
//!   connection.rs       socket, TLS, startup with replication=database   -> ReplicationConnection
//!   auth.rs             trust, password, md5, SCRAM-SHA-256(-PLUS)
//!   simple_query.rs     any command, rows of text
//!   identify_system.rs  IDENTIFY_SYSTEM                                   -> SystemIdentity
//!   slot.rs             CREATE_REPLICATION_SLOT ... (SNAPSHOT 'export')   -> CreatedSlot
//!   stream.rs           START_REPLICATION ... LOGICAL                     -> ReplicationStream
//!   transport.rs        message framing and the only reads and writes
//!   error.rs            transient vs definite, with the fix
//! ```
//!
//! The bytes inside the stream are decoded by [`crate::pg::replication_message`] (framing) and
//! the pgoutput decoder (the messages themselves); neither does I/O.

mod auth;
mod channel_binding;
mod connection;
mod error;
mod identify_system;
mod simple_query;
mod slot;
mod stream;
mod transport;

pub use connection::{BoxedStream, PgStream, ReplicationConnection};
pub use error::{ReplicationError, ServerError};
pub use identify_system::SystemIdentity;
pub use simple_query::TextRows;
pub use slot::{CreatedSlot, OUTPUT_PLUGIN};
pub use stream::ReplicationStream;
