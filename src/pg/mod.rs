//! Codecs with no I/O: COPY text, quoting, LSNs, replication framing, connection strings.
pub mod copy_text;
pub mod ident;
