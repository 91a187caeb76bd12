//! Codecs with no I/O: COPY text, quoting, LSNs, replication framing, connection strings.
pub mod connect;
pub mod conninfo;
pub mod copy_text;
pub mod ident;
pub mod lsn;
