//! A browser session judged in one call (`SignIn::judge_session`): what the access phase hands
//! the core of a request, and what it gets back.

use std::cell::Cell;

use entra_core::browser::RequestHeaders;
use entra_core::group::Groups;
use entra_core::seal::SealKeys;
use entra_core::session::Session;
use entra_core::signin::{Authorize, SessionRequest, SignIn, SignInConfig};
use entra_core::Denial;
use entra_core::VerifiedToken;

const NOW: u64 = 1_790_000_600;
const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

fn sign_in(revalidate: Option<u64>) -> SignIn {
    SignInConfig {
        keys: Some(SealKeys::parse(KEY).expect("a 32-byte key")),
        revalidate,
        ..Default::default()
    }
    .build("web", 16)
}

fn alice() -> Session {
    Session {
        token_version: 2,
        signed_in: 1_790_000_000_000,
        expires: NOW + 3600,
        revalidated: NOW - 600,
        last_used: NOW - 600,
        oid: "00000000-0000-0000-0000-00000000a11c".into(),
        tid: "9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93".into(),
        sid: "0027c5e2-4c19".into(),
        login_hint: "O.hint".into(),
        ..Default::default()
    }
}

/// The `Cookie` line that carries `session` for `sign_in` over plain HTTP.
fn cookie_line(sign_in: &SignIn, session: &Session) -> String {
    let set = sign_in.session_cookies(session, &Default::default(), false).expect("fits");
    set.iter().map(|c| c.split(';').next().unwrap()).collect::<Vec<_>>().join("; ")
}

fn navigation() -> RequestHeaders<'static> {
    RequestHeaders { method: "GET", accept: Some("text/html"), ..Default::default() }
}

fn request<'a>(line: &'a str, headers: RequestHeaders<'a>) -> SessionRequest<'a> {
    SessionRequest {
        cookie_lines: vec![line.as_bytes()].into(),
        headers: headers.into(),
        tls: false,
        host_header: b"app.example:8080",
        host: b"app.example",
        unparsed_uri: b"/orders?page=2",
        now: NOW,
    }
}

fn authorize() -> Option<Authorize<'static>> {
    Some(Authorize {
        client_id: "11111111-2222-3333-4444-555555555555",
        endpoint: "https://idp.example/authorize".into(),
    })
}

#[test]
fn a_sealed_session_opens_once_then_comes_from_the_cache() {
    let s = sign_in(None);
    let line = cookie_line(&s, &alice());
    let first = s.judge_session(&request(&line, navigation()), authorize, |_, _| Ok(()));
    let identity = first.verdict.expect("the session holds");
    assert_eq!(identity.oid(), Some("00000000-0000-0000-0000-00000000a11c"));
    assert!(first.opening.is_some_and(|o| o.accepted && o.took.is_some()), "opened: {:?}", first.opening);
    let again = s.judge_session(&request(&line, navigation()), authorize, |_, _| Ok(()));
    assert!(
        again.opening.is_some_and(|o| o.accepted && o.took.is_none()),
        "a cache hit: {:?}",
        again.opening
    );
    assert!(again.set_cookies.is_empty() && again.revalidation.is_none() && again.fault.is_none());
}

#[test]
fn no_cookie_a_tampered_one_and_a_revoked_sid_are_told_apart() {
    let s = sign_in(None);
    let none = s.judge_session(&request("other=1", navigation()), authorize, |_, _| Ok(()));
    assert_eq!(none.verdict.unwrap_err(), Denial::NoSession);
    assert!(none.opening.is_none());

    let mut line = cookie_line(&s, &alice());
    let last = line.pop().unwrap();
    line.push(if last == 'A' { 'B' } else { 'A' });
    let tampered = s.judge_session(&request(&line, navigation()), authorize, |_, _| Ok(()));
    assert_eq!(tampered.verdict.unwrap_err(), Denial::SessionInvalid);
    assert!(tampered.fault.is_some() && tampered.opening.is_some_and(|o| !o.accepted));

    let line = cookie_line(&s, &alice());
    let asked = Cell::new(None);
    let revoked = s.judge_session(&request(&line, navigation()), authorize, |session, _| {
        asked.set(Some((session.sid.clone(), session.signed_in)));
        Err(Denial::SessionRevoked)
    });
    assert_eq!(revoked.verdict.unwrap_err(), Denial::SessionRevoked);
    assert_eq!(
        asked.take(),
        Some(("0027c5e2-4c19".to_owned(), 1_790_000_000_000)),
        "the provider is asked about the opened session"
    );
}

#[test]
fn another_site_may_not_change_anything_with_the_session() {
    let s = sign_in(None);
    let line = cookie_line(&s, &alice());
    let post = RequestHeaders { method: "POST", origin: Some("https://evil.example"), ..Default::default() };
    let judged = s.judge_session(&request(&line, post), authorize, |_, _| Ok(()));
    assert_eq!(judged.verdict.unwrap_err(), Denial::CrossOrigin);
    let own =
        RequestHeaders { method: "POST", origin: Some("http://app.example:8080"), ..Default::default() };
    assert!(s.judge_session(&request(&line, own), authorize, |_, _| Ok(())).verdict.is_ok());
}

#[test]
fn a_navigation_due_for_revalidation_gets_its_silent_sign_in_and_only_then_asks_where() {
    let s = sign_in(Some(300));
    let line = cookie_line(&s, &alice());
    let judged = s.judge_session(&request(&line, navigation()), authorize, |_, _| Ok(()));
    assert!(judged.verdict.is_ok(), "the session still holds");
    let redirect = judged.revalidation.expect("due").expect("made");
    assert!(redirect.location.starts_with("https://idp.example/authorize?"), "{}", redirect.location);
    assert!(redirect.location.contains("prompt=none") && redirect.location.contains("login_hint=O.hint"));
    assert_eq!(redirect.set_cookies.len(), 1, "its transaction cookie only: {:?}", redirect.set_cookies);

    let cannot = s.judge_session(&request(&line, navigation()), || None, |_, _| Ok(()));
    assert!(cannot.revalidation.is_none(), "nowhere to send it");
    assert_eq!(
        cannot.verdict.unwrap_err(),
        Denial::SessionStale,
        "a due session that cannot revalidate (a subrequest, no metadata yet) is never let in as it is"
    );

    let fresh = sign_in(None);
    let line = cookie_line(&fresh, &alice());
    let asked = Cell::new(0);
    let judged = fresh.judge_session(
        &request(&line, navigation()),
        || {
            asked.set(asked.get() + 1);
            authorize()
        },
        |_, _| Ok(()),
    );
    assert!(judged.verdict.is_ok() && judged.revalidation.is_none());
    assert_eq!(asked.get(), 0, "the endpoint is not looked up for a session that needs no sign-in");
}

#[test]
fn a_session_opens_only_for_the_provider_it_was_sealed_for() {
    let web = sign_in(None);
    let line = cookie_line(&web, &alice());
    let other =
        SignInConfig { keys: Some(SealKeys::parse(KEY).unwrap()), ..Default::default() }.build("api", 16);
    let judged = other.judge_session(&request(&line, navigation()), authorize, |_, _| Ok(()));
    assert_eq!(judged.verdict.unwrap_err(), Denial::SessionInvalid);
}

/// The provider's name is bound into every sealed value: a session or a transaction sealed for
/// provider "a" opens for no other, even with the same keys and cookie name.
#[test]
fn a_sealed_value_opens_only_for_its_provider() {
    let for_provider = |name: &str| {
        SignInConfig { keys: Some(SealKeys::parse(KEY).expect("a 32-byte key")), ..Default::default() }
            .build(name, 16)
    };
    let (a, b) = (for_provider("a"), for_provider("b"));
    let line = cookie_line(&a, &alice());
    let sealed = |s: &SignIn| s.session_cookie(&entra_core::cookie::Jar::parse([line.as_bytes()]), false);
    let value = sealed(&a).expect("a cookie").expect("one");
    assert!(a.open_session(&value.joined(), false).is_ok(), "it opens for a");
    assert!(b.open_session(&value.joined(), false).is_err(), "not for b");
    let judged = b.judge_session(&request(&line, navigation()), authorize, |_, _| Ok(()));
    assert_eq!(judged.verdict.unwrap_err(), Denial::SessionInvalid);

    let started = a
        .start(
            "client",
            "https://idp.example/authorize",
            "http://app.example:8080/.entra/callback".into(),
            "/orders".into(),
            &Default::default(),
            false,
            Default::default(),
            NOW,
            &ring::rand::SystemRandom::new(),
        )
        .expect("a transaction");
    let state = started.location.split(['?', '&']).find_map(|p| p.strip_prefix("state=")).expect("a state");
    let cookie = started.cookie.split(';').next().unwrap().to_owned();
    let jar = entra_core::cookie::Jar::parse([cookie.as_bytes()]);
    let query = format!("code=c&state={state}");
    assert!(a.callback(&query, &jar, false, NOW + 1).is_ok(), "the transaction matches for a");
    assert_eq!(
        b.callback(&query, &jar, false, NOW + 1).unwrap_err().denial,
        Denial::StateMismatch,
        "not for b"
    );
}

#[test]
fn a_session_resealed_with_graphs_answer_carries_it_and_keeps_the_rest() {
    use entra_core::session::GroupsAnswered;
    let s = sign_in(None);
    let overage = Session { group_overage: true, roles: vec!["Orders.Read".into()], ..alice() };
    let line = cookie_line(&s, &overage);
    let req = request(&line, navigation());
    let answered = GroupsAnswered { asked: [7u8; 8], at: NOW - 30 };
    let group = "0b9f3f6e-4a4c-4c1e-9a63-2f1d8f1b57e1";
    let cookies = s.reseal_groups(&req, answered, [group].into_iter());
    assert_eq!(cookies.len(), 1, "one cookie carries it");
    let resealed_line = cookies[0].split(';').next().unwrap().to_owned();
    let resealed = request(&resealed_line, navigation());
    let jar = resealed.jar();
    let sealed = s.session_cookie(&jar, false).expect("a cookie").expect("it joins");
    let session = s.open_session(&sealed.joined(), false).expect("it opens");
    assert_eq!(session.groups_answered, Some(answered), "as of when Graph answered");
    assert_eq!(session.groups, [group].into_iter().collect());
    assert_eq!(
        Session { groups: Groups::default(), groups_answered: None, ..session.clone() },
        overage,
        "nothing else changed"
    );
    let identity = VerifiedToken::of_session(std::sync::Arc::new(session.clone()));
    assert!(identity.has_group_overage(), "still overage: the answer decides only while it holds");
    assert_eq!(identity.groups_answered, session.groups_answered);
    assert_eq!(identity.groups().map(|g| g.to_string()).collect::<Vec<_>>(), [group]);
    // Without a session cookie there is nothing to re-seal.
    assert!(s.reseal_groups(&request("other=1", navigation()), answered, std::iter::empty()).is_empty());
}
