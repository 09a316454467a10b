//! The app's client certificate, for `client_certificate` (`private_key_jwt`): the IdP makes an
//! RSA key and a self-signed certificate, registers them in its state directory (as an admin
//! uploads a certificate to an app registration), and checks the client assertions the module
//! signs with the key.

use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rcgen::{CertificateParams, DnType, KeyPair};
use ring::digest::{digest, SHA256};
use ring::signature::{UnparsedPublicKey, RSA_PSS_2048_8192_SHA256};
use serde_json::Value;

use crate::Error;

const REGISTERED_CERT: &str = "client-cert.der";
const REGISTERED_KEY: &str = "client-public-key.der";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::Io(path.display().to_string(), e)
}

/// Makes an RSA key and a certificate for it, writes them (PEM) to `cert_out` and `key_out` (the
/// key readable by its owner only), and registers the certificate in the state directory.
pub fn create(dir: &Path, cert_out: &Path, key_out: &Path) -> Result<(), Error> {
    use rsa::pkcs1::EncodeRsaPublicKey;
    use rsa::pkcs8::EncodePrivateKey;
    let crypto = |what: &str, e: &dyn std::fmt::Display| Error::Crypto(format!("{what}: {e}"));
    let rsa_key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).map_err(|e| crypto("RSA key", &e))?;
    let pkcs8 = rsa_key.to_pkcs8_der().map_err(|e| crypto("RSA key", &e))?;
    let public = rsa_key.to_public_key().to_pkcs1_der().map_err(|e| crypto("RSA key", &e))?;
    let key = KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8.as_bytes().into(), &rcgen::PKCS_RSA_SHA256)
        .map_err(|e| crypto("key pair", &e))?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| crypto("certificate", &e))?;
    params.distinguished_name.push(DnType::CommonName, "ngx-entra development app");
    let cert = params.self_signed(&key).map_err(|e| crypto("certificate", &e))?;
    fs::write(cert_out, cert.pem()).map_err(|e| io(cert_out, e))?;
    write_private(key_out, key.serialize_pem().as_bytes())?;
    for (name, bytes) in [(REGISTERED_CERT, cert.der().as_ref()), (REGISTERED_KEY, public.as_bytes())] {
        let path = dir.join(name);
        fs::write(&path, bytes).map_err(|e| io(&path, e))?;
    }
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io(path, e))?;
    file.write_all(bytes).map_err(|e| io(path, e))
}

/// Assertion ids seen, so that an assertion cannot be replayed.
#[derive(Default)]
pub struct SeenAssertions(Mutex<HashSet<String>>);

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn part(text: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD.decode(text).map_err(|_| "not base64url".to_owned())
}

impl SeenAssertions {
    /// Checks a client assertion as Entra does: `jwt-bearer` type, PS256 by the registered
    /// certificate's key, `x5t#S256` its thumbprint, `aud` the token endpoint, `iss` = `sub` =
    /// the client id, within its lifetime, never seen before.
    pub fn check(
        &self,
        dir: &Path,
        assertion_type: Option<&str>,
        assertion: &str,
        client_id: &str,
        token_endpoint: &str,
    ) -> Result<(), String> {
        if assertion_type != Some(ASSERTION_TYPE) {
            return Err("client_assertion_type must be jwt-bearer".into());
        }
        let registered =
            |name: &str| fs::read(dir.join(name)).map_err(|_| "no certificate is registered".to_owned());
        let (cert, public) = (registered(REGISTERED_CERT)?, registered(REGISTERED_KEY)?);
        let mut pieces = assertion.split('.');
        let (Some(h), Some(c), Some(s), None) = (pieces.next(), pieces.next(), pieces.next(), pieces.next())
        else {
            return Err("not a compact JWT".into());
        };
        let header: Value = serde_json::from_slice(&part(h)?).map_err(|e| e.to_string())?;
        let claims: Value = serde_json::from_slice(&part(c)?).map_err(|e| e.to_string())?;
        if header["alg"] != "PS256" {
            return Err("the assertion must be signed PS256".into());
        }
        if header["x5t#S256"] != URL_SAFE_NO_PAD.encode(digest(&SHA256, &cert)) {
            return Err("x5t#S256 is not the registered certificate's thumbprint".into());
        }
        UnparsedPublicKey::new(&RSA_PSS_2048_8192_SHA256, &public)
            .verify(&assertion.as_bytes()[..h.len() + 1 + c.len()], &part(s)?)
            .map_err(|_| "the signature does not verify with the registered certificate".to_owned())?;
        let t = now();
        let number = |name: &str| claims[name].as_u64().ok_or_else(|| format!("no numeric {name}"));
        if claims["aud"] != token_endpoint {
            return Err("aud is not the token endpoint".into());
        }
        if claims["iss"] != client_id || claims["sub"] != client_id {
            return Err("iss and sub must be the client id".into());
        }
        if number("exp")? <= t || number("nbf")? > t + 60 {
            return Err("the assertion is outside its lifetime".into());
        }
        let jti = claims["jti"].as_str().ok_or("no jti")?.to_owned();
        if !self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(jti) {
            return Err("the assertion was used before".into());
        }
        Ok(())
    }
}
