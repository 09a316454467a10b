//! The request-path costs of the pure crate, and the crypto floor they stand on:
//! - `judge_uncached`: parse and verify a never-seen Entra token (what `token_cache off` pays),
//!   with the library this build verifies with (`entra_core::signature::LIBRARY`; scripts/bench
//!   runs it again built with `signatures-ring` and `signatures-openssl`);
//! - `judge_cached`: the verified-token cache hit;
//! - `rsa_verify_only`: the RS256 signature check alone with the module's library (aws-lc-rs,
//!   key parsed once), the floor of the first; beside it the same check with ring
//!   (`rsa_verify_only_ring`, which parses the key on every call) and with OpenSSL 3 through the
//!   `openssl` crate (`rsa_verify_only_openssl`, an `EVP_PKEY` parsed once);
//! - `open_session_uncached`: open a never-seen 200-group session cookie (base64, AES-256-GCM,
//!   decode, the identity built), what `token_cache off` pays per browser request;
//! - `open_session_cached`: the opened-session cache hit.
//!
//! Before timing, it counts the heap allocations of one call of each (a counting global
//! allocator), so the report can show which ones the request path makes outside nginx's pool.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use criterion::Criterion;
use entra_core::seal::SealKeys;
use entra_core::session::Session;
use entra_core::signin::{OpenedSession, SignIn, SignInConfig};
use entra_core::values::Tenant;
use entra_core::{KeySet, Provider, ProviderConfig, VerifiedToken};
use entra_dev_idp::keystore::{KeyStore, Settings, DEV_CLIENT_ID, DEV_TENANT, GLOBAL_AUTHORITY};
use entra_dev_idp::mint::{mint, MintOptions};
use std::hint::black_box;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_of(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    f();
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

struct Fixture {
    cached: Provider,
    uncached: Provider,
    token: String,
    /// `Bearer <token>`, as the module hands it to `judge`.
    authorization: Vec<u8>,
    rsa_n: Vec<u8>,
    rsa_e: Vec<u8>,
    rsa_aws_lc: aws_lc_rs::signature::ParsedPublicKey,
    rsa_openssl: openssl::pkey::PKey<openssl::pkey::Public>,
    sessions: SignIn,
    sessions_uncached: SignIn,
    /// The sealed value of a 200-group session (both chunks joined).
    session_cookie: Vec<u8>,
}

fn fixture() -> Fixture {
    let dir = std::env::temp_dir().join(format!("entra-bench-{}", std::process::id()));
    let settings = Settings {
        tenant: DEV_TENANT.into(),
        client_id: DEV_CLIENT_ID.into(),
        authority: GLOBAL_AUTHORITY.into(),
    };
    let store = KeyStore::init(&dir, settings).expect("IdP state");
    // A token shaped like a real Entra user token, with a handful of groups.
    let groups = (0..5).map(|i| format!("0b9f3f6e-4a4c-4c1e-9a63-2f1d8f1b57e{i}")).collect();
    let token = mint(&store, &MintOptions { groups: Some(groups), ..Default::default() }).expect("token");
    let jwks = store.jwks().expect("jwks");
    let key = &jwks["keys"][0];
    let b64 = |v: &serde_json::Value| URL_SAFE_NO_PAD.decode(v.as_str().expect("str")).expect("b64");
    let (rsa_n, rsa_e) = (b64(&key["n"]), b64(&key["e"]));
    let build = |cache: Option<usize>| {
        ProviderConfig {
            tenant: Some(Tenant::Id(DEV_TENANT.into())),
            client_id: Some(DEV_CLIENT_ID.into()),
            keys: Some(KeySet::from_jwks(jwks.to_string().as_bytes()).expect("keys").0),
            token_cache: cache,
            ..Default::default()
        }
        .build("bench")
        .expect("provider")
    };
    let _ = std::fs::remove_dir_all(&dir);
    let authorization = format!("Bearer {token}").into_bytes();
    let sign_in = |cache: usize| {
        let keys = SealKeys::parse(&URL_SAFE_NO_PAD.encode([7u8; 32])).expect("key");
        SignInConfig { keys: Some(keys), ..Default::default() }.build(cache)
    };
    let (sessions, sessions_uncached) = (sign_in(1024), sign_in(0));
    let session = Session {
        expires: now() + 3600,
        oid: "00000000-0000-4000-8000-000000000001".into(),
        tid: DEV_TENANT.into(),
        name: "Bench User".into(),
        groups: (0..200).map(|g| format!("0b9f3f6e-4a4c-4c1e-9a63-{g:012x}")).collect(),
        ..Default::default()
    };
    let cookies = sessions.session_cookies("bench", &session, &Default::default(), false).expect("fits");
    let session_cookie = cookies
        .iter()
        .flat_map(|c| c.split(';').next().unwrap().split_once('=').unwrap().1.bytes())
        .collect::<Vec<u8>>();
    let bn = |bytes: &[u8]| openssl::bn::BigNum::from_slice(bytes).expect("number");
    let rsa_openssl = openssl::rsa::Rsa::from_public_components(bn(&rsa_n), bn(&rsa_e)).expect("RSA key");
    let rsa_aws_lc = aws_lc_rs::signature::RsaPublicKeyComponents { n: &rsa_n[..], e: &rsa_e[..] }
        .to_parsed_public_key(&aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256)
        .expect("RSA key");
    Fixture {
        rsa_aws_lc,
        rsa_openssl: openssl::pkey::PKey::from_rsa(rsa_openssl).expect("RSA key"),
        cached: build(None),
        uncached: build(Some(0)),
        token,
        authorization,
        rsa_n,
        rsa_e,
        sessions,
        sessions_uncached,
        session_cookie,
    }
}

fn open(s: &SignIn, cookie: &[u8]) -> Arc<OpenedSession> {
    s.open_cached("bench", cookie, false, now()).0.expect("opens")
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The signed part of the token and its decoded signature, outside what is timed.
fn signed(f: &Fixture) -> (&[u8], Vec<u8>) {
    let (message, signature) = f.token.rsplit_once('.').expect("token");
    (message.as_bytes(), URL_SAFE_NO_PAD.decode(signature).expect("signature"))
}

fn rsa_verify_aws_lc(f: &Fixture, message: &[u8], signature: &[u8]) {
    f.rsa_aws_lc.verify_sig(message, signature).expect("verifies");
}

fn rsa_verify_ring(f: &Fixture, message: &[u8], signature: &[u8]) {
    ring::signature::RsaPublicKeyComponents { n: &f.rsa_n, e: &f.rsa_e }
        .verify(&ring::signature::RSA_PKCS1_2048_8192_SHA256, message, signature)
        .expect("verifies");
}

fn rsa_verify_openssl(f: &Fixture, message: &[u8], signature: &[u8]) {
    let mut verifier = openssl::sign::Verifier::new(openssl::hash::MessageDigest::sha256(), &f.rsa_openssl)
        .expect("verifier");
    assert!(verifier.verify_oneshot(signature, message).expect("verifies"));
}

fn judge(p: &Provider, authorization: &[u8]) -> Arc<VerifiedToken> {
    p.judge(Some(authorization), now()).verdict.expect("valid")
}

fn main() {
    let f = fixture();
    judge(&f.cached, &f.authorization);
    judge(&f.uncached, &f.authorization);
    let (message, signature) = signed(&f);
    println!(
        "allocations per call ({} signatures): judge_uncached {}, judge_cached {}, rsa_verify_only {} (token of {} bytes)",
        entra_core::signature::LIBRARY,
        allocations_of(|| drop(judge(&f.uncached, &f.authorization))),
        allocations_of(|| drop(judge(&f.cached, &f.authorization))),
        allocations_of(|| rsa_verify_aws_lc(&f, message, &signature)),
        f.token.len()
    );
    open(&f.sessions, &f.session_cookie);
    println!(
        "allocations per call: open_session_uncached {}, open_session_cached {} (cookie of {} bytes, 200 groups)",
        allocations_of(|| drop(open(&f.sessions_uncached, &f.session_cookie))),
        allocations_of(|| drop(open(&f.sessions, &f.session_cookie))),
        f.session_cookie.len()
    );

    let mut c = Criterion::default().configure_from_args();
    c.bench_function("judge_uncached", |b| b.iter(|| judge(&f.uncached, black_box(&f.authorization))));
    c.bench_function("judge_cached", |b| b.iter(|| judge(&f.cached, black_box(&f.authorization))));
    c.bench_function("rsa_verify_only", |b| b.iter(|| rsa_verify_aws_lc(&f, black_box(message), &signature)));
    c.bench_function("rsa_verify_only_ring", |b| {
        b.iter(|| rsa_verify_ring(&f, black_box(message), &signature))
    });
    c.bench_function("rsa_verify_only_openssl", |b| {
        b.iter(|| rsa_verify_openssl(&f, black_box(message), &signature))
    });
    c.bench_function("open_session_uncached", |b| {
        b.iter(|| open(&f.sessions_uncached, black_box(&f.session_cookie)))
    });
    c.bench_function("open_session_cached", |b| b.iter(|| open(&f.sessions, black_box(&f.session_cookie))));
    c.final_summary();
}
