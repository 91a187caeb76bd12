//! Connection strings as users write them, parsed once and safe to print.
//!
//! Users paste what `psql` accepts: `postgres://user:pw@host/db?sslmode=verify-full` URLs or
//! `host=... user=... password=...` key=value strings. tokio-postgres parses both, but it knows
//! only `sslmode` disable/prefer/require and no `sslrootcert`, and switchyard needs certificate
//! verification and its own replication connection. So this module takes the TLS keys out,
//! hands the rest to [`tokio_postgres::Config`]'s parser, and keeps a redacted copy of the text
//! for every log line and error message: `Display` and `Debug` print that copy, so a password
//! cannot reach a terminal by accident.
//!
//! <https://www.postgresql.org/docs/15/libpq-connect.html#LIBPQ-CONNSTRING>

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// What replaces a password in printed connection strings.
pub const REDACTED_PASSWORD: &str = "********";

/// The environment variable read for a password the connection string lacks, as libpq does.
pub const PASSWORD_ENV: &str = "PGPASSWORD";

/// libpq's `sslmode`, with the same meaning (the default, as in libpq, is `prefer`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP only.
    Disable,
    /// TLS without verification when the server offers it, plain TCP when it does not.
    #[default]
    Prefer,
    /// TLS, the certificate is not verified (protects against eavesdropping only).
    Require,
    /// TLS with a certificate signed by `sslrootcert`, whatever name it carries.
    VerifyCa,
    /// TLS with a certificate signed by `sslrootcert` for the host name connected to.
    VerifyFull,
}

impl SslMode {
    /// The libpq spelling, e.g. `verify-full`.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl FromStr for SslMode {
    type Err = ConnInfoError;

    fn from_str(s: &str) -> Result<SslMode, ConnInfoError> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => return Err(ConnInfoError::SslMode(other.to_string())),
        })
    }
}

/// A connection string that cannot be used. Messages never quote the string itself, which may
/// hold a password.
#[derive(Debug, thiserror::Error)]
pub enum ConnInfoError {
    #[error("invalid connection string: {0}")]
    Malformed(&'static str),
    #[error("invalid sslmode {0:?}: expected disable, prefer, require, verify-ca or verify-full")]
    SslMode(String),
    #[error("sslmode={0} needs sslrootcert=<path to the CA certificate file>")]
    MissingRootCert(&'static str),
    /// tokio-postgres's parse error with its cause, flattened (its `Display` omits the cause,
    /// which names the offending key). Its messages never quote values.
    #[error("{0}")]
    Config(String),
}

/// A parsed connection string: tokio-postgres's settings plus the TLS settings it lacks.
#[derive(Clone)]
pub struct ConnInfo {
    config: tokio_postgres::Config,
    ssl_mode: SslMode,
    ssl_root_cert: Option<PathBuf>,
    redacted: String,
}

impl ConnInfo {
    /// Parses a `postgres://` URL or a key=value string.
    pub fn parse(s: &str) -> Result<ConnInfo, ConnInfoError> {
        let is_url = url_rest(s).is_some();
        let params = match url_rest(s) {
            Some(rest) => url_params(s.len() - rest.len(), rest)?,
            None => key_value_params(s)?,
        };
        let mut ssl_mode = SslMode::default();
        let mut ssl_root_cert = None;
        let mut redacted = String::with_capacity(s.len());
        let mut forwarded = String::with_capacity(s.len());
        let (mut redacted_from, mut forwarded_from) = (0, 0);
        for param in &params {
            match param.key.as_str() {
                "password" => {
                    redacted.push_str(&s[redacted_from..param.value.start]);
                    redacted.push_str(REDACTED_PASSWORD);
                    redacted_from = param.value.end;
                }
                "sslmode" | "sslrootcert" => {
                    if param.key == "sslmode" {
                        ssl_mode = param.decoded.parse()?;
                    } else {
                        ssl_root_cert = Some(PathBuf::from(&param.decoded));
                    }
                    forwarded.push_str(&s[forwarded_from..param.whole.start]);
                    forwarded_from = param.whole.end;
                }
                _ => {}
            }
        }
        redacted.push_str(&s[redacted_from..]);
        forwarded.push_str(&s[forwarded_from..]);
        if ssl_root_cert.is_none() {
            match ssl_mode {
                SslMode::VerifyCa => return Err(ConnInfoError::MissingRootCert("verify-ca")),
                SslMode::VerifyFull => return Err(ConnInfoError::MissingRootCert("verify-full")),
                _ => {}
            }
        }
        // Cutting the last URL parameter can leave a dangling separator behind.
        let forwarded = match is_url {
            true => forwarded.trim_end_matches(['?', '&']),
            false => &forwarded,
        };
        let mut config: tokio_postgres::Config =
            forwarded.parse().map_err(|e: tokio_postgres::Error| {
                let cause = std::error::Error::source(&e).map(|c| format!(": {c}"));
                ConnInfoError::Config(format!("{e}{}", cause.unwrap_or_default()))
            })?;
        // As libpq: `PGPASSWORD` when the string has no password, so that it need not be
        // written on a command line, where `ps` shows it to every local user.
        if config.get_password().is_none() {
            if let Some(password) = std::env::var_os(PASSWORD_ENV) {
                config.password(std::os::unix::ffi::OsStrExt::as_bytes(password.as_os_str()));
            }
        }
        Ok(ConnInfo {
            config,
            ssl_mode,
            ssl_root_cert,
            redacted,
        })
    }

    /// Everything but the TLS settings, for tokio-postgres and for reading host, user, etc.
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    pub fn ssl_mode(&self) -> SslMode {
        self.ssl_mode
    }

    /// The CA certificate file (PEM) that `verify-ca` and `verify-full` trust.
    pub fn ssl_root_cert(&self) -> Option<&Path> {
        self.ssl_root_cert.as_deref()
    }

    /// The connection string as given, with every password replaced by `********`.
    pub fn redacted(&self) -> String {
        self.redacted.clone()
    }
}

impl FromStr for ConnInfo {
    type Err = ConnInfoError;

    fn from_str(s: &str) -> Result<ConnInfo, ConnInfoError> {
        ConnInfo::parse(s)
    }
}

/// Prints the redacted form.
impl fmt::Display for ConnInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

/// Prints the redacted form, never the parsed password.
impl fmt::Debug for ConnInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnInfo")
            .field("dsn", &self.redacted)
            .field("ssl_mode", &self.ssl_mode)
            .field("ssl_root_cert", &self.ssl_root_cert)
            .finish()
    }
}

/// One setting found in the text: its decoded key, decoded value, and byte spans of the value
/// (as written, quotes included) and of the whole setting (so it can be cut out).
struct Param {
    key: String,
    decoded: String,
    value: Range<usize>,
    whole: Range<usize>,
}

fn url_rest(s: &str) -> Option<&str> {
    ["postgres://", "postgresql://"]
        .iter()
        .find_map(|prefix| s.strip_prefix(prefix))
}

/// The password inside `user:password@` and every `?key=value` of a URL. Splits exactly where
/// tokio-postgres's URL parser does (credentials end at the first `@`), so what it reads as a
/// password is what gets redacted.
fn url_params(offset: usize, rest: &str) -> Result<Vec<Param>, ConnInfoError> {
    let mut params = Vec::new();
    let mut after_creds = 0;
    if let Some(at) = rest.find('@') {
        if let Some(colon) = rest[..at].find(':') {
            let value = offset + colon + 1..offset + at;
            if !value.is_empty() {
                let decoded = percent_decode(&rest[colon + 1..at])?;
                let whole = value.clone();
                params.push(Param {
                    key: "password".into(),
                    decoded,
                    value,
                    whole,
                });
            }
        }
        after_creds = at + 1;
    }
    let Some(question) = rest[after_creds..].find('?').map(|q| q + after_creds) else {
        return Ok(params);
    };
    let mut start = question + 1;
    while start < rest.len() {
        let end = rest[start..]
            .find('&')
            .map_or(rest.len(), |amp| start + amp);
        let pair = &rest[start..end];
        let eq = pair
            .find('=')
            .ok_or(ConnInfoError::Malformed("URL parameter without '='"))?;
        // Cut a parameter together with the `&` after it: `?sslmode=x&a=1` -> `?a=1`; a
        // trailing separator left by cutting the last one is trimmed by the caller.
        let whole_end = (end + 1).min(rest.len());
        params.push(Param {
            key: percent_decode(&pair[..eq])?,
            decoded: percent_decode(&pair[eq + 1..])?,
            value: offset + start + eq + 1..offset + end,
            whole: offset + start..offset + whole_end,
        });
        start = end + 1;
    }
    Ok(params)
}

fn percent_decode(s: &str) -> Result<String, ConnInfoError> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(String::from)
        .map_err(|_| ConnInfoError::Malformed("percent-encoding is not UTF-8"))
}

/// Splits `key = value` settings the way libpq and tokio-postgres do: values are bare words or
/// single-quoted, and a backslash escapes the next character in both.
fn key_value_params(s: &str) -> Result<Vec<Param>, ConnInfoError> {
    let b = s.as_bytes();
    let mut params = Vec::new();
    let mut i = 0;
    let skip_ws = |mut i: usize| {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    loop {
        i = skip_ws(i);
        if i == b.len() {
            return Ok(params);
        }
        let key_start = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'=' {
            i += 1;
        }
        let key = s[key_start..i].to_string();
        i = skip_ws(i);
        if key.is_empty() || b.get(i) != Some(&b'=') {
            return Err(ConnInfoError::Malformed("expected key=value"));
        }
        i = skip_ws(i + 1);
        let value_start = i;
        let quoted = b.get(i) == Some(&b'\'');
        if quoted {
            i += 1;
        }
        let mut decoded = Vec::new();
        loop {
            match b.get(i) {
                None if quoted => return Err(ConnInfoError::Malformed("unterminated quote")),
                None => break,
                Some(b'\'') if quoted => {
                    i += 1;
                    break;
                }
                Some(c) if !quoted && c.is_ascii_whitespace() => break,
                Some(b'\\') if i + 1 < b.len() => {
                    decoded.push(b[i + 1]);
                    i += 2;
                }
                Some(&c) => {
                    decoded.push(c);
                    i += 1;
                }
            }
        }
        if i == value_start {
            return Err(ConnInfoError::Malformed("missing value after '='"));
        }
        let decoded = String::from_utf8(decoded)
            .map_err(|_| ConnInfoError::Malformed("value is not UTF-8"))?;
        params.push(Param {
            key,
            decoded,
            value: value_start..i,
            whole: key_start..i,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_postgres::config::Host;

    const SECRET: &str = "s3cr3t";

    fn assert_no_secret(info: &ConnInfo) {
        for text in [info.redacted(), info.to_string(), format!("{info:?}")] {
            assert!(!text.contains(SECRET), "password leaked: {text}");
        }
    }

    #[test]
    fn url_keeps_tls_keys_for_itself_and_redacts_password() {
        let info = ConnInfo::parse(
            "postgres://alice:s3cr3t@db.example:6543/shop?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=x",
        )
        .unwrap();
        assert_eq!(info.ssl_mode(), SslMode::VerifyFull);
        assert_eq!(info.ssl_root_cert(), Some(Path::new("/etc/ca.pem")));
        assert_eq!(info.config().get_user(), Some("alice"));
        assert_eq!(info.config().get_password(), Some(&b"s3cr3t"[..]));
        assert_eq!(info.config().get_dbname(), Some("shop"));
        assert_eq!(info.config().get_ports(), &[6543]);
        assert_eq!(info.config().get_application_name(), Some("x"));
        assert_eq!(
            info.redacted(),
            "postgres://alice:********@db.example:6543/shop?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=x"
        );
        assert_no_secret(&info);
    }

    #[test]
    fn url_redacts_password_parameter_and_encoded_password() {
        let info = ConnInfo::parse("postgresql://bob:p%40ss@h/db?password=s3cr3t&sslmode=require")
            .unwrap();
        // The query's password is parsed last, so it wins, as in libpq.
        assert_eq!(info.config().get_password(), Some(&b"s3cr3t"[..]));
        assert_eq!(info.ssl_mode(), SslMode::Require);
        assert_eq!(
            info.redacted(),
            "postgresql://bob:********@h/db?password=********&sslmode=require"
        );
        assert_no_secret(&info);
        let only_tls = ConnInfo::parse("postgres://u@h/db?sslmode=disable").unwrap();
        assert_eq!(only_tls.ssl_mode(), SslMode::Disable);
        assert_eq!(only_tls.redacted(), "postgres://u@h/db?sslmode=disable");
    }

    #[test]
    fn url_decodes_reserved_and_non_ascii_characters_in_user_password_and_dbname() {
        // user `ü@x:y`, password `s3cr3t%@:/?é`, dbname `d/b?ä@:%`
        let info = ConnInfo::parse(
            "postgres://%C3%BC%40x%3Ay:s3cr3t%25%40%3A%2F%3F%C3%A9@h:5433/d%2Fb%3F%C3%A4%40%3A%25?sslmode=require&application_name=%C3%A9%3F%25",
        )
        .unwrap();
        assert_eq!(info.config().get_user(), Some("ü@x:y"));
        assert_eq!(
            info.config().get_password(),
            Some("s3cr3t%@:/?é".as_bytes())
        );
        assert_eq!(info.config().get_dbname(), Some("d/b?ä@:%"));
        assert_eq!(info.config().get_application_name(), Some("é?%"));
        assert_eq!(info.ssl_mode(), SslMode::Require);
        assert_eq!(
            info.redacted(),
            "postgres://%C3%BC%40x%3Ay:********@h:5433/d%2Fb%3F%C3%A4%40%3A%25?sslmode=require&application_name=%C3%A9%3F%25"
        );
        assert_no_secret(&info);
    }

    #[test]
    fn url_parameters_are_percent_decoded_and_bad_escapes_kept_or_refused() {
        let info = ConnInfo::parse(
            "postgres://u@h/db?sslrootcert=%2Ftmp%2Fca%20%C3%A9%25.pem&sslmode=%76erify-ca",
        )
        .unwrap();
        assert_eq!(info.ssl_root_cert(), Some(Path::new("/tmp/ca é%.pem")));
        assert_eq!(info.ssl_mode(), SslMode::VerifyCa);
        // A `%` without two hex digits stays a `%`, as in libpq and tokio-postgres.
        let info =
            ConnInfo::parse("postgres://u@h/db?sslrootcert=100%25%zz%4&sslmode=verify-ca").unwrap();
        assert_eq!(info.ssl_root_cert(), Some(Path::new("100%%zz%4")));
        let err = ConnInfo::parse("postgres://u:%FF@h/db").unwrap_err();
        assert!(err.to_string().contains("not UTF-8"), "{err}");
        assert!(ConnInfo::parse("postgres://u@h/db?sslmode=%FF").is_err());
    }

    #[test]
    fn key_value_redacts_bare_and_quoted_passwords() {
        let info = ConnInfo::parse(
            r"host=/run/pg port=5433 user=carol password='s3cr3t and \\ \' more' dbname=db sslmode=verify-ca sslrootcert='/tmp/my ca.pem'",
        )
        .unwrap();
        assert_eq!(
            info.config().get_password(),
            Some(&br"s3cr3t and \ ' more"[..])
        );
        assert_eq!(info.ssl_mode(), SslMode::VerifyCa);
        assert_eq!(info.ssl_root_cert(), Some(Path::new("/tmp/my ca.pem")));
        assert_eq!(info.config().get_hosts(), &[Host::Unix("/run/pg".into())]);
        assert_eq!(
            info.redacted(),
            "host=/run/pg port=5433 user=carol password=******** dbname=db sslmode=verify-ca sslrootcert='/tmp/my ca.pem'"
        );
        assert_no_secret(&info);

        let bare = ConnInfo::parse("user=u password = s3cr3t host=h").unwrap();
        assert_eq!(bare.redacted(), "user=u password = ******** host=h");
        assert_eq!(bare.ssl_mode(), SslMode::Prefer);
        assert_no_secret(&bare);
    }

    #[test]
    fn rejects_bad_tls_settings_without_echoing_the_string() {
        let err = ConnInfo::parse("host=h password=s3cr3t sslmode=verify").unwrap_err();
        assert!(matches!(err, ConnInfoError::SslMode(ref m) if m == "verify"));
        let err = ConnInfo::parse("host=h password=s3cr3t sslmode=verify-full").unwrap_err();
        assert!(err.to_string().contains("sslrootcert"), "{err}");
        let err = ConnInfo::parse("host=h password='s3cr3t").unwrap_err();
        assert!(!err.to_string().contains(SECRET));
        let err = ConnInfo::parse("host=h password=s3cr3t bogus=1").unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
        assert!(!err.to_string().contains(SECRET));
    }
}
