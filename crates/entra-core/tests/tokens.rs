//! Tokens that pass, and tokens refused for their structure, header, signature or times.

mod common;

use common::*;
use serde_json::{json, Value};

#[test]
fn a_v2_user_token_passes_and_exposes_its_identity() {
    let t = verify(MintOptions { user: Some("bob".into()), ..Default::default() }).unwrap();
    assert_eq!(t.oid(), Some(guid_for("bob").as_str()));
    assert_eq!(t.tid(), Some(DEV_TENANT));
    assert_eq!(t.upn(), Some("bob@contoso.example"));
    assert_eq!(t.str("ver"), Some("2.0"));
    assert_eq!(t.scopes().collect::<Vec<_>>(), ["access_as_user"]);
    assert_eq!(t.kid, idp().store.current().kid);
}

#[test]
fn a_v1_token_with_the_app_id_uri_audience_passes() {
    let t = verify(MintOptions { version: Some(1), ..Default::default() }).unwrap();
    assert_eq!(t.str("iss"), Some(format!("https://sts.windows.net/{DEV_TENANT}/").as_str()));
    assert_eq!(t.upn(), Some("alice@contoso.example"));
    assert!(t.app_id().is_some());
}

#[test]
fn an_app_only_token_with_roles_passes() {
    let t = verify(MintOptions { app: Some("daemon".into()), ..Default::default() }).unwrap();
    assert_eq!(t.roles().collect::<Vec<_>>(), ["Orders.Read.All"]);
    assert_eq!(t.str("idtyp"), Some("app"));
}

#[test]
fn ec_and_eddsa_keys_verify_only_when_their_algorithms_are_allowed() {
    let ec = token(MintOptions { key: Some(idp().ec_kid.clone()), ..Default::default() });
    let ed = token(MintOptions { key: Some(idp().ed_kid.clone()), ..Default::default() });
    assert_eq!(provider().verify(&ec, now()).unwrap_err(), Denial::AlgNotAllowed);
    assert_eq!(provider().verify(&ed, now()).unwrap_err(), Denial::AlgNotAllowed);
    let mut cfg = config();
    cfg.algorithms = Some(["RS256", "ES256", "EdDSA"].iter().map(|a| parse_algorithm(a).unwrap()).collect());
    let p = cfg.build("dev").unwrap();
    assert!(p.verify(&ec, now()).is_ok());
    assert!(p.verify(&ed, now()).is_ok());
}

#[test]
fn ps256_passes_when_allowed_and_is_refused_by_default() {
    let ps = token(MintOptions { alg: Some("PS256".into()), ..Default::default() });
    assert_eq!(provider().verify(&ps, now()).unwrap_err(), Denial::AlgNotAllowed);
    let mut cfg = config();
    cfg.algorithms = Some(vec![parse_algorithm("PS256").unwrap()]);
    assert!(cfg.build("dev").unwrap().verify(&ps, now()).is_ok());
}

#[test]
fn structural_garbage_is_malformed() {
    let good = token(MintOptions::default());
    let (head, rest) = good.split_once('.').unwrap();
    let cases = [
        String::new(),
        "abc".into(),
        "a.b".into(),
        format!("{good}.extra"),
        format!("!!!.{rest}"),
        format!("{}.{rest}", base64_url("not json")),
        format!("{}.{rest}", base64_url("[1,2]")),
        format!("{}.{rest}", base64_url(r#"{"kid":"x"}"#)),
        "x".repeat(70_000),
    ];
    for case in cases {
        assert_eq!(provider().verify(&case, now()).unwrap_err(), Denial::Malformed, "{case:.60}");
    }
    // The signature covers the encoded payload, so a garbled payload fails there first.
    let garbled = format!("{head}.!!!.{}", rest.split_once('.').unwrap().1);
    assert_eq!(provider().verify(&garbled, now()).unwrap_err(), Denial::BadSignature);
}

#[test]
fn alg_none_and_hmac_with_the_public_key_are_refused() {
    assert_eq!(
        verify(MintOptions { signing: Signing::None, ..Default::default() }).unwrap_err(),
        Denial::AlgNotAllowed
    );
    let hs = MintOptions { signing: Signing::HmacWithPublicKey, ..Default::default() };
    assert_eq!(verify(hs.clone()).unwrap_err(), Denial::AlgNotAllowed);
    // Even a provider that allowed every asymmetric algorithm never lets an RSA key verify HMAC.
    let mut cfg = config();
    cfg.algorithms = Some(["RS256", "PS256", "ES256"].iter().map(|a| parse_algorithm(a).unwrap()).collect());
    assert_eq!(cfg.build("dev").unwrap().verify(&token(hs), now()).unwrap_err(), Denial::AlgNotAllowed);
    assert_eq!(parse_algorithm("HS256").unwrap_err(), ConfigError::UnknownAlgorithm("HS256".into()));
}

#[test]
fn an_algorithm_that_does_not_fit_the_key_is_refused() {
    let mut cfg = config();
    cfg.algorithms = Some(vec![parse_algorithm("RS256").unwrap(), parse_algorithm("ES256").unwrap()]);
    let p = cfg.build("dev").unwrap();
    let t = token(MintOptions { headers: vec![("alg".into(), json!("ES256"))], ..Default::default() });
    assert_eq!(p.verify(&t, now()).unwrap_err(), Denial::AlgKeyMismatch);
}

#[test]
fn crit_headers_are_refused() {
    assert_eq!(verify(with_header("crit", json!(["exp"]))).unwrap_err(), Denial::CritHeader);
}

#[test]
fn keys_named_by_the_token_are_ignored() {
    // A token signed by a stranger that points at its own key is still judged by our keys.
    let stranger_jwk = idp().stranger.current().public_jwk().unwrap();
    for (name, value) in [
        ("jwk", stranger_jwk.clone()),
        ("jku", json!("https://attacker.example/keys")),
        ("x5u", json!("https://attacker.example/cert")),
        ("x5c", json!(["MIIB"])),
    ] {
        let mut o = with_header(name, value);
        o.headers.push(("kid".into(), json!(idp().store.current().kid)));
        let t = mint(&idp().stranger, &o).unwrap();
        assert_eq!(provider().verify(&t, now()).unwrap_err(), Denial::BadSignature, "{name}");
    }
}

#[test]
fn kid_must_be_present_and_known() {
    let o = MintOptions { unset_headers: vec!["kid".into()], ..Default::default() };
    assert_eq!(verify(o).unwrap_err(), Denial::MissingKid);
    assert_eq!(verify(with_header("kid", json!("nope"))).unwrap_err(), Denial::UnknownKid);
    assert_eq!(verify(with_header("kid", json!(42))).unwrap_err(), Denial::Malformed);
}

#[test]
fn a_bad_signature_is_refused() {
    assert_eq!(
        verify(MintOptions { signing: Signing::Corrupt, ..Default::default() }).unwrap_err(),
        Denial::BadSignature
    );
    // A stranger's token that names one of our kids.
    let o = with_header("kid", json!(idp().store.current().kid));
    assert_eq!(
        provider().verify(&mint(&idp().stranger, &o).unwrap(), now()).unwrap_err(),
        Denial::BadSignature
    );
}

#[test]
fn a_graph_token_is_named_as_such() {
    assert_eq!(verify(MintOptions { graph: true, ..Default::default() }).unwrap_err(), Denial::GraphToken);
    // Without the header nonce, a Graph audience still gets the precise reason.
    let o = with_claim("aud", json!("https://graph.microsoft.com"));
    assert_eq!(verify(o).unwrap_err(), Denial::GraphToken);
}

#[test]
fn exp_is_required_numeric_and_honours_leeway() {
    let o = MintOptions { unset_claims: vec!["exp".into()], ..Default::default() };
    assert_eq!(verify(o).unwrap_err(), Denial::MissingExp);
    assert_eq!(verify(with_claim("exp", json!("9999999999"))).unwrap_err(), Denial::InvalidClaim("exp"));
    assert_eq!(
        verify(MintOptions { expires_in: Some(-61), ..Default::default() }).unwrap_err(),
        Denial::Expired
    );
    assert!(verify(MintOptions { expires_in: Some(-30), ..Default::default() }).is_ok());
    let mut cfg = config();
    cfg.leeway = Some(0);
    let t = token(MintOptions { expires_in: Some(-5), ..Default::default() });
    assert_eq!(cfg.build("dev").unwrap().verify(&t, now()).unwrap_err(), Denial::Expired);
}

#[test]
fn nbf_is_numeric_and_honours_leeway() {
    assert_eq!(verify(with_claim("nbf", json!("0"))).unwrap_err(), Denial::InvalidClaim("nbf"));
    assert_eq!(
        verify(MintOptions { not_before: Some(120), ..Default::default() }).unwrap_err(),
        Denial::NotYetValid
    );
    assert!(verify(MintOptions { not_before: Some(30), ..Default::default() }).is_ok());
}

#[test]
fn a_header_or_payload_that_is_not_an_object_is_malformed() {
    let good = token(MintOptions::default());
    let header: Value = serde_json::from_str(&header_of(&good)).unwrap();
    let claims: Value = serde_json::from_str(&payload_of(&good)).unwrap();
    // serde's derived structs take their fields by position from an array.
    let positional = |value: &Value, fields: &[&str]| {
        Value::Array(fields.iter().map(|f| value.get(*f).cloned().unwrap_or(Value::Null)).collect())
            .to_string()
    };
    let header_array = positional(&header, &["alg", "kid", "crit", "nonce"]);
    let claims_array = positional(
        &claims,
        &[
            "exp", "nbf", "iss", "aud", "tid", "oid", "sub", "scp", "ver", "azp", "appid", "roles", "groups",
            "nonce",
        ],
    );
    let (header, claims) = (header.to_string(), claims.to_string());
    assert!(provider().verify(&signed_text(&header, &claims), now()).is_ok(), "the objects themselves pass");
    for (h, c) in
        [(&header_array, &claims), (&header, &claims_array), (&format!(" \n{header_array}"), &claims)]
    {
        assert_eq!(
            provider().verify(&signed_text(h, c), now()).unwrap_err(),
            Denial::Malformed,
            "{h} {c:.40}"
        );
    }
}

/// One character of `part` (0 header, 1 payload, 2 signature) replaced by another base64url one.
fn tampered(token: &str, part: usize) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let middle = parts[part].len() / 2;
    let was = parts[part].as_bytes()[middle];
    let by = if was == b'A' { "B" } else { "A" };
    parts[part].replace_range(middle..=middle, by);
    parts.join(".")
}

#[test]
fn a_parsed_key_verifies_only_its_own_signatures_under_the_signed_algorithm() {
    let mut cfg = config();
    cfg.algorithms = Some(
        ["RS256", "RS384", "PS256", "ES256", "EdDSA"].iter().map(|a| parse_algorithm(a).unwrap()).collect(),
    );
    let p = cfg.build("dev").unwrap();
    let rsa = token(MintOptions::default());
    let ec = token(MintOptions { key: Some(idp().ec_kid.clone()), ..Default::default() });
    let ed = token(MintOptions { key: Some(idp().ed_kid.clone()), ..Default::default() });
    for good in [&rsa, &ec, &ed] {
        assert!(p.verify(good, now()).is_ok());
        // A changed payload or signature never verifies.
        assert_eq!(p.verify(&tampered(good, 1), now()).unwrap_err(), Denial::BadSignature);
        assert_eq!(p.verify(&tampered(good, 2), now()).unwrap_err(), Denial::BadSignature);
    }
    // Another RSA key of the set does not verify this key's signature.
    let other_key =
        token(MintOptions { headers: vec![("kid".into(), json!(idp().issuer_kid))], ..Default::default() });
    assert_eq!(p.verify(&other_key, now()).unwrap_err(), Denial::BadSignature);
    // An RS256 signature relabelled as another RSA algorithm the provider allows does not verify.
    for alg in ["RS384", "PS256"] {
        let relabelled =
            token(MintOptions { headers: vec![("alg".into(), json!(alg))], ..Default::default() });
        assert!(header_of(&relabelled).contains(alg));
        assert_eq!(p.verify(&relabelled, now()).unwrap_err(), Denial::BadSignature, "{alg}");
    }
}
