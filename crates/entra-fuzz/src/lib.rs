//! The fuzz targets' bodies: each feeds untrusted bytes to one parser of entra-core and asserts
//! what must hold whatever the bytes, not only that nothing panics. `fuzz/` runs them under
//! libFuzzer (nightly); `tests/corpora.rs` replays every checked-in corpus on stable Rust.
//!
//! The fixtures in `fuzz/data` (a key set, tokens it signed, a session key and values it sealed)
//! are written by `cargo run -p entra-fuzz --example fuzz-seeds`, which also writes the seed corpora.

use std::path::{Path, PathBuf};

use jsonwebtoken::Algorithm;
use std::sync::OnceLock;

use entra_core::cookie::Jar;
use entra_core::discovery::read_metadata;
use entra_core::provider::ProviderConfig;
use entra_core::seal::SealKeys;
use entra_core::signin::{SignIn, SignInConfig};
use entra_core::values::{parse_url, Tenant};
use entra_core::{KeySet, Provider};
use serde_json::Value;

/// The tenant, client and provider of the fixtures.
pub const TENANT: &str = "9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93";
pub const CLIENT_ID: &str = "6e1c4d2a-8b3f-4a7e-9c05-2f7d1b3e8a64";
pub const PROVIDER: &str = "fuzz";
/// The clock the targets judge with: the fixtures' tokens and attempts are valid then.
pub const NOW: u64 = 1_900_000_000;

/// A target's body: one input, checked.
pub type Target = fn(&[u8]);

/// Every target, by the name `cargo fuzz` knows it by.
pub const TARGETS: &[(&str, Target)] = &[
    ("token", token),
    ("authorization", authorization),
    ("jwks", jwks),
    ("metadata", metadata),
    ("url", url),
    ("session_cookie", session_cookie),
    ("callback", callback),
    ("session_record", session_record),
    ("graph_answer", graph_answer),
];

/// The `fuzz/` folder of the repository.
pub fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

struct Fixtures {
    provider: Provider,
    /// The tokens the key set signed, as minted.
    tokens: Vec<String>,
    sign_in: SignIn,
    /// Session cookie values sealed with the session key, reassembled.
    sessions: Vec<Vec<u8>>,
    /// Transaction cookies sealed with it: (cookie name, value, the attempt's state).
    transactions: Vec<(String, Vec<u8>, String)>,
}

fn read(name: &str) -> String {
    let path = fuzz_dir().join("data").join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (cargo run -p entra-fuzz --example fuzz-seeds)", path.display()))
}

fn lines(name: &str) -> Vec<String> {
    read(name).lines().filter(|l| !l.is_empty()).map(str::to_owned).collect()
}

fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let (keys, _) = KeySet::from_jwks(read("jwks.json").as_bytes()).expect("the fixture key set");
        let provider = ProviderConfig {
            tenant: Some(Tenant::Id(TENANT.into())),
            client_id: Some(CLIENT_ID.into()),
            keys: Some(keys),
            algorithms: Some(vec![Algorithm::RS256, Algorithm::ES256]),
            ..Default::default()
        }
        .build(PROVIDER)
        .expect("the fixture provider");
        let sign_in = sign_in(&read("session.keys"));
        let transactions = lines("transactions.txt")
            .iter()
            .map(|line| {
                let mut words = line.split(' ');
                let (name, value, state) = (words.next(), words.next(), words.next());
                let (Some(name), Some(value), Some(state)) = (name, value, state) else {
                    panic!("transactions.txt: \"name value state\" per line")
                };
                (name.to_owned(), value.as_bytes().to_vec(), state.to_owned())
            })
            .collect();
        Fixtures {
            provider,
            tokens: lines("tokens.txt"),
            sign_in,
            sessions: lines("sessions.txt").into_iter().map(String::into_bytes).collect(),
            transactions,
        }
    })
}

/// The sign-in settings of the fixtures, with `keys` (a `session_key_file`'s text).
pub fn sign_in(keys: &str) -> SignIn {
    SignInConfig { keys: Some(SealKeys::parse(keys).expect("the fixture session key")), ..Default::default() }
        .build(PROVIDER, 0)
}

/// A token's signed part: its header and payload as sent.
fn signed_part(token: &[u8]) -> Option<&[u8]> {
    let last_dot = token.iter().rposition(|b| *b == b'.')?;
    Some(&token[..last_dot])
}

/// A token is accepted only if its signed bytes are those of a token the key set signed.
fn assert_only_signed_tokens_pass(token: &[u8]) {
    let signed = signed_part(token).expect("an accepted token has three parts");
    assert!(
        fixtures().tokens.iter().any(|t| signed_part(t.as_bytes()) == Some(signed)),
        "accepted a token whose signed bytes no key signed: {}",
        String::from_utf8_lossy(token)
    );
}

/// The compact token: split, base64, header and claims JSON, verified against the fixed set.
pub fn token(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if fixtures().provider.verify(text, NOW).is_ok() {
        assert_only_signed_tokens_pass(data);
    }
}

/// The `Authorization` header, judged (with the cache: twice).
pub fn authorization(data: &[u8]) {
    for _ in 0..2 {
        let judgment = fixtures().provider.judge(Some(data), NOW);
        if judgment.verdict.is_ok() {
            let token = entra_core::token::bearer_token(data).expect("an accepted header has a bearer token");
            assert!(data[..6].eq_ignore_ascii_case(b"bearer"), "accepted another scheme");
            assert_only_signed_tokens_pass(token);
        }
    }
}

/// A key set document: a parsed set holds no key the document does not.
pub fn jwks(data: &[u8]) {
    let Ok((keys, _)) = KeySet::from_jwks(data) else { return };
    let doc: Value = serde_json::from_slice(data).expect("a parsed key set is JSON");
    let entries = doc["keys"].as_array().expect("a parsed key set has a keys array");
    assert!(keys.len() <= entries.len(), "more keys than the document has");
    for kid in keys.kids() {
        assert!(
            entries.iter().any(|e| e.get("kid").and_then(Value::as_str) == Some(kid)),
            "a key \"{kid}\" the document does not have"
        );
    }
}

/// A v2 metadata document: every URL it yields passes the URL check as it stands.
pub fn metadata(data: &[u8]) {
    let Ok(doc) = read_metadata("https://login.example/meta", data) else { return };
    let endpoints = [&doc.endpoints.authorize, &doc.endpoints.token, &doc.endpoints.end_session];
    for url in std::iter::once(&doc.jwks_uri).chain(endpoints.into_iter().flatten()) {
        assert_url_safe(url);
    }
}

/// URL validation: an accepted `http://` URL's host, as the HTTP client reads it, is a loopback
/// literal or `localhost`; and the answer is stable (checking it again gives it back).
pub fn url(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(accepted) = parse_url("metadata_url", text) {
        assert_url_safe(&accepted);
    }
}

fn assert_url_safe(url: &str) {
    assert_eq!(parse_url("metadata_url", url).as_deref(), Ok(url), "not stable: {url}");
    let uri: ureq::http::Uri = url.parse().expect("an accepted URL parses");
    let authority = uri.authority().expect("an accepted URL has an authority");
    assert!(!authority.as_str().contains('@'), "userinfo accepted: {url}");
    if uri.scheme_str() == Some("http") {
        let host = uri.host().expect("a host");
        let ip = host.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>();
        assert!(
            host.eq_ignore_ascii_case("localhost") || ip.is_ok_and(|ip| ip.is_loopback()),
            "plain http to a host not on loopback: {url}"
        );
    } else {
        assert_eq!(uri.scheme_str(), Some("https"), "another scheme: {url}");
    }
}

/// `Cookie` lines (one per input line), the session's chunks reassembled and opened: a session
/// opens only if its reassembled value is byte-identical to one sealed.
pub fn session_cookie(data: &[u8]) {
    let f = fixtures();
    let jar = Jar::parse(data.split(|b| *b == b'\n'));
    let Some(Ok(chunks)) = f.sign_in.session_cookie(&jar, false) else { return };
    let sealed = chunks.joined();
    if f.sign_in.open_session(&sealed, false).is_ok() {
        assert!(
            f.sessions.contains(&sealed),
            "opened a session cookie that was never sealed: {}",
            String::from_utf8_lossy(&sealed)
        );
    }
}

/// A callback: the query on the first line, `Cookie` lines after it. It matches only a
/// transaction cookie sealed for the state it names, sent byte-identical; the same query read as
/// a front-channel logout's or a "sign in as someone else" link's yields only a `sid` of Entra's
/// form and a local return URL.
pub fn callback(data: &[u8]) {
    let f = fixtures();
    let mut input = data.splitn(2, |b| *b == b'\n');
    let Ok(query) = std::str::from_utf8(input.next().unwrap_or_default()) else { return };
    // The other parsers of a query on the sign-in paths: the front-channel logout's sid, and the
    // "sign in as someone else" link's return URL.
    if let Ok(sid) = entra_core::browser::frontchannel_sid(query) {
        assert!(entra_core::browser::is_valid_sid(sid), "a sid of another form was accepted");
    }
    if let Some(back) = entra_core::oidc::select_account_return(query) {
        assert!(entra_core::oidc::is_local_path(&back), "a return URL of another site: {back}");
    }
    let jar = Jar::parse(input.next().unwrap_or_default().split(|b| *b == b'\n'));
    let Ok(matched) = f.sign_in.callback(query, &jar, false, NOW) else { return };
    let sent = jar.pairs();
    assert!(
        f.transactions.iter().any(|(name, value, state)| {
            *state == matched.transaction.attempt.state
                && sent.iter().any(|(n, v)| *n == name.as_bytes() && *v == value.as_slice())
        }),
        "a callback matched a transaction cookie that was never sealed for its state"
    );
}

/// How many of `tokens` (one per line) verify at [`NOW`]: the fixtures must, or the invariants
/// are never reached.
pub fn accepted_tokens(tokens: &str) -> usize {
    tokens.lines().filter(|t| fixtures().provider.verify(t, NOW).is_ok()).count()
}

/// How many of the fixture sessions open.
pub fn opened_sessions() -> usize {
    let f = fixtures();
    f.sessions.iter().filter(|s| f.sign_in.open_session(s, false).is_ok()).count()
}

/// How many of the fixture attempts match a callback naming their state.
pub fn matched_callbacks() -> usize {
    let f = fixtures();
    f.transactions
        .iter()
        .filter(|(name, value, state)| {
            let cookie = [name.as_bytes(), b"=", value].concat();
            let jar = Jar::parse([cookie.as_slice()]);
            f.sign_in.callback(&format!("code=c&state={state}"), &jar, false, NOW).is_ok()
        })
        .count()
}

/// A record of sessions as kept on disk across restarts: garbage is an error, never a panic, and
/// what reads back writes back the same.
pub fn session_record(data: &[u8]) {
    let Ok(snapshot) = entra_core::revocation::Snapshot::decode(data) else { return };
    let again = entra_core::revocation::Snapshot::decode(&snapshot.encode()).expect("written, it reads back");
    assert_eq!(again, snapshot, "a record changed on its way to disk and back");
}

/// The groups the `graph_answer` target asks about: 25, so that calls cover 0..20 and 20..25.
pub fn graph_asked() -> entra_core::graph::Asked {
    let groups: Vec<String> = (0..25).map(|i| format!("00000000-0000-4000-8000-{i:012}")).collect();
    entra_core::graph::Asked::new(groups.iter().map(String::as_str)).expect("25 groups")
}

/// Graph's answers, read strictly: the first byte picks the call (the first 20 groups or the
/// last 5) and the token endpoint's status; a `checkMemberGroups` answer that reads adds only
/// groups of that call, each named in the answer, and one that does not read adds nothing; an
/// app token that reads is a printable token.
pub fn graph_answer(data: &[u8]) {
    use entra_core::graph::{read_app_token, read_member_groups, Membership};
    let Some((&first, body)) = data.split_first() else { return };
    let asked = graph_asked();
    let chunk = if first & 1 == 0 { 0..20 } else { 20..25 };
    let mut into = Membership::default();
    match read_member_groups(body, &asked, chunk.clone(), &mut into) {
        Ok(()) => {
            let text = String::from_utf8_lossy(body).to_ascii_lowercase();
            for (i, group) in asked.groups().iter().enumerate() {
                if into.contains(i) {
                    assert!(chunk.contains(&i), "a group of another call: {group}");
                    assert!(text.contains(group.as_str()), "a group the answer does not name: {group}");
                }
            }
        }
        Err(_) => assert_eq!(into, Membership::default(), "a refused answer changed the membership"),
    }
    let status = [200, 400, 401, 429, 500][usize::from(first >> 1) % 5];
    if let Ok(token) = read_app_token(status, None, body) {
        assert_eq!(status, 200, "a token from a refusal");
        assert!(!token.token.is_empty() && token.token.bytes().all(|b| b.is_ascii_graphic()), "not a token");
    }
}
