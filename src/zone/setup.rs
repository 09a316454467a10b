//! The zone's life: added while the configuration is parsed, made on first use, and its slots
//! given to the providers of each committed configuration (in the master).

use core::alloc::Layout;
use core::ffi::c_void;
use core::ptr;
use core::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;

use entra_core::discovery::Fetched;
use entra_core::revocation::Snapshot;
use entra_core::Provider;
use ngx::allocator::Allocator;
use ngx::core::SlabPool;
use ngx::ffi::{
    ngx_conf_t, ngx_int_t, ngx_log_t, ngx_module_t, ngx_shared_memory_add, ngx_shm_zone_t, ngx_str_t,
    NGX_ERROR, NGX_OK,
};
use ngx::http::HttpModule;

use super::fleet::{assign_fleet, make_fleet_part};
use super::graph::{assign_tables, make_part};
use super::record::{assign_records, WantedRecord};
use super::root::{
    fleet_part, free, graph_part, pool, root, sign_in_part, store_keys, Root, SignInShared, MAX_PROVIDERS,
};
use super::slot::identity;
use crate::log::{debug, guard, notice, warning};
use crate::module::EntraModule;

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

/// The zone's init handler: makes the slots on first use. A zone that survives a reload (same
/// name, size and module) keeps its memory, and its slots stay as they are until
/// [`assign_slots`] runs for a committed configuration.
///
/// # Safety
/// Called by nginx with a valid zone that [`add_zone`] marked as this module's (its `data` points
/// to the zone itself; nothing is read from it).
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
            pool.as_mut().data = root.as_ptr() as *mut c_void;
            debug!(log, "shared zone ready: {} provider slots", MAX_PROVIDERS);
        }
        NGX_OK as ngx_int_t
    })
}

/// Gives every provider of a committed configuration its slot (module `init_module`, in the
/// master): a provider whose identity has a slot keeps it, the others take a free one, and the
/// slots no provider uses any more are freed. Session providers get their records (`records`)
/// likewise, by name; a record made afresh starts from what was `kept` on disk for it; and Graph
/// providers their tables of answers (`graph_tables`: name and entries).
pub fn assign_slots(
    log: *mut ngx_log_t,
    providers: &[Arc<Provider>],
    cached: &[Option<Fetched>],
    (records, kept): (&[WantedRecord], &[Option<Snapshot>]),
    graph_tables: &[(String, u64)],
    fleet: Option<(u64, &[String])>,
    zone: *mut ngx_shm_zone_t,
) -> Result<(), String> {
    let Some(pool) = pool(zone) else { return Ok(()) };
    let root = root(&pool);
    if root.is_null() {
        return Err("the shared zone has no slots".into());
    }
    let locked = pool.lock();
    if let Some(part) = sign_in_part_for(&locked, &pool, root, !records.is_empty())? {
        assign_records(&locked, part, records, kept, crate::clock::epoch_ms())?;
    }
    let graph = match graph_part(&pool) {
        Some(part) => Some(part),
        None if !graph_tables.is_empty() => {
            let part = make_part(&locked)?;
            // SAFETY: the root lives as long as the zone; the part is fresh and zeroed.
            unsafe { (*root).graph.store(part, SeqCst) };
            Some(part)
        }
        None => None,
    };
    if let Some(part) = graph {
        // SAFETY: the part lives as long as the zone; the lock is held.
        assign_tables(&locked, unsafe { &mut *part }, graph_tables)?;
    }
    let fleet_part = match (fleet_part(&pool), fleet) {
        (Some(part), _) => Some(part),
        (None, Some(_)) => {
            let part = make_fleet_part(&locked)?;
            // SAFETY: the root lives as long as the zone; the part is fresh and zeroed.
            unsafe { (*root).fleet.store(part, SeqCst) };
            Some(part)
        }
        (None, None) => None,
    };
    if let Some(part) = fleet_part {
        let (store, providers) = fleet.unwrap_or((0, &[]));
        // SAFETY: the part lives as long as the zone; the lock is held.
        // The monotonic clock, the same in every process: workers compare it with their own.
        assign_fleet(&locked, unsafe { &*part }, store, providers, crate::clock::now_ms())?;
    }
    // SAFETY: the root holds MAX_PROVIDERS slots; the lock is held.
    let slot = |index: usize| unsafe { ptr::addr_of_mut!((*root).slots[index]) };
    // SAFETY: as above.
    let identity_of = |index: usize| unsafe { (*slot(index)).identity.load(SeqCst) };
    let wanted: Vec<u64> = providers.iter().map(|p| identity(p)).collect();
    for index in 0..MAX_PROVIDERS {
        let id = identity_of(index);
        if id != 0 && !wanted.contains(&id) {
            // SAFETY: as above; this process holds no reference into the slot's guarded part.
            unsafe { free(&locked, &*slot(index)) };
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

/// The zone's part for browser sign-in: made (zeroed, with a random seed) the first time a
/// configuration `wants` it; `None` while none ever did. The lock is held.
fn sign_in_part_for<'a>(
    locked: &ngx::core::slab::LockedSlabPool,
    pool: &'a SlabPool,
    root: *mut Root,
    wants: bool,
) -> Result<Option<&'a SignInShared>, String> {
    if let Some(part) = sign_in_part(pool) {
        return Ok(Some(part));
    }
    if !wants {
        return Ok(None);
    }
    let part = locked
        .allocate_zeroed(Layout::new::<SignInShared>())
        .map_err(|_| "no room in the shared zone for browser sign-in's records".to_owned())?;
    let part = part.as_ptr() as *mut SignInShared;
    let mut seed = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed)
        .map_err(|_| "no randomness for the callback buckets' seed".to_owned())?;
    // SAFETY: fresh zeroed memory of the part's layout (zero is a valid value of every field);
    // the root lives as long as the zone.
    unsafe {
        (*part).bucket_seed.store(u64::from_ne_bytes(seed), SeqCst);
        (*root).sign_in.store(part, SeqCst);
    }
    Ok(sign_in_part(pool))
}
