//! TLS for both kinds of connection, following libpq's `sslmode` with rustls: `require`
//! encrypts without verifying the certificate (but still checks the handshake signatures),
//! `verify-ca` checks the chain against `sslrootcert`, `verify-full` also checks the host name.
//! The certificate the server showed is recorded for SCRAM-SHA-256-PLUS channel binding.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};
use rustls::{Error as TlsError, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::pg::conninfo::{ConnInfo, SslMode};

/// A rustls connector for one connection, and the server certificate it saw (DER), which the
/// replication connection needs for SCRAM channel binding.
pub struct TlsSetup {
    pub connector: MakeRustlsConnect,
    pub server_certificate: Arc<Mutex<Option<Vec<u8>>>>,
}

/// The TLS client could not be built: a setting or a certificate file is wrong, which no
/// retry fixes.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up TLS for {dsn}: {message}")]
pub struct TlsSetupError {
    pub dsn: String,
    pub message: String,
}

/// Builds the TLS client for `info.ssl_mode()`, or `None` for `disable`. A fresh config per
/// connection: no session resumption, so every handshake shows the certificate.
pub fn tls_setup(info: &ConnInfo) -> Result<Option<TlsSetup>, TlsSetupError> {
    let tls_error = |message: String| TlsSetupError {
        dsn: info.redacted(),
        message,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match info.ssl_mode() {
        SslMode::Disable => return Ok(None),
        SslMode::Prefer | SslMode::Require => Arc::new(AcceptAnyCertificate(provider.clone())),
        mode @ (SslMode::VerifyCa | SslMode::VerifyFull) => {
            let path = info.ssl_root_cert().ok_or_else(|| {
                tls_error("sslmode verify-ca and verify-full need sslrootcert".into())
            })?;
            let mut roots = RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
                .map_err(|e| {
                    tls_error(format!("cannot read sslrootcert {}: {e}", path.display()))
                })?;
            let (added, _ignored) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(tls_error(format!(
                    "sslrootcert {} holds no usable certificate",
                    path.display()
                )));
            }
            let webpki =
                WebPkiServerVerifier::builder_with_provider(roots.into(), provider.clone())
                    .build()
                    .map_err(|e| tls_error(e.to_string()))?;
            match mode {
                SslMode::VerifyCa => Arc::new(IgnoreHostName { inner: webpki }),
                _ => webpki,
            }
        }
    };
    let server_certificate = Arc::new(Mutex::new(None));
    let recording = Arc::new(RecordCertificate {
        inner: verifier,
        seen: server_certificate.clone(),
    });
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(recording)
        .with_no_client_auth();
    Ok(Some(TlsSetup {
        connector: MakeRustlsConnect::new(config),
        server_certificate,
    }))
}

/// `require`/`prefer`: any certificate, but the handshake signatures are still checked, so the
/// session key is bound to the certificate that was shown.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the full chain check, minus the name. rustls checks the name last, after the
/// chain, so a name error means the chain was good.
#[derive(Debug)]
struct IgnoreHostName {
    inner: Arc<dyn ServerCertVerifier>,
}

/// `RecordCertificate`: passes everything to `inner` and remembers the end-entity certificate.
#[derive(Debug)]
struct RecordCertificate {
    inner: Arc<dyn ServerCertVerifier>,
    seen: Arc<Mutex<Option<Vec<u8>>>>,
}

/// The signature checks of a wrapping verifier: all `self.inner`'s.
macro_rules! delegate_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, TlsError> {
            self.inner.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, TlsError> {
            self.inner.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.inner.supported_verify_schemes()
        }
    };
}

impl ServerCertVerifier for IgnoreHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(TlsError::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    delegate_signatures!();
}

impl ServerCertVerifier for RecordCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        let verdict = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(end_entity.to_vec());
        Ok(verdict)
    }

    delegate_signatures!();
}
