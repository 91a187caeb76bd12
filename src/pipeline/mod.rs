//! Wiring only: queues, pools and ordering between source, transform and sink.
pub mod backfill;
pub mod chunk_copy;
mod confirm;
pub mod error;
pub mod follow;
pub mod heartbeat;
pub mod identity_watch;
pub mod transform_pool;
pub mod wal_pump;

use crate::sink::dead_letter::BadRow;
use crate::source::row_change::RowChangeError;

// These two conversions belong in error.rs; they are here while that file is reworked.
impl From<BadRow> for error::PipelineError {
    fn from(BadRow { table, key, reason }: BadRow) -> Self {
        error::PipelineError::BadRow { table, key, reason }
    }
}

impl From<RowChangeError> for error::PipelineError {
    fn from(e: RowChangeError) -> Self {
        match e {
            RowChangeError::Read(e) => error::PipelineError::source(
                "reading a row for a value the stream does not carry",
                e,
            ),
            e => error::PipelineError::Stopped(e.to_string()),
        }
    }
}
