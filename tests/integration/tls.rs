//! A self-signed server certificate made by `openssl` for the TLS tests, removed on drop.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// Long enough for any test run, short enough that a leaked key is worthless soon.
const VALID_DAYS: &str = "2";

/// Makes scratch directory names unique among the tests of this process.
static DIR_COUNTER: AtomicU32 = AtomicU32::new(0);

/// `server.crt` and `server.key` in a scratch directory; the certificate is its own CA.
pub struct SelfSignedCertificate {
    dir: PathBuf,
}

impl SelfSignedCertificate {
    /// A certificate for `localhost` only (no IP address in it), so `verify-full` against
    /// 127.0.0.1 must fail.
    pub fn for_localhost() -> SelfSignedCertificate {
        assert!(
            Command::new("openssl").arg("version").output().is_ok(),
            "openssl is needed to make the test certificate"
        );
        let dir = std::env::temp_dir().join(format!(
            "switchyard-cert-{}-{}",
            std::process::id(),
            DIR_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let certificate = SelfSignedCertificate { dir };
        let status = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ])
            .args(["-nodes", "-days", VALID_DAYS, "-subj", "/CN=localhost"])
            .args(["-addext", "subjectAltName=DNS:localhost"])
            .args(["-addext", "basicConstraints=critical,CA:FALSE"])
            .arg("-keyout")
            .arg(certificate.key_file())
            .arg("-out")
            .arg(certificate.cert_file())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        certificate
    }

    /// The PEM certificate; clients trust it as their root (`sslrootcert`).
    pub fn cert_file(&self) -> PathBuf {
        self.dir.join("server.crt")
    }

    /// The PEM private key.
    pub fn key_file(&self) -> PathBuf {
        self.dir.join("server.key")
    }
}

impl Drop for SelfSignedCertificate {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
