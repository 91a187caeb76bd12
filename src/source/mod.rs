//! Reads the source: preflight checks, the slot and its snapshot, chunking, COPY out.
pub mod chunks;
pub mod copy_out;
