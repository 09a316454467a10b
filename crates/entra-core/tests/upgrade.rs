//! An upgrade signs nobody out: cookies sealed by the release before issue 22 (kept in
//! `fixtures/sealed-before-issue-22.txt` with their key) still open, as sessions and as
//! transactions, with every field as it was sealed.

use entra_core::browser::RequestHeaders;
use entra_core::cookie::Jar;
use entra_core::seal::SealKeys;
use entra_core::session::Session;
use entra_core::signin::{SessionRequest, SignIn, SignInConfig};
use entra_core::VerifiedToken;

const FIXTURE: &str = include_str!("fixtures/sealed-before-issue-22.txt");

/// The fixture's lines of `kind`, each split into its words.
fn lines(kind: &str) -> Vec<Vec<&'static str>> {
    words_of(FIXTURE, kind)
}

/// A fixture's lines of `kind`, each split into its words.
fn words_of(fixture: &'static str, kind: &str) -> Vec<Vec<&'static str>> {
    fixture.lines().filter(|l| l.starts_with(kind)).map(|l| l.split(' ').skip(1).collect()).collect()
}

/// A fixture's sign-in settings (its key, provider "live") and its two sessions opened, one
/// sealed for plain HTTP and one for HTTPS.
fn opened_sessions(fixture: &'static str) -> (SignIn, Vec<Session>) {
    let key = SealKeys::parse(words_of(fixture, "KEY")[0][0]).expect("the fixture's key");
    let s = SignInConfig { keys: Some(key), ..Default::default() }.build("live", 16);
    let sessions = words_of(fixture, "SESSION");
    assert_eq!(sessions.len(), 2, "one over plain HTTP, one over HTTPS");
    let opened = sessions
        .iter()
        .map(|words| {
            let (secure, line) = (words[0] == "true", words[1].as_bytes());
            let sealed =
                s.session_cookie(&Jar::parse([line]), secure).expect("the cookie").expect("one value");
            s.open_session(&sealed.joined(), secure).expect("it opens")
        })
        .collect();
    (s, opened)
}

fn sign_in() -> SignIn {
    let key = lines("KEY")[0][0];
    SignInConfig { keys: Some(SealKeys::parse(key).expect("the fixture's key")), ..Default::default() }
        .build("live", 16)
}

#[test]
fn a_session_sealed_by_the_previous_release_still_opens() {
    let s = sign_in();
    let sessions = lines("SESSION");
    assert_eq!(sessions.len(), 2, "one over plain HTTP, one over HTTPS");
    for words in sessions {
        let (secure, cookie) = (words[0] == "true", words[1]);
        let line = cookie.as_bytes();
        let jar = Jar::parse([line]);
        let sealed = s.session_cookie(&jar, secure).expect("the cookie").expect("one value");
        let session = s.open_session(&sealed.joined(), secure).expect("it opens");
        assert_eq!(session.oid, "00000000-0000-0000-0000-00000000a11c");
        assert_eq!(session.sid, "0027c5e2-4c19-5a5f-6e19-1f1e7a1b8c2d");
        assert_eq!(session.signed_in, 1_796_000_000_000);
        assert_eq!(
            session.groups.iter().map(|g| g.to_string()).collect::<Vec<_>>(),
            ["0b9f3f6e-4a4c-4c1e-9a63-2f1d8f1b57e1", "Finance"]
        );
        assert_eq!(session.roles, ["Orders.Read"]);
        assert_eq!(session.claims, [("department".to_owned(), "\"Finance\"".to_owned())]);
        assert!(!session.unrecorded, "the previous release set no such flag");

        let request = SessionRequest {
            cookie_lines: vec![line].into(),
            headers: RequestHeaders { method: "GET", ..Default::default() }.into(),
            tls: secure,
            host_header: b"app.example",
            host: b"app.example",
            unparsed_uri: b"/",
            now: 1_796_000_100,
        };
        let judged = s.judge_session(&request, || None, |_, _| Ok(()));
        assert_eq!(judged.verdict.expect("a session").oid(), Some("00000000-0000-0000-0000-00000000a11c"));
    }
}

#[test]
fn a_transaction_sealed_by_the_previous_release_still_matches_its_callback() {
    let s = sign_in();
    let cookie = lines("TRANSACTION")[0][0];
    let location = lines("LOCATION")[0][0];
    let state = location.split(['?', '&']).find_map(|p| p.strip_prefix("state=")).expect("a state");
    let jar = Jar::parse([cookie.as_bytes()]);
    let matched = s
        .callback(&format!("code=abc&state={state}"), &jar, false, 1_796_000_060)
        .expect("the callback matches its transaction");
    assert_eq!(matched.transaction.return_url, "/orders?page=2");
    assert_eq!(matched.transaction.redirect_uri, "https://app.example/.entra/callback");
}

/// Cookies sealed by the release before issue 23 (Graph's answers in sessions).
const BEFORE_GRAPH: &str = include_str!("fixtures/sealed-before-issue-23.txt");

#[test]
fn a_session_sealed_before_graph_answers_still_opens_with_none() {
    for session in opened_sessions(BEFORE_GRAPH).1 {
        assert_eq!(session.oid, "00000000-0000-0000-0000-00000000da7a");
        assert!(session.group_overage && session.unrecorded, "its flags as sealed");
        assert_eq!(session.client_id, "6e1c4d2a-8b3f-4a7e-9c05-2f7d1b3e8a64");
        assert_eq!(session.groups_answered, None, "no Graph answer: its groups get asked");
        assert!(
            VerifiedToken::of_session(std::sync::Arc::new(session.clone())).has_group_overage(),
            "and its identity still says overage"
        );
    }
}

/// Cookies sealed by the release before issue 24 (step-up's fields in sessions and transactions).
const BEFORE_STEP_UP: &str = include_str!("fixtures/sealed-before-issue-24.txt");

#[test]
fn cookies_sealed_before_step_up_still_open_with_no_contexts_and_no_step_up() {
    let (s, sessions) = opened_sessions(BEFORE_STEP_UP);
    for session in sessions {
        assert_eq!(session.oid, "00000000-0000-0000-0000-0000000a11ce");
        assert!(session.groups_answered.is_some(), "Graph's answer as sealed");
        assert!(session.auth_contexts.is_empty(), "no contexts");
        assert_eq!(session.auth_time, None, "no known sign-in time");
        let identity = VerifiedToken::of_session(std::sync::Arc::new(session.clone()));
        assert_eq!(identity.auth_contexts().count(), 0);
        assert_eq!(identity.signin_time(), None);
    }
    let cookie = words_of(BEFORE_STEP_UP, "TRANSACTION")[0][0];
    let location = words_of(BEFORE_STEP_UP, "LOCATION")[0][0];
    let state = location.split(['?', '&']).find_map(|p| p.strip_prefix("state=")).expect("a state");
    let matched = s
        .callback(&format!("code=abc&state={state}"), &Jar::parse([cookie.as_bytes()]), false, 1_796_000_060)
        .expect("the callback matches its transaction");
    assert_eq!(matched.transaction.return_url, "/admin/?page=2");
    assert!(!matched.transaction.step_up.asks(), "a transaction of before asked no step-up");
}
