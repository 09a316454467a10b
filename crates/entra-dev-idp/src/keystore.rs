//! The IdP's signing keys and settings, kept in a state directory (`idp.json`).

use std::fs;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::Error;

/// The development tenant and application (made-up GUIDs).
pub const DEV_TENANT: &str = "9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93";
pub const DEV_CLIENT_ID: &str = "6e1c4d2a-8b3f-4a7e-9c05-2f7d1b3e8a64";
/// The client application that asks for tokens in the demo (`azp` / `appid`).
pub const DEV_CALLER_APP: &str = "0c7d2e9a-5f1b-4c3d-8e6a-9b2f4d1c7e05";
/// The app's client secret at the development IdP (`entra-dev-idp client-secret` prints it).
pub const DEV_CLIENT_SECRET: &str = "dev-client-secret-not-for-production";
pub const GLOBAL_AUTHORITY: &str = "https://login.microsoftonline.com";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyKind {
    #[serde(rename = "RSA")]
    Rsa,
    #[serde(rename = "P-256")]
    P256,
    #[serde(rename = "Ed25519")]
    Ed25519,
}

impl KeyKind {
    pub fn parse(s: &str) -> Result<KeyKind, Error> {
        match s {
            "rsa" | "RSA" => Ok(KeyKind::Rsa),
            "ec" | "P-256" => Ok(KeyKind::P256),
            "ed25519" | "Ed25519" => Ok(KeyKind::Ed25519),
            other => Err(Error::Usage(format!("unknown key kind \"{other}\" (rsa, ec, ed25519)"))),
        }
    }

    /// The algorithm a token signed with this key names by default.
    pub fn default_alg(self) -> &'static str {
        match self {
            KeyKind::Rsa => "RS256",
            KeyKind::P256 => "ES256",
            KeyKind::Ed25519 => "EdDSA",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredKey {
    pub kid: String,
    pub kind: KeyKind,
    /// PKCS#8 DER, base64.
    pkcs8: String,
    /// Published as the key's own `issuer` property when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Not in the published key set yet (tests mint with it, then publish it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hidden: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    pub tenant: String,
    pub client_id: String,
    pub authority: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    settings: Settings,
    current: String,
    keys: Vec<StoredKey>,
}

pub struct KeyStore {
    dir: PathBuf,
    state: State,
}

fn random_kid() -> Result<String, Error> {
    let mut bytes = [0u8; 12];
    SystemRandom::new().fill(&mut bytes).map_err(|_| Error::Crypto("no randomness".into()))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

fn generate(kind: KeyKind) -> Result<Vec<u8>, Error> {
    let rng = SystemRandom::new();
    let crypto = |what: &str| Error::Crypto(format!("cannot generate {what} key"));
    match kind {
        KeyKind::Rsa => {
            use rsa::pkcs8::EncodePrivateKey;
            let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).map_err(|_| crypto("RSA"))?;
            Ok(key.to_pkcs8_der().map_err(|_| crypto("RSA"))?.as_bytes().to_vec())
        }
        KeyKind::P256 => {
            let doc = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(|_| crypto("P-256"))?;
            Ok(doc.as_ref().to_vec())
        }
        KeyKind::Ed25519 => {
            let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| crypto("Ed25519"))?;
            Ok(doc.as_ref().to_vec())
        }
    }
}

impl StoredKey {
    pub fn new(kind: KeyKind) -> Result<StoredKey, Error> {
        Ok(StoredKey {
            kid: random_kid()?,
            kind,
            pkcs8: STANDARD.encode(generate(kind)?),
            issuer: None,
            hidden: false,
        })
    }

    pub fn pkcs8(&self) -> Result<Vec<u8>, Error> {
        STANDARD.decode(&self.pkcs8).map_err(|_| Error::State(format!("key {} is damaged", self.kid)))
    }

    /// The public half as a JWK, the way Entra publishes it.
    pub fn public_jwk(&self) -> Result<Value, Error> {
        let der = self.pkcs8()?;
        let bad = || Error::State(format!("key {} is damaged", self.kid));
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        let mut jwk = match self.kind {
            KeyKind::Rsa => {
                let pair = RsaKeyPair::from_pkcs8(&der).map_err(|_| bad())?;
                let parts = signature::RsaPublicKeyComponents::<Vec<u8>>::from(pair.public_key());
                json!({"kty": "RSA", "use": "sig", "kid": self.kid, "x5t": self.kid,
                       "n": b64(&parts.n), "e": b64(&parts.e)})
            }
            KeyKind::P256 => {
                let rng = SystemRandom::new();
                let pair = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng)
                    .map_err(|_| bad())?;
                let point = pair.public_key().as_ref();
                json!({"kty": "EC", "use": "sig", "kid": self.kid, "crv": "P-256",
                       "x": b64(&point[1..33]), "y": b64(&point[33..65])})
            }
            KeyKind::Ed25519 => {
                let pair = Ed25519KeyPair::from_pkcs8(&der).map_err(|_| bad())?;
                json!({"kty": "OKP", "use": "sig", "kid": self.kid, "crv": "Ed25519",
                       "x": b64(pair.public_key().as_ref())})
            }
        };
        if let Some(issuer) = &self.issuer {
            jwk["issuer"] = Value::String(issuer.clone());
        }
        Ok(jwk)
    }
}

impl KeyStore {
    fn path(dir: &Path) -> PathBuf {
        dir.join("idp.json")
    }

    /// Creates a state directory with one RSA signing key.
    pub fn init(dir: &Path, settings: Settings) -> Result<KeyStore, Error> {
        fs::create_dir_all(dir).map_err(|e| Error::Io(dir.display().to_string(), e))?;
        let key = StoredKey::new(KeyKind::Rsa)?;
        let state = State { settings, current: key.kid.clone(), keys: vec![key] };
        let store = KeyStore { dir: dir.to_owned(), state };
        store.save()?;
        Ok(store)
    }

    pub fn open(dir: &Path) -> Result<KeyStore, Error> {
        let path = Self::path(dir);
        let text = fs::read(&path).map_err(|e| Error::Io(path.display().to_string(), e))?;
        let state =
            serde_json::from_slice(&text).map_err(|e| Error::State(format!("{}: {e}", path.display())))?;
        Ok(KeyStore { dir: dir.to_owned(), state })
    }

    pub fn save(&self) -> Result<(), Error> {
        let path = Self::path(&self.dir);
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(&self.state).map_err(|e| Error::State(e.to_string()))?;
        fs::write(&tmp, text).map_err(|e| Error::Io(tmp.display().to_string(), e))?;
        fs::rename(&tmp, &path).map_err(|e| Error::Io(path.display().to_string(), e))
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn settings(&self) -> &Settings {
        &self.state.settings
    }

    pub fn keys(&self) -> &[StoredKey] {
        &self.state.keys
    }

    pub fn current(&self) -> &StoredKey {
        self.key(&self.state.current).unwrap_or(&self.state.keys[0])
    }

    pub fn key(&self, kid: &str) -> Option<&StoredKey> {
        self.state.keys.iter().find(|k| k.kid == kid)
    }

    /// Adds a key; `make_current` also signs new tokens with it (a rotation).
    pub fn add_key(
        &mut self,
        kind: KeyKind,
        issuer: Option<String>,
        make_current: bool,
    ) -> Result<String, Error> {
        let mut key = StoredKey::new(kind)?;
        key.issuer = issuer;
        let kid = key.kid.clone();
        self.state.keys.push(key);
        if make_current {
            self.state.current = kid.clone();
        }
        self.save()?;
        Ok(kid)
    }

    pub fn remove_key(&mut self, kid: &str) -> Result<(), Error> {
        if self.state.keys.len() == 1 {
            return Err(Error::Usage("cannot remove the last key".into()));
        }
        let before = self.state.keys.len();
        self.state.keys.retain(|k| k.kid != kid);
        if self.state.keys.len() == before {
            return Err(Error::Usage(format!("no key \"{kid}\"")));
        }
        if self.state.current == kid {
            self.state.current = self.state.keys[0].kid.clone();
        }
        self.save()
    }

    /// Publishes every hidden key.
    pub fn publish_all(&mut self) -> Result<(), Error> {
        self.state.keys.iter_mut().for_each(|k| k.hidden = false);
        self.save()
    }

    pub fn hide(&mut self, kid: &str) -> Result<(), Error> {
        let key = self
            .state
            .keys
            .iter_mut()
            .find(|k| k.kid == kid)
            .ok_or_else(|| Error::Usage(format!("no key \"{kid}\"")))?;
        key.hidden = true;
        self.save()
    }

    /// The published key set.
    pub fn jwks(&self) -> Result<Value, Error> {
        let keys = self
            .state
            .keys
            .iter()
            .filter(|k| !k.hidden)
            .map(StoredKey::public_jwk)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(json!({ "keys": keys }))
    }
}
