//! `tls-server-end-point` channel binding data (RFC 5929 §4) for SCRAM-SHA-256-PLUS.
//!
//! With channel binding, the password proof is tied to the certificate the client actually saw,
//! so a man in the middle holding another certificate cannot relay the login, even with
//! `sslmode=require`, which does not verify the certificate. The binding data is a hash of the
//! server certificate, made with the hash of the certificate's own signature algorithm (SHA-1 and
//! MD5 upgraded to SHA-256), exactly as PostgreSQL computes it. Pure: DER bytes in, hash out.
//!
//! <https://www.postgresql.org/docs/15/sasl-authentication.html#SASL-SCRAM-SHA-256>

use sha2::{Digest, Sha256, Sha384, Sha512};

/// DER tag of SEQUENCE.
const SEQUENCE: u8 = 0x30;
/// DER tag of OBJECT IDENTIFIER.
const OBJECT_IDENTIFIER: u8 = 0x06;

/// Signature algorithm OIDs (DER contents) and the hash RFC 5929 assigns to each.
const SIGNATURE_HASHES: &[(&[u8], Hash)] = &[
    // 1.2.840.113549.1.1.{4,5,11,12,13}: md5/sha1/sha256/sha384/sha512 WithRSAEncryption
    (
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x04],
        Hash::Sha256,
    ),
    (
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05],
        Hash::Sha256,
    ),
    (
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b],
        Hash::Sha256,
    ),
    (
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c],
        Hash::Sha384,
    ),
    (
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d],
        Hash::Sha512,
    ),
    // 1.2.840.10045.4.1 and 1.2.840.10045.4.3.{2,3,4}: ecdsa-with-SHA1/256/384/512
    (&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01], Hash::Sha256),
    (
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02],
        Hash::Sha256,
    ),
    (
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03],
        Hash::Sha384,
    ),
    (
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04],
        Hash::Sha512,
    ),
];

#[derive(Clone, Copy, Debug)]
enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

/// The binding data for a DER certificate, or `None` when its signature algorithm has no
/// defined hash (Ed25519, RSA-PSS) or the DER is not a certificate; then SCRAM runs unbound.
pub(super) fn tls_server_end_point(certificate: &[u8]) -> Option<Vec<u8>> {
    let oid = signature_algorithm(certificate)?;
    let (_, hash) = SIGNATURE_HASHES.iter().find(|(known, _)| *known == oid)?;
    Some(match hash {
        Hash::Sha256 => Sha256::digest(certificate).to_vec(),
        Hash::Sha384 => Sha384::digest(certificate).to_vec(),
        Hash::Sha512 => Sha512::digest(certificate).to_vec(),
    })
}

/// `Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm SEQUENCE { OID, ... }, ... }`:
/// the contents of that OID.
fn signature_algorithm(der: &[u8]) -> Option<&[u8]> {
    let (certificate, _) = element(der, SEQUENCE)?;
    let (_, after_tbs) = element(certificate, SEQUENCE)?;
    let (algorithm, _) = element(after_tbs, SEQUENCE)?;
    let (oid, _) = element(algorithm, OBJECT_IDENTIFIER)?;
    Some(oid)
}

/// Splits a DER element with tag `tag` off the front: (contents, rest).
fn element(der: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&first, rest) = der.split_first()?;
    if first != tag {
        return None;
    }
    let (&len_byte, rest) = rest.split_first()?;
    let (len, rest) = if len_byte < 0x80 {
        (usize::from(len_byte), rest)
    } else {
        // Long form: the low bits count the length bytes that follow (at most 4 here).
        let count = usize::from(len_byte & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let len = rest[..count]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[count..])
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate skeleton: SEQUENCE { SEQUENCE {..tbs..}, SEQUENCE { OID }, BIT STRING }.
    fn certificate(oid: &[u8], tbs_len: usize) -> Vec<u8> {
        let mut body = vec![SEQUENCE, 0x82];
        body.extend_from_slice(&(tbs_len as u16).to_be_bytes());
        body.extend(std::iter::repeat_n(0u8, tbs_len));
        body.extend([
            SEQUENCE,
            (oid.len() + 2) as u8,
            OBJECT_IDENTIFIER,
            oid.len() as u8,
        ]);
        body.extend_from_slice(oid);
        body.extend([0x03, 0x01, 0x00]);
        let mut der = vec![SEQUENCE, 0x82];
        der.extend_from_slice(&(body.len() as u16).to_be_bytes());
        der.extend(body);
        der
    }

    #[test]
    fn hashes_with_the_signature_algorithms_hash() {
        let ecdsa_sha384 = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
        let der = certificate(&ecdsa_sha384, 300);
        assert_eq!(
            tls_server_end_point(&der).unwrap(),
            Sha384::digest(&der).to_vec()
        );
        let rsa_sha1 = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05];
        let der = certificate(&rsa_sha1, 10);
        assert_eq!(
            tls_server_end_point(&der).unwrap(),
            Sha256::digest(&der).to_vec()
        );
    }

    #[test]
    fn declines_unknown_algorithms_and_garbage() {
        let ed25519 = [0x2b, 0x65, 0x70];
        assert_eq!(tls_server_end_point(&certificate(&ed25519, 5)), None);
        assert_eq!(tls_server_end_point(b""), None);
        assert_eq!(
            tls_server_end_point(&[SEQUENCE, 0x84, 0xff, 0xff, 0xff, 0xff]),
            None
        );
        let mut truncated = certificate(&[0x2a], 50);
        truncated.truncate(20);
        assert_eq!(tls_server_end_point(&truncated), None);
    }
}
