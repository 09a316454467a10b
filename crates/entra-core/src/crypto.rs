//! A ring-backed crypto provider for jsonwebtoken.
//!
//! Why ring: one verification costs about 22 µs with ring against 195 µs with jsonwebtoken's
//! RustCrypto backend, and ring is the one crypto stack of the module (TLS for key fetches uses
//! it too). aws-lc-rs is faster here (18 µs, 16 µs with a key parsed once) but would put a second
//! C crypto library into every nginx worker; the README's benchmark section weighs it.
//! Only verification is provided: the module never signs a JWT.

use std::sync::Once;

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{ErrorKind, Result};
use jsonwebtoken::signature;
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::signature::{self as sig, RsaPublicKeyComponents, UnparsedPublicKey};

static RING_PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: no_signer,
    verifier_factory: ring_verifier,
    key_utils: KeyUtils::new_unimplemented(),
};

/// Makes ring the process-wide provider of jsonwebtoken. Cheap after the first call.
pub(crate) fn install() {
    static INSTALL: Once = Once::new();
    // An Err means a provider is already installed: nothing else in nginx uses jsonwebtoken,
    // and this crate enables none of its built-in backends, so that can only be ours.
    INSTALL.call_once(|| {
        let _ = RING_PROVIDER.install_default();
    });
}

fn no_signer(_: &Algorithm, _: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    Err(ErrorKind::Provider("this provider only verifies".into()).into())
}

enum PublicKey {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    Raw(Vec<u8>),
}

struct RingVerifier {
    alg: Algorithm,
    key: PublicKey,
}

fn ring_verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    let key = match key.kind() {
        DecodingKeyKind::RsaModulusExponent { n, e } => PublicKey::Rsa { n: n.clone(), e: e.clone() },
        DecodingKeyKind::SecretOrDer(bytes) => PublicKey::Raw(bytes.clone()),
    };
    Ok(Box::new(RingVerifier { alg: *alg, key }))
}

impl signature::Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        use Algorithm::*;
        let outcome = match (&self.key, self.alg) {
            (PublicKey::Rsa { n, e }, alg) => {
                let params: &sig::RsaParameters = match alg {
                    RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
                    RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
                    RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
                    PS256 => &sig::RSA_PSS_2048_8192_SHA256,
                    PS384 => &sig::RSA_PSS_2048_8192_SHA384,
                    PS512 => &sig::RSA_PSS_2048_8192_SHA512,
                    _ => return Err(signature::Error::new()),
                };
                RsaPublicKeyComponents { n, e }.verify(params, msg, signature)
            }
            (PublicKey::Raw(point), ES256) => {
                UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, point).verify(msg, signature)
            }
            (PublicKey::Raw(point), ES384) => {
                UnparsedPublicKey::new(&sig::ECDSA_P384_SHA384_FIXED, point).verify(msg, signature)
            }
            (PublicKey::Raw(x), EdDSA) => UnparsedPublicKey::new(&sig::ED25519, x).verify(msg, signature),
            _ => return Err(signature::Error::new()),
        };
        outcome.map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}
