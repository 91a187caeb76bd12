//! switchyard moves live PostgreSQL data from legacy tables into a new, normalized schema with
//! zero downtime: a parallel backfill under an exported snapshot, then a WAL consumer that keeps
//! the new tables in sync, then a cutover that blocks writes for seconds.
//!
//! # Layout
//!
//! ```text
//!             plan/ (TOML + SQL files) --compile--> transform::program (what the runtime reads)
//!                         |
//!   source/ ---rows---> transform/ ---rows---> sink/
//!   preflight, slot,    the program, pure      COPY in, set-based apply,
//!   chunks, COPY out,   row functions shared   dead letters and the rejects
//!   WAL stream, row     by backfill and        policy, lookups
//!   changes, catalog    follow
//!         \______________ pipeline/ ______________/
//!     backfill: chunk leases -> workers (snapshot reader -> rayon -> target tx per chunk),
//!               the same leases for every process of the migration (`backfill --join`)
//!     follow:   WAL pump -> dispatch -> row change -> transform -> coalesce -> group tx
//!
//!   pg/          codecs with no I/O: COPY text, pgoutput, replication framing, quoting, LSN,
//!                connection strings (and the one I/O piece, `connect`)
//!   checkpoint/  the tool's own state in the target (schema `switchyard`), one file per table
//!   error/       what an error asks of its caller (retry, stop, dead-letter); chains printed once
//!   lag          how far the consumer is behind: the target's state against the source's slot
//!   progress     displays that read counters; they never drive work
//!   metrics/     the same counters and the target's state for Prometheus (`--metrics-addr`)
//!   verify/      transformed source vs target, by key, with bucket hashes and rechecks
//!   cutover/     the write-blocked window, its checks and the swap
//!   cli/ commands/  what the user typed, and one file per subcommand: wiring only
//!   demo/        throwaway clusters, the legacy data generator and a write load
//! ```
//!
//! Imports go one way, downward, in this order: `commands`, `cli`, `demo`, `cutover`, `verify`,
//! `pipeline`, `metrics`, `progress`, `sink`, `lag`, `source`, `checkpoint`, `plan`, `transform`,
//! `pg`, with `error` below them all. The runtime never imports the config: `plan/` compiles the TOML into
//! [`transform::program`], and nothing under `transform/` names `plan/`. No layer below the
//! commands imports them, and no two files import each other through any chain.
//! `tests/integration/layering.rs` checks all of it from the source text.

pub mod checkpoint;
pub mod cli;
pub mod commands;
pub mod cutover;
pub mod demo;
pub mod error;
pub mod lag;
pub mod metrics;
pub mod pg;
pub mod pipeline;
pub mod plan;
pub mod progress;
pub mod sink;
pub mod source;
pub mod transform;
pub mod verify;
