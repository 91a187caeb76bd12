//! Pure row functions shared by backfill and follow: no async, no I/O.
pub mod cast;
pub mod temporal;
pub mod value;
