//! Shared memory (`entra_shared_zone`): for every discovery provider, the key set and issuers
//! last fetched, the refresh schedule, the single-flight owner and the counters, seen by all
//! workers. One fetch serves every worker; a reload with the same zone keeps the keys of every
//! provider whose key source did not change.
//!
//! Everything here is plain data in the slab pool: atomics for what is read without the lock,
//! and the pool's own mutex (which the master frees if a worker dies holding it) around the
//! short copies of the key set in and out. No lock is held across parsing or I/O.

use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::mem::size_of;
use core::ptr;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::hash::{DefaultHasher, Hash, Hasher};

use entra_core::error::REASONS;
use entra_core::provider::KeySource;
use entra_core::{KeySet, Provider};
use ngx::ffi::{
    ngx_int_t, ngx_shm_zone_t, ngx_shmtx_lock, ngx_shmtx_unlock, ngx_slab_alloc_locked, ngx_slab_free_locked,
    ngx_slab_pool_t, NGX_ERROR, NGX_OK,
};

use crate::conf::MainConf;

/// Providers one zone can hold.
pub const MAX_PROVIDERS: usize = 64;
const ERROR_BYTES: usize = 240;

/// One provider's shared state.
#[repr(C)]
pub struct Slot {
    /// Which provider and key source this slot belongs to (0: free).
    identity: u64,
    /// Bumped on every new key set; 0 while none was ever fetched.
    pub generation: AtomicU64,
    /// What only the pool's mutex guards.
    guarded: UnsafeCell<Guarded>,
    /// The pid of the worker fetching now (0: nobody), and since when (ms).
    pub fetch_owner: AtomicU32,
    pub fetch_started_ms: AtomicU64,
    /// A refresh was asked for (unknown `kid`); cleared by the fetch that follows.
    pub forced: AtomicU32,
    pub next_refresh: AtomicU64,
    pub last_forced: AtomicU64,
    pub last_success: AtomicU64,
    pub failures: AtomicU32,
    pub counters: Counters,
}

#[repr(C)]
struct Guarded {
    jwks: *mut u8,
    jwks_len: usize,
    issuers: *mut u8,
    issuers_len: usize,
    last_error: [u8; ERROR_BYTES],
    last_error_len: usize,
}

#[repr(C)]
pub struct Counters {
    pub allowed: AtomicU64,
    pub denied: [AtomicU64; REASONS.len()],
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    /// Time spent judging tokens the cache did not answer (signature and claims, passed or
    /// refused): the worker's crypto load, and the benchmark's in-worker measure of it.
    pub verify_nanoseconds: AtomicU64,
    pub fetches: AtomicU64,
    pub fetch_errors: AtomicU64,
    pub metadata_fetches: AtomicU64,
}

#[repr(C)]
struct Root {
    slots: [Slot; MAX_PROVIDERS],
}

/// Identifies a provider and its key source: a reload that changes them starts the slot
/// afresh (counters included); a key file provider has a slot for its counters only.
pub fn identity(provider: &Provider) -> u64 {
    let mut h = DefaultHasher::new();
    (&provider.name, provider.tenant.as_str()).hash(&mut h);
    match &provider.source {
        KeySource::Discovery { discovery, .. } => discovery.metadata_url.hash(&mut h),
        KeySource::File => "file".hash(&mut h),
    }
    h.finish() | 1
}

/// The zone's init handler: `old` is the previous cycle's data when the same zone survives a
/// reload, in which case the memory (and the slots in it) are the same.
///
/// # Safety
/// Called by nginx with a valid zone whose `data` is this module's main configuration.
pub unsafe extern "C" fn init_zone(zone: *mut ngx_shm_zone_t, old: *mut c_void) -> ngx_int_t {
    let pool = (*zone).shm.addr as *mut ngx_slab_pool_t;
    let main = &mut *((*zone).data as *mut MainConf);
    ngx_shmtx_lock(&mut (*pool).mutex);
    let mut root = (*pool).data as *mut Root;
    if old.is_null() || root.is_null() {
        root = ngx_slab_alloc_locked(pool, size_of::<Root>()) as *mut Root;
        if root.is_null() {
            ngx_shmtx_unlock(&mut (*pool).mutex);
            return NGX_ERROR as ngx_int_t;
        }
        ptr::write_bytes(root, 0, 1);
        (*pool).data = root as *mut c_void;
    }
    let wanted: Vec<u64> = main.providers().iter().map(|p| identity(p)).collect();
    // Free the slots no provider of this configuration uses any more.
    for slot in (*root).slots.iter_mut() {
        if slot.identity != 0 && !wanted.contains(&slot.identity) {
            reset(pool, slot);
        }
    }
    let mut slots = Vec::with_capacity(wanted.len());
    for &id in &wanted {
        let found = (*root).slots.iter_mut().position(|s| s.identity == id);
        let index = found.or_else(|| (*root).slots.iter().position(|s| s.identity == 0));
        let Some(index) = index else {
            ngx_shmtx_unlock(&mut (*pool).mutex);
            return NGX_ERROR as ngx_int_t;
        };
        let slot = &mut (*root).slots[index];
        slot.identity = id;
        // A surviving slot keeps its keys, but no fetch of a previous worker is still running.
        slot.fetch_owner.store(0, Ordering::SeqCst);
        slots.push(slot as *mut Slot);
    }
    ngx_shmtx_unlock(&mut (*pool).mutex);
    main.set_slots(pool, slots);
    NGX_OK as ngx_int_t
}

/// # Safety
/// Called with the pool locked.
unsafe fn reset(pool: *mut ngx_slab_pool_t, slot: &mut Slot) {
    let guarded = &*slot.guarded.get();
    for p in [guarded.jwks, guarded.issuers] {
        if !p.is_null() {
            ngx_slab_free_locked(pool, p as *mut c_void);
        }
    }
    ptr::write_bytes(slot as *mut Slot, 0, 1);
}

/// A locked view of the zone's pool.
struct Locked(*mut ngx_slab_pool_t);

impl Locked {
    /// # Safety
    /// `pool` is the zone's slab pool.
    unsafe fn new(pool: *mut ngx_slab_pool_t) -> Locked {
        ngx_shmtx_lock(&mut (*pool).mutex);
        Locked(pool)
    }
}

impl Drop for Locked {
    fn drop(&mut self) {
        // SAFETY: locked in `new` by this process.
        unsafe { ngx_shmtx_unlock(&mut (*self.0).mutex) };
    }
}

/// What a worker copies out of the zone: the key set and issuers of one generation.
pub struct Snapshot {
    pub generation: u64,
    pub jwks: Vec<u8>,
    pub issuers: Vec<String>,
}

impl Slot {
    /// Copies the current key set out (under the lock: a memcpy, nothing more).
    ///
    /// # Safety
    /// `pool` is the zone's slab pool.
    pub unsafe fn snapshot(&self, pool: *mut ngx_slab_pool_t) -> Snapshot {
        let (generation, jwks, issuers) = {
            let _lock = Locked::new(pool);
            let g = &*self.guarded.get();
            let copy = |p: *mut u8, len: usize| {
                if p.is_null() {
                    Vec::new()
                } else {
                    core::slice::from_raw_parts(p, len).to_vec()
                }
            };
            (self.generation.load(Ordering::SeqCst), copy(g.jwks, g.jwks_len), copy(g.issuers, g.issuers_len))
        };
        let issuers = String::from_utf8_lossy(&issuers)
            .split('\n')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        Snapshot { generation, jwks, issuers }
    }

    /// Stores a new key set; `false` when the zone has no room (the old keys stay).
    ///
    /// # Safety
    /// `pool` is the zone's slab pool; `self` lives in it.
    pub unsafe fn store(&self, pool: *mut ngx_slab_pool_t, jwks: &[u8], issuers: &[String]) -> bool {
        let issuers = issuers.join("\n");
        let _lock = Locked::new(pool);
        let g = &mut *self.guarded.get();
        let new_jwks = ngx_slab_alloc_locked(pool, jwks.len().max(1)) as *mut u8;
        let new_issuers = ngx_slab_alloc_locked(pool, issuers.len().max(1)) as *mut u8;
        if new_jwks.is_null() || new_issuers.is_null() {
            for p in [new_jwks, new_issuers] {
                if !p.is_null() {
                    ngx_slab_free_locked(pool, p as *mut c_void);
                }
            }
            return false;
        }
        ptr::copy_nonoverlapping(jwks.as_ptr(), new_jwks, jwks.len());
        ptr::copy_nonoverlapping(issuers.as_ptr(), new_issuers, issuers.len());
        for p in [g.jwks, g.issuers] {
            if !p.is_null() {
                ngx_slab_free_locked(pool, p as *mut c_void);
            }
        }
        (g.jwks, g.jwks_len, g.issuers, g.issuers_len) = (new_jwks, jwks.len(), new_issuers, issuers.len());
        self.generation.fetch_add(1, Ordering::SeqCst);
        true
    }

    /// Records why the last fetch failed (kept short; never a secret: URLs and reasons only).
    ///
    /// # Safety
    /// `pool` is the zone's slab pool; `self` lives in it.
    pub unsafe fn set_error(&self, pool: *mut ngx_slab_pool_t, error: &str) {
        let _lock = Locked::new(pool);
        let g = &mut *self.guarded.get();
        let bytes = &error.as_bytes()[..error.len().min(ERROR_BYTES)];
        g.last_error[..bytes.len()].copy_from_slice(bytes);
        g.last_error_len = bytes.len();
    }

    /// # Safety
    /// `pool` is the zone's slab pool.
    pub unsafe fn last_error(&self, pool: *mut ngx_slab_pool_t) -> String {
        let _lock = Locked::new(pool);
        let g = &*self.guarded.get();
        String::from_utf8_lossy(&g.last_error[..g.last_error_len]).into_owned()
    }
}

/// Brings a worker's copy of a provider's keys up to the zone's generation.
///
/// # Safety
/// `pool` and `slot` belong to the live zone.
pub unsafe fn sync_keys(
    provider: &Provider,
    pool: *mut ngx_slab_pool_t,
    slot: &Slot,
    local: &core::cell::Cell<u64>,
) {
    let generation = slot.generation.load(Ordering::SeqCst);
    if generation == local.get() {
        return;
    }
    let snapshot = slot.snapshot(pool);
    // Stored only after it parsed in the worker that fetched it.
    if let Ok((keys, _)) = KeySet::from_jwks(&snapshot.jwks) {
        provider.update_keys(keys, snapshot.issuers);
    }
    local.set(snapshot.generation);
}
