//! The shared zone (`entra_shared_zone`), and the only code that changes it.
//!
//! One slot per provider holds, for every worker to see: the key set and issuers last fetched
//! (discovery providers only), the refresh schedule, which worker is fetching, and the counters
//! that `entra_status` reports. Slots are given to providers by [`assign_slots`], which nginx
//! runs in the master once a new configuration is committed; a reload that fails never touches
//! them, and a provider whose name, tenant and key source survive a reload keeps its slot (and
//! its keys). Every read and write of a slot names the provider it is for ([`SlotRef`]) and is
//! refused under the zone's lock when the slot has been given to another since: a worker that
//! outlives a reload can never write its provider's keys into another's slot.
//!
//! Plain atomics for what is read without the lock; the slab pool's own mutex (which the master
//! frees if a worker dies holding it) around the short copies in and out. No lock is held across
//! parsing, cryptography or I/O. See docs/ARCHITECTURE.md, "The shared zone".

use core::alloc::Layout;
use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use entra_core::discovery::{Endpoints, Fetched};
use entra_core::error::REASONS;
use entra_core::provider::KeySource;
use entra_core::schedule::{claim_is_live, is_due, retry_in, Schedule};
use entra_core::{Denial, Provider};
use ngx::allocator::Allocator;
use ngx::core::slab::LockedSlabPool;
use ngx::core::SlabPool;
use ngx::ffi::{
    ngx_conf_t, ngx_int_t, ngx_log_t, ngx_module_t, ngx_shared_memory_add, ngx_shm_zone_t, ngx_str_t,
    NGX_ERROR, NGX_OK,
};
use ngx::http::HttpModule;

use crate::log::{debug, guard, notice, warning};
use crate::module::EntraModule;

/// Providers one zone can hold.
pub const MAX_PROVIDERS: usize = 64;
const ERROR_BYTES: usize = 240;

/// Adds the shared zone (postconfiguration, when there are providers); `name` lives in the
/// configuration's pool.
pub fn add_zone(
    cf: *mut ngx_conf_t,
    mut name: ngx_str_t,
    size: usize,
    providers: usize,
) -> Result<*mut ngx_shm_zone_t, String> {
    if providers > MAX_PROVIDERS {
        return Err(format!("more than {MAX_PROVIDERS} entra_provider blocks"));
    }
    let tag = EntraModule::module() as *const ngx_module_t as *mut c_void;
    // SAFETY: called while the configuration is parsed; nginx keeps `name`.
    let zone = unsafe { ngx_shared_memory_add(cf, &mut name, size, tag) };
    // SAFETY: nginx returns null or a zone entry of the cycle being configured.
    let Some(entry) = (unsafe { zone.as_mut() }) else {
        return Err(format!("cannot add the shared zone \"{name}\""));
    };
    if !entry.data.is_null() {
        return Err(format!("entra_shared_zone \"{name}\" is used by another module"));
    }
    entry.init = Some(init_zone);
    // Marks the zone as this module's; init_zone reads nothing from it.
    entry.data = zone as *mut c_void;
    Ok(zone)
}

/// The zone's slab pool, once nginx mapped it.
fn pool(zone: *mut ngx_shm_zone_t) -> Option<SlabPool> {
    // SAFETY: a non-null zone is the one nginx made for this configuration; its mapping lives
    // as long as the process (a worker) or the cycle (the master).
    unsafe { zone.as_ref().and_then(|shm| SlabPool::from_shm_zone(shm)) }
}

/// One provider's shared state.
#[repr(C)]
struct Slot {
    /// Which provider and key source this slot belongs to (0: free). Changed only under the
    /// lock, by [`assign_slots`].
    identity: AtomicU64,
    /// Bumped on every new key set; 0 while none was ever fetched.
    generation: AtomicU64,
    /// The pid of the worker fetching now (0: nobody), and since when (ms).
    fetch_owner: AtomicU32,
    fetch_started_ms: AtomicU64,
    /// A refresh was asked for (unknown `kid`); cleared by the fetch that follows.
    forced: AtomicU32,
    next_refresh: AtomicU64,
    last_forced: AtomicU64,
    /// Wall clock, for the status (the schedule's fields are monotonic).
    last_success: AtomicU64,
    failures: AtomicU32,
    /// Sessions signed in at or before this time (ms) are refused: the deny-list overflowed.
    revoked_before_ms: AtomicU64,
    /// When (s) an overflow was last logged.
    overflow_logged: AtomicU64,
    counters: Counters,
    /// What only the pool's mutex guards.
    guarded: UnsafeCell<Guarded>,
}

#[repr(C)]
struct Guarded {
    jwks: *mut u8,
    jwks_len: usize,
    issuers: *mut u8,
    issuers_len: usize,
    /// The sign-in endpoints, one per line (`Endpoints::to_lines`).
    endpoints: *mut u8,
    endpoints_len: usize,
    last_error: [u8; ERROR_BYTES],
    last_error_len: usize,
}

/// What `entra_status` counts per provider.
#[repr(C)]
pub struct Counters {
    allowed: AtomicU64,
    denied: [AtomicU64; REASONS.len()],
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    /// Time spent judging tokens the cache did not answer (signature and claims, passed or
    /// refused): the worker's crypto load, and the benchmark's in-worker measure of it.
    verify_nanoseconds: AtomicU64,
    fetches: AtomicU64,
    fetch_errors: AtomicU64,
    metadata_fetches: AtomicU64,
    signins_started: AtomicU64,
    signins_completed: AtomicU64,
    sessions_accepted: AtomicU64,
    /// Time spent opening session cookies, like `verify_nanoseconds` for tokens.
    session_nanoseconds: AtomicU64,
    logouts: AtomicU64,
    frontchannel_logouts: AtomicU64,
    deny_evictions: AtomicU64,
}

/// A sign-in event `entra_status` counts.
#[derive(Clone, Copy)]
pub enum SignInEvent {
    Started,
    Completed,
    Logout,
    FrontChannelLogout,
}

/// A reading of [`Counters`].
pub struct CounterValues {
    pub allowed: u64,
    pub denied: Vec<u64>,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub verify_microseconds: u64,
    pub fetches: u64,
    pub fetch_errors: u64,
    pub metadata_fetches: u64,
    pub signins_started: u64,
    pub signins_completed: u64,
    pub sessions_accepted: u64,
    pub session_microseconds: u64,
    pub logouts: u64,
    pub frontchannel_logouts: u64,
    pub deny_evictions: u64,
}

impl Counters {
    /// A judged token: from the cache, or checked for `checked_for`.
    pub fn judged(&self, checked_for: Option<Duration>, passed: bool) {
        match checked_for {
            None => self.cache_hits.fetch_add(1, Relaxed),
            Some(took) => {
                let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
                self.verify_nanoseconds.fetch_add(nanos, Relaxed);
                if passed {
                    self.cache_misses.fetch_add(1, Relaxed);
                }
                0
            }
        };
    }

    /// A session cookie opened (or refused) in `took`, or found opened in the cache (`None`).
    pub fn session_opened(&self, took: Option<Duration>, accepted: bool) {
        match took {
            None => self.cache_hits.fetch_add(1, Relaxed),
            Some(took) => {
                let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
                self.session_nanoseconds.fetch_add(nanos, Relaxed)
            }
        };
        if accepted {
            self.sessions_accepted.fetch_add(1, Relaxed);
        }
    }

    pub fn sign_in(&self, event: SignInEvent) {
        match event {
            SignInEvent::Started => &self.signins_started,
            SignInEvent::Completed => &self.signins_completed,
            SignInEvent::Logout => &self.logouts,
            SignInEvent::FrontChannelLogout => &self.frontchannel_logouts,
        }
        .fetch_add(1, Relaxed);
    }

    /// The access decision of one check.
    pub fn decided(&self, decision: Result<(), Denial>) {
        match decision {
            Ok(()) => &self.allowed,
            Err(denial) => &self.denied[denial.index()],
        }
        .fetch_add(1, Relaxed);
    }

    fn read(&self) -> CounterValues {
        CounterValues {
            allowed: self.allowed.load(Relaxed),
            denied: self.denied.iter().map(|n| n.load(Relaxed)).collect(),
            cache_hits: self.cache_hits.load(Relaxed),
            cache_misses: self.cache_misses.load(Relaxed),
            verify_microseconds: self.verify_nanoseconds.load(Relaxed) / 1000,
            fetches: self.fetches.load(Relaxed),
            fetch_errors: self.fetch_errors.load(Relaxed),
            metadata_fetches: self.metadata_fetches.load(Relaxed),
            signins_started: self.signins_started.load(Relaxed),
            signins_completed: self.signins_completed.load(Relaxed),
            sessions_accepted: self.sessions_accepted.load(Relaxed),
            session_microseconds: self.session_nanoseconds.load(Relaxed) / 1000,
            logouts: self.logouts.load(Relaxed),
            frontchannel_logouts: self.frontchannel_logouts.load(Relaxed),
            deny_evictions: self.deny_evictions.load(Relaxed),
        }
    }
}

#[repr(C)]
struct Root {
    slots: [Slot; MAX_PROVIDERS],
    /// The front-channel logout deny-list: `deny_capacity` entries at `deny` (guarded by the
    /// pool's mutex), and a generation bumped on every change, which workers watch.
    deny: *mut DenyEntry,
    deny_capacity: usize,
    deny_generation: AtomicU64,
}

/// One front-channel logout: sessions of this provider with this `sid` signed in at or before
/// `at_ms` are refused until `expires_ms` (the provider's `session_lifetime` later).
#[repr(C)]
#[derive(Clone, Copy)]
struct DenyEntry {
    /// The provider's identity (0: a free entry).
    identity: u64,
    /// SHA-256 of the `sid`, cut to 16 bytes.
    sid: [u8; 16],
    at_ms: u64,
    expires_ms: u64,
}

/// How many deny-list entries a zone of `size` bytes holds: what is left beside the slots, at
/// most a quarter of the zone, and never fewer than 64.
fn deny_capacity(size: usize) -> usize {
    let spare = size.saturating_sub(core::mem::size_of::<Root>()) / 4;
    (spare / core::mem::size_of::<DenyEntry>()).clamp(64, 16384)
}

/// What a worker copies of the deny-list for its provider.
pub struct DenyView {
    pub generation: u64,
    /// SHA-256 prefixes of revoked `sid`s, with the time of their logout (ms).
    pub revoked: std::collections::HashMap<[u8; 16], u64>,
    /// Every session signed in at or before this time (ms) is refused: the deny-list overflowed.
    pub watermark_ms: u64,
}

/// What [`SlotRef::revoke`] did.
pub struct Revoked {
    /// An entry was evicted to make room: its time became the provider's watermark.
    pub evicted: bool,
    /// Entries in the list now.
    pub entries: usize,
}

/// Identifies a provider and its key source: a reload that changes them gives it a fresh slot
/// (counters included). A key-file provider has a slot for its counters only.
pub fn identity(provider: &Provider) -> u64 {
    let mut h = DefaultHasher::new();
    (&provider.name, provider.tenant.as_str()).hash(&mut h);
    match &provider.source {
        KeySource::Discovery { discovery, .. } => discovery.metadata_url.hash(&mut h),
        KeySource::File => "file".hash(&mut h),
    }
    h.finish() | 1
}

/// The zone's init handler: makes the slots on first use. A zone that survives a reload (same
/// name, size and module) keeps its memory, and its slots stay as they are until
/// [`assign_slots`] runs for a committed configuration.
///
/// # Safety
/// Called by nginx with a valid zone whose `data` is this module's main configuration.
pub unsafe extern "C" fn init_zone(zone: *mut ngx_shm_zone_t, _old: *mut c_void) -> ngx_int_t {
    let log = ngx::log::ngx_cycle_log().as_ptr();
    guard(log, "the shared zone's init", NGX_ERROR as ngx_int_t, || {
        // SAFETY: nginx calls this with the zone it mapped; its start is the slab pool.
        let Some(mut pool) = unsafe { zone.as_ref() }.and_then(|z| unsafe { SlabPool::from_shm_zone(z) })
        else {
            return NGX_ERROR as ngx_int_t;
        };
        let locked = pool.lock();
        if pool.as_ref().data.is_null() {
            let Ok(root) = locked.allocate_zeroed(Layout::new::<Root>()) else {
                return NGX_ERROR as ngx_int_t;
            };
            // SAFETY: nginx passes the zone it mapped.
            let capacity = deny_capacity(unsafe { (*zone).shm.size });
            let Ok(deny) = locked.allocate_zeroed(Layout::array::<DenyEntry>(capacity).expect("small"))
            else {
                return NGX_ERROR as ngx_int_t;
            };
            let root = root.as_ptr() as *mut Root;
            // SAFETY: fresh zeroed memory of the root's layout.
            unsafe { ((*root).deny, (*root).deny_capacity) = (deny.as_ptr() as *mut DenyEntry, capacity) };
            pool.as_mut().data = root as *mut c_void;
            debug!(
                log,
                "shared zone ready: {} provider slots, {} deny-list entries", MAX_PROVIDERS, capacity
            );
        }
        NGX_OK as ngx_int_t
    })
}

/// The zone's slots (set once by init_zone, before any worker starts).
fn root(pool: &SlabPool) -> *mut Root {
    pool.as_ref().data as *mut Root
}

/// Gives every provider of a committed configuration its slot (module `init_module`, in the
/// master): a provider whose identity has a slot keeps it, the others take a free one, and the
/// slots no provider uses any more are freed.
pub fn assign_slots(
    log: *mut ngx_log_t,
    providers: &[Arc<Provider>],
    cached: &[Option<Fetched>],
    zone: *mut ngx_shm_zone_t,
) -> Result<(), String> {
    let Some(pool) = pool(zone) else { return Ok(()) };
    let root = root(&pool);
    if root.is_null() {
        return Err("the shared zone has no slots".into());
    }
    let locked = pool.lock();
    // SAFETY: the root holds MAX_PROVIDERS slots; the lock is held.
    let slot = |index: usize| unsafe { ptr::addr_of_mut!((*root).slots[index]) };
    // SAFETY: as above.
    let identity_of = |index: usize| unsafe { (*slot(index)).identity.load(SeqCst) };
    let wanted: Vec<u64> = providers.iter().map(|p| identity(p)).collect();
    for index in 0..MAX_PROVIDERS {
        let id = identity_of(index);
        if id != 0 && !wanted.contains(&id) {
            // SAFETY: as above; this process holds no reference into the slot.
            unsafe { free(&locked, slot(index)) };
            debug!(log, "shared zone: slot {} freed", index);
        }
    }
    for (position, (provider, &id)) in providers.iter().zip(&wanted).enumerate() {
        if let Some(index) = (0..MAX_PROVIDERS).find(|&i| identity_of(i) == id) {
            // Its keys stay; a fetch a previous worker claimed is not waited for.
            // SAFETY: as above.
            unsafe { (*slot(index)).fetch_owner.store(0, SeqCst) };
            debug!(log, "shared zone: slot {} kept for provider \"{}\"", index, provider.name);
            continue;
        }
        let index = (0..MAX_PROVIDERS)
            .find(|&i| identity_of(i) == 0)
            .ok_or_else(|| format!("the shared zone has no free slot for provider \"{}\"", provider.name))?;
        // SAFETY: as above.
        unsafe { (*slot(index)).identity.store(id, SeqCst) };
        debug!(log, "shared zone: slot {} given to provider \"{}\"", index, provider.name);
        // A new slot has no keys: a start may serve with the cached ones until a fetch succeeds
        // (its next_refresh stays 0: the first fetch is due at once).
        if let Some(fetched) = cached.get(position).and_then(Option::as_ref) {
            // SAFETY: as above; the guarded part is only touched under the lock.
            let stored =
                unsafe { store_keys(&locked, &*slot(index), &mut *(*slot(index)).guarded.get(), fetched) };
            match stored {
                Ok(_) => notice!(
                    log,
                    "provider \"{}\": serving with the {} cached keys until a fetch succeeds",
                    provider.name,
                    fetched.keys.len()
                ),
                Err(_) => warning!(
                    log,
                    "provider \"{}\": no room in the shared zone for the cached keys",
                    provider.name
                ),
            }
        }
    }
    Ok(())
}

/// Puts a key set, its issuers and endpoints in a slot, replacing what it had; returns the new
/// generation. The caller holds the lock.
fn store_keys(
    locked: &LockedSlabPool,
    slot: &Slot,
    g: &mut Guarded,
    fetched: &Fetched,
) -> Result<u64, StoreError> {
    let issuers = fetched.issuers.join("\n");
    let endpoints = fetched.endpoints.to_lines();
    let blobs = [&fetched.jwks[..], issuers.as_bytes(), endpoints.as_bytes()];
    let copies = blobs.map(|b| copy_in(locked, b));
    let [Some(jwks), Some(issuers_copy), Some(endpoints_copy)] = copies else {
        for (copy, blob) in copies.into_iter().zip(blobs) {
            release(locked, copy.unwrap_or(ptr::null_mut()), blob.len());
        }
        return Err(StoreError::NoRoom);
    };
    release(locked, g.jwks, g.jwks_len);
    release(locked, g.issuers, g.issuers_len);
    release(locked, g.endpoints, g.endpoints_len);
    (g.jwks, g.jwks_len, g.issuers, g.issuers_len) = (jwks, fetched.jwks.len(), issuers_copy, issuers.len());
    (g.endpoints, g.endpoints_len) = (endpoints_copy, endpoints.len());
    Ok(slot.generation.fetch_add(1, SeqCst) + 1)
}

/// Frees a slot's memory and clears it.
///
/// # Safety
/// The lock is held and no reference into the slot exists in this process.
unsafe fn free(locked: &LockedSlabPool, slot: *mut Slot) {
    // SAFETY: per the contract.
    let g = unsafe { &*(*slot).guarded.get() };
    for (p, len) in [(g.jwks, g.jwks_len), (g.issuers, g.issuers_len), (g.endpoints, g.endpoints_len)] {
        release(locked, p, len);
    }
    // SAFETY: per the contract; zero is a valid value of every field.
    unsafe { ptr::write_bytes(slot, 0, 1) };
}

fn release(locked: &LockedSlabPool, p: *mut u8, len: usize) {
    if let Some(p) = NonNull::new(p) {
        // SAFETY: `p` was allocated from this pool with this length, by `copy_in`.
        unsafe { locked.deallocate(p, Layout::array::<u8>(len.max(1)).expect("small")) };
    }
}

fn copy_in(locked: &LockedSlabPool, bytes: &[u8]) -> Option<*mut u8> {
    let p = locked.allocate(Layout::array::<u8>(bytes.len().max(1)).ok()?).ok()?.as_ptr() as *mut u8;
    // SAFETY: `p` has room for `bytes.len()` bytes.
    unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len()) };
    Some(p)
}

fn copy_out(p: *const u8, len: usize) -> Vec<u8> {
    if p.is_null() {
        return Vec::new();
    }
    // SAFETY: `p` holds `len` bytes written by `copy_in`; the caller holds the lock.
    unsafe { core::slice::from_raw_parts(p, len) }.to_vec()
}

/// What a worker copies out of the zone: the key set and issuers of one generation.
pub struct Snapshot {
    pub generation: u64,
    pub jwks: Vec<u8>,
    pub issuers: Vec<String>,
    pub endpoints: Endpoints,
}

/// What `entra_status` shows of a slot.
pub struct SlotStatus {
    pub last_success: u64,
    pub next_refresh: u64,
    pub last_error: String,
    pub counters: CounterValues,
}

/// Why a fetched key set was not stored.
#[derive(Debug, PartialEq, Eq)]
pub enum StoreError {
    /// A reload gave the slot to another provider.
    Reassigned,
    /// The zone has no room for it (the old keys stay).
    NoRoom,
}

/// The answer to [`SlotRef::claim_fetch`].
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// This worker fetches now.
    Taken,
    /// Not due, or another worker fetches.
    NotNow,
    /// A reload gave the slot to another provider.
    Reassigned,
}

/// One worker's handle on its provider's slot.
pub struct SlotRef {
    pool: SlabPool,
    slot: NonNull<Slot>,
    identity: u64,
}

// SAFETY: the slot lives in shared memory mapped for the whole life of the process; everything
// in it is atomics or data changed only under the pool's lock.
unsafe impl Send for SlotRef {}
// SAFETY: as above.
unsafe impl Sync for SlotRef {}

impl SlotRef {
    /// The slot [`assign_slots`] gave this provider, if any.
    pub fn find(zone: *mut ngx_shm_zone_t, provider: &Provider) -> Option<SlotRef> {
        let pool = pool(zone)?;
        let identity = identity(provider);
        let root = NonNull::new(root(&pool))?;
        let slot = {
            let _locked = pool.lock();
            // SAFETY: the root init_zone made, read under the lock.
            let slots = unsafe { &root.as_ref().slots };
            NonNull::from(slots.iter().find(|s| s.identity.load(SeqCst) == identity)?)
        };
        Some(SlotRef { pool, slot, identity })
    }

    fn slot(&self) -> &Slot {
        // SAFETY: see the Send impl.
        unsafe { self.slot.as_ref() }
    }

    /// Still this provider's (a reload may have given it to another).
    fn is_mine(&self) -> bool {
        self.slot().identity.load(SeqCst) == self.identity
    }

    /// Runs `body` with the lock held, if the slot is still this provider's.
    fn locked<R>(&self, body: impl FnOnce(&LockedSlabPool, &Slot, &mut Guarded) -> R) -> Option<R> {
        let locked = self.pool.lock();
        let slot = self.slot();
        // SAFETY: the lock is held, so nobody else touches the guarded part.
        self.is_mine().then(|| body(&locked, slot, unsafe { &mut *slot.guarded.get() }))
    }

    /// The key set generation in the zone (0: none, or no longer this provider's slot).
    pub fn generation(&self) -> u64 {
        let generation = self.slot().generation.load(SeqCst);
        if self.is_mine() {
            generation
        } else {
            0
        }
    }

    /// Copies the current key set out (under the lock: a copy, nothing more).
    pub fn snapshot(&self) -> Option<Snapshot> {
        let (generation, jwks, issuers, endpoints) = self.locked(|_, slot, g| {
            (
                slot.generation.load(SeqCst),
                copy_out(g.jwks, g.jwks_len),
                copy_out(g.issuers, g.issuers_len),
                copy_out(g.endpoints, g.endpoints_len),
            )
        })?;
        let endpoints = Endpoints::from_lines(&String::from_utf8_lossy(&endpoints));
        let issuers = String::from_utf8_lossy(&issuers)
            .split('\n')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        Some(Snapshot { generation, jwks, issuers, endpoints })
    }

    /// The counters, while the slot is this provider's. A count that races with a reload which
    /// gives the slot away may land in the new provider's counters; nothing else can.
    pub fn counters(&self) -> Option<&Counters> {
        self.is_mine().then(|| &self.slot().counters)
    }

    /// Takes the fetch for worker `pid` if one is due and nobody (alive) is fetching.
    pub fn claim_fetch(&self, pid: u32, now: u64, now_ms: u64, timeout: Duration) -> Claim {
        self.locked(|_, slot, _| {
            let due = is_due(now, slot.next_refresh.load(SeqCst), slot.forced.load(SeqCst) != 0);
            let owner = slot.fetch_owner.load(SeqCst);
            let busy = owner != 0 && claim_is_live(slot.fetch_started_ms.load(SeqCst), now_ms, timeout);
            if !due || busy {
                return Claim::NotNow;
            }
            // The start first: `fetching` reads both without the lock, and must never see the new
            // owner with the old (stale) start.
            slot.fetch_started_ms.store(now_ms, SeqCst);
            slot.fetch_owner.store(pid, SeqCst);
            Claim::Taken
        })
        .unwrap_or(Claim::Reassigned)
    }

    /// Gives a claimed fetch back without a result (it could not be started).
    pub fn release_claim(&self, pid: u32) {
        self.locked(|_, slot, _| {
            let _ = slot.fetch_owner.compare_exchange(pid, 0, SeqCst, SeqCst);
        });
    }

    /// Stores what worker `pid` fetched at `now` (wall clock, for the status); the next refresh
    /// is due at `next_refresh` (monotonic). Returns the new generation.
    pub fn finish_with_keys(
        &self,
        pid: u32,
        fetched: &Fetched,
        now: u64,
        next_refresh: u64,
    ) -> Result<u64, StoreError> {
        self.locked(|locked, slot, g| {
            slot.counters.fetches.fetch_add(1, Relaxed);
            let generation = store_keys(locked, slot, g, fetched)?;
            slot.counters.metadata_fetches.fetch_add(u64::from(fetched.metadata_requests), Relaxed);
            slot.failures.store(0, SeqCst);
            slot.last_success.store(now, SeqCst);
            slot.next_refresh.store(next_refresh, SeqCst);
            Self::end_fetch(slot, pid);
            Ok(generation)
        })
        .unwrap_or(Err(StoreError::Reassigned))
    }

    /// Records a failed fetch of worker `pid` and schedules the retry; returns its backoff in
    /// seconds, or `None` when the slot is no longer this provider's.
    pub fn finish_with_error(&self, pid: u32, error: &str, now: u64) -> Option<u64> {
        self.locked(|_, slot, g| {
            slot.counters.fetches.fetch_add(1, Relaxed);
            slot.counters.fetch_errors.fetch_add(1, Relaxed);
            // Kept short; never a secret: URLs and reasons only.
            let mut end = error.len().min(ERROR_BYTES);
            while !error.is_char_boundary(end) {
                end -= 1;
            }
            g.last_error[..end].copy_from_slice(&error.as_bytes()[..end]);
            g.last_error_len = end;
            let backoff = retry_in(slot.failures.fetch_add(1, SeqCst));
            slot.next_refresh.store(now + backoff, SeqCst);
            Self::end_fetch(slot, pid);
            backoff
        })
    }

    fn end_fetch(slot: &Slot, pid: u32) {
        slot.forced.store(0, SeqCst);
        let _ = slot.fetch_owner.compare_exchange(pid, 0, SeqCst, SeqCst);
    }

    /// Asks for a refresh because a token names an unknown `kid`, at most once per
    /// `refresh_on_unknown_kid`. Returns `true` when it was asked now.
    pub fn ask_refresh(&self, now: u64, schedule: &Schedule) -> bool {
        self.locked(|_, slot, _| {
            if !schedule.may_force(slot.last_forced.load(SeqCst), now) {
                return false;
            }
            slot.last_forced.store(now, SeqCst);
            slot.forced.store(1, SeqCst);
            true
        })
        .unwrap_or(false)
    }

    /// `true` while a refresh is asked for or some live worker fetches this provider's keys.
    pub fn fetching(&self, now_ms: u64, timeout: Duration) -> bool {
        let slot = self.slot();
        let forced = slot.forced.load(SeqCst) != 0;
        let owned = slot.fetch_owner.load(SeqCst) != 0
            && claim_is_live(slot.fetch_started_ms.load(SeqCst), now_ms, timeout);
        self.is_mine() && (forced || owned)
    }

    /// Runs `body` on the zone's deny-list; the caller holds the lock.
    fn with_deny_list<R>(&self, body: impl FnOnce(&mut [DenyEntry]) -> R) -> Option<R> {
        let root = root(&self.pool);
        // SAFETY: init_zone set the list once, before any worker started; the caller holds the
        // lock, so nobody else touches it meanwhile.
        let entries = unsafe {
            let (p, n) = ((*root).deny, (*root).deny_capacity);
            if p.is_null() {
                return None;
            }
            core::slice::from_raw_parts_mut(p, n)
        };
        Some(body(entries))
    }

    /// The deny-list's generation: it changes whenever an entry comes or goes.
    pub fn deny_generation(&self) -> u64 {
        // SAFETY: the root lives as long as the zone.
        unsafe { (*root(&self.pool)).deny_generation.load(SeqCst) }
    }

    /// Records a front-channel logout of `sid` at `now_ms`, to be kept for `lifetime_ms`. When
    /// the list is full, the entry closest to expiry goes and its time becomes the provider's
    /// watermark: it fails closed, so a flood of `sid`s cannot revive a revoked session.
    pub fn revoke(&self, sid: [u8; 16], now_ms: u64, lifetime_ms: u64) -> Option<Revoked> {
        self.locked(|_, slot, _| {
            let identity = self.identity;
            self.with_deny_list(|entries| {
                for e in entries.iter_mut().filter(|e| e.identity != 0 && e.expires_ms <= now_ms) {
                    e.identity = 0;
                }
                let entry = DenyEntry {
                    identity,
                    sid,
                    at_ms: now_ms,
                    expires_ms: now_ms.saturating_add(lifetime_ms),
                };
                let mut evicted = false;
                let index = match entries.iter().position(|e| e.identity == identity && e.sid == sid) {
                    Some(same) => same,
                    None => match entries.iter().position(|e| e.identity == 0) {
                        Some(free) => free,
                        None => {
                            let (oldest, at) = entries
                                .iter()
                                .enumerate()
                                .min_by_key(|(_, e)| e.expires_ms)
                                .map(|(i, e)| (i, (e.identity, e.at_ms)))?;
                            evicted = true;
                            self.raise_watermark(at.0, at.1);
                            oldest
                        }
                    },
                };
                entries[index] = entry;
                if evicted {
                    slot.counters.deny_evictions.fetch_add(1, Relaxed);
                }
                // SAFETY: the root lives as long as the zone.
                unsafe { (*root(&self.pool)).deny_generation.fetch_add(1, SeqCst) };
                Some(Revoked { evicted, entries: entries.iter().filter(|e| e.identity != 0).count() })
            })
            .flatten()
        })
        .flatten()
    }

    /// Raises the watermark of the provider whose entry was evicted (under the lock).
    fn raise_watermark(&self, identity: u64, at_ms: u64) {
        // SAFETY: the root holds MAX_PROVIDERS slots; the caller holds the lock.
        let slots = unsafe { &(*root(&self.pool)).slots };
        if let Some(slot) = slots.iter().find(|s| s.identity.load(SeqCst) == identity) {
            slot.revoked_before_ms.fetch_max(at_ms, SeqCst);
        }
    }

    /// `true` at most once a minute per provider: whether to log an overflow now.
    pub fn should_log_overflow(&self, now: u64) -> bool {
        let last = self.slot().overflow_logged.load(SeqCst);
        (last == 0 || now >= last + 60)
            && self.slot().overflow_logged.compare_exchange(last, now, SeqCst, SeqCst).is_ok()
    }

    /// This provider's part of the deny-list (a copy, under the lock).
    pub fn deny_view(&self) -> Option<DenyView> {
        self.locked(|_, slot, _| {
            let revoked = self
                .with_deny_list(|entries| {
                    entries.iter().filter(|e| e.identity == self.identity).map(|e| (e.sid, e.at_ms)).collect()
                })
                .unwrap_or_default();
            DenyView {
                generation: self.deny_generation(),
                revoked,
                watermark_ms: slot.revoked_before_ms.load(SeqCst),
            }
        })
    }

    pub fn status(&self) -> Option<SlotStatus> {
        self.locked(|_, slot, g| SlotStatus {
            last_success: slot.last_success.load(SeqCst),
            next_refresh: slot.next_refresh.load(SeqCst),
            last_error: String::from_utf8_lossy(&g.last_error[..g.last_error_len]).into_owned(),
            counters: slot.counters.read(),
        })
    }
}
