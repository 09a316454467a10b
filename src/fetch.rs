//! Keeping discovery providers' keys fresh without ever blocking a worker's event loop.
//!
//! The blocking fetch (`entra_core::discovery::fetch`, ureq) runs on nginx's thread pool; its
//! result is stored in the shared zone by a completion handler back on the event loop. Every
//! worker ticks once a second and starts a fetch when one is due ([`entra_core::schedule`]); the
//! slot's single-flight claim makes that one fetch for all workers. Nothing here runs in the
//! master or during `nginx -t`: the first tick is in a worker at start.

use core::ffi::c_void;
use core::mem::size_of;
use std::panic::{catch_unwind, AssertUnwindSafe};

use std::time::{SystemTime, UNIX_EPOCH};

use entra_core::discovery::{fetch, Discovery, FetchError, Fetched};
use entra_core::keycache::KeyCache;
use ngx::ffi::{
    ngx_add_timer, ngx_connection_t, ngx_cycle_t, ngx_event_t, ngx_exiting, ngx_int_t, ngx_pcalloc, ngx_pid,
    ngx_quit, ngx_random, ngx_terminate, NGX_ERROR, NGX_OK,
};

use crate::clock::{mono_s, now, now_ms};
use crate::log::{debug, error, guard, info, warning};
use crate::threads;
use crate::worker::{self, cycle_log, Awaited, KeyFetch, ProviderState, Worker};
use crate::zone::{Claim, StoreError};

const TICK_MS: usize = 1000;

/// The job a pool thread runs: only its own data, never an nginx structure.
struct Job {
    index: usize,
    /// The provider the job is for, checked again when it completes.
    identity: u64,
    discovery: Discovery,
    /// Where to keep what comes (`entra_keys_cache_path`): the cache, the provider's name and
    /// tenant.
    cache: Option<(KeyCache, String, String)>,
    result: Option<Result<Fetched, FetchError>>,
    /// Why the key cache could not be written.
    cache_error: Option<String>,
}

fn pid() -> u32 {
    // SAFETY: ngx_pid is set once at process start.
    unsafe { ngx_pid as u32 }
}

/// Starts this worker's refresh tick (module `init_process`), which also keeps the records of
/// sessions on disk.
///
/// # Safety
/// Called by nginx in a worker process with its cycle.
pub unsafe extern "C" fn init_process(cycle: *mut ngx_cycle_t) -> ngx_int_t {
    // SAFETY: nginx passes the running cycle.
    let log = unsafe { (*cycle).log };
    guard(log, "the worker's start", NGX_ERROR as ngx_int_t, || {
        let Some(worker) = worker::current() else { return NGX_OK as ngx_int_t };
        let keeps_records =
            worker.keys_cache.is_some() && worker.providers.iter().any(|p| p.record.is_some());
        let discovery = worker.providers.iter().any(|p| p.discovery().is_some());
        if !keeps_records && !discovery && worker.fleet.is_none() {
            return NGX_OK as ngx_int_t;
        }
        // SAFETY: the cycle's pool lives as long as the worker.
        let (tick, owner) = unsafe {
            (
                ngx_pcalloc((*cycle).pool, size_of::<ngx_event_t>()) as *mut ngx_event_t,
                ngx_pcalloc((*cycle).pool, size_of::<ngx_connection_t>()) as *mut ngx_connection_t,
            )
        };
        // SAFETY: zeroed structures from the pool, or null.
        let (Some(event), Some(owner)) = (unsafe { tick.as_mut() }, unsafe { owner.as_mut() }) else {
            return NGX_ERROR as ngx_int_t;
        };
        // nginx's debug log names a timer's connection by its fd: a timer of no connection gets
        // a stand-in with none, as nginx's own cache manager does.
        owner.fd = -1;
        event.data = owner as *mut ngx_connection_t as *mut c_void;
        event.handler = Some(on_tick);
        event.log = log;
        // A shutting-down worker does not wait for this timer.
        event.set_cancelable(1);
        // SAFETY: the event is valid and not yet armed.
        unsafe { ngx_add_timer(tick, 0) };
        NGX_OK as ngx_int_t
    })
}

unsafe extern "C" fn on_tick(tick: *mut ngx_event_t) {
    guard(cycle_log(), "the refresh timer", (), || {
        // SAFETY: plain reads of nginx's process flags.
        if unsafe { ngx_exiting != 0 || ngx_quit != 0 || ngx_terminate != 0 } {
            return;
        }
        if let Some(worker) = worker::current() {
            for index in 0..worker.providers.len() {
                start_if_due(&worker, index);
            }
            crate::persist::keep_changed(&worker);
            crate::fleet::tick(&worker);
        }
        // SAFETY: the event armed in init_process, fired and not armed again yet.
        unsafe { ngx_add_timer(tick, TICK_MS) };
    });
}

/// Asks for a refresh because a token names an unknown `kid` (at most once per
/// `refresh_on_unknown_kid`). Returns `true` when a fetch is now running or about to: the
/// request may wait for it.
pub fn refresh_for_unknown_kid(worker: &Worker, index: usize) -> bool {
    let state = &worker.providers[index];
    let Some(KeyFetch { slot, discovery, schedule }) = state.key_fetch() else { return false };
    if slot.ask_refresh(mono_s(), schedule) {
        start_if_due(worker, index);
    }
    slot.fetching(now_ms(), discovery.timeout)
}

/// Starts a fetch when one is due and no worker is fetching already.
pub fn start_if_due(worker: &Worker, index: usize) {
    let state = &worker.providers[index];
    let Some(KeyFetch { slot, discovery, .. }) = state.key_fetch() else { return };
    if state.in_flight.get() {
        return;
    }
    match slot.claim_fetch(pid(), mono_s(), now_ms(), discovery.timeout) {
        Claim::Taken => {}
        Claim::NotNow => return,
        // A worker that outlives a reload which gave its provider's slot away, before it ever
        // had keys, fetches them once for itself: its requests are still its provider's.
        Claim::Reassigned
            if state.provider.key_state().keys.is_empty() && !state.fetched_alone.replace(true) => {}
        Claim::Reassigned => return,
    }
    let provider = &state.provider;
    let cache =
        worker.keys_cache.clone().map(|c| (c, provider.name.clone(), provider.tenant.as_str().to_owned()));
    let job = Box::new(Job {
        index,
        identity: state.identity,
        discovery: discovery.clone(),
        cache,
        result: None,
        cache_error: None,
    });
    if threads::post(threads::DEFAULT_POOL, job) {
        state.in_flight.set(true);
        debug!(cycle_log(), "provider \"{}\": key fetch started", state.provider.name);
    } else {
        slot.release_claim(pid());
        error!(cycle_log(), "cannot start a key fetch: the thread pool is full or missing");
    }
}

impl threads::Job for Job {
    /// On a pool thread: the blocking fetch, touching only the job.
    fn run(&mut self) {
        let result = catch_unwind(AssertUnwindSafe(|| fetch(&self.discovery)));
        let result = result.unwrap_or_else(|_| {
            Err(FetchError::Transport {
                url: self.discovery.metadata_url.clone(),
                reason: "the fetch panicked".into(),
            })
        });
        if let (Ok(fetched), Some((cache, name, tenant))) = (&result, &self.cache) {
            // The pool thread's own clock: nginx's cached time belongs to the event loop.
            let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let written = cache.write(name, tenant, &self.discovery.metadata_url, fetched, now);
            self.cache_error = written.err().map(|e| format!("{}: {e}", cache.file(name).display()));
        }
        self.result = Some(result);
    }

    /// Back on the event loop: store what came, or keep the old keys and schedule a retry.
    fn done(self: Box<Self>) {
        let Some(worker) = worker::current() else { return };
        // A single-process nginx may have reloaded since: the job's index must still name it.
        let Some(state) = worker.providers.get(self.index).filter(|s| s.identity == self.identity) else {
            return;
        };
        state.in_flight.set(false);
        finish(state, *self);
        worker.wake(Awaited::Keys);
    }

    fn what(&self) -> &'static str {
        "a key fetch"
    }
}

fn finish(state: &ProviderState, job: Job) {
    let Some(KeyFetch { slot, schedule, .. }) = state.key_fetch() else { return };
    let name = &state.provider.name;
    let log = cycle_log();
    if let Some(why) = &job.cache_error {
        warning!(log, "provider \"{}\": cannot write the key cache {}", name, why);
    }
    let next = schedule.next_refresh(mono_s(), ngx_random() as u64);
    let stored = match job.result {
        Some(Ok(fetched)) => match slot.finish_with_keys(pid(), &fetched, now(), next) {
            Ok(generation) => Ok((fetched, generation)),
            // This worker outlived a reload that gave the slot to another provider: the keys
            // are still its own provider's, but not the slot's.
            Err(StoreError::Reassigned) => {
                info!(
                    log,
                    "provider \"{}\": key set fetched for this worker only: a reload gave its slot away",
                    name
                );
                Ok((fetched, 0))
            }
            Err(StoreError::NoRoom) => {
                Err("the shared zone is too small for the key set (see entra_shared_zone)".into())
            }
        },
        Some(Err(e)) => Err(e.to_string()),
        None => Err("the fetch did not run".to_owned()),
    };
    match stored {
        Ok((fetched, generation)) => {
            info!(log, "provider \"{}\": key set fetched ({} keys)", name, fetched.keys.len());
            for warning in &fetched.warnings {
                warning!(log, "provider \"{}\": {}", name, warning);
            }
            debug!(log, "provider \"{}\": key fetch done, generation {}", name, generation);
            state.use_fetched(fetched, generation);
        }
        Err(reason) => {
            let retry =
                slot.finish_with_error(pid(), &reason, mono_s()).map(|s| format!(", next try in {s}s"));
            // With no keys yet (a start while the IdP cannot be reached, and no cached keys),
            // nothing is kept: every token is refused with 503 until a fetch succeeds.
            let kept = if state.provider.key_state().keys.kids().next().is_some() {
                "keeping the keys in force"
            } else if job.cache.is_some() {
                "and there are no keys yet (none cached): tokens are refused with 503 until a fetch succeeds"
            } else {
                "and there are no keys yet: tokens are refused with 503 until a fetch succeeds \
                 (entra_keys_cache_path would let a restart start with the last keys)"
            };
            error!(
                log,
                "provider \"{}\": key fetch failed, {}{}: {}",
                name,
                kept,
                retry.unwrap_or_default(),
                reason
            );
        }
    }
}
