//! Wiring only: queues, pools and ordering between source, transform and sink.
pub mod backfill;
pub mod chunk_copy;
pub mod error;
pub mod follow;
mod heartbeat;
pub mod wal_pump;
