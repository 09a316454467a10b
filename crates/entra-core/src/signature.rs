//! Signature verification with keys parsed once, when a key set is loaded into a worker.
//!
//! The module verifies with aws-lc-rs: it keeps a parsed key (`ParsedPublicKey`, an `EVP_PKEY`
//! with its Montgomery constants), so a verification is the RSA operation and little else, and it
//! was the fastest of the three libraries measured (docs/BENCHMARK.md, "Signature library and the
//! first-sight path"). Its C
//! symbols are prefixed, so it cannot clash with the OpenSSL an nginx is linked with. ring and
//! OpenSSL stay selectable by a cargo feature (`signatures-ring`, `signatures-openssl`) so that
//! `scripts/bench` measures all three with the same module in the same run.

use jsonwebtoken::Algorithm;

#[cfg(all(feature = "signatures-ring", feature = "signatures-openssl"))]
compile_error!(
    "choose one signature library: the features signatures-ring and signatures-openssl exclude each other"
);

/// The algorithm tables of a library with ring's interface (aws-lc-rs keeps it): `sig` is the
/// caller's path to that library's `signature` module.
#[cfg(not(feature = "signatures-openssl"))]
macro_rules! ring_style_algorithms {
    () => {
        fn rsa_parameters(alg: Algorithm) -> Result<&'static sig::RsaParameters, String> {
            Ok(match alg {
                Algorithm::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
                Algorithm::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
                Algorithm::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
                Algorithm::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
                Algorithm::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
                Algorithm::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
                other => return Err(format!("{other:?} is not an RSA algorithm")),
            })
        }

        fn single_algorithm(alg: Algorithm) -> Result<&'static dyn sig::VerificationAlgorithm, String> {
            Ok(match alg {
                Algorithm::ES256 => &sig::ECDSA_P256_SHA256_FIXED,
                Algorithm::ES384 => &sig::ECDSA_P384_SHA384_FIXED,
                Algorithm::EdDSA => &sig::ED25519,
                other => return Err(format!("{other:?} has no single-algorithm key")),
            })
        }
    };
}

#[cfg(not(any(feature = "signatures-ring", feature = "signatures-openssl")))]
mod aws_lc;
#[cfg(not(any(feature = "signatures-ring", feature = "signatures-openssl")))]
use aws_lc as library;
#[cfg(feature = "signatures-openssl")]
mod openssl;
#[cfg(feature = "signatures-openssl")]
use self::openssl as library;
#[cfg(all(feature = "signatures-ring", not(feature = "signatures-openssl")))]
mod ring;
#[cfg(all(feature = "signatures-ring", not(feature = "signatures-openssl")))]
use self::ring as library;

/// The library this build verifies signatures with (the micro-benchmark names it).
pub const LIBRARY: &str = library::NAME;

/// The RSA signature algorithms a JWK of type RSA may be used with.
const RSA_ALGORITHMS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// A public key, parsed for each signature algorithm its family allows.
#[derive(Clone)]
pub(crate) struct PublicKey {
    parsed: Vec<(Algorithm, library::Verifier)>,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.parsed.iter().map(|(alg, _)| alg)).finish()
    }
}

impl PublicKey {
    /// An RSA key from its big-endian modulus and exponent.
    pub(crate) fn rsa(n: &[u8], e: &[u8]) -> Result<PublicKey, String> {
        let parsed = RSA_ALGORITHMS
            .iter()
            .map(|alg| library::Verifier::rsa(*alg, n, e).map(|key| (*alg, key)))
            .collect::<Result<_, _>>()
            .map_err(|why| format!("RSA key rejected ({why})"))?;
        Ok(PublicKey { parsed })
    }

    /// An EC key (uncompressed point) for ES256 or ES384, or an Ed25519 key (its 32 bytes).
    pub(crate) fn single(alg: Algorithm, bytes: &[u8]) -> Result<PublicKey, String> {
        if !matches!(alg, Algorithm::ES256 | Algorithm::ES384 | Algorithm::EdDSA) {
            return Err(format!("no single-algorithm key for {alg:?}"));
        }
        let key = library::Verifier::single(alg, bytes).map_err(|why| format!("key rejected ({why})"))?;
        Ok(PublicKey { parsed: vec![(alg, key)] })
    }

    /// Whether `signature` is this key's signature of `message` under `alg`; `false` too when
    /// the key cannot be used with `alg`.
    pub(crate) fn verifies(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        self.parsed.iter().find(|(a, _)| *a == alg).is_some_and(|(_, key)| key.verifies(message, signature))
    }
}
