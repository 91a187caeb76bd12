//! Who may log in to a throwaway cluster, and how: the `pg_hba.conf` methods initdb writes.
//!
//! Without a password everyone is trusted. With one, TCP logins must prove it, by the method the
//! caller picks, because that is what tests of client authentication exercise. The Unix socket
//! always trusts: it lives in the cluster's 0700 directory, which only we and the server user can
//! enter, and it gives those tests a superuser session of their own that needs no password.

/// initdb arguments for a cluster without a password: `trust` on the socket and over TCP.
pub(super) const TRUST_ARGS: &[&str] = &["-A", "trust"];

/// How TCP clients prove the superuser password: the `pg_hba.conf` method of the `host` lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PasswordAuth {
    /// Only SCRAM: a role whose password is stored as an md5 hash cannot log in over TCP.
    #[default]
    ScramSha256,
    /// `md5`, as older setups still have it: roles stored with `password_encryption = md5` log
    /// in with md5, and the server moves roles with SCRAM hashes (the default, the superuser's
    /// too) to SCRAM, so both client paths can be tested against one cluster.
    Md5,
}

impl PasswordAuth {
    /// initdb arguments: the socket trusts, TCP asks for the password by this method.
    pub(super) fn initdb_args(self) -> [String; 2] {
        let method = match self {
            PasswordAuth::ScramSha256 => "scram-sha-256",
            PasswordAuth::Md5 => "md5",
        };
        [
            "--auth-local=trust".to_string(),
            format!("--auth-host={method}"),
        ]
    }
}
