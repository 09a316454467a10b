//! The client assertion of `client_certificate` (`private_key_jwt`, the credential Microsoft
//! recommends over a client secret): a short-lived JWT signed PS256 with the certificate's RSA
//! key, naming the certificate by its SHA-256 thumbprint (`x5t#S256`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::digest::{digest, SHA256};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{KeyPair, RsaKeyPair, RSA_PSS_SHA256};
use serde_json::json;
use thiserror::Error;
use ureq::tls::{parse_pem, PemItem};

/// How long an assertion is valid (seconds).
pub const ASSERTION_LIFETIME: u64 = 300;

/// Why a `client_certificate` pair is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CertificateError {
    #[error("no certificate in the certificate file")]
    NoCertificate,
    #[error("the private key is encrypted (give it unencrypted, readable by nginx only)")]
    Encrypted,
    #[error("no private key in the key file")]
    NoKey,
    #[error("the private key is not an RSA key in PKCS#1 or PKCS#8")]
    NotRsa,
    #[error("the private key does not belong to the certificate")]
    Mismatch,
    #[error("not PEM: {0}")]
    Pem(String),
}

/// An app's certificate and its key, checked to belong together.
pub struct ClientCertificate {
    key: RsaKeyPair,
    /// `x5t#S256`: base64url of the SHA-256 of the certificate's DER.
    thumbprint: String,
}

impl std::fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("ClientCertificate").field("thumbprint", &self.thumbprint).finish()
    }
}

/// The first item of a PEM text that `pick` takes, or the error that stopped the reading.
fn first<'a, T>(
    pem: &'a [u8],
    pick: impl Fn(PemItem<'a>) -> Option<T>,
) -> Option<Result<T, CertificateError>> {
    parse_pem(pem).find_map(|item| match item {
        Ok(item) => pick(item).map(Ok),
        Err(e) => Some(Err(CertificateError::Pem(e.to_string()))),
    })
}

impl ClientCertificate {
    /// Reads the PEM files' contents: the first certificate, and an RSA key (PKCS#1 or PKCS#8).
    pub fn from_pem(certificate: &[u8], key: &[u8]) -> Result<ClientCertificate, CertificateError> {
        let cert = first(certificate, |item| match item {
            PemItem::Certificate(cert) => Some(cert),
            _ => None,
        })
        .ok_or(CertificateError::NoCertificate)??;
        if key.windows(b"ENCRYPTED".len()).any(|w| w == b"ENCRYPTED") {
            return Err(CertificateError::Encrypted);
        }
        let private = first(key, |item| match item {
            PemItem::PrivateKey(key) => Some(key),
            _ => None,
        })
        .ok_or(CertificateError::NoKey)??;
        // PKCS#8, else PKCS#1 (ureq does not say which PEM label it read).
        let pair = RsaKeyPair::from_pkcs8(private.der())
            .or_else(|_| RsaKeyPair::from_der(private.der()))
            .map_err(|_| CertificateError::NotRsa)?;
        // The certificate's subjectPublicKeyInfo holds the RSAPublicKey DER that ring derives
        // from the private key: the pair belongs together exactly when the bytes occur in it.
        let public = pair.public_key().as_ref();
        if !cert.der().windows(public.len()).any(|w| w == public) {
            return Err(CertificateError::Mismatch);
        }
        let thumbprint = URL_SAFE_NO_PAD.encode(digest(&SHA256, cert.der()));
        Ok(ClientCertificate { key: pair, thumbprint })
    }

    /// A fresh assertion for `client_id` at the token endpoint `audience`, valid from `now`.
    pub fn assertion(&self, client_id: &str, audience: &str, now: u64, random: &SystemRandom) -> String {
        let mut jti = [0u8; 16];
        // The system's random source does not fail on Linux once the process runs.
        random.fill(&mut jti).expect("random bytes");
        let header = json!({ "alg": "PS256", "typ": "JWT", "x5t#S256": self.thumbprint });
        let claims = json!({
            "aud": audience,
            "iss": client_id,
            "sub": client_id,
            "jti": URL_SAFE_NO_PAD.encode(jti),
            "nbf": now,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(&RSA_PSS_SHA256, random, signing_input.as_bytes(), &mut signature)
            .expect("signing with a valid RSA key");
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}
