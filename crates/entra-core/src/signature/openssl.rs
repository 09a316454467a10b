//! OpenSSL through the `openssl` crate, for comparison: the system's libssl, the one a
//! distribution's nginx links (the module's build refuses an nginx with its own static OpenSSL).
//! The key is an `EVP_PKEY` parsed once; each verification still sets up a digest context.

use jsonwebtoken::Algorithm;
use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey, EcPoint};
use openssl::ecdsa::EcdsaSig;
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, Public};
use openssl::rsa::{Padding, Rsa};
use openssl::sign::{RsaPssSaltlen, Verifier as Check};

pub(super) const NAME: &str = "openssl";

#[derive(Clone, Copy)]
enum Scheme {
    Pkcs1(MessageDigest),
    /// RSASSA-PSS with MGF1 over the same digest and a salt as long as the digest (RFC 7518 3.5).
    Pss(MessageDigest),
    /// JOSE's fixed-width `r || s`, which OpenSSL takes as DER.
    Ecdsa {
        digest: MessageDigest,
        width: usize,
    },
    Ed25519,
}

#[derive(Clone)]
pub(super) struct Verifier {
    key: PKey<Public>,
    scheme: Scheme,
}

impl Verifier {
    pub(super) fn rsa(alg: Algorithm, n: &[u8], e: &[u8]) -> Result<Verifier, String> {
        let scheme = match alg {
            Algorithm::RS256 => Scheme::Pkcs1(MessageDigest::sha256()),
            Algorithm::RS384 => Scheme::Pkcs1(MessageDigest::sha384()),
            Algorithm::RS512 => Scheme::Pkcs1(MessageDigest::sha512()),
            Algorithm::PS256 => Scheme::Pss(MessageDigest::sha256()),
            Algorithm::PS384 => Scheme::Pss(MessageDigest::sha384()),
            Algorithm::PS512 => Scheme::Pss(MessageDigest::sha512()),
            other => return Err(format!("{other:?} is not an RSA algorithm")),
        };
        Ok(Verifier { key: rsa_key(n, e).map_err(|e| e.to_string())?, scheme })
    }

    pub(super) fn single(alg: Algorithm, bytes: &[u8]) -> Result<Verifier, String> {
        let (key, scheme) = match alg {
            Algorithm::ES256 => (
                ec_key(Nid::X9_62_PRIME256V1, bytes),
                Scheme::Ecdsa { digest: MessageDigest::sha256(), width: 32 },
            ),
            Algorithm::ES384 => {
                (ec_key(Nid::SECP384R1, bytes), Scheme::Ecdsa { digest: MessageDigest::sha384(), width: 48 })
            }
            Algorithm::EdDSA => (PKey::public_key_from_raw_bytes(bytes, Id::ED25519), Scheme::Ed25519),
            other => return Err(format!("{other:?} has no single-algorithm key")),
        };
        Ok(Verifier { key: key.map_err(|e| e.to_string())?, scheme })
    }

    pub(super) fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        self.check(message, signature).unwrap_or(false)
    }

    fn check(&self, message: &[u8], signature: &[u8]) -> Result<bool, ErrorStack> {
        match self.scheme {
            Scheme::Pkcs1(digest) => Check::new(digest, &self.key)?.verify_oneshot(signature, message),
            Scheme::Pss(digest) => {
                let mut check = Check::new(digest, &self.key)?;
                check.set_rsa_padding(Padding::PKCS1_PSS)?;
                check.set_rsa_mgf1_md(digest)?;
                check.set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH)?;
                check.verify_oneshot(signature, message)
            }
            Scheme::Ecdsa { digest, width } => {
                if signature.len() != 2 * width {
                    return Ok(false);
                }
                let (r, s) = signature.split_at(width);
                let der = EcdsaSig::from_private_components(BigNum::from_slice(r)?, BigNum::from_slice(s)?)?
                    .to_der()?;
                Check::new(digest, &self.key)?.verify_oneshot(&der, message)
            }
            Scheme::Ed25519 => Check::new_without_digest(&self.key)?.verify_oneshot(signature, message),
        }
    }
}

fn rsa_key(n: &[u8], e: &[u8]) -> Result<PKey<Public>, ErrorStack> {
    PKey::from_rsa(Rsa::from_public_components(BigNum::from_slice(n)?, BigNum::from_slice(e)?)?)
}

fn ec_key(curve: Nid, point: &[u8]) -> Result<PKey<Public>, ErrorStack> {
    let group = EcGroup::from_curve_name(curve)?;
    let mut context = BigNumContext::new()?;
    let point = EcPoint::from_bytes(&group, point, &mut context)?;
    let key = EcKey::from_public_key(&group, &point)?;
    key.check_key()?;
    PKey::from_ec_key(key)
}
