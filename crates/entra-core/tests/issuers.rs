//! Audience, issuer and tenant rules, sovereign clouds and keys that name their issuer.

mod common;

use common::*;
use serde_json::json;

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

#[test]
fn a_domain_tenant_allows_only_the_tenant_its_metadata_names() {
    let domain = || {
        let mut cfg = config();
        cfg.tenant = Some(Tenant::Domain("contoso.onmicrosoft.com".into()));
        cfg.keys = None;
        cfg
    };
    // A template would match every tenant's tokens, and no tenant id is known before metadata.
    let mut cfg = domain();
    cfg.issuers = vec!["https://login.microsoftonline.com/{tenantid}/v2.0".into()];
    assert_eq!(config_err(cfg), ConfigError::DomainTenantTemplate("contoso.onmicrosoft.com".into()));
    let mut cfg = domain();
    cfg.issuers = vec!["https://login.microsoftonline.com/{tenantid}/v2.0".into()];
    cfg.allowed_tenants = Some(AllowedTenants::Only(vec![DEV_TENANT.into()]));
    assert!(cfg.build("named").is_ok(), "with allowed_tenants, a template is fine");

    // By default the tenant is the one whose id the metadata's issuer names: a token of another
    // tenant under that issuer (a key that names no issuer) is refused.
    let issuer = format!("{GLOBAL_AUTHORITY}/{DEV_TENANT}/v2.0");
    let mut cfg = domain();
    cfg.issuers = vec![issuer.clone()];
    let p = cfg.build("contoso").unwrap();
    p.update_keys(KeyState { keys: keys(), issuers: vec![issuer.clone()], ..KeyState::default() });
    assert!(p.verify(&token(MintOptions::default()), now()).is_ok());
    let stranger = MintOptions {
        claims: vec![("tid".into(), json!(OTHER_TENANT)), ("iss".into(), json!(issuer))],
        ..Default::default()
    };
    assert_eq!(p.verify(&token(stranger), now()).unwrap_err(), Denial::TenantNotAllowed);
}
