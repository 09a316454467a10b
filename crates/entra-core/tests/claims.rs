//! Claims of the wrong type, permissions, and location requirements.

mod common;

use common::*;
use entra_core::error::AuthContext;
use serde_json::json;

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

#[test]
fn groups_are_any_of_within_and_all_of_across_requirements() {
    let t =
        verify(MintOptions { groups: Some(vec!["g1".into(), "G2".into()]), ..Default::default() }).unwrap();
    assert!(policy(vec![(Subject::Group, &["x", "g1"])]).check(&t, None).is_ok());
    assert!(policy(vec![(Subject::Group, &["g2"])]).check(&t, None).is_ok(), "group ids ignore case");
    assert!(policy(vec![(Subject::Group, &["g1"]), (Subject::Group, &["g2"])]).check(&t, None).is_ok());
    assert_eq!(
        policy(vec![(Subject::Group, &["g1"]), (Subject::Group, &["g3"])]).check(&t, None).unwrap_err(),
        Denial::MissingGroup
    );
}

#[test]
fn group_overage_fails_closed_with_its_own_reason() {
    let t = verify(MintOptions { overage: true, ..Default::default() }).unwrap();
    assert_eq!(policy(vec![(Subject::Group, &["g1"])]).check(&t, None).unwrap_err(), Denial::GroupOverage);
    let implicit = verify(with_claim("hasgroups", json!(true))).unwrap();
    assert_eq!(
        policy(vec![(Subject::Group, &["g1"])]).check(&implicit, None).unwrap_err(),
        Denial::GroupOverage
    );
    // Without a group requirement an overage token is fine.
    assert!(policy(vec![(Subject::Scope, &["access_as_user"])]).check(&t, None).is_ok());
}

#[test]
fn graphs_answer_decides_an_overage_token_and_only_for_groups_asked() {
    use entra_core::graph::{read_member_groups, Asked, Membership};
    const G1: &str = "0b9f3f6e-4a4c-4c1e-9a63-2f1d8f1b57e1";
    const G2: &str = "5a1e0f3c-7b2d-4e6a-8c9f-1d3b5e7a9c20";
    let t = verify(MintOptions { overage: true, ..Default::default() }).unwrap();
    let asked = Asked::new([G1, G2]).unwrap();
    let mut member_of_g2 = Membership::default();
    read_member_groups(format!(r#"{{"value":["{G2}"]}}"#).as_bytes(), &asked, 0..2, &mut member_of_g2)
        .unwrap();
    let answered = Some((&asked, &member_of_g2));
    assert!(policy(vec![(Subject::Group, &[G1, &G2.to_uppercase()])]).check(&t, answered).is_ok());
    assert_eq!(policy(vec![(Subject::Group, &[G1])]).check(&t, answered).unwrap_err(), Denial::MissingGroup);
    // A value Graph cannot have been asked about (a display name) leaves it undecided.
    assert_eq!(
        policy(vec![(Subject::Group, &[G1, "Dashboard-Users"])]).check(&t, answered).unwrap_err(),
        Denial::GroupOverage
    );
    assert!(policy(vec![(Subject::Group, &[G2, "Dashboard-Users"])]).check(&t, answered).is_ok());
    // Not overage: the token's own groups decide, never an answer.
    let plain = verify(MintOptions { groups: Some(vec![G1.into()]), ..Default::default() }).unwrap();
    assert_eq!(
        policy(vec![(Subject::Group, &[G2])]).check(&plain, answered).unwrap_err(),
        Denial::MissingGroup
    );
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
    assert!(policy(vec![(Subject::Scope, &["write"])]).check(&user, None).is_ok());
    assert_eq!(
        policy(vec![(Subject::Scope, &["admin"])]).check(&user, None).unwrap_err(),
        Denial::MissingScope
    );
    assert_eq!(
        policy(vec![(Subject::Scope, &["read write"])]).check(&user, None).unwrap_err(),
        Denial::MissingScope
    );
    assert!(policy(vec![(Subject::Role, &["Orders.Read.All"])]).check(&app, None).is_ok());
    assert_eq!(
        policy(vec![(Subject::Role, &["Orders.Read.All"])]).check(&user, None).unwrap_err(),
        Denial::MissingRole
    );
    let either = policy(vec![(Subject::Permission, &["read", "Orders.Read.All"])]);
    assert!(either.check(&user, None).is_ok());
    assert!(either.check(&app, None).is_ok());
    assert_eq!(
        policy(vec![(Subject::Permission, &["nope"])]).check(&app, None).unwrap_err(),
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
    let ok = |name: &str, v: &[&str]| policy(vec![(Subject::Claim(name.into()), v)]).check(&t, None);
    assert!(ok("tid", &[DEV_TENANT]).is_ok());
    assert!(ok("wids", &["b"]).is_ok());
    assert!(ok("level", &["3"]).is_ok());
    assert!(ok("mfa", &["true"]).is_ok());
    assert_eq!(ok("mfa", &["1"]).unwrap_err(), Denial::MissingClaim);
    assert_eq!(ok("obj", &["{\"a\":1}"]).unwrap_err(), Denial::MissingClaim);
    assert_eq!(ok("absent", &["x"]).unwrap_err(), Denial::MissingClaim);
}

#[test]
fn auth_contexts_are_any_of_within_and_all_of_across_lines_and_name_what_to_ask() {
    let with = |acrs: serde_json::Value| {
        verify(MintOptions { claims: vec![("acrs".into(), acrs)], ..Default::default() }).unwrap()
    };
    let lines = policy(vec![(Subject::AuthContext, &["c1", "c2"]), (Subject::AuthContext, &["c3"])]);
    assert_eq!(lines.check(&with(json!(["c2", "c3"])), None), Ok(()));
    let only_c1 = with(json!(["c1"]));
    assert_eq!(lines.check(&only_c1, None), Err(Denial::AuthContextMissing(AuthContext(3))));
    assert_eq!(
        lines.missing_context(&only_c1),
        Some(AuthContext(3)),
        "the first id of the line not satisfied"
    );
    let none = verify(MintOptions::default()).unwrap();
    assert_eq!(lines.check(&none, None), Err(Denial::AuthContextMissing(AuthContext(1))));
    // A token an app got for itself never carries a context: nothing to ask for.
    let app = verify(MintOptions { app: Some("daemon".into()), ..Default::default() }).unwrap();
    assert!(app.is_app_only() && !none.is_app_only());
    assert_eq!(lines.check(&app, None), Err(Denial::AuthContextMissing(AuthContext::NONE_POSSIBLE)));
    assert_eq!(lines.missing_context(&app), None);
    // acrs must be an array of strings; auth_time a whole number.
    for (name, value) in [("acrs", json!("c1")), ("acrs", json!([1])), ("auth_time", json!(1.5))] {
        let wrong = verify(MintOptions { claims: vec![(name.into(), value)], ..Default::default() });
        assert_eq!(wrong.unwrap_err(), Denial::InvalidClaim(name));
    }
    for id in ["c0", "c100", "c01", "x1", "c", "c1a"] {
        assert_eq!(AuthContext::parse(id), None, "{id}");
    }
    assert_eq!(AuthContext::parse("C42"), Some(AuthContext(42)));
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
        let first = entra_core::error::REASONS.iter().position(|r| r.word == reason.word);
        assert_eq!(first, Some(i), "{} twice", reason.word);
    }
    assert_eq!(Denial::SigninTooOld(false).index(), entra_core::error::REASONS.len() - 1);
    assert_eq!(Denial::AuthContextMissing(AuthContext(1)).class(), DenialClass::StepUp);
    assert_eq!(Denial::SigninTooOld(true).reason(), "signin_too_old");
    assert_eq!(Denial::NoSession.class(), DenialClass::SignIn);
    assert_eq!(Denial::StateMismatch.class(), DenialClass::Callback);
    assert_eq!(Denial::IdpUnavailable.class(), DenialClass::Unavailable);
    assert_eq!(Denial::SessionTooLarge.class(), DenialClass::Forbidden);
    assert_eq!(Denial::InvalidClaim("exp").index(), 11);
}

/// A session that opened is judged by the provider's configuration as it is now: a reload that
/// narrows the tenants or changes the client id ends it; nothing of the configuration is sealed.
#[test]
fn a_session_holds_only_under_the_providers_tenants_and_client_id_now() {
    use entra_core::session::Session;
    use entra_core::values::AllowedTenants;
    let session = Session {
        tid: DEV_TENANT.into(),
        client_id: DEV_CLIENT_ID.into(),
        sid: "s".into(),
        ..Default::default()
    };
    let p = provider();
    assert_eq!(p.admits(&session, &p.sign_in.keys_of(&session), |_, _| false), Ok(()));
    assert_eq!(
        p.admits(&session, &p.sign_in.keys_of(&session), |_, _| true),
        Err(Denial::SessionRevoked),
        "the record says it ended"
    );
    let narrowed =
        ProviderConfig { allowed_tenants: Some(AllowedTenants::Only(vec![OTHER_TENANT.into()])), ..config() }
            .build("dev")
            .unwrap();
    assert_eq!(
        narrowed.admits(&session, &p.sign_in.keys_of(&session), |_, _| false),
        Err(Denial::TenantNotAllowed)
    );
    let other_app = ProviderConfig { client_id: Some(OTHER_TENANT.into()), ..config() }.build("dev").unwrap();
    assert_eq!(
        other_app.admits(&session, &p.sign_in.keys_of(&session), |_, _| false),
        Err(Denial::SessionInvalid),
        "another app's session"
    );
    let sealed_before = Session { client_id: String::new(), ..session };
    assert_eq!(
        other_app.admits(&sealed_before, &p.sign_in.keys_of(&sealed_before), |_, _| false),
        Ok(()),
        "one sealed before the client id was kept"
    );
}
