//! One integration binary: every test starts its own throwaway PostgreSQL clusters (initdb +
//! postgres from the system installation, `wal_level=logical`, a free port, a temp dir) and
//! stops them on drop, even when it fails.

/// Imports go one way: the layering of `src/`, checked from the source text.
mod layering;

/// Throwaway clusters seeded with the legacy tables, the expected result, comparisons.
mod support;

/// A self-signed certificate from `openssl` for the TLS tests, removed on drop.
mod tls;

/// The backfill end to end: target equals the transformed source, snapshot isolation,
/// dead letters, resume after SIGKILL.
mod backfill;

/// `backfill --join`: two processes share one migration's chunks; a joiner SIGKILLed
/// mid-chunk loses nothing, its chunk is taken over, and no chunk is copied twice.
mod join;

/// The after-backfill SQL in stages: concurrent files, ordered stages, a failing file named.
mod after_backfill;

/// The displays on a pseudo-terminal and off one: redrawn in place, plain lines, no float noise.
mod displays;

/// `check`: broken plans, missing settings and keys, each with its fix.
mod check;

/// The plan's reverse rules over backfilled new tables, against the round-trip oracle.
mod reverse;

/// The reverse stream end to end, two servers and one database: the new application's writes
/// after `cutover --keep-reverse`, a SIGKILLed reverse consumer restarted, rollback under load;
/// the legacy tables equal the oracle over the new tables and keep every acknowledged write.
mod reverse_stream;

/// The demo harness: clusters vanish on drop, deterministic data, rerunnable seed SQL, write load.
mod cluster_harness;

/// `--metrics-addr`: Prometheus scrapes during a backfill, during follow and from `watch`,
/// parsed strictly; a taken address refused before any work.
mod metrics;

/// The WAL consumer: convergence under writes, SIGKILL and restart, TOAST, moves between
/// outputs, key changes, new lookup values, large transactions, TRUNCATE and DDL.
mod follow;

/// The cutover: no acknowledged write lost under load, aborts that release the locks, lock
/// retries that never stall writers, dry runs that change nothing, same-database swap and
/// rollback.
mod cutover;

/// A cutover that leaves the application working (issue 18), one module per kind.
mod cutover_safety;

/// The cutover's row counts refuse a target changed behind the consumer's back, before it or
/// while it waits for its lock (DELETE, INSERT, TRUNCATE, a replica-role session), with two
/// servers or one database, under the write mix (issue 14).
mod cutover_counts;

/// `verify`: a clean target passes; tampered, deleted and extra rows are listed by key; lookups
/// are never written.
mod verify;

/// `docker-compose.yml` starts servers that logical decoding can use.
mod docker_compose;

/// A live protocol 2 stream (TOAST, key changes, truncate, streamed chunks) decodes in full.
mod pgoutput_decode;

/// The replication connection and `connect()`: logins, TLS modes, snapshot, stream, errors.
mod replication_connection;

/// The binary COPY writer against the server: same values as text, same refusals, a backfill
/// that leaves what it cannot read exactly to the target.
mod copy_binary;

/// A reviewer's attempts to break the binary COPY backfill with hostile data.
mod copy_binary_review;

/// A migration of small hand-written tables: prepare, backfill and follow, compare as text and
/// typed.
mod small_migration;

/// Hostile identifiers, values that are easy to mangle, replica-identity keys and partitioned
/// tables, each backfilled and followed unchanged.
mod hostile_input;

/// The WAL consumer's parallel apply lanes (issue 13): SIGKILL with four lanes, moves between
/// outputs and lanes, fences that wait for every lane, unique-value exchanges between lanes,
/// the lane count changed across restarts.
mod apply_lanes;

/// Faults: seeded SIGKILLs, server restarts, Ctrl-C, nothing left behind, a memory soak.
mod faults;

/// Safe to run: no password in any output, log or state; TLS everywhere; least privilege.
mod security;

/// Every error chain the binary prints names each cause once, fed dropped connections.
mod error_chain;

/// Shapes that made other tools lose changes silently (issue 10), one module per kind.
mod silent_loss;

/// What a new machine and a shell get: completions and man pages from the clap definition, the
/// install script `.ci/run` and the demo share.
mod setup;

/// Runtime control (issue 15): pause, resume and throttle of a backfill and of the consumer
/// from another process, within a second and within 20% of the cap; the source-load throttle.
mod control;
