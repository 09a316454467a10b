//! The cookie budget, at its worst case and to the byte: the session and transaction cookies
//! together never take more than `COOKIE_BUDGET` bytes of a request's `Cookie` value, however
//! many tabs start sign-ins and whatever their return URLs, leaving the rest of nginx's 8k line
//! to the application; and a transaction at its largest keeps room for later fields.

use std::collections::BTreeMap;

use entra_core::browser::RequestHeaders;
use entra_core::cookie::{
    COOKIE_BUDGET, MAX_SESSION_BYTES, MAX_TRANSACTION_BYTES, RESERVED_SESSION_BYTES,
    RESERVED_TRANSACTION_BYTES,
};
use entra_core::error::AuthContext;
use entra_core::seal::SealKeys;
use entra_core::session::Session;
use entra_core::signin::{AttemptKind, Authorize, Leftover, SessionRequest, SignIn, SignInConfig};
use entra_core::stepup::StepUp;
use ring::rand::SystemRandom;

const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const NOW: u64 = 1_790_000_600;

fn sign_in() -> SignIn {
    SignInConfig { keys: Some(SealKeys::parse(KEY).expect("a key")), ..Default::default() }.build("live", 16)
}

/// A browser's cookies for the site: name to value.
#[derive(Default)]
struct Browser(BTreeMap<String, String>);

impl Browser {
    fn apply(&mut self, set_cookies: &[String]) {
        for c in set_cookies {
            let pair = c.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if c.contains("Max-Age=0") {
                self.0.remove(name);
            } else {
                self.0.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    /// The `Cookie` value it sends.
    fn line(&self) -> String {
        self.0.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("; ")
    }
}

/// The largest session that fits its cookies: a user in as many groups as fit.
fn largest_session(s: &SignIn) -> Vec<String> {
    let mut best = Vec::new();
    for groups in (100..400).step_by(1) {
        let session = Session {
            token_version: 2,
            signed_in: NOW * 1000,
            expires: NOW + 3600,
            revalidated: NOW,
            last_used: NOW,
            oid: "00000000-0000-0000-0000-00000000a11c".into(),
            tid: "9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93".into(),
            sid: "0027c5e2-4c19-5a5f-6e19-1f1e7a1b8c2d".into(),
            login_hint: "O.CiQ3ZmZmZmZmZi04ZjJmLTQ".into(),
            name: "Alice Example".into(),
            username: "alice@contoso.example".into(),
            email: "alice@contoso.example".into(),
            client_id: "11111111-2222-3333-4444-555555555555".into(),
            groups: (0..groups).map(|i| format!("00000000-0000-0000-0000-{i:012x}")).collect(),
            // Step-up's fields, as a session that passed several contexts has them.
            auth_contexts: (91..=99).map(|i| format!("c{i}")).collect(),
            auth_time: Some(NOW),
            ..Default::default()
        };
        match s.session_cookies(&session, &Default::default(), false) {
            Ok(cookies) => best = cookies,
            Err(_) => break,
        }
    }
    best
}

fn request<'a>(line: &'a str, unparsed_uri: &'a [u8]) -> SessionRequest<'a> {
    SessionRequest {
        cookie_lines: vec![line.as_bytes()].into(),
        headers: RequestHeaders { method: "GET", accept: Some("text/html"), ..Default::default() }.into(),
        tls: false,
        host_header: b"app.example:8080",
        host: b"app.example",
        unparsed_uri,
        now: NOW,
    }
}

fn authorize() -> Authorize<'static> {
    Authorize {
        client_id: "11111111-2222-3333-4444-555555555555",
        endpoint: "https://idp.example/authorize".into(),
    }
}

#[test]
fn the_budget_leaves_one_largest_transaction_room_beside_the_largest_session_and_its_reserve() {
    assert_eq!(MAX_SESSION_BYTES + 2 + MAX_TRANSACTION_BYTES + RESERVED_TRANSACTION_BYTES, COOKIE_BUDGET);
    assert_eq!(COOKIE_BUDGET, 8192 - 1024, "nginx's default 8k line keeps 1024 bytes for the application");
}

#[test]
fn a_transaction_at_its_worst_fits_its_size() {
    let s = sign_in();
    let long = format!("/reports/{}?{}", "p".repeat(200), "q=1&".repeat(70));
    // A step-up asks the most of a transaction: a context, a recent authentication, the contexts kept.
    let step_up = StepUp { context: Some(AuthContext(99)), max_age: Some(u64::MAX), kept_contexts: true };
    let kind = AttemptKind {
        extra: vec![("prompt", "none")],
        revalidating: Some(("o".repeat(36), "t".repeat(36))),
        step_up,
    };
    let random = SystemRandom::new();
    let line = String::new();
    let redirect = s
        .redirect(&request(&line, long.as_bytes()), authorize(), kind, None, Leftover::Keep, &random)
        .unwrap();
    let pair = redirect.set_cookies[0].split(';').next().unwrap().to_owned();
    assert!(pair.len() <= MAX_TRANSACTION_BYTES, "{} bytes", pair.len());
}

#[test]
fn many_tabs_and_long_return_urls_never_pass_the_budget() {
    let s = sign_in();
    let session = largest_session(&s);
    let mut browser = Browser::default();
    browser.apply(&session);
    let session_line = browser.line();
    let today = MAX_SESSION_BYTES - RESERVED_SESSION_BYTES;
    assert!(session_line.len() > today - 64, "a session at its largest: {}", session_line.len());
    assert!(session_line.len() <= today, "room kept for later fields");

    let random = SystemRandom::new();
    for tab in 0..6 {
        let uri = format!("/tab{tab}/{}?{}", "p".repeat(300), "x".repeat(1000));
        let line = browser.line();
        let redirect = s
            .redirect(
                &request(&line, uri.as_bytes()),
                authorize(),
                AttemptKind::default(),
                None,
                Leftover::Keep,
                &random,
            )
            .unwrap();
        browser.apply(&redirect.set_cookies);
        let sent = browser.line();
        assert!(sent.len() <= COOKIE_BUDGET, "tab {tab}: {} bytes", sent.len());
        assert!(browser.0.contains_key("entra"), "the session stays");
        assert_eq!(
            browser.0.keys().filter(|n| n.contains("-t")).count(),
            1,
            "one attempt beside the largest session"
        );
    }

    // Without a session, four attempts at once, each of the largest size, fit.
    let mut fresh = Browser::default();
    for tab in 0..6 {
        let uri = format!("/tab{tab}/{}", "p".repeat(500));
        let line = fresh.line();
        let step_up = StepUp { context: Some(AuthContext(99)), max_age: Some(u64::MAX), kept_contexts: true };
        let kind =
            AttemptKind { extra: vec![], revalidating: Some(("o".repeat(36), "t".repeat(36))), step_up };
        let redirect = s
            .redirect(&request(&line, uri.as_bytes()), authorize(), kind, None, Leftover::Keep, &random)
            .unwrap();
        fresh.apply(&redirect.set_cookies);
        assert!(fresh.line().len() <= COOKIE_BUDGET);
    }
    assert_eq!(fresh.0.len(), 4, "four transaction cookies at most");

    // A sign-in that completes with the largest session clears the other tabs' attempts that
    // would pass the budget.
    let line = fresh.line();
    let jar = entra_core::cookie::Jar::parse([line.as_bytes()]);
    let mut set = session.clone();
    set.extend(s.fit_with_session(&jar, false, &session, 0));
    set.push("entra-t0=; Max-Age=0".into());
    fresh.apply(&set);
    assert!(fresh.line().len() <= COOKIE_BUDGET, "{} bytes", fresh.line().len());
    assert!(fresh.0.contains_key("entra"));
}
