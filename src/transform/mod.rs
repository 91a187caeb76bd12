//! Pure row functions shared by backfill and follow: no async, no I/O.
//!
//! A source row goes in, zero or more output rows come out ([`row::transform_values`]), so a
//! filter, a split into several tables and a merge of several sources are the same shape.

pub mod batch;
pub mod case_map;
pub mod cast;
pub mod change;
pub mod copy_binary;
pub mod eval;
pub mod eval_error;
pub mod expr;
#[cfg(test)]
mod function_corpus;
mod functions;
pub mod memo;
pub mod numeric;
pub mod program;
pub mod row;
pub mod temporal;
pub mod value;
