//! switchyard moves live PostgreSQL data from legacy tables into a new, normalized schema with
//! zero downtime: a parallel backfill under an exported snapshot, then a WAL consumer that keeps
//! the new tables in sync, then a cutover that blocks writes for seconds.
//!
//! # Layout
//!
//! ```text
//!             plan/ (TOML + SQL files, compiled once)
//!                         |
//!   source/ ---rows---> transform/ ---rows---> sink/
//!   preflight, slot,    pure row functions     COPY in, dead letters,
//!   chunks, COPY out    shared by backfill     lookup tables
//!                       and follow
//!         \______________ pipeline/ ______________/
//!                wiring only: queues, pools, ordering
//!
//!   pg/          codecs with no I/O: COPY text, quoting, LSN, connection strings, pgoutput
//!   checkpoint   the tool's own state in the target (schema `switchyard`)
//!   progress     displays that read counters; they never drive work
//!   cli/ commands/  what the user typed, and one file per subcommand
//!   demo/        throwaway clusters, the legacy data generator and a write load
//! ```

pub mod checkpoint;
pub mod cli;
pub mod commands;
pub mod demo;
pub mod pg;
pub mod pipeline;
pub mod plan;
pub mod progress;
pub mod sink;
pub mod source;
pub mod transform;
