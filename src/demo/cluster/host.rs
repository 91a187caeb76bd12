//! What the machine must provide: the PostgreSQL binaries, the `postgres` user to run them as
//! when we are root (PostgreSQL refuses root), a private temp directory and a free port.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use super::error::{io_error, ClusterError};

/// Large enough for any passwd entry `getpwnam_r` returns.
const PASSWD_BUFFER_BYTES: usize = 16 * 1024;

/// `$PG_BIN`, else `pg_config --bindir`, else the newest `/usr/lib/postgresql/*/bin`.
pub(super) fn find_bin_dir() -> Result<PathBuf, ClusterError> {
    let has_binaries = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os("PG_BIN") {
        candidates.push(PathBuf::from(dir));
    }
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output() {
        if output.status.success() {
            let dir = String::from_utf8_lossy(&output.stdout).trim().to_string();
            candidates.push(PathBuf::from(dir));
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort();
    candidates.extend(versions.into_iter().rev().map(|(_, dir)| dir));
    match candidates.iter().find(|dir| has_binaries(dir)) {
        Some(dir) => Ok(dir.clone()),
        None => Err(ClusterError::BinariesNotFound {
            searched: format!(
                "$PG_BIN, pg_config --bindir, /usr/lib/postgresql/*/bin: {candidates:?}"
            ),
        }),
    }
}

/// uid and gid of the `postgres` user.
pub(super) fn postgres_user() -> Result<(u32, u32), ClusterError> {
    let name = c"postgres";
    // SAFETY: `passwd` is plain data (integers and pointers); all-zero is a valid value that
    // getpwnam_r overwrites.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; PASSWD_BUFFER_BYTES];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; `pwd` borrows `buf` only until we copy ids.
    let rc = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return Err(ClusterError::NoPostgresUser);
    }
    Ok((pwd.pw_uid, pwd.pw_gid))
}

/// Makes temp dir names unique within this process.
static DIR_COUNTER: AtomicU32 = AtomicU32::new(0);

pub(super) fn make_temp_dir() -> Result<PathBuf, ClusterError> {
    use std::os::unix::fs::DirBuilderExt;
    let base = std::env::temp_dir();
    loop {
        let n = DIR_COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("switchyard-pg-{}-{n}", std::process::id()));
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            // A leftover from an earlier process with our pid: take the next name.
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(source) => return Err(io_error(format!("create {}", dir.display()))(source)),
        }
    }
}

/// A port nobody listens on right now (the kernel picks it; the server may still lose it).
pub(super) fn free_port() -> Result<u16, ClusterError> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(io_error("find a free port"))?;
    let port = listener
        .local_addr()
        .map_err(io_error("find a free port"))?
        .port();
    Ok(port)
}
