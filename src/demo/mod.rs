//! Everything needed to show switchyard working without a production database: a throwaway
//! PostgreSQL cluster, the seed migration's legacy data (messy on purpose, deterministic so that
//! runs compare) and a write load that keeps the legacy tables busy while a migration runs.
//!
//! The `demo` command, the integration tests and the benchmarks all build on these three, so
//! what the benchmarks measure is what the tests prove.

pub mod cluster;
pub mod generator;
pub mod prerequisites;
pub mod prng;
pub mod verify;
pub mod write_load;
