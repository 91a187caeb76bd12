//! What an error means to whoever meets it, and how the binary prints one.
//!
//! Errors are typed where they arise (`PipelineError`, `ConnectError`, `ReplicationError`,
//! ...); this module answers the two questions every caller asks of any of them, wherever it
//! sits in an `anyhow` chain:
//!
//! - [`class`]: what to do about it, retry and resume, stop and report with the fix, or
//!   dead-letter the row ([`ErrorClass`]);
//! - [`chain`]: how to print it with each cause named once.

pub mod chain;
pub mod class;

pub use chain::Chain;
pub use class::{Classify, ErrorClass};
