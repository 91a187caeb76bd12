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
//!   preflight, slot,    pure row functions     COPY in, set-based apply,
//!   chunks, COPY out,   shared by backfill     dead letters, lookups
//!   WAL stream,         and follow
//!   catalog reads
//!         \______________ pipeline/ ______________/
//!     backfill: chunk queue -> workers (snapshot reader -> rayon -> target tx per chunk)
//!     follow:   WAL pump -> decode -> transform -> coalesce -> target tx per commit group
//!
//!   pg/          codecs with no I/O: COPY text, pgoutput, replication framing, quoting, LSN,
//!                connection strings (and the one I/O piece, `connect`)
//!   checkpoint   the tool's own state in the target (schema `switchyard`)
//!   error        what an error asks of its caller (retry, stop, dead-letter); chains printed once
//!   lag          how far the consumer is behind: the target's state against the source's slot
//!   progress     displays that read counters; they never drive work
//!   cli/ commands/  what the user typed, and one file per subcommand
//!   verify/      transformed source vs target, by key, with bucket hashes and rechecks
//!   demo/        throwaway clusters, the legacy data generator and a write load
//! ```

pub mod checkpoint;
pub mod cli;
pub mod commands;
pub mod cutover;
pub mod demo;
pub mod error;
pub mod lag;
pub mod pg;
pub mod pipeline;
pub mod plan;
pub mod progress;
pub mod sink;
pub mod source;
pub mod transform;
pub mod verify;
