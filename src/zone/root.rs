//! What the zone holds, as laid out in shared memory: the root with its provider slots and
//! records of sessions, and the copies of key sets in and out of slab memory. Plain atomics for
//! what is read without the lock; the rest only under the slab pool's own mutex.
//!
//! A key set, its issuers and its endpoints are byte blobs allocated and freed by hand under that
//! mutex, not ngx's allocator-aware `Vec`: with `LockedSlabPool` as its allocator every growth
//! and drop would take the pool's mutex again from code that already holds it (`ngx_shmtx` is not
//! re-entrant), and with the bare `SlabPool` nothing would check that it is held. A blob is only
//! ever written once and replaced whole, so a `Vec`'s growth buys nothing.

use core::alloc::Layout;
use core::cell::UnsafeCell;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering::SeqCst};

use entra_core::answers::{AnswerEntry, TenantEntry};
use entra_core::discovery::Fetched;
use entra_core::fleet::OutboxEntry;
use entra_core::revocation::{Entry, Header};
use entra_core::throttle::Bucket;
use ngx::allocator::Allocator;
use ngx::core::slab::LockedSlabPool;
use ngx::core::SlabPool;
use ngx::ffi::ngx_shm_zone_t;

use super::counters::{Counters, FleetCounters};

/// Providers one zone can hold.
pub const MAX_PROVIDERS: usize = 64;
/// Records one zone can hold: each provider that signs browsers in has two (sessions, states),
/// and a third with a fleet.
pub const MAX_RECORDS: usize = 3 * MAX_PROVIDERS;
/// Buckets counting callbacks per client address and minute.
pub const CALLBACK_BUCKETS: usize = 512;
pub(super) const ERROR_BYTES: usize = 240;

/// The zone's slab pool, once nginx mapped it.
pub(super) fn pool(zone: *mut ngx_shm_zone_t) -> Option<SlabPool> {
    // SAFETY: a non-null zone is the one nginx made for this configuration; its mapping lives
    // as long as the process (a worker) or the cycle (the master).
    unsafe { zone.as_ref().and_then(|shm| SlabPool::from_shm_zone(shm)) }
}

/// One provider's shared state.
#[repr(C)]
pub(super) struct Slot {
    /// Which provider and key source this slot belongs to (0: free). Changed only under the
    /// lock, by [`assign_slots`].
    pub(super) identity: AtomicU64,
    /// Bumped on every new key set; 0 while none was ever fetched.
    pub(super) generation: AtomicU64,
    /// The pid of the worker fetching now (0: nobody), and since when (ms).
    pub(super) fetch_owner: AtomicU32,
    pub(super) fetch_started_ms: AtomicU64,
    /// A refresh was asked for (unknown `kid`); cleared by the fetch that follows.
    pub(super) forced: AtomicU32,
    pub(super) next_refresh: AtomicU64,
    pub(super) last_forced: AtomicU64,
    /// Wall clock, for the status (the schedule's fields are monotonic).
    pub(super) last_success: AtomicU64,
    pub(super) failures: AtomicU32,
    pub(super) counters: Counters,
    /// What only the pool's mutex guards.
    pub(super) guarded: UnsafeCell<Guarded>,
}

#[repr(C)]
pub(super) struct Guarded {
    pub(super) jwks: *mut u8,
    pub(super) jwks_len: usize,
    pub(super) issuers: *mut u8,
    pub(super) issuers_len: usize,
    /// The sign-in endpoints, one per line (`Endpoints::to_lines`).
    pub(super) endpoints: *mut u8,
    pub(super) endpoints_len: usize,
    pub(super) last_error: [u8; ERROR_BYTES],
    pub(super) last_error_len: usize,
}

#[repr(C)]
pub(super) struct Root {
    pub(super) slots: [Slot; MAX_PROVIDERS],
    /// What browser sign-in shares, made by `assign_slots` when a configuration first signs
    /// browsers in (null until then; never freed): a zone for bearer tokens alone stays small.
    pub(super) sign_in: AtomicPtr<SignInShared>,
    /// What Graph lookups share, made by `assign_slots` when a configuration first asks Graph
    /// (null until then; never freed).
    pub(super) graph: AtomicPtr<GraphShared>,
    /// What a fleet's instance keeps of its store (`entra_shared_store`), made by
    /// `assign_slots` when a configuration first has one (null until then; never freed).
    pub(super) fleet: AtomicPtr<FleetShared>,
}

/// The zone's part for browser sign-in.
#[repr(C)]
pub(super) struct SignInShared {
    /// Each session provider's records (sessions issued and ended, states used), by name.
    pub(super) records: [RecordSlot; MAX_RECORDS],
    /// Callbacks per client address and minute (`entra_core::throttle`).
    pub(super) callback_buckets: [Bucket; CALLBACK_BUCKETS],
    /// The secret that picks a client's bucket (random, set when the part is made).
    pub(super) bucket_seed: AtomicU64,
}

/// Tenants whose Graph token (or refusal) the zone keeps, for all providers.
pub const TENANTS: usize = 256;

/// The zone's part for Graph lookups (`graph.rs`; the tables' rules: `entra_core::answers`).
#[repr(C)]
pub(super) struct GraphShared {
    pub(super) tenants: [TenantEntry; TENANTS],
    pub(super) tables: [AnswerTable; MAX_PROVIDERS],
}

/// One provider's Graph answers, by provider name.
#[repr(C)]
pub(super) struct AnswerTable {
    /// Which provider (0: free).
    pub(super) name: u64,
    pub(super) entries: *mut AnswerEntry,
    pub(super) len: usize,
}

/// Bytes of the zone taken before any key set or record table: the root, and with browser
/// sign-in, Graph lookups or a fleet their parts.
pub fn fixed_bytes(sign_in: bool, graph: bool, fleet: bool) -> usize {
    core::mem::size_of::<Root>()
        + if sign_in { core::mem::size_of::<SignInShared>() } else { 0 }
        + if graph { core::mem::size_of::<GraphShared>() } else { 0 }
        + if fleet { core::mem::size_of::<FleetShared>() } else { 0 }
}

/// The instance's part for the fleet.
#[repr(C)]
pub(super) struct FleetShared {
    /// The store the part speaks to (the first word of its identity): another store on reload
    /// starts the reading afresh.
    pub(super) store: AtomicU64,
    pub(super) round_owner: AtomicU32,
    pub(super) round_started_ms: AtomicU64,
    /// When the last round started (ms).
    pub(super) last_round_ms: AtomicU64,
    /// [`StoreState`] as a number, and since when (ms).
    pub(super) state: AtomicU32,
    pub(super) state_since_ms: AtomicU64,
    /// Round trips with the store, and those that failed.
    pub(super) rounds: AtomicU64,
    pub(super) failures: AtomicU64,
    /// When (ms) this instance noticed that the store restarted (or is another).
    pub(super) restarted_ms: AtomicU64,
    /// When (s) a failure was last logged: one `error` line a minute.
    pub(super) logged_s: AtomicU64,
    pub(super) guarded: UnsafeCell<FleetGuarded>,
    pub(super) slots: [FleetSlot; MAX_PROVIDERS],
}

#[repr(C)]
pub(super) struct FleetGuarded {
    pub(super) run_id: [u8; 64],
    pub(super) run_id_len: usize,
    pub(super) last_error: [u8; ERROR_BYTES],
    pub(super) last_error_len: usize,
}

/// One session provider's part, by name.
#[repr(C)]
pub(super) struct FleetSlot {
    pub(super) name: AtomicU64,
    pub(super) outbox: AtomicPtr<OutboxEntry>,
    pub(super) outbox_len: AtomicUsize,
    pub(super) after_ms: AtomicU64,
    pub(super) after_seq: AtomicU64,
    /// When this slot (or its store) began (monotonic ms): session requests wait for the first
    /// read until `fetch_timeout` after it.
    pub(super) began_ms: AtomicU64,
    /// The stream was read through once since this slot (or its store) began.
    pub(super) read: AtomicU32,
    /// A watermark still to publish (ms; 0: none).
    pub(super) watermark_ms: AtomicU64,
    /// What this instance holds is to be told again (the store restarted empty).
    pub(super) republish: AtomicU32,
    /// Sign-outs published in the current second.
    pub(super) publish_second: AtomicU64,
    pub(super) publish_count: AtomicU64,
    pub(super) counters: FleetCounters,
}

/// One provider's record of sessions issued and ended (`entra_core::revocation`).
#[repr(C)]
pub(super) struct RecordSlot {
    /// Which provider (`record_name`; 0: free). Changed only under the lock.
    pub(super) name: AtomicU64,
    pub(super) header: Header,
    /// `table_len` entries in slab memory, or null.
    pub(super) table: AtomicPtr<Entry>,
    pub(super) table_len: AtomicUsize,
    /// When (s) a watermark that rose was last logged.
    pub(super) warned: AtomicU64,
    /// The record's generation last kept on disk (`entra_keys_cache_path`).
    pub(super) kept_generation: AtomicU64,
    /// Since when (ms) a worker is keeping it (0: none is).
    pub(super) keeping_since_ms: AtomicU64,
}

/// The zone's slots (set once by init_zone, before any worker starts).
pub(super) fn root(pool: &SlabPool) -> *mut Root {
    pool.as_ref().data as *mut Root
}

/// The zone's part for browser sign-in, once made.
pub(super) fn sign_in_part(pool: &SlabPool) -> Option<&SignInShared> {
    let root = root(pool);
    // SAFETY: the root init_zone made lives as long as the zone, and so does the part once
    // assign_slots set it (it is never freed).
    unsafe { root.as_ref()?.sign_in.load(SeqCst).as_ref() }
}

/// The zone's part for Graph lookups, once made.
pub(super) fn graph_part(pool: &SlabPool) -> Option<*mut GraphShared> {
    let root = root(pool);
    // SAFETY: the root init_zone made lives as long as the zone.
    let part = unsafe { root.as_ref()?.graph.load(SeqCst) };
    (!part.is_null()).then_some(part)
}

/// The zone's part for the fleet, once made.
pub(super) fn fleet_part(pool: &SlabPool) -> Option<*mut FleetShared> {
    let root = root(pool);
    // SAFETY: the root init_zone made lives as long as the zone.
    let part = unsafe { root.as_ref()?.fleet.load(SeqCst) };
    (!part.is_null()).then_some(part)
}

/// Why a fetched key set was not stored.
#[derive(Debug, PartialEq, Eq)]
pub enum StoreError {
    /// A reload gave the slot to another provider.
    Reassigned,
    /// The zone has no room for it (the old keys stay).
    NoRoom,
}

/// Puts a key set, its issuers and endpoints in a slot, replacing what it had; returns the new
/// generation. The caller holds the lock.
pub(super) fn store_keys(
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

/// Frees a slot's memory and clears it, field by field: workers that outlived a reload may
/// still load or count into its atomics (and find the identity no longer theirs).
///
/// # Safety
/// The lock is held and no reference into the slot's guarded part exists in this process.
pub(super) unsafe fn free(locked: &LockedSlabPool, slot: &Slot) {
    // SAFETY: per the contract: the guarded part is only touched under the lock.
    let g = unsafe { &mut *slot.guarded.get() };
    for (p, len) in [(g.jwks, g.jwks_len), (g.issuers, g.issuers_len), (g.endpoints, g.endpoints_len)] {
        release(locked, p, len);
    }
    *g = Guarded {
        jwks: ptr::null_mut(),
        jwks_len: 0,
        issuers: ptr::null_mut(),
        issuers_len: 0,
        endpoints: ptr::null_mut(),
        endpoints_len: 0,
        last_error: [0; ERROR_BYTES],
        last_error_len: 0,
    };
    slot.identity.store(0, SeqCst);
    for word in
        [&slot.generation, &slot.fetch_started_ms, &slot.next_refresh, &slot.last_forced, &slot.last_success]
    {
        word.store(0, SeqCst);
    }
    for word in [&slot.fetch_owner, &slot.forced, &slot.failures] {
        word.store(0, SeqCst);
    }
    slot.counters.reset();
}

pub(super) fn release(locked: &LockedSlabPool, p: *mut u8, len: usize) {
    if let Some(p) = NonNull::new(p) {
        // SAFETY: `p` was allocated from this pool with this length, by `copy_in`.
        unsafe { locked.deallocate(p, Layout::array::<u8>(len.max(1)).expect("small")) };
    }
}

pub(super) fn copy_in(locked: &LockedSlabPool, bytes: &[u8]) -> Option<*mut u8> {
    let p = locked.allocate(Layout::array::<u8>(bytes.len().max(1)).ok()?).ok()?.as_ptr() as *mut u8;
    // SAFETY: `p` has room for `bytes.len()` bytes.
    unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len()) };
    Some(p)
}

pub(super) fn copy_out(p: *const u8, len: usize) -> Vec<u8> {
    if p.is_null() {
        return Vec::new();
    }
    // SAFETY: `p` holds `len` bytes written by `copy_in`; the caller holds the lock.
    unsafe { core::slice::from_raw_parts(p, len) }.to_vec()
}
