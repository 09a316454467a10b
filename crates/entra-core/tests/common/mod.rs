//! Fixtures shared by the suites of this folder: a development IdP with real keys, the provider
//! of its app, tokens it mints, and small helpers. Each suite uses a part of them.
#![allow(dead_code, unused_imports)]
use std::sync::{Arc, OnceLock};

pub use entra_core::policy::{Policy, Requirement, Subject};
pub use entra_core::provider::KeyState;
pub use entra_core::values::{parse_algorithm, parse_url, AllowedTenants, Tenant, CONSUMERS_TENANT_ID};
pub use entra_core::{
    ConfigError, Denial, DenialClass, Judgment, KeySet, Provider, ProviderConfig, VerifiedToken,
};
pub use entra_dev_idp::keystore::{KeyKind, KeyStore, Settings, DEV_CLIENT_ID, DEV_TENANT, GLOBAL_AUTHORITY};
pub use entra_dev_idp::mint::{guid_for, mint, MintOptions, Signing};
pub use serde_json::Value;

pub const OTHER_TENANT: &str = "0d8e5b2a-7c4f-4e19-b3a6-1f5d9c2e8a70";

pub struct Idp {
    pub store: KeyStore,
    /// A key that signs tokens but is not in the provider's key set.
    pub stranger: KeyStore,
    pub ec_kid: String,
    pub ed_kid: String,
    pub issuer_kid: String,
    pub template_issuer_kid: String,
}

pub fn idp() -> &'static Idp {
    static IDP: OnceLock<Idp> = OnceLock::new();
    IDP.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("entra-core-rules-{}", std::process::id()));
        let settings = || Settings {
            tenant: DEV_TENANT.into(),
            client_id: DEV_CLIENT_ID.into(),
            authority: GLOBAL_AUTHORITY.into(),
        };
        let mut store = KeyStore::init(&dir.join("idp"), settings()).unwrap();
        let ec_kid = store.add_key(KeyKind::P256, None, false).unwrap();
        let ed_kid = store.add_key(KeyKind::Ed25519, None, false).unwrap();
        let issuer_kid = store
            .add_key(KeyKind::Rsa, Some(format!("{GLOBAL_AUTHORITY}/{OTHER_TENANT}/v2.0")), false)
            .unwrap();
        let template_issuer_kid = store
            .add_key(KeyKind::Rsa, Some(format!("{GLOBAL_AUTHORITY}/{{tenantid}}/v2.0")), false)
            .unwrap();
        let stranger = KeyStore::init(&dir.join("stranger"), settings()).unwrap();
        Idp { store, stranger, ec_kid, ed_kid, issuer_kid, template_issuer_kid }
    })
}

pub fn keys() -> KeySet {
    let jwks = idp().store.jwks().unwrap().to_string();
    KeySet::from_jwks(jwks.as_bytes()).unwrap().0
}

pub fn config() -> ProviderConfig {
    ProviderConfig {
        tenant: Some(Tenant::Id(DEV_TENANT.into())),
        client_id: Some(DEV_CLIENT_ID.into()),
        keys: Some(keys()),
        ..Default::default()
    }
}

pub fn provider() -> Provider {
    config().build("dev").unwrap()
}

pub fn token(o: MintOptions) -> String {
    mint(&idp().store, &o).unwrap()
}

pub fn verify(o: MintOptions) -> Result<entra_core::VerifiedToken, Denial> {
    provider().verify(&token(o), now())
}

pub fn with_claim(name: &str, value: Value) -> MintOptions {
    MintOptions { claims: vec![(name.into(), value)], ..Default::default() }
}

pub fn with_header(name: &str, value: Value) -> MintOptions {
    MintOptions { headers: vec![(name.into(), value)], ..Default::default() }
}

pub fn base64_url(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

/// A token signed by the IdP's current RSA key over header and payload JSON given as text, so
/// that the JSON can be spelled in ways serde_json never writes (escapes).
pub fn signed_text(header: &str, payload: &str) -> String {
    use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
    let key = RsaKeyPair::from_pkcs8(&idp().store.current().pkcs8().unwrap()).unwrap();
    let input = format!("{}.{}", base64_url(header), base64_url(payload));
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(&RSA_PKCS1_SHA256, &ring::rand::SystemRandom::new(), input.as_bytes(), &mut signature).unwrap();
    format!(
        "{input}.{}",
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, signature)
    )
}

pub fn payload_of(token: &str) -> String {
    part_of(token, 1)
}

pub fn header_of(token: &str) -> String {
    part_of(token, 0)
}

fn part_of(token: &str, index: usize) -> String {
    let payload = token.split('.').nth(index).unwrap();
    String::from_utf8(
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).unwrap(),
    )
    .unwrap()
}

pub fn config_err(cfg: ProviderConfig) -> ConfigError {
    cfg.build("x").unwrap_err()
}

pub fn policy(requirements: Vec<(Subject, &[&str])>) -> Policy {
    Policy {
        requirements: requirements
            .into_iter()
            .map(|(subject, values)| {
                Requirement::new(subject, values.iter().map(|v| v.to_string()).collect())
            })
            .collect(),
        recent_signin: None,
    }
}

pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// Judges a token as the module does, from an `Authorization: Bearer` header.
pub fn judge(p: &Provider, token: &[u8]) -> Result<Arc<VerifiedToken>, Denial> {
    judgment(p, token).verdict
}

/// The whole judgment of a token, with how it was reached.
pub fn judgment(p: &Provider, token: &[u8]) -> Judgment {
    let header = [b"Bearer ".as_slice(), token].concat();
    p.judge(Some(&header), now())
}
