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
    /// The end of the certificate's validity (seconds since the epoch), if it could be read.
    pub not_after: Option<u64>,
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
        Ok(ClientCertificate { key: pair, thumbprint, not_after: not_after(cert.der()) })
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

/// One DER element: its tag, its content and what follows it.
fn element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        (rest[..n].iter().fold(0usize, |l, b| l << 8 | usize::from(*b)), &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// `notAfter` of an X.509 certificate (RFC 5280 4.1: Certificate, TBSCertificate, [0] version,
/// serial, signature, issuer, validity), in seconds since the epoch. By hand: one field does not
/// warrant an X.509 parser among the dependencies.
fn not_after(der: &[u8]) -> Option<u64> {
    let (_, certificate, _) = element(der)?;
    let (_, tbs, _) = element(certificate)?;
    let mut rest = tbs;
    if rest.first() == Some(&0xa0) {
        rest = element(rest)?.2;
    }
    for _ in 0..3 {
        rest = element(rest)?.2; // serial, signature algorithm, issuer
    }
    let (_, validity, _) = element(rest)?;
    let (_, _, after) = element(validity)?;
    let (tag, time, _) = element(after)?;
    let text = core::str::from_utf8(time).ok()?.strip_suffix('Z')?;
    let digits = |s: &str| s.parse::<u64>().ok();
    let (year, rest) = match tag {
        0x17 => {
            let yy = digits(text.get(..2)?)?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, text.get(2..)?)
        }
        0x18 => (digits(text.get(..4)?)?, text.get(4..)?),
        _ => return None,
    };
    let field = |at: usize| digits(rest.get(at..at + 2)?);
    let (month, day, hour, minute, second) = (field(0)?, field(2)?, field(4)?, field(6)?, field(8)?);
    // Days from the civil date (H. Hinnant's algorithm), years from March.
    let (y, m) = if month <= 2 { (year - 1, month + 9) } else { (year, month - 3) };
    let era = y / 400;
    let day_of_era =
        (y - era * 400) * 365 + (y - era * 400) / 4 - (y - era * 400) / 100 + (153 * m + 2) / 5 + day - 1;
    let days = (era * 146_097 + day_of_era).checked_sub(719_468)?;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}
