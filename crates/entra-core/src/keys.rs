//! Signing keys: a JWKS document parsed into the keys this module will verify with.

use jsonwebtoken::Algorithm;
use serde_json::Value;

use crate::base64url;
use crate::error::KeySetError;
use crate::signature::PublicKey;

/// The key types a signature algorithm needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFamily {
    Rsa,
    EcP256,
    EcP384,
    Ed,
}

impl KeyFamily {
    pub fn of(alg: Algorithm) -> Option<KeyFamily> {
        use Algorithm::*;
        match alg {
            RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => Some(KeyFamily::Rsa),
            ES256 => Some(KeyFamily::EcP256),
            ES384 => Some(KeyFamily::EcP384),
            EdDSA => Some(KeyFamily::Ed),
            // HMAC algorithms never verify against a published key.
            _ => None,
        }
    }
}

/// One public signing key.
#[derive(Debug, Clone)]
pub struct SigningKey {
    pub kid: String,
    pub family: KeyFamily,
    /// The key's own `issuer` property (Entra publishes one); `{tenantid}` may appear in it.
    pub issuer: Option<String>,
    /// Parsed once, here: verifying with it copies nothing.
    pub(crate) public: PublicKey,
}

/// The keys of one provider. Order means nothing; lookup is by `kid`.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<SigningKey>,
    /// Positions in `keys`, sorted by `kid`: a token's key is found by a binary search, so a
    /// set of 64 keys costs a first sight no more than a set of two.
    by_kid: Vec<usize>,
}

/// The smallest RSA modulus accepted, in bytes (2048 bits, as Entra and ring require).
const MIN_RSA_MODULUS_BYTES: usize = 256;
/// The most keys a key set may list (Entra's has a handful; an app with custom signing keys a
/// few more): a larger set is refused whole, and the keys in force stay.
pub const MAX_KEYS: usize = 64;

impl KeySet {
    /// Parses a JWKS document. Keys this module cannot use (symmetric keys, encryption keys,
    /// unknown curves, short RSA moduli, no `kid`) are skipped and described in the second value.
    pub fn from_jwks(json: &[u8]) -> Result<(KeySet, Vec<String>), KeySetError> {
        let doc: Value = serde_json::from_slice(json).map_err(|e| KeySetError::NotJson(e.to_string()))?;
        let Some(entries) = doc.get("keys").and_then(Value::as_array) else {
            return Err(KeySetError::NoKeysArray);
        };
        if entries.len() > MAX_KEYS {
            return Err(KeySetError::TooManyKeys(entries.len()));
        }
        let mut keys = Vec::with_capacity(entries.len());
        let mut skipped = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            match parse_key(entry) {
                Ok(key) if keys.iter().any(|k: &SigningKey| k.kid == key.kid) => {
                    skipped.push(format!("key {i}: duplicate kid \"{}\"", key.kid))
                }
                Ok(key) => keys.push(key),
                Err(why) => skipped.push(format!("key {i}: {why}")),
            }
        }
        if keys.is_empty() {
            let why = if skipped.is_empty() { "the set is empty".to_owned() } else { skipped.join("; ") };
            return Err(KeySetError::NoUsableKeys(why));
        }
        let mut by_kid: Vec<usize> = (0..keys.len()).collect();
        by_kid.sort_by(|a, b| keys[*a].kid.cmp(&keys[*b].kid));
        Ok((KeySet { keys, by_kid }, skipped))
    }

    pub fn get(&self, kid: &str) -> Option<&SigningKey> {
        let kid_at = |i: usize| self.keys.get(i).map_or("", |k| k.kid.as_str());
        let found = self.by_kid.binary_search_by(|i| kid_at(*i).cmp(kid)).ok()?;
        self.keys.get(*self.by_kid.get(found)?)
    }

    pub fn iter(&self) -> impl Iterator<Item = &SigningKey> {
        self.keys.iter()
    }

    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.iter().map(|k| k.kid.as_str())
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

fn str_field<'a>(entry: &'a Value, name: &str) -> Result<&'a str, String> {
    entry.get(name).and_then(Value::as_str).ok_or_else(|| format!("no string \"{name}\""))
}

fn b64_field(entry: &Value, name: &str) -> Result<Vec<u8>, String> {
    let text = str_field(entry, name)?;
    base64url::decode(text).map_err(|_| format!("\"{name}\" is not base64url"))
}

fn parse_key(entry: &Value) -> Result<SigningKey, String> {
    if !entry.is_object() {
        return Err("not an object".into());
    }
    let kid = str_field(entry, "kid")?.to_owned();
    if let Some(usage) = entry.get("use") {
        if usage.as_str() != Some("sig") {
            return Err(format!("kid \"{kid}\" is not a signing key"));
        }
    }
    let issuer = match entry.get("issuer") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(format!("kid \"{kid}\": \"issuer\" is not a string")),
    };
    let kty = str_field(entry, "kty")?;
    let (family, public) = match kty {
        "RSA" => {
            let n = b64_field(entry, "n")?;
            let e = b64_field(entry, "e")?;
            let significant = n.iter().skip_while(|b| **b == 0).count();
            if significant < MIN_RSA_MODULUS_BYTES {
                return Err(format!("kid \"{kid}\": RSA modulus shorter than 2048 bits"));
            }
            (KeyFamily::Rsa, PublicKey::rsa(&n, &e).map_err(|why| format!("kid \"{kid}\": {why}"))?)
        }
        "EC" => {
            let crv = str_field(entry, "crv")?;
            let (family, width, alg) = match crv {
                "P-256" => (KeyFamily::EcP256, 32, Algorithm::ES256),
                "P-384" => (KeyFamily::EcP384, 48, Algorithm::ES384),
                _ => return Err(format!("kid \"{kid}\": unsupported curve \"{crv}\"")),
            };
            let x = b64_field(entry, "x")?;
            let y = b64_field(entry, "y")?;
            if x.len() != width || y.len() != width {
                return Err(format!("kid \"{kid}\": EC point of the wrong size"));
            }
            let mut point = Vec::with_capacity(1 + 2 * width);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            (family, PublicKey::single(alg, &point).map_err(|why| format!("kid \"{kid}\": {why}"))?)
        }
        "OKP" => {
            let crv = str_field(entry, "crv")?;
            if crv != "Ed25519" {
                return Err(format!("kid \"{kid}\": unsupported curve \"{crv}\""));
            }
            let x = b64_field(entry, "x")?;
            if x.len() != 32 {
                return Err(format!("kid \"{kid}\": Ed25519 key of the wrong size"));
            }
            (
                KeyFamily::Ed,
                PublicKey::single(Algorithm::EdDSA, &x).map_err(|why| format!("kid \"{kid}\": {why}"))?,
            )
        }
        other => return Err(format!("kid \"{kid}\": key type \"{other}\" is not used for signatures")),
    };
    Ok(SigningKey { kid, family, issuer, public })
}
