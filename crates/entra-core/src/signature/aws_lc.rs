//! aws-lc-rs: the key parsed once into a `ParsedPublicKey` (the module's choice).

use aws_lc_rs::signature::{self as sig, ParsedPublicKey, RsaPublicKeyComponents};
use jsonwebtoken::Algorithm;

pub(super) const NAME: &str = "aws-lc-rs";

ring_style_algorithms!();

#[derive(Clone)]
pub(super) struct Verifier(ParsedPublicKey);

impl Verifier {
    pub(super) fn rsa(alg: Algorithm, n: &[u8], e: &[u8]) -> Result<Verifier, String> {
        let key = RsaPublicKeyComponents { n, e }.to_parsed_public_key(rsa_parameters(alg)?);
        key.map(Verifier).map_err(|e| e.to_string())
    }

    pub(super) fn single(alg: Algorithm, bytes: &[u8]) -> Result<Verifier, String> {
        ParsedPublicKey::new(single_algorithm(alg)?, bytes).map(Verifier).map_err(|e| e.to_string())
    }

    pub(super) fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        self.0.verify_sig(message, signature).is_ok()
    }
}
