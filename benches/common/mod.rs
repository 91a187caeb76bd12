//! What the end-to-end benchmarks share: clusters with the baseline settings, the binary under
//! test, run as a user runs it, and the CPU account of both (`cpu`).

// The backfill and follow benches account CPU; the other benches include this module too.
#[allow(dead_code)]
pub mod cpu;

use std::path::Path;
use std::process::Command;

use switchyard::demo::cluster::{Cluster, ClusterOptions};

/// A throwaway cluster with the settings of `research/baselines.md`, durable writes included,
/// so that switchyard and the baselines it is compared with run on the same footing.
pub fn bench_cluster() -> Cluster {
    Cluster::start(
        ClusterOptions::default()
            .with_setting("shared_buffers", "1GB")
            .with_setting("max_wal_size", "4GB")
            .with_setting("fsync", "on")
            .with_setting("synchronous_commit", "on")
            .with_setting("full_page_writes", "on"),
    )
    .expect("start a cluster")
}

/// `switchyard <args> --plan <plan> --source <source> --target <target>`, not yet started.
pub fn switchyard(plan: &Path, args: &[&str], source: &str, target: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    command
        .args(args)
        .args(["--plan", plan.to_str().expect("a UTF-8 path")])
        .args(["--source", source, "--target", target]);
    command
}
