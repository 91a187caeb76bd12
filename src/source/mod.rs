//! Reads the source database: preflight checks, the publication, the replication connection
//! that creates the slot and exports the backfill snapshot, chunking, and COPY out.

pub mod catalog;
pub mod chunks;
pub mod copy_out;
pub mod ctype;
pub mod current_row;
pub mod fence;
pub mod identity;
pub mod load;
pub mod preflight;
pub mod publication;
pub mod relations;
pub mod replication;
pub mod row_change;
pub mod slot;
pub mod snapshot;
pub mod snapshot_wait;
pub mod unreplicated;
pub mod wal_stream;
