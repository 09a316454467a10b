//! Signature verification with keys parsed once, when a key set is loaded into a worker.
//!
//! Why aws-lc-rs: it keeps a parsed key (`ParsedPublicKey`, an `EVP_PKEY` with its Montgomery
//! constants), so a verification is the RSA operation and little else: 22.5 µs here against
//! ring's 30 µs (ring 0.17 re-derives the key on every call) and OpenSSL 3's 28 µs through the
//! `openssl` crate (docs/BENCHMARK.md). Its C symbols are prefixed, so it cannot clash with the
//! OpenSSL an nginx is linked with, whichever that is. Session sealing stays on ring.

use aws_lc_rs::signature::{self as sig, ParsedPublicKey, RsaPublicKeyComponents, VerificationAlgorithm};
use jsonwebtoken::Algorithm;

/// A public key, parsed for each signature algorithm its family allows.
#[derive(Clone)]
pub(crate) struct PublicKey {
    parsed: Vec<(Algorithm, ParsedPublicKey)>,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.parsed.iter().map(|(alg, _)| alg)).finish()
    }
}

const RSA_ALGORITHMS: [(Algorithm, &sig::RsaParameters); 6] = [
    (Algorithm::RS256, &sig::RSA_PKCS1_2048_8192_SHA256),
    (Algorithm::RS384, &sig::RSA_PKCS1_2048_8192_SHA384),
    (Algorithm::RS512, &sig::RSA_PKCS1_2048_8192_SHA512),
    (Algorithm::PS256, &sig::RSA_PSS_2048_8192_SHA256),
    (Algorithm::PS384, &sig::RSA_PSS_2048_8192_SHA384),
    (Algorithm::PS512, &sig::RSA_PSS_2048_8192_SHA512),
];

impl PublicKey {
    /// An RSA key from its big-endian modulus and exponent.
    pub(crate) fn rsa(n: &[u8], e: &[u8]) -> Result<PublicKey, String> {
        let components = RsaPublicKeyComponents { n, e };
        let parsed = RSA_ALGORITHMS
            .iter()
            .map(|(alg, params)| components.to_parsed_public_key(params).map(|key| (*alg, key)))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("RSA key rejected ({e})"))?;
        Ok(PublicKey { parsed })
    }

    /// An EC key (uncompressed point) or an Ed25519 key (its 32 bytes), for one algorithm.
    pub(crate) fn single(alg: Algorithm, bytes: &[u8]) -> Result<PublicKey, String> {
        let algorithm: &'static dyn VerificationAlgorithm = match alg {
            Algorithm::ES256 => &sig::ECDSA_P256_SHA256_FIXED,
            Algorithm::ES384 => &sig::ECDSA_P384_SHA384_FIXED,
            Algorithm::EdDSA => &sig::ED25519,
            other => return Err(format!("no single-algorithm key for {other:?}")),
        };
        let key = ParsedPublicKey::new(algorithm, bytes).map_err(|e| format!("key rejected ({e})"))?;
        Ok(PublicKey { parsed: vec![(alg, key)] })
    }

    /// Whether `signature` is this key's signature of `message` under `alg`; `false` too when
    /// the key cannot be used with `alg`.
    pub(crate) fn verifies(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        self.parsed
            .iter()
            .find(|(a, _)| *a == alg)
            .is_some_and(|(_, key)| key.verify_sig(message, signature).is_ok())
    }
}
