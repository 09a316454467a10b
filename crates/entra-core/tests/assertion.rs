//! The client assertion of `client_certificate`: a certificate and key pair are checked to belong
//! together, and the assertion is a PS256 JWT naming the certificate, for the token endpoint.

mod common;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use common::*;
use entra_core::assertion::{CertificateError, ClientCertificate};
use ring::digest::{digest, SHA256};
use ring::rand::SystemRandom;
use ring::signature::{RsaPublicKeyComponents, RSA_PSS_2048_8192_SHA256};

/// A self-signed certificate for the IdP's RSA key `kid`, and the key as PKCS#8 PEM.
fn certificate_for(kid: &str) -> (String, String, Vec<u8>) {
    let der = idp().store.key(kid).unwrap().pkcs8().unwrap();
    let pkcs8 = der.clone().into();
    let pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_RSA_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["app.example".into()]).unwrap().self_signed(&pair).unwrap();
    let key_pem =
        format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", STANDARD.encode(&der));
    (cert.pem(), key_pem, cert.der().to_vec())
}

fn rsa_kids() -> Vec<String> {
    let jwks = idp().store.jwks().unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["kty"] == "RSA")
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn an_assertion_is_signed_ps256_names_the_certificate_and_the_token_endpoint() {
    let kid = &rsa_kids()[0];
    let (cert, key, cert_der) = certificate_for(kid);
    let client = ClientCertificate::from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
    let endpoint = "https://login.example/tenant/oauth2/v2.0/token";
    let jwt = client.assertion(DEV_CLIENT_ID, endpoint, 1_790_000_000, &SystemRandom::new());
    let parts: Vec<&str> = jwt.split('.').collect();
    let json =
        |i: usize| serde_json::from_slice::<Value>(&URL_SAFE_NO_PAD.decode(parts[i]).unwrap()).unwrap();
    let (header, claims) = (json(0), json(1));
    assert_eq!(header["alg"], "PS256");
    assert_eq!(header["x5t#S256"], URL_SAFE_NO_PAD.encode(digest(&SHA256, &cert_der)));
    assert_eq!(
        (claims["aud"].as_str(), claims["iss"].as_str(), claims["sub"].as_str()),
        (Some(endpoint), Some(DEV_CLIENT_ID), Some(DEV_CLIENT_ID))
    );
    assert_eq!((claims["nbf"].as_u64(), claims["exp"].as_u64()), (Some(1_790_000_000), Some(1_790_000_300)));
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 16));
    let other = client.assertion(DEV_CLIENT_ID, endpoint, 1_790_000_000, &SystemRandom::new());
    assert_ne!(
        json(1)["jti"],
        serde_json::from_slice::<Value>(&URL_SAFE_NO_PAD.decode(other.split('.').nth(1).unwrap()).unwrap())
            .unwrap()["jti"]
    );
    // The signature verifies with the key's published modulus and exponent.
    let jwks = idp().store.jwks().unwrap();
    let jwk = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == kid.as_str()).unwrap();
    let b64 = |v: &Value| URL_SAFE_NO_PAD.decode(v.as_str().unwrap()).unwrap();
    let public = RsaPublicKeyComponents { n: b64(&jwk["n"]), e: b64(&jwk["e"]) };
    let signed = &jwt[..jwt.rfind('.').unwrap()];
    public
        .verify(&RSA_PSS_2048_8192_SHA256, signed.as_bytes(), &URL_SAFE_NO_PAD.decode(parts[2]).unwrap())
        .unwrap();
}

#[test]
fn a_key_of_another_certificate_or_of_another_kind_is_refused() {
    let kids = rsa_kids();
    let (cert, _, _) = certificate_for(&kids[0]);
    let (_, other_key, _) = certificate_for(&kids[1]);
    let refuse =
        |cert: &str, key: &str| ClientCertificate::from_pem(cert.as_bytes(), key.as_bytes()).unwrap_err();
    assert_eq!(refuse(&cert, &other_key), CertificateError::Mismatch);
    let ec = idp().store.key(&idp().ec_kid).unwrap().pkcs8().unwrap();
    let ec_pem = format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", STANDARD.encode(ec));
    assert_eq!(refuse(&cert, &ec_pem), CertificateError::NotRsa);
    let encrypted = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
    assert_eq!(refuse(&cert, encrypted), CertificateError::Encrypted);
    assert_eq!(refuse(&cert, &cert), CertificateError::NoKey);
    assert_eq!(refuse("", &other_key), CertificateError::NoCertificate);
    let client =
        ClientCertificate::from_pem(cert.as_bytes(), certificate_for(&kids[0]).1.as_bytes()).unwrap();
    assert!(!format!("{client:?}").contains("PRIVATE"), "Debug shows no key");
}

/// What the module signs, the development IdP accepts, once, for its own token endpoint only.
#[test]
fn the_development_idp_checks_the_assertion_like_entra() {
    use entra_dev_idp::client_cert::{create, SeenAssertions};
    let dir = std::env::temp_dir().join(format!("entra-assertion-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("app.crt"), dir.join("app.key"));
    create(&dir, &cert, &key).unwrap();
    let pair =
        ClientCertificate::from_pem(&std::fs::read(&cert).unwrap(), &std::fs::read(&key).unwrap()).unwrap();
    let endpoint = "https://login.example/t/oauth2/v2.0/token";
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let random = SystemRandom::new();
    let jwt_bearer = Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer");
    let seen = SeenAssertions::default();
    let assertion = pair.assertion(DEV_CLIENT_ID, endpoint, now, &random);
    assert_eq!(seen.check(&dir, jwt_bearer, &assertion, DEV_CLIENT_ID, endpoint), Ok(()));
    assert!(seen
        .check(&dir, jwt_bearer, &assertion, DEV_CLIENT_ID, endpoint)
        .unwrap_err()
        .contains("used before"));
    let other_endpoint = pair.assertion(DEV_CLIENT_ID, "https://elsewhere/token", now, &random);
    assert!(seen
        .check(&dir, jwt_bearer, &other_endpoint, DEV_CLIENT_ID, endpoint)
        .unwrap_err()
        .contains("aud"));
    let old = pair.assertion(DEV_CLIENT_ID, endpoint, now - 3600, &random);
    assert!(seen.check(&dir, jwt_bearer, &old, DEV_CLIENT_ID, endpoint).unwrap_err().contains("lifetime"));
    let fresh = pair.assertion(DEV_CLIENT_ID, endpoint, now, &random);
    assert!(
        seen.check(&dir, None, &fresh, DEV_CLIENT_ID, endpoint).is_err(),
        "the assertion type is required"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `not_after` is read from the certificate, for the expiry warning of `nginx -t`.
#[test]
fn the_end_of_validity_is_read_from_the_certificate() {
    let kid = &rsa_kids()[0];
    let der = idp().store.key(kid).unwrap().pkcs8().unwrap();
    let pair =
        rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der.clone().into(), &rcgen::PKCS_RSA_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["app.example".into()]).unwrap();
    params.not_after = rcgen::date_time_ymd(2031, 3, 4);
    let cert = params.self_signed(&pair).unwrap();
    let key_pem =
        format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", STANDARD.encode(&der));
    let client = ClientCertificate::from_pem(cert.pem().as_bytes(), key_pem.as_bytes()).unwrap();
    assert_eq!(client.not_after, Some(1_930_348_800), "2031-03-04T00:00:00Z");
}
