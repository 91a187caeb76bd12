//! Cleanup for when `Drop` never runs: a panic with `panic = abort`, a SIGKILL, a test runner's
//! timeout, or a cluster kept in a `static` (statics are never dropped).
//!
//! A small `sh` child blocks reading a pipe that only we hold. When our process dies the kernel
//! closes the pipe, `read` returns, and the script stops the postmaster and removes the
//! directory. On a normal drop we kill the watchdog first, so it never signals a pid that may
//! since have been recycled.

use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// `$1` is the postmaster's pid, `$2` the cluster directory. The wait is bounded because a
/// zombie whose new parent never reaps it stays visible to `kill -0`. Terminal signals are
/// ignored: a Ctrl-C meant for us must not kill the watchdog before it has cleaned up.
const SCRIPT: &str = r#"trap '' INT TERM HUP
read _
kill -QUIT "$1" 2>/dev/null
i=0
while kill -0 "$1" 2>/dev/null && [ "$i" -lt 200 ]; do sleep 0.05; i=$((i+1)); done
rm -rf "$2""#;

/// Armed while it lives; dropping it disarms it.
#[derive(Debug)]
pub(super) struct Watchdog {
    child: Child,
}

impl Watchdog {
    /// Watch over the postmaster `pid` serving from `dir`.
    pub(super) fn arm(pid: u32, dir: &Path) -> io::Result<Watchdog> {
        let child = Command::new("sh")
            .arg("-c")
            .arg(SCRIPT)
            .arg("switchyard-watchdog")
            .arg(pid.to_string())
            .arg(dir)
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        Ok(Watchdog { child })
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // Kill before the pipe closes (it closes when `child` drops, after this).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
