//! Provider configuration values and key sets, checked; the bearer scheme; the denial table.

mod common;

use common::*;
use serde_json::json;

#[test]
fn configuration_values_are_checked() {
    assert_eq!(
        Tenant::parse("contoso.onmicrosoft.com").unwrap(),
        Tenant::Domain("contoso.onmicrosoft.com".into())
    );
    assert_eq!(Tenant::parse("not a tenant").unwrap_err(), ConfigError::BadTenant("not a tenant".into()));
    let mut cfg = config();
    cfg.tenant = Some(Tenant::Domain("contoso.onmicrosoft.com".into()));
    assert_eq!(config_err(cfg), ConfigError::TenantNeedsDiscovery("contoso.onmicrosoft.com".into()));
    assert_eq!(Tenant::parse("9F2B7C1E-3D4A-4B8E-A6F0-5C2D8E7B1A93").unwrap(), Tenant::Id(DEV_TENANT.into()));
    assert!(parse_url("authority", "http://login.example").is_err());
    assert!(parse_url("authority", "http://127.0.0.1:9400").is_ok());
    assert!(parse_url("authority", "http://[::1]:9400/").is_ok());
    assert!(parse_url("authority", "ftp://x").is_err());
    assert!(parse_url("authority", "https://").is_err());
    let mut cfg = config();
    cfg.client_id = None;
    assert_eq!(config_err(cfg), ConfigError::Missing("client_id"));
    let mut cfg = config();
    cfg.metadata_url = Some("https://login.example/meta".into());
    assert_eq!(config_err(cfg), ConfigError::KeySourceConflict("metadata_url"));
}

#[test]
fn key_sets_skip_unusable_keys_and_refuse_empty_ones() {
    let doc = json!({"keys": [
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
        {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
        {"kty": "RSA", "kid": "short", "n": "AQAB", "e": "AQAB"},
        {"kty": "EC", "kid": "k1", "crv": "P-521", "x": "AA", "y": "AA"},
        idp().store.current().public_jwk().unwrap(),
    ]});
    let (set, skipped) = KeySet::from_jwks(doc.to_string().as_bytes()).unwrap();
    assert_eq!(set.len(), 1);
    assert_eq!(skipped.len(), 4);
    assert!(KeySet::from_jwks(b"{\"keys\": []}").is_err());
    assert!(KeySet::from_jwks(b"not json").is_err());
    assert!(KeySet::from_jwks(b"{\"nokeys\": 1}").is_err());
    let hmac_only = json!({"keys": [{"kty": "oct", "kid": "h", "k": "c2VjcmV0"}]});
    assert!(KeySet::from_jwks(hmac_only.to_string().as_bytes()).is_err());
}

#[test]
fn every_key_of_a_full_set_is_found_by_its_kid_in_the_order_published() {
    // 64 kids out of order (7 and 64 are coprime); the same Ed25519 key under each.
    let kids: Vec<String> = (0..64).map(|i| format!("kid-{:02}", i * 7 % 64)).collect();
    let keys: Vec<_> = kids
        .iter()
        .map(|kid| json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}))
        .collect();
    let (set, skipped) = KeySet::from_jwks(json!({ "keys": keys }).to_string().as_bytes()).unwrap();
    assert!(skipped.is_empty());
    assert!(set.kids().eq(kids.iter().map(String::as_str)), "listed as published");
    for kid in &kids {
        assert_eq!(set.get(kid).map(|k| k.kid.as_str()), Some(kid.as_str()));
    }
    for unknown in ["", "kid-64", "kid-0", "KID-01"] {
        assert!(set.get(unknown).is_none(), "{unknown}");
    }
}

#[test]
fn the_bearer_scheme_is_case_insensitive_and_other_schemes_are_no_token() {
    use entra_core::token::bearer_token;
    assert_eq!(bearer_token(b"Bearer abc.def.ghi"), Ok(&b"abc.def.ghi"[..]));
    assert_eq!(bearer_token(b"bEaReR   abc.def.ghi  "), Ok(&b"abc.def.ghi"[..]));
    assert_eq!(bearer_token(b"Basic dXNlcjpwYXNz"), Err(Denial::NoToken));
    assert_eq!(bearer_token(b"Bearerabc"), Err(Denial::NoToken));
    assert_eq!(bearer_token(b""), Err(Denial::NoToken));
    assert_eq!(bearer_token(b"Bearer"), Err(Denial::Malformed));
    assert_eq!(bearer_token(b"Bearer a b"), Ok(&b"a b"[..]), "judged, and refused, as one token");
    assert_eq!(provider().verify("a.b.c d.e.f", now()).unwrap_err(), Denial::Malformed);
    assert_eq!(judge(&provider(), b"\xff\xfe.a.b").unwrap_err(), Denial::Malformed);
}

#[test]
fn urls_are_checked_as_the_http_client_reads_them() {
    let accepted = [
        ("https://login.microsoftonline.com/", "https://login.microsoftonline.com"),
        ("HTTPS://Login.Example/meta?x=1", "https://Login.Example/meta?x=1"),
        ("http://127.0.0.1:9400", "http://127.0.0.1:9400"),
        ("http://127.8.9.10/keys", "http://127.8.9.10/keys"),
        ("HTTP://127.0.0.1/keys", "http://127.0.0.1/keys"),
        ("http://[::1]:9400/", "http://[::1]:9400"),
        ("http://localhost:8080/x", "http://localhost:8080/x"),
    ];
    for (url, serialised) in accepted {
        assert_eq!(parse_url("metadata_url", url).as_deref(), Ok(serialised), "{url}");
    }
    let refused = [
        // userinfo: the client would connect to what follows the @
        "http://127.0.0.1:80@evil.example/keys",
        "http://127.0.0.1@evil.example/keys",
        "https://user:pass@login.example/",
        "http://localhost@evil.example/",
        // backslashes, percent-encoding, non-ASCII, spaces
        "http://127.0.0.1\\@evil.example/",
        "http://evil.example\\@127.0.0.1/",
        "http://%31%32%37.0.0.1/",
        "https://login%2eexample/",
        "https://lögin.example/",
        "https://login.example /x",
        // not loopback for plain http
        "http://localhost.evil.example/",
        "http://127.0.0.1.evil.example/",
        "http://login.example/",
        "http://[::ffff:127.0.0.1]/",
        "http://[fe80::1]/",
        "http://0.0.0.0/",
        "http://2130706433/",
        "http://127.1/",
        // not a URL this module fetches
        "ftp://x",
        "https://",
        "//login.example/",
        "login.example",
        "http://[::1/",
    ];
    for url in refused {
        assert!(parse_url("metadata_url", url).is_err(), "{url} must be refused");
    }
}

#[test]
fn limits_hold_at_the_limit_and_refuse_past_it() {
    use entra_core::keys::MAX_KEYS;
    use entra_core::values::{parse_audience, parse_issuer, MAX_CLAIM_VALUE_LEN};
    let set = |n: usize| {
        let entry = idp().store.jwks().unwrap()["keys"][0].clone();
        let keys: Vec<Value> = (0..n)
            .map(|i| {
                let mut key = entry.clone();
                key["kid"] = json!(format!("kid-{i}"));
                key
            })
            .collect();
        json!({ "keys": keys }).to_string()
    };
    assert_eq!(KeySet::from_jwks(set(MAX_KEYS).as_bytes()).unwrap().0.len(), MAX_KEYS);
    assert_eq!(
        KeySet::from_jwks(set(MAX_KEYS + 1).as_bytes()).unwrap_err(),
        entra_core::KeySetError::TooManyKeys(MAX_KEYS + 1)
    );

    let issuer = |n: usize| format!("https://{}", "a".repeat(n - "https://".len()));
    assert!(parse_issuer(&issuer(MAX_CLAIM_VALUE_LEN)).is_ok());
    assert_eq!(
        parse_issuer(&issuer(MAX_CLAIM_VALUE_LEN + 1)),
        Err(ConfigError::ValueLength { directive: "issuer", length: MAX_CLAIM_VALUE_LEN + 1 })
    );
    assert!(parse_audience(&"a".repeat(MAX_CLAIM_VALUE_LEN)).is_ok());
    assert!(parse_audience(&"a".repeat(MAX_CLAIM_VALUE_LEN + 1)).is_err());
    assert!(parse_audience("").is_err());
}

#[test]
fn a_return_url_is_kept_whole_up_to_1024_bytes() {
    use entra_core::oidc::{return_url, MAX_RETURN_URL};
    let at_limit = format!("/app?q={}", "x".repeat(MAX_RETURN_URL - "/app?q=".len()));
    assert_eq!(return_url(&at_limit), at_limit);
    assert_eq!(return_url(&format!("{at_limit}y")), "/app", "past it, the path alone");
    assert_eq!(return_url(&format!("/{}", "p".repeat(MAX_RETURN_URL))), "/", "a path past it: /");
}
