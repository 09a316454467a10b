//! ring 0.17, for comparison: it has no parsed RSA public key, so every verification derives the
//! key's constants again from the modulus and exponent kept here.

use jsonwebtoken::Algorithm;
use ring::signature::{self as sig, RsaPublicKeyComponents, UnparsedPublicKey};

pub(super) const NAME: &str = "ring";

ring_style_algorithms!();

#[derive(Clone)]
pub(super) enum Verifier {
    Rsa { params: &'static sig::RsaParameters, n: Vec<u8>, e: Vec<u8> },
    Single(UnparsedPublicKey<Vec<u8>>),
}

impl Verifier {
    pub(super) fn rsa(alg: Algorithm, n: &[u8], e: &[u8]) -> Result<Verifier, String> {
        Ok(Verifier::Rsa { params: rsa_parameters(alg)?, n: n.to_vec(), e: e.to_vec() })
    }

    pub(super) fn single(alg: Algorithm, bytes: &[u8]) -> Result<Verifier, String> {
        Ok(Verifier::Single(UnparsedPublicKey::new(single_algorithm(alg)?, bytes.to_vec())))
    }

    pub(super) fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            Verifier::Rsa { params, n, e } => {
                RsaPublicKeyComponents { n, e }.verify(params, message, signature).is_ok()
            }
            Verifier::Single(key) => key.verify(message, signature).is_ok(),
        }
    }
}
