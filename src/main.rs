//! `switchyard`: parse the command line, run, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    return_large_blocks_to_the_os();
    let cli = switchyard::cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SWITCHYARD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(switchyard::commands::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            // The whole chain, each cause once: "backfill failed: target: committing a chunk:
            // ...: <cause>".
            eprintln!("error: {}", switchyard::error::Chain::from(&e));
            ExitCode::FAILURE
        }
    }
}

/// Every allocation of 16 MiB or more gets its own mapping, unmapped when freed.
///
/// glibc's default threshold moves: after a large block is freed, blocks up to that size (at
/// most 32 MiB) come from the per-thread arenas instead, and an arena keeps what is freed in it
/// for reuse: three 30 MB values applied by `follow` left 60 MB resident for good
/// (`faults::large_rows`). A fixed threshold turns the moving rule off (mallopt(3)); the hot
/// paths' buffers (1 MiB batches, 8 MiB apply groups) stay below it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn return_large_blocks_to_the_os() {
    const THRESHOLD_BYTES: libc::c_int = 16 * 1024 * 1024;
    // SAFETY: mallopt only sets a tunable; it is called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, THRESHOLD_BYTES);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn return_large_blocks_to_the_os() {}
