//! Minting access tokens shaped like Entra's, including deliberately broken ones for tests.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair};
use serde_json::{json, Map, Value};

use crate::keystore::{KeyKind, KeyStore, StoredKey, DEV_CALLER_APP};
use crate::Error;

/// How the token is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Signing {
    /// With the chosen key, as an IdP would.
    #[default]
    Key,
    /// `alg: none` and an empty signature.
    None,
    /// HS256 keyed with the RSA public key's JWK text (the classic key-confusion attack).
    HmacWithPublicKey,
    /// Correctly signed, then one signature bit flipped.
    Corrupt,
}

impl Signing {
    pub fn parse(s: &str) -> Result<Signing, Error> {
        match s {
            "key" => Ok(Signing::Key),
            "none" => Ok(Signing::None),
            "hs256-pubkey" => Ok(Signing::HmacWithPublicKey),
            "corrupt" => Ok(Signing::Corrupt),
            other => {
                Err(Error::Usage(format!("unknown --sign \"{other}\" (key, none, hs256-pubkey, corrupt)")))
            }
        }
    }
}

/// Everything `mint` can vary. The defaults give a valid v2 user token for the IdP's app.
#[derive(Debug, Clone, Default)]
pub struct MintOptions {
    pub user: Option<String>,
    /// An app-only token (client credentials) for this client name.
    pub app: Option<String>,
    pub tenant: Option<String>,
    pub audience: Option<String>,
    /// 1 or 2.
    pub version: Option<u8>,
    pub groups: Option<Vec<String>>,
    pub roles: Option<Vec<String>>,
    pub scopes: Option<String>,
    /// Seconds from now; negative for an expired token.
    pub expires_in: Option<i64>,
    /// Seconds from now.
    pub not_before: Option<i64>,
    /// Extra or replaced claims, as JSON values.
    pub claims: Vec<(String, Value)>,
    pub unset_claims: Vec<String>,
    /// Extra or replaced header parameters, as JSON values.
    pub headers: Vec<(String, Value)>,
    pub unset_headers: Vec<String>,
    /// Sign with this key instead of the current one.
    pub key: Option<String>,
    /// The header's `alg` (for example PS256 with an RSA key).
    pub alg: Option<String>,
    pub signing: Signing,
    /// Leave the groups out the way Entra does past 200 of them.
    pub overage: bool,
    /// The `_claim_sources` endpoint of an overage token (default: the retired Azure AD Graph
    /// URL Entra writes).
    pub claim_source: Option<String>,
    /// A Microsoft Graph token: Graph audience and a header nonce.
    pub graph: bool,
}

/// A stable GUID-shaped id derived from a name, so the same user keeps the same `oid`.
pub fn guid_for(name: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, name.as_bytes());
    let h: String = d.as_ref()[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-4{}-8{}-{}", &h[0..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32])
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn mint(store: &KeyStore, o: &MintOptions) -> Result<String, Error> {
    let settings = store.settings();
    let key: &StoredKey = match &o.key {
        Some(kid) => store.key(kid).ok_or_else(|| Error::Usage(format!("no key \"{kid}\"")))?,
        None => store.current(),
    };
    let tid = o.tenant.clone().unwrap_or_else(|| settings.tenant.clone());
    let version = o.version.unwrap_or(2);
    let t = now();
    let mut c = Map::new();
    let mut put = |k: &str, v: Value| {
        c.insert(k.to_owned(), v);
    };
    let default_aud =
        if version == 1 { format!("api://{}", settings.client_id) } else { settings.client_id.clone() };
    put("aud", json!(o.audience.clone().unwrap_or(default_aud)));
    if version == 1 {
        put("iss", json!(format!("https://sts.windows.net/{tid}/")));
        put("ver", json!("1.0"));
        put("appid", json!(DEV_CALLER_APP));
        put("appidacr", json!("0"));
    } else {
        put("iss", json!(format!("{}/{tid}/v2.0", settings.authority)));
        put("ver", json!("2.0"));
        put("azp", json!(DEV_CALLER_APP));
        put("azpacr", json!("0"));
    }
    put("iat", json!(t));
    put("nbf", json!(t + o.not_before.unwrap_or(0)));
    put("exp", json!(t + o.expires_in.unwrap_or(3600)));
    put("tid", json!(tid));
    put("uti", json!(b64(&t.to_be_bytes())));
    if let Some(app) = &o.app {
        let oid = guid_for(&format!("app:{app}"));
        put("oid", json!(oid));
        put("sub", json!(oid));
        put("idtyp", json!("app"));
        put("roles", json!(o.roles.clone().unwrap_or_else(|| vec!["Orders.Read.All".into()])));
    } else {
        let user = o.user.clone().unwrap_or_else(|| "alice".into());
        let upn = format!("{user}@contoso.example");
        put("oid", json!(guid_for(&user)));
        put("sub", json!(b64(&ring::digest::digest(&ring::digest::SHA256, user.as_bytes()).as_ref()[..16])));
        put("name", json!(user));
        put("email", json!(upn));
        if version == 1 {
            put("upn", json!(upn));
            put("unique_name", json!(upn));
        } else {
            put("preferred_username", json!(upn));
        }
        put("scp", json!(o.scopes.clone().unwrap_or_else(|| "access_as_user".into())));
        if let Some(roles) = &o.roles {
            put("roles", json!(roles));
        }
    }
    if let Some(groups) = &o.groups {
        put("groups", json!(groups));
    }
    if o.overage {
        c.remove("groups");
        c.insert("_claim_names".into(), json!({"groups": "src1"}));
        let oid = c.get("oid").and_then(Value::as_str).unwrap_or_default().to_owned();
        let base = o.claim_source.as_deref().unwrap_or("https://graph.windows.net");
        let endpoint = format!("{base}/{tid}/users/{oid}/getMemberObjects");
        c.insert("_claim_sources".into(), json!({"src1": {"endpoint": endpoint}}));
    }
    if o.graph {
        c.insert("aud".into(), json!("00000003-0000-0000-c000-000000000000"));
    }
    for (k, v) in &o.claims {
        c.insert(k.clone(), v.clone());
    }
    for k in &o.unset_claims {
        c.remove(k);
    }

    let alg = match o.signing {
        Signing::None => "none".to_owned(),
        Signing::HmacWithPublicKey => "HS256".to_owned(),
        Signing::Key | Signing::Corrupt => o.alg.clone().unwrap_or_else(|| key.kind.default_alg().to_owned()),
    };
    let mut h = Map::new();
    h.insert("typ".into(), json!("JWT"));
    h.insert("alg".into(), json!(alg));
    h.insert("kid".into(), json!(key.kid));
    if version == 1 {
        h.insert("x5t".into(), json!(key.kid));
    }
    if o.graph {
        h.insert("nonce".into(), json!(b64(&t.to_le_bytes())));
    }
    for (k, v) in &o.headers {
        h.insert(k.clone(), v.clone());
    }
    for k in &o.unset_headers {
        h.remove(k);
    }

    let signing_input = format!(
        "{}.{}",
        b64(&serde_json::to_vec(&h).map_err(|e| Error::State(e.to_string()))?),
        b64(&serde_json::to_vec(&c).map_err(|e| Error::State(e.to_string()))?)
    );
    let signature = match o.signing {
        Signing::None => Vec::new(),
        Signing::HmacWithPublicKey => {
            let secret = serde_json::to_vec(&key.public_jwk()?).map_err(|e| Error::State(e.to_string()))?;
            let hkey = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret);
            ring::hmac::sign(&hkey, signing_input.as_bytes()).as_ref().to_vec()
        }
        Signing::Key | Signing::Corrupt => {
            let mut sig = sign(key, &alg, signing_input.as_bytes())?;
            if o.signing == Signing::Corrupt {
                let last = sig.len() - 1;
                sig[last / 2] ^= 0x01;
            }
            sig
        }
    };
    Ok(format!("{signing_input}.{}", b64(&signature)))
}

fn sign(key: &StoredKey, alg: &str, msg: &[u8]) -> Result<Vec<u8>, Error> {
    let der = key.pkcs8()?;
    let rng = SystemRandom::new();
    let failed = || Error::Crypto(format!("cannot sign with key {} as {alg}", key.kid));
    match key.kind {
        KeyKind::Rsa => {
            let padding: &dyn signature::RsaEncoding = match alg {
                "RS256" => &signature::RSA_PKCS1_SHA256,
                "RS384" => &signature::RSA_PKCS1_SHA384,
                "RS512" => &signature::RSA_PKCS1_SHA512,
                "PS256" => &signature::RSA_PSS_SHA256,
                "PS384" => &signature::RSA_PSS_SHA384,
                "PS512" => &signature::RSA_PSS_SHA512,
                _ => return Err(failed()),
            };
            let pair = RsaKeyPair::from_pkcs8(&der).map_err(|_| failed())?;
            let mut sig = vec![0; pair.public().modulus_len()];
            pair.sign(padding, &rng, msg, &mut sig).map_err(|_| failed())?;
            Ok(sig)
        }
        KeyKind::P256 => {
            let pair = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng)
                .map_err(|_| failed())?;
            Ok(pair.sign(&rng, msg).map_err(|_| failed())?.as_ref().to_vec())
        }
        KeyKind::Ed25519 => {
            let pair = Ed25519KeyPair::from_pkcs8(&der).map_err(|_| failed())?;
            Ok(pair.sign(msg).as_ref().to_vec())
        }
    }
}
