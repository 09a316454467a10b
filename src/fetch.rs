//! Keeping discovery providers' keys fresh without ever blocking a worker's event loop.
//!
//! The blocking fetch (`entra_core::discovery::fetch`, ureq) runs on nginx's thread pool; its
//! result is stored in the shared zone by a completion handler back on the event loop. Every
//! worker ticks once a second and starts a fetch when one is due (first keys, the refresh
//! interval, a refresh asked for by an unknown `kid`, a retry with backoff); the zone's
//! single-flight owner makes that one fetch for all workers. Nothing here runs in the master or
//! during `nginx -t`: the first tick is in a worker at start.

use core::ffi::c_void;
use core::mem::size_of;
use core::ptr;
use core::sync::atomic::Ordering;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use entra_core::discovery::{fetch, Discovery, FetchError, Fetched};
use entra_core::provider::KeySource;
use ngx::ffi::{
    ngx_add_timer, ngx_conf_t, ngx_current_msec, ngx_cycle, ngx_cycle_t, ngx_event_t, ngx_exiting, ngx_int_t,
    ngx_log_t, ngx_pcalloc, ngx_pid, ngx_quit, ngx_random, ngx_terminate, ngx_thread_pool_add,
    ngx_thread_pool_get, ngx_thread_pool_t, ngx_thread_task_alloc, ngx_thread_task_post, ngx_thread_task_t,
    ngx_time, NGX_LOG_ERR, NGX_LOG_INFO, NGX_LOG_WARN, NGX_OK,
};
use ngx::http::HttpModuleMainConf;
use ngx::ngx_log_error;

use crate::conf::MainConf;
use crate::state::{sync_keys, Slot};
use crate::EntraModule;

const TICK_MS: usize = 1000;
/// Longest wait between retries after failures (seconds).
const MAX_BACKOFF: u64 = 60;

/// Makes sure nginx's `default` thread pool exists (32 threads unless `thread_pool default ...;`
/// says otherwise): a pool is only created for a name the configuration mentioned.
///
/// # Safety
/// Called while the configuration is parsed.
pub unsafe fn add_thread_pool(cf: *mut ngx_conf_t) -> Result<(), String> {
    if ngx_thread_pool_add(cf, ptr::null_mut()).is_null() {
        return Err("cannot add nginx's default thread pool".into());
    }
    Ok(())
}

/// The job a pool thread runs: only its own data, never an nginx structure.
struct Job {
    index: usize,
    discovery: Discovery,
    result: Option<Result<Fetched, FetchError>>,
}

fn main_conf() -> Option<&'static MainConf> {
    // SAFETY: ngx_cycle is the running cycle in a worker.
    unsafe { EntraModule::main_conf(&*(ngx_cycle as *const ngx_cycle_t)) }
}

fn log() -> *mut ngx_log_t {
    // SAFETY: as above.
    unsafe { (*ngx_cycle).log }
}

fn discovery_of(main: &MainConf, index: usize) -> Option<(&Discovery, Duration, Duration)> {
    match &main.providers().get(index)?.source {
        KeySource::Discovery { discovery, refresh, refresh_on_unknown_kid } => {
            Some((discovery, *refresh, *refresh_on_unknown_kid))
        }
        KeySource::File => None,
    }
}

/// Starts the first tick of this worker (module `init_process`).
///
/// # Safety
/// Called by nginx in a worker process.
pub unsafe extern "C" fn init_process(cycle: *mut ngx_cycle_t) -> ngx_int_t {
    let Some(main) = EntraModule::main_conf(&*cycle) else { return NGX_OK as ngx_int_t };
    if !main.providers().iter().any(|p| matches!(p.source, KeySource::Discovery { .. })) {
        return NGX_OK as ngx_int_t;
    }
    let tick = ngx_pcalloc((*cycle).pool, size_of::<ngx_event_t>()) as *mut ngx_event_t;
    if tick.is_null() {
        return ngx::ffi::NGX_ERROR as ngx_int_t;
    }
    (*tick).handler = Some(on_tick);
    (*tick).log = (*cycle).log;
    // A shutting-down worker does not wait for this timer.
    (*tick).set_cancelable(1);
    ngx_add_timer(tick, 0);
    NGX_OK as ngx_int_t
}

/// Runs an event handler's body; a panic is logged, never unwound into nginx (that would abort
/// the worker).
fn guarded(what: &str, body: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(body)).is_err() {
        ngx_log_error!(ngx::ffi::NGX_LOG_ALERT, log(), "entra: internal error in {}", what);
    }
}

unsafe extern "C" fn on_tick(tick: *mut ngx_event_t) {
    // SAFETY: nginx calls the handler with the event armed in init_process.
    guarded("the refresh timer", || unsafe { tick_body(tick) });
}

unsafe extern "C" fn job_done(event: *mut ngx_event_t) {
    // SAFETY: nginx calls the handler with the task's event.
    guarded("a key fetch", || unsafe { job_done_body(event) });
}

unsafe fn tick_body(tick: *mut ngx_event_t) {
    if ngx_exiting != 0 || ngx_quit != 0 || ngx_terminate != 0 {
        return;
    }
    if let Some(main) = main_conf() {
        for index in 0..main.providers().len() {
            start_if_due(main, index);
        }
    }
    ngx_add_timer(tick, TICK_MS);
}

fn now_ms() -> u64 {
    // SAFETY: a plain read of nginx's cached monotonic time (CLOCK_MONOTONIC, shared by processes).
    unsafe { ngx_current_msec as u64 }
}

fn now() -> u64 {
    ngx_time() as u64
}

/// `true` while some worker fetches this provider's keys.
pub fn in_progress(slot: &Slot, timeout: Duration) -> bool {
    let owner = slot.fetch_owner.load(Ordering::SeqCst);
    // An owner that outlives twice the longest a fetch can take (three requests, each within the
    // timeout) died or was reloaded away: not a fetch any more.
    owner != 0 && now_ms().saturating_sub(slot.fetch_started_ms.load(Ordering::SeqCst)) < stale_after(timeout)
}

fn stale_after(timeout: Duration) -> u64 {
    2 * 3 * timeout.as_millis() as u64 + 1000
}

/// Asks for a refresh because a token names an unknown `kid`, at most once per
/// `refresh_on_unknown_kid`. Returns `true` when a fetch is now running or about to: the
/// request may wait for it.
pub fn refresh_for_unknown_kid(main: &MainConf, index: usize) -> bool {
    let (Some((_, slot)), Some((discovery, _, interval))) = (main.shared(index), discovery_of(main, index))
    else {
        return false;
    };
    let last = slot.last_forced.load(Ordering::SeqCst);
    let allowed = now() >= last.saturating_add(interval.as_secs())
        && slot.last_forced.compare_exchange(last, now(), Ordering::SeqCst, Ordering::SeqCst).is_ok();
    if allowed {
        slot.forced.store(1, Ordering::SeqCst);
        start_if_due(main, index);
    }
    slot.forced.load(Ordering::SeqCst) != 0 || in_progress(slot, discovery.timeout)
}

/// Starts a fetch when one is due and no worker is fetching already.
pub fn start_if_due(main: &MainConf, index: usize) {
    let (Some((_, slot)), Some((discovery, _, _))) = (main.shared(index), discovery_of(main, index)) else {
        return;
    };
    let local = &main.local[index];
    // First keys (next_refresh starts at 0), the refresh interval, a retry after its backoff, or
    // a refresh asked for by an unknown kid; never more often than that, however many requests
    // wait.
    let due = slot.forced.load(Ordering::SeqCst) != 0 || now() >= slot.next_refresh.load(Ordering::SeqCst);
    if !due || local.in_flight.get() {
        return;
    }
    // Single flight across workers: take the zone's owner field, or a stale one.
    // SAFETY: ngx_pid is set once at process start.
    let me = unsafe { ngx_pid } as u32;
    let owner = slot.fetch_owner.load(Ordering::SeqCst);
    if owner != 0 && in_progress(slot, discovery.timeout) {
        return;
    }
    if slot.fetch_owner.compare_exchange(owner, me, Ordering::SeqCst, Ordering::SeqCst).is_err() {
        return;
    }
    slot.fetch_started_ms.store(now_ms(), Ordering::SeqCst);
    let job = Box::new(Job { index, discovery: discovery.clone(), result: None });
    // SAFETY: runs on the event loop of a worker whose cycle is live.
    if unsafe { post(job) } {
        local.in_flight.set(true);
    } else {
        slot.fetch_owner.store(0, Ordering::SeqCst);
        ngx_log_error!(
            NGX_LOG_ERR,
            log(),
            "entra: cannot start a key fetch: the thread pool is full or missing"
        );
    }
}

/// # Safety
/// On the event loop of a worker.
unsafe fn post(job: Box<Job>) -> bool {
    let mut name = ngx::ffi::ngx_str_t { len: 7, data: b"default".as_ptr() as *mut u8 };
    let pool: *mut ngx_thread_pool_t = ngx_thread_pool_get(ngx_cycle as *mut ngx_cycle_t, &mut name);
    if pool.is_null() {
        return false;
    }
    // One task per fetch, from the cycle's pool: fetches are rare (hourly, or a few minutes
    // apart at most), and a task cannot be reused while a pool thread might hold it.
    let task: *mut ngx_thread_task_t = ngx_thread_task_alloc((*ngx_cycle).pool, size_of::<*mut Job>());
    if task.is_null() {
        return false;
    }
    let job = Box::into_raw(job);
    *((*task).ctx as *mut *mut Job) = job;
    (*task).handler = Some(run_job);
    (*task).event.handler = Some(job_done);
    (*task).event.data = task as *mut c_void;
    (*task).event.log = (*ngx_cycle).log;
    if ngx_thread_task_post(pool, task) != NGX_OK as ngx_int_t {
        drop(Box::from_raw(job));
        return false;
    }
    true
}

/// On a pool thread: the blocking fetch, touching only the job.
unsafe extern "C" fn run_job(data: *mut c_void, _log: *mut ngx_log_t) {
    let job = &mut **(data as *mut *mut Job);
    let result = catch_unwind(AssertUnwindSafe(|| fetch(&job.discovery)));
    job.result = Some(result.unwrap_or_else(|_| {
        Err(FetchError::Transport {
            url: job.discovery.metadata_url.clone(),
            reason: "the fetch panicked".into(),
        })
    }));
}

/// Back on the event loop: store what came, or keep the old keys and schedule a retry.
unsafe fn job_done_body(event: *mut ngx_event_t) {
    let task = (*event).data as *mut ngx_thread_task_t;
    let job = Box::from_raw(*((*task).ctx as *mut *mut Job));
    let Some(main) = main_conf() else { return };
    let index = job.index;
    main.local[index].in_flight.set(false);
    let (Some((pool, slot)), Some((_, refresh, _))) = (main.shared(index), discovery_of(main, index)) else {
        return;
    };
    let provider = &main.providers()[index];
    slot.counters.fetches.fetch_add(1, Ordering::SeqCst);
    let outcome = match job.result {
        Some(Ok(fetched)) if slot.store(pool, &fetched.jwks, &fetched.issuers) => Ok(fetched),
        Some(Ok(_)) => Err("the shared zone is too small for the key set (see entra_shared_zone)".to_owned()),
        Some(Err(e)) => Err(e.to_string()),
        None => Err("the fetch did not run".to_owned()),
    };
    match outcome {
        Ok(fetched) => {
            slot.counters.metadata_fetches.fetch_add(u64::from(fetched.metadata_requests), Ordering::SeqCst);
            slot.failures.store(0, Ordering::SeqCst);
            slot.last_success.store(now(), Ordering::SeqCst);
            // Up to a tenth earlier, so that workers of many servers do not refresh in step.
            let jitter = (ngx_random() as u64) % (refresh.as_secs() / 10 + 1);
            slot.next_refresh.store(now() + refresh.as_secs() - jitter, Ordering::SeqCst);
            ngx_log_error!(
                NGX_LOG_INFO,
                log(),
                "entra: provider \"{}\": key set fetched ({} keys)",
                provider.name,
                fetched.keys.len()
            );
            for warning in &fetched.warnings {
                ngx_log_error!(NGX_LOG_WARN, log(), "entra: provider \"{}\": {}", provider.name, warning);
            }
        }
        Err(reason) => {
            slot.counters.fetch_errors.fetch_add(1, Ordering::SeqCst);
            slot.set_error(pool, &reason);
            let failures = slot.failures.fetch_add(1, Ordering::SeqCst);
            let backoff = (1u64 << failures.min(6)).min(MAX_BACKOFF);
            slot.next_refresh.store(now() + backoff, Ordering::SeqCst);
            ngx_log_error!(
                NGX_LOG_ERR,
                log(),
                "entra: provider \"{}\": key fetch failed, keeping the keys in force, next try in {}s: {}",
                provider.name,
                backoff,
                reason
            );
        }
    }
    slot.forced.store(0, Ordering::SeqCst);
    slot.fetch_owner.store(0, Ordering::SeqCst);
    sync_keys(provider, pool, slot, &main.local[index].generation);
}
