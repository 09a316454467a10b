//! Every validation rule, positive and negative, with real keys and real signatures.

use std::sync::OnceLock;

use entra_core::policy::{Policy, Requirement, Subject};
use entra_core::provider::{parse_algorithm, parse_url, AllowedTenants, Tenant, CONSUMERS_TENANT_ID};
use entra_core::{ConfigError, Denial, DenialClass, KeySet, Provider, ProviderConfig};
use entra_dev_idp::keystore::{KeyKind, KeyStore, Settings, DEV_CLIENT_ID, DEV_TENANT, GLOBAL_AUTHORITY};
use entra_dev_idp::mint::{guid_for, mint, MintOptions, Signing};
use serde_json::{json, Value};

const OTHER_TENANT: &str = "0d8e5b2a-7c4f-4e19-b3a6-1f5d9c2e8a70";

struct Idp {
    store: KeyStore,
    /// A key that signs tokens but is not in the provider's key set.
    stranger: KeyStore,
    ec_kid: String,
    ed_kid: String,
    issuer_kid: String,
    template_issuer_kid: String,
}

fn idp() -> &'static Idp {
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

fn keys() -> KeySet {
    let jwks = idp().store.jwks().unwrap().to_string();
    KeySet::from_jwks(jwks.as_bytes()).unwrap().0
}

fn config() -> ProviderConfig {
    ProviderConfig {
        tenant: Some(Tenant::Id(DEV_TENANT.into())),
        client_id: Some(DEV_CLIENT_ID.into()),
        keys: Some(keys()),
        ..Default::default()
    }
}

fn provider() -> Provider {
    config().build("dev").unwrap()
}

fn token(o: MintOptions) -> String {
    mint(&idp().store, &o).unwrap()
}

fn verify(o: MintOptions) -> Result<entra_core::VerifiedToken, Denial> {
    provider().verify(&token(o), now())
}

fn with_claim(name: &str, value: Value) -> MintOptions {
    MintOptions { claims: vec![(name.into(), value)], ..Default::default() }
}

fn with_header(name: &str, value: Value) -> MintOptions {
    MintOptions { headers: vec![(name.into(), value)], ..Default::default() }
}

// ---- the happy paths -------------------------------------------------------------------------

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

// ---- structure and header ------------------------------------------------------------------

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

fn base64_url(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
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

// ---- time ------------------------------------------------------------------------------------

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

// ---- audience, issuer, tenant ----------------------------------------------------------------

#[test]
fn audience_defaults_to_client_id_and_app_id_uri() {
    assert!(verify(with_claim("aud", json!(DEV_CLIENT_ID))).is_ok());
    assert!(verify(with_claim("aud", json!(format!("api://{DEV_CLIENT_ID}")))).is_ok());
    assert!(verify(with_claim("aud", json!(["other", DEV_CLIENT_ID]))).is_ok());
    assert_eq!(verify(with_claim("aud", json!("api://other"))).unwrap_err(), Denial::WrongAudience);
    assert_eq!(verify(with_claim("aud", json!(7))).unwrap_err(), Denial::InvalidClaim("aud"));
    assert_eq!(
        verify(with_claim("aud", json!([DEV_CLIENT_ID, 7]))).unwrap_err(),
        Denial::InvalidClaim("aud")
    );
    let o = MintOptions { unset_claims: vec!["aud".into()], ..Default::default() };
    assert_eq!(verify(o).unwrap_err(), Denial::WrongAudience);
}

#[test]
fn a_configured_audience_replaces_the_default() {
    let mut cfg = config();
    cfg.audiences = Some(vec!["api://orders".into()]);
    let p = cfg.build("dev").unwrap();
    assert!(p.verify(&token(with_claim("aud", json!("api://orders"))), now()).is_ok());
    assert_eq!(p.verify(&token(MintOptions::default()), now()).unwrap_err(), Denial::WrongAudience);
}

#[test]
fn issuer_must_match_exactly() {
    for iss in [
        format!("{GLOBAL_AUTHORITY}/{DEV_TENANT}/v2.0/"),
        format!("https://sts.windows.net/{DEV_TENANT}"),
        format!("https://evil.example/{DEV_TENANT}/v2.0"),
        format!("{GLOBAL_AUTHORITY}/{DEV_TENANT}/V2.0"),
    ] {
        assert_eq!(verify(with_claim("iss", json!(iss))).unwrap_err(), Denial::WrongIssuer, "{iss}");
    }
    assert_eq!(verify(with_claim("iss", json!(1))).unwrap_err(), Denial::InvalidClaim("iss"));
    let o = MintOptions { unset_claims: vec!["iss".into()], ..Default::default() };
    assert_eq!(verify(o).unwrap_err(), Denial::WrongIssuer);
}

/// A token signed by the IdP's current RSA key over header and payload JSON given as text, so
/// that the JSON can be spelled in ways serde_json never writes (escapes).
fn signed_text(header: &str, payload: &str) -> String {
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

fn payload_of(token: &str) -> String {
    let payload = token.split('.').nth(1).unwrap();
    String::from_utf8(
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).unwrap(),
    )
    .unwrap()
}

#[test]
fn escaped_json_strings_are_read_like_plain_ones() {
    // `\/` and `\u00XX` escapes in every string of the header and payload: same token, same answer.
    let kid = &idp().store.current().kid;
    let header = format!(
        r#"{{"alg":"RS\u0032\u00356","typ":"JWT","kid":"\u{:04x}{}"}}"#,
        kid.as_bytes()[0],
        &kid[1..]
    );
    let escape = |json: &str| json.replace('/', "\\/").replace('-', "\\u002d");
    let plain = payload_of(&token(MintOptions::default()));
    assert!(plain.contains(&format!("/{DEV_TENANT}/")), "{plain}");
    let t = provider().verify(&signed_text(&header, &escape(&plain)), now()).unwrap();
    assert_eq!(t.tid(), Some(DEV_TENANT));
    assert_eq!(t.str("iss"), Some(format!("{GLOBAL_AUTHORITY}/{DEV_TENANT}/v2.0").as_str()));
    // An escaped issuer naming another tenant is still another tenant.
    let other = plain.replace(&format!("/{DEV_TENANT}/"), &format!("/{OTHER_TENANT}/"));
    assert_eq!(
        provider().verify(&signed_text(&header, &escape(&other)), now()).unwrap_err(),
        Denial::WrongIssuer
    );
}

#[test]
fn another_tenant_is_refused_by_a_single_tenant_provider() {
    let o = MintOptions { tenant: Some(OTHER_TENANT.into()), ..Default::default() };
    assert_eq!(verify(o).unwrap_err(), Denial::TenantNotAllowed);
}

#[test]
fn tid_and_iss_must_agree() {
    let o = with_claim("tid", json!(OTHER_TENANT));
    assert_eq!(verify(o).unwrap_err(), Denial::WrongIssuer);
    assert_eq!(verify(with_claim("tid", json!("not-a-guid"))).unwrap_err(), Denial::InvalidClaim("tid"));
}

#[test]
fn multi_tenant_providers_need_an_allow_list_and_honour_it() {
    let mut cfg = config();
    cfg.tenant = Some(Tenant::Common);
    assert_eq!(config_err(cfg), ConfigError::AllowedTenantsRequired("common".into()));

    let mut cfg = config();
    cfg.tenant = Some(Tenant::Organizations);
    cfg.allowed_tenants = Some(AllowedTenants::Only(vec![OTHER_TENANT.into()]));
    let p = cfg.build("multi").unwrap();
    assert!(p
        .verify(&token(MintOptions { tenant: Some(OTHER_TENANT.into()), ..Default::default() }), now())
        .is_ok());
    assert!(p
        .verify(
            &token(MintOptions { tenant: Some(OTHER_TENANT.into()), version: Some(1), ..Default::default() }),
            now()
        )
        .is_ok());
    assert_eq!(p.verify(&token(MintOptions::default()), now()).unwrap_err(), Denial::TenantNotAllowed);

    let mut cfg = config();
    cfg.tenant = Some(Tenant::Common);
    cfg.allowed_tenants = Some(AllowedTenants::Any);
    let p = cfg.build("any").unwrap();
    assert!(p
        .verify(&token(MintOptions { tenant: Some(OTHER_TENANT.into()), ..Default::default() }), now())
        .is_ok());
}

fn config_err(cfg: ProviderConfig) -> ConfigError {
    cfg.build("x").unwrap_err()
}

#[test]
fn consumers_accept_only_the_personal_account_tenant() {
    let mut cfg = config();
    cfg.tenant = Some(Tenant::Consumers);
    let p = cfg.build("msa").unwrap();
    assert!(p
        .verify(&token(MintOptions { tenant: Some(CONSUMERS_TENANT_ID.into()), ..Default::default() }), now())
        .is_ok());
    assert_eq!(p.verify(&token(MintOptions::default()), now()).unwrap_err(), Denial::TenantNotAllowed);
}

#[test]
fn configured_issuers_replace_the_table_and_fill_tenantid() {
    let mut cfg = config();
    cfg.issuers = vec!["https://sts.windows.net/{tenantid}/".into()];
    let p = cfg.build("v1only").unwrap();
    assert!(p.verify(&token(MintOptions { version: Some(1), ..Default::default() }), now()).is_ok());
    assert_eq!(p.verify(&token(MintOptions::default()), now()).unwrap_err(), Denial::WrongIssuer);

    // A B2C-style issuer with no tid claim.
    let b2c = "https://contoso.b2clogin.com/9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93/v2.0/";
    let mut cfg = config();
    cfg.issuers = vec![b2c.into()];
    let p = cfg.build("b2c").unwrap();
    let o = MintOptions {
        claims: vec![("iss".into(), json!(b2c))],
        unset_claims: vec!["tid".into()],
        ..Default::default()
    };
    assert!(p.verify(&token(o), now()).is_ok());
}

#[test]
fn sovereign_clouds_get_their_own_issuers() {
    let mut cfg = config();
    cfg.authority = Some(parse_url("authority", "https://login.partner.microsoftonline.cn/").unwrap());
    let p = cfg.build("china").unwrap();
    assert!(p.issuers.contains(&"https://login.partner.microsoftonline.cn/{tenantid}/v2.0".to_string()));
    assert!(p.issuers.contains(&"https://sts.chinacloudapi.cn/{tenantid}/".to_string()));
    let o = with_claim("iss", json!(format!("https://sts.chinacloudapi.cn/{DEV_TENANT}/")));
    assert!(p.verify(&token(o), now()).is_ok());
    assert_eq!(p.verify(&token(MintOptions::default()), now()).unwrap_err(), Denial::WrongIssuer);

    let mut cfg = config();
    cfg.authority = Some(parse_url("authority", "https://login.microsoftonline.us").unwrap());
    let p = cfg.build("usgov").unwrap();
    assert!(p.issuers.contains(&"https://sts.windows.net/{tenantid}/".to_string()));
}

#[test]
fn a_key_with_an_issuer_signs_only_for_that_issuer() {
    let mut cfg = config();
    cfg.tenant = Some(Tenant::Common);
    cfg.allowed_tenants = Some(AllowedTenants::Any);
    let p = cfg.build("any").unwrap();
    let pinned = idp().issuer_kid.clone();
    let own = |version| MintOptions {
        key: Some(pinned.clone()),
        tenant: Some(OTHER_TENANT.into()),
        version: Some(version),
        ..Default::default()
    };
    assert!(p.verify(&token(own(2)), now()).is_ok());
    // v1 tokens are compared through their v2-form issuer.
    assert!(p.verify(&token(own(1)), now()).is_ok());
    let foreign = MintOptions { key: Some(pinned), ..Default::default() };
    assert_eq!(p.verify(&token(foreign), now()).unwrap_err(), Denial::KeyIssuerMismatch);
    let templated = MintOptions {
        key: Some(idp().template_issuer_kid.clone()),
        tenant: Some(OTHER_TENANT.into()),
        ..Default::default()
    };
    assert!(p.verify(&token(templated), now()).is_ok());
}

// ---- claims and permissions --------------------------------------------------------------------

#[test]
fn claims_of_the_wrong_type_are_refused() {
    for (name, value) in [
        ("scp", json!(["access_as_user"])),
        ("roles", json!("Orders.Read")),
        ("groups", json!("g1")),
        ("groups", json!([1, 2])),
        ("oid", json!(5)),
        ("ver", json!(2.0)),
    ] {
        assert!(
            matches!(verify(with_claim(name, value)).unwrap_err(), Denial::InvalidClaim(n) if n == name),
            "{name}"
        );
    }
}

#[test]
fn a_token_without_scp_or_roles_is_refused_unless_allowed() {
    let o = MintOptions { unset_claims: vec!["scp".into()], ..Default::default() };
    assert_eq!(verify(o.clone()).unwrap_err(), Denial::NoPermissionClaims);
    let mut cfg = config();
    cfg.require_permission = Some(false);
    assert!(cfg.build("lax").unwrap().verify(&token(o), now()).is_ok());
}

fn policy(requirements: Vec<(Subject, &[&str])>) -> Policy {
    Policy {
        requirements: requirements
            .into_iter()
            .map(|(subject, values)| Requirement {
                subject,
                any_of: values.iter().map(|v| v.to_string()).collect(),
            })
            .collect(),
    }
}

#[test]
fn groups_are_any_of_within_and_all_of_across_requirements() {
    let t =
        verify(MintOptions { groups: Some(vec!["g1".into(), "G2".into()]), ..Default::default() }).unwrap();
    assert!(policy(vec![(Subject::Group, &["x", "g1"])]).check(&t).is_ok());
    assert!(policy(vec![(Subject::Group, &["g2"])]).check(&t).is_ok(), "group ids ignore case");
    assert!(policy(vec![(Subject::Group, &["g1"]), (Subject::Group, &["g2"])]).check(&t).is_ok());
    assert_eq!(
        policy(vec![(Subject::Group, &["g1"]), (Subject::Group, &["g3"])]).check(&t).unwrap_err(),
        Denial::MissingGroup
    );
}

#[test]
fn group_overage_fails_closed_with_its_own_reason() {
    let t = verify(MintOptions { overage: true, ..Default::default() }).unwrap();
    assert_eq!(policy(vec![(Subject::Group, &["g1"])]).check(&t).unwrap_err(), Denial::GroupOverage);
    let implicit = verify(with_claim("hasgroups", json!(true))).unwrap();
    assert_eq!(policy(vec![(Subject::Group, &["g1"])]).check(&implicit).unwrap_err(), Denial::GroupOverage);
    // Without a group requirement an overage token is fine.
    assert!(policy(vec![(Subject::Scope, &["access_as_user"])]).check(&t).is_ok());
}

#[test]
fn roles_scopes_and_permissions() {
    let user = verify(MintOptions { scopes: Some("read write".into()), ..Default::default() }).unwrap();
    let app = verify(MintOptions {
        app: Some("daemon".into()),
        roles: Some(vec!["Orders.Read.All".into()]),
        ..Default::default()
    })
    .unwrap();
    assert!(policy(vec![(Subject::Scope, &["write"])]).check(&user).is_ok());
    assert_eq!(policy(vec![(Subject::Scope, &["admin"])]).check(&user).unwrap_err(), Denial::MissingScope);
    assert_eq!(
        policy(vec![(Subject::Scope, &["read write"])]).check(&user).unwrap_err(),
        Denial::MissingScope
    );
    assert!(policy(vec![(Subject::Role, &["Orders.Read.All"])]).check(&app).is_ok());
    assert_eq!(
        policy(vec![(Subject::Role, &["Orders.Read.All"])]).check(&user).unwrap_err(),
        Denial::MissingRole
    );
    let either = policy(vec![(Subject::Permission, &["read", "Orders.Read.All"])]);
    assert!(either.check(&user).is_ok());
    assert!(either.check(&app).is_ok());
    assert_eq!(
        policy(vec![(Subject::Permission, &["nope"])]).check(&app).unwrap_err(),
        Denial::MissingPermission
    );
}

#[test]
fn claim_requirements_compare_strings_arrays_numbers_and_booleans() {
    let t = verify(MintOptions {
        claims: vec![
            ("wids".into(), json!(["a", "b"])),
            ("level".into(), json!(3)),
            ("mfa".into(), json!(true)),
            ("obj".into(), json!({"a": 1})),
        ],
        ..Default::default()
    })
    .unwrap();
    let ok = |name: &str, v: &[&str]| policy(vec![(Subject::Claim(name.into()), v)]).check(&t);
    assert!(ok("tid", &[DEV_TENANT]).is_ok());
    assert!(ok("wids", &["b"]).is_ok());
    assert!(ok("level", &["3"]).is_ok());
    assert!(ok("mfa", &["true"]).is_ok());
    assert_eq!(ok("mfa", &["1"]).unwrap_err(), Denial::MissingClaim);
    assert_eq!(ok("obj", &["{\"a\":1}"]).unwrap_err(), Denial::MissingClaim);
    assert_eq!(ok("absent", &["x"]).unwrap_err(), Denial::MissingClaim);
}

#[test]
fn denial_classes_map_to_the_documented_responses() {
    assert_eq!(Denial::NoToken.class(), DenialClass::Challenge);
    assert_eq!(Denial::UnknownKid.class(), DenialClass::InvalidToken);
    assert_eq!(Denial::TenantNotAllowed.class(), DenialClass::InvalidToken);
    assert_eq!(Denial::GroupOverage.class(), DenialClass::InsufficientScope);
    assert_eq!(Denial::MissingClaim.reason(), "missing_claim");
    // Every reason has its own counter.
    for (i, reason) in entra_core::error::REASONS.iter().enumerate() {
        assert_eq!(entra_core::error::REASONS.iter().position(|r| r == reason), Some(i), "{reason} twice");
    }
    assert_eq!(Denial::KeysUnavailable.index(), entra_core::error::REASONS.len() - 1);
    assert_eq!(Denial::InvalidClaim("exp").index(), 11);
}

// ---- configuration ----------------------------------------------------------------------------

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
    assert_eq!(provider().judge(b"\xff\xfe.a.b", now()).unwrap_err(), Denial::Malformed);
}

// ---- the verified-token cache ------------------------------------------------------------------

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

#[test]
fn a_verified_token_is_served_from_the_cache_the_second_time() {
    let p = provider();
    let t = token(MintOptions::default());
    let first = p.judge(t.as_bytes(), now()).unwrap();
    let second = p.judge(t.as_bytes(), now()).unwrap();
    assert!(!first.cached);
    assert!(second.cached);
    assert!(std::sync::Arc::ptr_eq(&first.token, &second.token));
}

#[test]
fn the_cache_never_answers_for_another_token_with_the_same_signature() {
    let p = provider();
    let good = token(MintOptions::default());
    p.judge(good.as_bytes(), now()).unwrap();
    // Same signature (the hashed tail), another payload: must be judged, and fail.
    let (head, rest) = good.split_once('.').unwrap();
    let (_, sig) = rest.split_once('.').unwrap();
    let payload = base64_url(r#"{"aud":"x"}"#);
    let forged = format!("{head}.{payload}.{sig}");
    assert_eq!(p.judge(forged.as_bytes(), now()).unwrap_err(), Denial::BadSignature);
}

#[test]
fn failures_are_not_cached_and_off_means_off() {
    let p = provider();
    let bad = token(MintOptions { signing: Signing::Corrupt, ..Default::default() });
    assert!(p.judge(bad.as_bytes(), now()).is_err());
    assert!(p.judge(bad.as_bytes(), now()).is_err());
    let mut cfg = config();
    cfg.token_cache = Some(0);
    let p = cfg.build("nocache").unwrap();
    let t = token(MintOptions::default());
    assert!(!p.judge(t.as_bytes(), now()).unwrap().cached);
    assert!(!p.judge(t.as_bytes(), now()).unwrap().cached);
}

#[test]
fn cached_verifications_end_with_the_token_and_the_cache_is_bounded() {
    use entra_core::cache::TokenCache;
    let verified = std::sync::Arc::new(verify(MintOptions::default()).unwrap());
    let cache = TokenCache::new(2);
    cache.insert(b"token-a", verified.clone(), 1000, 900);
    assert!(cache.get(b"token-a", 1000).is_some());
    assert!(cache.get(b"token-a", 1001).is_none(), "not past exp + leeway");
    cache.insert(b"token-b", verified.clone(), 1000, 900);
    cache.insert(b"token-c", verified.clone(), 1000, 900);
    assert_eq!(cache.len(), 2);
    assert!(cache.get(b"token-a", 950).is_none(), "the oldest went first");
    assert!(cache.get(b"token-c", 950).is_some());
    // Expired entries make room before live ones: both b and c go, not only the oldest.
    cache.insert(b"token-d", verified.clone(), 2000, 1500);
    assert!(cache.get(b"token-d", 1500).is_some());
    assert_eq!(cache.len(), 1, "every expired entry was swept out");
    cache.retain_keys(|kid| kid != verified.kid);
    assert!(cache.is_empty(), "entries of a key that is gone are dropped");
}

#[test]
fn the_exp_of_a_verified_token_is_kept() {
    let t = verify(MintOptions { expires_in: Some(600), ..Default::default() }).unwrap();
    assert!((now() + 590..=now() + 610).contains(&t.exp));
}

// ---- mutations: nothing but the exact token passes, and nothing panics --------------------------

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn no_mutation_of_a_valid_token_passes_and_none_panics() {
    let p = provider();
    let good = token(MintOptions { groups: Some(vec!["g1".into()]), ..Default::default() }).into_bytes();
    assert!(p.judge(&good, now()).is_ok());
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ \x00\xff{}\"";
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for round in 0..3000 {
        let mut t = good.clone();
        for _ in 0..1 + rng.below(3) {
            match rng.below(4) {
                0 => {
                    let i = rng.below(t.len());
                    t[i] = alphabet[rng.below(alphabet.len())];
                }
                1 => t.truncate(rng.below(t.len().max(1))),
                2 => {
                    let i = rng.below(t.len() + 1);
                    t.insert(i, alphabet[rng.below(alphabet.len())]);
                }
                _ => {
                    let i = rng.below(t.len().max(1));
                    t.remove(i.min(t.len().saturating_sub(1)));
                }
            }
            if t.is_empty() {
                break;
            }
        }
        if t == good {
            continue;
        }
        // A cached verification must not leak to a near copy either: judge twice.
        for _ in 0..2 {
            if let Ok(j) = p.judge(&t, now()) {
                // base64 has more than one spelling of the last bits of a segment; anything
                // else that passes must decode to the very same header, claims and signature.
                let decode = |tok: &[u8]| {
                    use base64::Engine;
                    let text = String::from_utf8(tok.to_vec()).unwrap();
                    text.split('.')
                        .map(|part| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap())
                        .collect::<Vec<_>>()
                };
                assert_eq!(decode(&t), decode(&good), "round {round}: a mutated token passed");
                assert_eq!(j.token.oid(), p.judge(&good, now()).unwrap().token.oid());
            }
        }
    }
}

#[test]
fn a_discovery_provider_judges_with_the_keys_and_issuers_it_was_given() {
    use entra_core::provider::KeySource;
    let mut cfg = config();
    cfg.keys = None;
    let p = cfg.build("live").unwrap();
    assert!(matches!(p.source, KeySource::Discovery { .. }));
    assert!(p.issuers.is_empty(), "the metadata names them");
    let t = token(MintOptions::default());
    assert_eq!(p.judge(t.as_bytes(), now()).unwrap_err(), Denial::UnknownKid, "no keys yet");
    let v2_issuer = format!("{GLOBAL_AUTHORITY}/{DEV_TENANT}/v2.0");
    p.update_keys(keys(), vec![v2_issuer]);
    assert!(p.judge(t.as_bytes(), now()).is_ok());
    let v1 = token(MintOptions { version: Some(1), ..Default::default() });
    assert_eq!(p.judge(v1.as_bytes(), now()).unwrap_err(), Denial::WrongIssuer, "only the issuers named");
    // A key set without the signing key: the cached verification goes with it.
    let other = idp().stranger.jwks().unwrap().to_string();
    p.update_keys(KeySet::from_jwks(other.as_bytes()).unwrap().0, vec![]);
    assert_eq!(p.judge(t.as_bytes(), now()).unwrap_err(), Denial::UnknownKid);
}
