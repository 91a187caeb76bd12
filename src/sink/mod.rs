//! Writes the target: output rows by COPY, lookup values, dead letters.
pub mod apply;
pub mod async_commit;
mod copy;
pub mod copy_format;
pub mod copy_in;
pub mod dead_letter;
pub mod fence;
pub mod filled_columns;
pub mod key_index;
pub mod lookup;
pub mod preflight;
pub mod privileges;
pub mod replay;
pub mod replication_role;
pub mod triggers;
