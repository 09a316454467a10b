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
//! - `open_session_cached`: the opened-session cache hit;
//! - `shared_index_*`: what a verified-token index in nginx's shared zone would cost (issue 12),
//!   measured in the zone's shape without nginx: entries of (SHA-256 of the token, valid until) in
//!   memory shared with a forked process, behind one spin lock as `ngx_shmtx` is. `_hit` is a
//!   lookup that finds the token (SHA-256, lock, probe, unlock), `_miss_record` what it would add
//!   to a first sight (a lookup that misses, then the record after verification); `_contended`
//!   the same while the other process, on the other CPU, runs a worker's first-sight loop (an
//!   RSA verification, a lookup and a record each time), `_hammered` while it only looks up and
//!   records (the lock's worst case). Not in the module: docs/BENCHMARK.md says why.
//!
//! Before timing, it counts the heap allocations of one call of each (a counting global
//! allocator), so the report can show which ones the request path makes outside nginx's pool.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use criterion::Criterion;
use entra_core::cookie::Chunks;
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
        SignInConfig { keys: Some(keys), ..Default::default() }.build("bench", cache)
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
    let cookies = sessions.session_cookies(&session, &Default::default(), false).expect("fits");
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
    s.open_cached(&Chunks::from(cookie), false, now()).0.expect("opens")
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

/// Entries of the measured shared index: 4096, as the default `token_cache`.
const INDEX_ENTRIES: usize = 4096;
/// Slots looked at from a token's home slot.
const INDEX_PROBE: usize = 4;

#[derive(Clone, Copy)]
struct IndexEntry {
    digest: [u8; 32],
    valid_until: u64,
}

/// The index as it would sit in the shared zone: one lock word, then the entries.
struct SharedIndex {
    lock: AtomicU64,
    entries: UnsafeCell<[IndexEntry; INDEX_ENTRIES]>,
}

impl SharedIndex {
    /// A zeroed index in anonymous memory that a forked child shares.
    fn map() -> &'static SharedIndex {
        let size = std::mem::size_of::<SharedIndex>();
        // SAFETY: a fresh anonymous shared mapping, zero-filled, never unmapped; all-zero is a
        // valid SharedIndex (unlocked, empty entries).
        unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(p, libc::MAP_FAILED, "mmap");
            &*(p as *const SharedIndex)
        }
    }

    /// Spins as ngx_shmtx_lock does (a pause per try, the CPU yielded now and then).
    fn with_lock<R>(&self, body: impl FnOnce(&mut [IndexEntry; INDEX_ENTRIES]) -> R) -> R {
        let mut spins = 0u32;
        while self.lock.compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed).is_err() {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(2048) {
                std::thread::yield_now();
            }
            std::hint::spin_loop();
        }
        // SAFETY: the lock is held: no other process or thread touches the entries.
        let result = body(unsafe { &mut *self.entries.get() });
        self.lock.store(0, Ordering::Release);
        result
    }

    fn home(digest: &[u8; 32]) -> usize {
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_le_bytes(first) as usize % INDEX_ENTRIES
    }

    fn digest(token: &[u8]) -> [u8; 32] {
        let mut digest = [0u8; 32];
        digest.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, token).as_ref());
        digest
    }

    /// Whether a token (its digest) was recorded as verified and still is at `now`.
    fn knows(&self, digest: &[u8; 32], now: u64) -> bool {
        let home = Self::home(digest);
        self.with_lock(|entries| {
            (0..INDEX_PROBE).any(|i| {
                let e = &entries[(home + i) % INDEX_ENTRIES];
                e.digest == *digest && e.valid_until > now
            })
        })
    }

    /// Records a verified token (its digest), over the probe's entry that expires first.
    fn record(&self, digest: [u8; 32], valid_until: u64) {
        let home = Self::home(&digest);
        self.with_lock(|entries| {
            let slot = (0..INDEX_PROBE)
                .map(|i| (home + i) % INDEX_ENTRIES)
                .min_by_key(|slot| entries[*slot].valid_until)
                .expect("probe");
            entries[slot] = IndexEntry { digest, valid_until };
        });
    }
}

/// A token with its last 8 bytes replaced by a counter: another index key of the same length.
fn nth_token(token: &mut [u8], n: u64) {
    let at = token.len() - 8;
    token[at..].copy_from_slice(&n.to_le_bytes());
}

fn pin_to_cpu(cpu: usize) {
    // SAFETY: a plain cpu_set_t on the stack, handed to the kernel for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// What a first sight would add: the token's digest, a lookup that misses, the record after
/// verification.
fn miss_and_record(index: &SharedIndex, token: &[u8]) {
    let digest = SharedIndex::digest(token);
    if !index.knows(&digest, now()) {
        index.record(digest, now() + 3600);
    }
}

/// Forks the second worker: on CPU 1, first sights without end: an RSA verification (unless
/// `hammer`, the worst case of many workers) then a lookup that misses and a record. The caller
/// kills it.
fn spawn_second_worker(
    f: &Fixture,
    index: &'static SharedIndex,
    message: &[u8],
    signature: &[u8],
    hammer: bool,
) -> i32 {
    // SAFETY: criterion runs no other threads here; the child only loops and never returns.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        pin_to_cpu(1);
        let mut token = f.token.clone().into_bytes();
        for n in (1u64 << 40).. {
            if !hammer {
                rsa_verify_aws_lc(f, message, signature);
            }
            nth_token(&mut token, n);
            miss_and_record(index, &token);
        }
    }
    pid
}

fn shared_index_benchmarks(c: &mut Criterion, f: &Fixture, message: &[u8], signature: &[u8]) {
    let index = SharedIndex::map();
    let token = f.token.as_bytes();
    let mut fresh = token.to_vec();
    let mut n = 0u64;
    let mut run = |c: &mut Criterion, suffix: &str| {
        index.record(SharedIndex::digest(token), now() + 3600);
        assert!(index.knows(&SharedIndex::digest(token), now()), "the index finds what it recorded");
        c.bench_function(&format!("shared_index_hit{suffix}"), |b| {
            b.iter(|| index.knows(&SharedIndex::digest(black_box(token)), now()))
        });
        c.bench_function(&format!("shared_index_miss_record{suffix}"), |b| {
            b.iter(|| {
                n += 1;
                nth_token(&mut fresh, n);
                miss_and_record(index, black_box(&fresh));
            })
        });
    };
    run(c, "");
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        println!("shared_index_*_contended: skipped, one CPU");
        return;
    }
    pin_to_cpu(0);
    for (hammer, suffix) in [(false, "_contended"), (true, "_hammered")] {
        let worker = spawn_second_worker(f, index, message, signature, hammer);
        run(c, suffix);
        // SAFETY: our own child; reaped so that it leaves no zombie.
        unsafe {
            libc::kill(worker, libc::SIGKILL);
            libc::waitpid(worker, std::ptr::null_mut(), 0);
        }
    }
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
    shared_index_benchmarks(&mut c, &f, message, &signature);
    c.final_summary();
}
