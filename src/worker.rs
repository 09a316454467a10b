//! What one worker process knows besides its configuration: per provider, its slot in the shared
//! zone, the key set generation it judges with, and whether it has a fetch on the thread pool.
//! Built once per cycle on the worker's event loop thread, and only touched there.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use core::ffi::c_void;
use core::ptr::addr_of_mut;
use entra_core::discovery::{Discovery, Fetched};
use entra_core::keycache::KeyCache;
use entra_core::provider::{KeySource, KeyState};
use entra_core::revocation::SessionKeys;
use entra_core::schedule::Schedule;
use entra_core::session::Session;
use entra_core::store::Store;
use entra_core::{KeySet, Provider};

use ngx::ffi::{
    ngx_cycle, ngx_cycle_t, ngx_del_timer, ngx_http_request_t, ngx_log_t, ngx_pool_cleanup_add,
    ngx_post_event, ngx_posted_events, ngx_shm_zone_t,
};
use ngx::http::HttpModuleMainConf;

use crate::log::{debug, guard};
use crate::module::EntraModule;
use crate::zone::{identity, Counters, FleetProviderRef, FleetRef, GraphRef, RecordKind, RecordRef, SlotRef};

pub struct Worker {
    /// The cycle this was built for: a single-process nginx reloads in place.
    cycle: *const ngx_cycle_t,
    /// The shared zone (null without providers).
    pub zone: *mut ngx_shm_zone_t,
    /// In the order of the configuration's providers (locations hold the index).
    pub providers: Vec<ProviderState>,
    /// Sign-in callbacks parked for their code exchange.
    pub parked_callbacks: Cell<usize>,
    /// `entra_keys_cache_path`, for the fetches.
    pub keys_cache: Option<KeyCache>,
    /// Requests parked until a provider's keys or metadata come, or a Graph lookup ends (main
    /// requests; each leaves when its wait ends or its pool is destroyed).
    waiters: RefCell<Vec<(*mut ngx_http_request_t, Awaited)>>,
    /// The index of `$request_id`, for the denial line.
    pub request_id_index: Option<usize>,
    /// `entra_shared_store`'s client and the instance's part of the zone for it.
    pub fleet: Option<(Arc<Store>, FleetRef)>,
    /// This worker has a round trip with the store on the thread pool.
    pub round_in_flight: Cell<bool>,
}

/// Requests one worker keeps parked for keys, metadata or Graph lookups at most: beyond, 503 at
/// once, so that clients with made-up tokens cannot hold connections while no keys were ever
/// loaded.
pub const MAX_WAITERS: usize = 256;

/// What a parked request waits for: what wakes it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Awaited {
    /// Keys or metadata: any fetch of this worker's that ends.
    Keys,
    /// Graph's answer of this key: the lookup of it that ends.
    Lookup([u8; 32]),
}

pub struct ProviderState {
    /// Its place in `Worker::providers` (and the configuration's).
    pub index: usize,
    pub provider: Arc<Provider>,
    /// `zone::identity` of the provider: what its slot and its fetches are for.
    pub identity: u64,
    /// Its slot in the shared zone.
    pub slot: Option<SlotRef>,
    /// The key set generation this worker judges with (discovery providers).
    generation: Cell<u64>,
    /// This worker has a fetch of this provider's keys on the thread pool.
    pub in_flight: Cell<bool>,
    /// This worker fetched for itself once, its slot having been given away by a reload.
    pub fetched_alone: Cell<bool>,
    /// Its record of sessions issued and ended, for single sign-out (session providers).
    pub record: Option<RecordRef>,
    /// Its record of the sign-in attempts' states used (each once).
    pub states: Option<RecordRef>,
    /// Its code exchanges this worker has on the thread pool.
    pub exchanges: Arc<AtomicUsize>,
    /// Its Graph answers and the tenants' tokens (`groups_from_graph on`).
    pub graph: Option<GraphRef>,
    /// Its Graph lookups this worker has on the thread pool.
    pub lookups: Cell<usize>,
    /// This worker warned that its sessions have no `auth_time` (once: every request would).
    pub warned_no_signin_time: Cell<bool>,
    /// Its part of the fleet (`entra_shared_store`, session providers).
    pub fleet: Option<FleetProviderRef>,
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<Worker>>> = const { RefCell::new(None) };
}

/// This process's state for the running cycle, built on first use.
pub fn current() -> Option<Rc<Worker>> {
    // SAFETY: ngx_cycle is the running cycle of this process once nginx has started.
    let cycle = unsafe { ngx_cycle } as *const ngx_cycle_t;
    CURRENT.with(|current| {
        if let Some(worker) = current.borrow().as_ref().filter(|w| w.cycle == cycle) {
            return Some(worker.clone());
        }
        // SAFETY: as above.
        let main = EntraModule::main_conf(unsafe { &*cycle })?;
        let fleet = main
            .fleet
            .clone()
            .zip(main.fleet_providers())
            .and_then(|(store, (id, _))| FleetRef::find(main.zone.shm, id).map(|part| (store, part)));
        let providers = main
            .providers
            .iter()
            .enumerate()
            .map(|(index, provider)| ProviderState {
                index,
                provider: provider.clone(),
                identity: identity(provider),
                slot: SlotRef::find(main.zone.shm, provider),
                generation: Cell::new(0),
                in_flight: Cell::new(false),
                fetched_alone: Cell::new(false),
                record: RecordRef::find(main.zone.shm, RecordKind::Sessions, &provider.name),
                states: RecordRef::find(main.zone.shm, RecordKind::States, &provider.name),
                exchanges: Arc::new(AtomicUsize::new(0)),
                graph: provider.graph.as_ref().and_then(|_| GraphRef::find(main.zone.shm, &provider.name)),
                lookups: Cell::new(0),
                warned_no_signin_time: Cell::new(false),
                fleet: fleet.as_ref().and_then(|(_, part)| part.provider(main.zone.shm, &provider.name)),
            })
            .collect();
        let worker = Rc::new(Worker {
            cycle,
            zone: main.zone.shm,
            providers,
            parked_callbacks: Cell::new(0),
            keys_cache: main.keys_cache.clone(),
            waiters: RefCell::new(Vec::new()),
            request_id_index: main.request_id_index,
            fleet,
            round_in_flight: Cell::new(false),
        });
        // A new worker judges with the keys in the zone from its first request on (a reload
        // keeps them), even if a later reload gives its slots away before that request.
        for state in &worker.providers {
            state.sync_keys(cycle_log());
        }
        *current.borrow_mut() = Some(worker.clone());
        Some(worker)
    })
}

impl Worker {
    /// Whether another request may park.
    pub fn may_wait(&self) -> bool {
        self.waiters.borrow().len() < MAX_WAITERS
    }

    /// Counts `r` among the requests waiting for `awaited`, until [`Worker::stop_waiting`] or
    /// the end of the request.
    ///
    /// # Safety
    /// `r` is a valid main request.
    pub unsafe fn wait_for(&self, r: *mut ngx_http_request_t, awaited: Awaited) -> Result<(), ()> {
        // SAFETY: per the contract, the request's pool is valid.
        let cleanup = unsafe { ngx_pool_cleanup_add((*r).pool, 0) };
        // SAFETY: a fresh cleanup entry, or null.
        let Some(cleanup) = (unsafe { cleanup.as_mut() }) else { return Err(()) };
        cleanup.handler = Some(forget_waiter);
        cleanup.data = r as *mut c_void;
        self.waiters.borrow_mut().push((r, awaited));
        Ok(())
    }

    pub fn stop_waiting(&self, r: *mut ngx_http_request_t) {
        self.waiters.borrow_mut().retain(|&(w, _)| w != r);
    }

    /// Wakes this worker's requests waiting for `awaited`, once a fetch or a lookup has ended:
    /// each is judged again at once instead of at its next poll. (Other workers' keep polling:
    /// nginx has no wake-up across processes.) Only those: a lookup's end wakes its user's
    /// requests, not a hundred others.
    pub fn wake(&self, awaited: Awaited) {
        let waiters = self.waiters.borrow();
        let woken = waiters.iter().filter(|(_, a)| *a == awaited).map(|&(r, _)| r);
        if awaited == Awaited::Keys {
            debug!(cycle_log(), "waking {} requests waiting for keys", woken.clone().count());
        }
        for r in woken {
            // SAFETY: a waiter is a live request (its pool's cleanup removes it) parked by
            // `access::park`, whose connection's write event is delayed with a timer; nginx
            // deletes a closing connection's posted events.
            unsafe {
                let wev = (*(*r).connection).write;
                if (*wev).delayed() == 0 {
                    continue;
                }
                if (*wev).timer_set() != 0 {
                    ngx_del_timer(wev);
                }
                (*wev).set_delayed(0);
                ngx_post_event(wev, addr_of_mut!(ngx_posted_events));
            }
        }
    }
}

unsafe extern "C" fn forget_waiter(data: *mut c_void) {
    guard(cycle_log(), "a request's end", (), || {
        // Never builds the state: a request ending with an old cycle has nothing to forget.
        if let Some(worker) = CURRENT.with(|current| current.borrow().clone()) {
            worker.stop_waiting(data as *mut ngx_http_request_t);
        }
    })
}

/// The error log of the running cycle, for work that belongs to no request.
pub fn cycle_log() -> *mut ngx_log_t {
    ngx::log::ngx_cycle_log().as_ptr()
}

/// What a fetch of a provider's keys goes by: its slot, where the keys come from, and when.
pub struct KeyFetch<'a> {
    pub slot: &'a SlotRef,
    pub discovery: &'a Discovery,
    pub schedule: &'a Schedule,
}

impl ProviderState {
    /// Its slot and fetch settings, for a discovery provider that has a slot.
    pub fn key_fetch(&self) -> Option<KeyFetch<'_>> {
        let (Some(slot), Some((discovery, schedule))) = (&self.slot, self.discovery()) else { return None };
        Some(KeyFetch { slot, discovery, schedule })
    }

    /// Whether a fetch of its keys runs now: asked for or claimed in the zone, or this worker's
    /// own (after a reload gave the slot away, the only one).
    pub fn fetch_running(&self, now_ms: u64) -> bool {
        self.key_fetch().is_some_and(|f| f.slot.fetching(now_ms, f.discovery.timeout)) || self.in_flight.get()
    }

    /// Where and when its keys are fetched, for a discovery provider.
    pub fn discovery(&self) -> Option<(&Discovery, &Schedule)> {
        match &self.provider.source {
            KeySource::Discovery { discovery, schedule } => Some((discovery, schedule)),
            KeySource::File => None,
        }
    }

    pub fn counters(&self) -> Option<&Counters> {
        self.slot.as_ref()?.counters()
    }

    /// Brings this worker's keys up to the zone's generation (discovery providers; a key file's
    /// keys never come from the zone).
    pub fn sync_keys(&self, log: *mut ngx_log_t) {
        let Some(KeyFetch { slot, .. }) = self.key_fetch() else { return };
        let generation = slot.generation();
        if generation == 0 || generation == self.generation.get() {
            return;
        }
        let Some(snapshot) = slot.snapshot() else { return };
        // Stored only after it parsed in the worker that fetched it.
        if let Ok((keys, _)) = KeySet::from_jwks(&snapshot.jwks) {
            debug!(
                log,
                "provider \"{}\": key set generation {} from the shared zone ({} keys)",
                self.provider.name,
                snapshot.generation,
                keys.len()
            );
            let (issuers, endpoints) = (snapshot.issuers, snapshot.endpoints);
            self.provider.update_keys(KeyState { keys, issuers, endpoints });
        }
        self.generation.set(snapshot.generation);
    }

    /// Whether a logout ended `session` (named by `keys`): here, or with a fleet at any
    /// instance. Without a record (a worker that outlived the reload that gave it away) every
    /// session counts as ended: it fails closed.
    pub fn is_revoked(&self, session: &Session, keys: &SessionKeys) -> bool {
        self.record.as_ref().is_none_or(|record| record.is_revoked(session, keys.record))
            || self
                .fleet
                .as_ref()
                .is_some_and(|fleet| fleet.record.is_signed_out(&keys.fleet, session.signed_in))
    }

    /// Puts keys this worker fetched itself in force, as of `generation` of the zone (0: kept
    /// out of the zone).
    pub fn use_fetched(&self, fetched: Fetched, generation: u64) {
        let Fetched { keys, issuers, endpoints, .. } = fetched;
        self.provider.update_keys(KeyState { keys, issuers, endpoints });
        if generation != 0 {
            self.generation.set(generation);
        }
    }
}
