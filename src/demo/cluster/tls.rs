//! TLS for a throwaway cluster: the server presents a certificate the caller made (tests make a
//! self-signed one), so clients can be tested with `sslmode=require`, `verify-ca` and
//! `verify-full`.
//!
//! The files are copied into the data directory instead of being used where they lie: the server
//! may run as `postgres` and must be able to read the key, and PostgreSQL refuses a key that
//! anyone but its owner can read. `pg_hba.conf` keeps `host` lines, not `hostssl`, so plain TCP
//! (and [`Cluster::url`](super::Cluster::url)) still works; a test that needs encryption checks
//! `pg_stat_ssl`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::{io_error, ClusterError};

/// The copies' names in the data directory, where relative `ssl_*_file` paths resolve.
const CERT_FILE_NAME: &str = "server.crt";
const KEY_FILE_NAME: &str = "server.key";
/// PostgreSQL refuses a private key that its group or others may read.
const KEY_FILE_MODE: u32 = 0o600;

/// Server settings that turn TLS on with the copied files.
pub(super) const SETTINGS: &[(&str, &str)] = &[
    ("ssl", "on"),
    ("ssl_cert_file", CERT_FILE_NAME),
    ("ssl_key_file", KEY_FILE_NAME),
];

/// The PEM certificate (a chain is fine) and private key the server presents.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl TlsFiles {
    /// Copies both into `data_dir` and returns the copies, for the caller to hand to the server
    /// user.
    pub(super) fn install(&self, data_dir: &Path) -> Result<[PathBuf; 2], ClusterError> {
        let cert = data_dir.join(CERT_FILE_NAME);
        let key = data_dir.join(KEY_FILE_NAME);
        for (from, to) in [(&self.cert_file, &cert), (&self.key_file, &key)] {
            fs::copy(from, to).map_err(io_error(format!(
                "copy {} into the data directory",
                from.display()
            )))?;
        }
        fs::set_permissions(&key, fs::Permissions::from_mode(KEY_FILE_MODE))
            .map_err(io_error("make the TLS key private"))?;
        Ok([cert, key])
    }
}
