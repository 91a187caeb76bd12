//! Reads the source database: the replication connection that creates the slot, exports the
//! backfill snapshot and streams the WAL.

pub mod replication;
