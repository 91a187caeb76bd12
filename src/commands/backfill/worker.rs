//! This process as one of a migration's backfill workers: the name its chunk leases carry, its
//! row in `switchyard.workers`, and the leases left by processes on this machine that died.

use std::time::{SystemTime, UNIX_EPOCH};

use tokio_postgres::Client;

use crate::checkpoint::leases::{release_leases, LeaseOwner};
use crate::checkpoint::{self, CheckpointError};

/// Who this process is among the workers of a migration.
pub(super) struct ThisProcess {
    pub(super) owner: LeaseOwner,
    pub(super) host: String,
    pub(super) pid: i32,
}

impl ThisProcess {
    /// `host/pid/start in ms`: unique even when a pid is reused after a restart.
    pub(super) fn new() -> ThisProcess {
        let host = hostname();
        let pid = std::process::id() as i32;
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        ThisProcess {
            owner: LeaseOwner(format!("{host}/{pid}/{started}")),
            host,
            pid,
        }
    }

    /// Records this process in `switchyard.workers`, after giving up the leases of the
    /// processes on this machine that are gone (a SIGKILL, a crash): their chunks are then
    /// taken at once instead of after their leases expire. On another machine nobody can tell
    /// a dead process from a slow one, so their leases expire. Releasing a live process's
    /// lease by mistake (its pid unseen from here, in another PID namespace with the same
    /// host name) costs only a copy: its late commit is refused by the lease check.
    pub(super) async fn register(
        &self,
        target: &Client,
        migration: &str,
    ) -> Result<(), CheckpointError> {
        let dead: Vec<String> = checkpoint::workers(target, migration)
            .await?
            .into_iter()
            .filter(|w| w.host == self.host && !w.finished && !running(w.pid))
            .map(|w| w.worker_id)
            .collect();
        if !dead.is_empty() {
            let released = release_leases(target, migration, &dead).await?;
            tracing::info!(
                workers = ?dead,
                chunks = released,
                "released the chunk leases of backfill processes on this machine that are gone"
            );
        }
        checkpoint::register_worker(target, migration, &self.owner, &self.host, self.pid).await
    }
}

/// Whether a process with this pid runs on this machine (signal 0 checks without sending).
fn running(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 sends nothing; it only reports whether the pid exists.
    let sent = unsafe { libc::kill(pid, 0) };
    sent == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

fn hostname() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is writable for its whole length, which is passed.
    let ok = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) } == 0;
    let end = buffer.iter().position(|b| *b == 0).unwrap_or(buffer.len());
    match std::str::from_utf8(&buffer[..end]) {
        Ok(name) if ok && !name.is_empty() => name.to_owned(),
        _ => "unknown-host".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_running_and_a_pid_that_cannot_exist_is_not() {
        assert!(running(std::process::id() as i32));
        assert!(!running(0));
        assert!(!running(i32::MAX));
    }

    #[test]
    fn the_lease_owner_names_host_and_pid() {
        let me = ThisProcess::new();
        assert!(me.owner.0.starts_with(&format!("{}/{}/", me.host, me.pid)));
    }
}
