//! One worker's handle on its provider's slot: every read and write names the provider it is
//! for, and is refused under the lock once a reload gave the slot to another.

use core::ptr::NonNull;
use core::sync::atomic::Ordering::SeqCst;
use std::hash::{DefaultHasher, Hash, Hasher};

use entra_core::discovery::Endpoints;
use entra_core::provider::KeySource;
use entra_core::Provider;
use ngx::core::slab::LockedSlabPool;
use ngx::core::SlabPool;
use ngx::ffi::ngx_shm_zone_t;

use super::counters::{CounterValues, Counters};
use super::root::{copy_out, pool, root, Guarded, Slot};

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

/// One worker's handle on its provider's slot.
pub struct SlotRef {
    pub(super) pool: SlabPool,
    slot: NonNull<Slot>,
    pub(super) identity: u64,
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

    pub(super) fn slot(&self) -> &Slot {
        // SAFETY: see the Send impl.
        unsafe { self.slot.as_ref() }
    }

    /// Still this provider's (a reload may have given it to another).
    pub(super) fn is_mine(&self) -> bool {
        self.slot().identity.load(SeqCst) == self.identity
    }

    /// Runs `body` with the lock held, if the slot is still this provider's.
    pub(super) fn locked<R>(
        &self,
        body: impl FnOnce(&LockedSlabPool, &Slot, &mut Guarded) -> R,
    ) -> Option<R> {
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

    pub fn status(&self) -> Option<SlotStatus> {
        self.locked(|_, slot, g| SlotStatus {
            last_success: slot.last_success.load(SeqCst),
            next_refresh: slot.next_refresh.load(SeqCst),
            last_error: String::from_utf8_lossy(&g.last_error[..g.last_error_len]).into_owned(),
            counters: slot.counters.read(),
        })
    }
}
