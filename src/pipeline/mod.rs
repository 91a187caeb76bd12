//! Wiring only: queues, pools and ordering between source, transform and sink.
pub mod backfill;
pub mod chunk_copy;
mod confirm;
pub mod control;
pub mod error;
pub mod follow;
pub mod heartbeat;
pub mod identity_watch;
pub mod lease_heartbeat;
pub mod pace;
pub mod reverse;
pub mod transform_pool;
pub mod wal_pump;
