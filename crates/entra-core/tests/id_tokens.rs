//! ID tokens of this app's sign-in: the bearer rules, the client id as the only audience, the
//! attempt's nonce, and no permission claims needed.

mod common;

use common::*;
use serde_json::json;

fn id_token(nonce: Option<&str>, aud: Option<&str>) -> String {
    let mut o = MintOptions {
        unset_claims: vec!["scp".into()],
        audience: aud.map(str::to_owned),
        ..Default::default()
    };
    if let Some(nonce) = nonce {
        o.claims.push(("nonce".into(), json!(nonce)));
    }
    token(o)
}

#[test]
fn an_id_token_with_the_attempts_nonce_passes_without_permission_claims() {
    let p = provider();
    let t = id_token(Some("n-123"), None);
    let verified = p.verify_id_token(&t, now(), "n-123").unwrap();
    assert_eq!(verified.str("nonce"), Some("n-123"));
    assert_eq!(p.verify(&t, now()).unwrap_err(), Denial::NotAnAccessToken, "not an access token");
}

#[test]
fn another_or_no_nonce_is_refused() {
    let p = provider();
    assert_eq!(
        p.verify_id_token(&id_token(Some("other"), None), now(), "n-123").unwrap_err(),
        Denial::NonceMismatch
    );
    assert_eq!(p.verify_id_token(&id_token(None, None), now(), "n-123").unwrap_err(), Denial::NonceMismatch);
    let mut o = MintOptions::default();
    o.claims.push(("nonce".into(), json!(7)));
    assert_eq!(p.verify_id_token(&token(o), now(), "7").unwrap_err(), Denial::InvalidClaim("nonce"));
}

#[test]
fn the_audience_of_an_id_token_is_the_client_id_only() {
    let p = provider();
    let app_id_uri = format!("api://{DEV_CLIENT_ID}");
    let t = id_token(Some("n"), Some(&app_id_uri));
    assert!(
        p.verify(&t, now()).is_err_and(|d| d == Denial::NotAnAccessToken),
        "an accepted access-token audience (refused later, for its nonce)"
    );
    assert_eq!(
        p.verify_id_token(&t, now(), "n").unwrap_err(),
        Denial::WrongAudience,
        "but not an ID token's"
    );
}

#[test]
fn the_bearer_rules_still_hold() {
    let p = provider();
    let mut o =
        MintOptions { expires_in: Some(-3600), unset_claims: vec!["scp".into()], ..Default::default() };
    o.claims.push(("nonce".into(), json!("n")));
    assert_eq!(p.verify_id_token(&token(o), now(), "n").unwrap_err(), Denial::Expired);
    let mut forged = MintOptions { signing: Signing::Corrupt, ..Default::default() };
    forged.claims.push(("nonce".into(), json!("n")));
    assert_eq!(p.verify_id_token(&token(forged), now(), "n").unwrap_err(), Denial::BadSignature);
}

#[test]
fn an_id_token_with_roles_is_no_bearer_token() {
    let p = provider();
    let mut o = MintOptions { roles: Some(vec!["Orders.Read.All".into()]), ..Default::default() };
    o.claims.push(("nonce".into(), json!("n-1")));
    assert_eq!(p.verify(&token(o), now()).unwrap_err(), Denial::NotAnAccessToken, "a nonce: an ID token");
    // An ID token from a refresh or device-code flow has no nonce, and no azp or appid either.
    let o = MintOptions {
        roles: Some(vec!["Orders.Read.All".into()]),
        unset_claims: vec!["azp".into(), "appid".into()],
        ..Default::default()
    };
    assert_eq!(p.verify(&token(o), now()).unwrap_err(), Denial::NotAnAccessToken, "no client named");
    for version in [1, 2] {
        let o = MintOptions { version: Some(version), ..Default::default() };
        assert!(p.verify(&token(o), now()).is_ok(), "a v{version} access token names its client");
    }
}
