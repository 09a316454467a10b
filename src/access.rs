//! The access-phase check: find the bearer token, judge it once per request, apply the
//! location's requirements, and answer 401, 403 or 503 with the matching header. A request
//! whose token names a key not yet known waits (parked) while the keys are fetched.

use core::ptr;

use entra_core::{Denial, DenialClass, Provider};
use ngx::core::Status;
use ngx::ffi::{
    ngx_add_timer, ngx_array_push, ngx_conf_t, ngx_handle_write_event, ngx_http_block_reading,
    ngx_http_core_run_phases, ngx_http_finalize_request, ngx_http_handler_pt,
    ngx_http_phases_NGX_HTTP_ACCESS_PHASE, ngx_http_request_t, ngx_http_test_reading, ngx_int_t,
    ngx_list_push, ngx_pnalloc, ngx_table_elt_t, NGX_HTTP_FORBIDDEN, NGX_HTTP_INTERNAL_SERVER_ERROR,
    NGX_HTTP_SERVICE_UNAVAILABLE, NGX_HTTP_UNAUTHORIZED, NGX_OK,
};
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf, NgxHttpCoreModule, Request};

use crate::clock::{now, now_ms};
use crate::log::{debug, guard, request_log, test_panic};
use crate::outcome::{self, Outcome};
use crate::worker::{self, Worker};
use crate::{fetch, EntraModule};

const INTERNAL_ERROR: ngx_int_t = NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;

/// Registers the handler in nginx's access phase (postconfiguration).
pub fn register(cf: *mut ngx_conf_t) -> Result<(), &'static str> {
    // SAFETY: nginx calls postconfiguration with a valid cf of the http block.
    let cmcf = unsafe { NgxHttpCoreModule::main_conf_mut(&*cf) }.ok_or("no http core configuration")?;
    let phase = &mut cmcf.phases[ngx_http_phases_NGX_HTTP_ACCESS_PHASE as usize].handlers;
    // SAFETY: the phase's handler array is a valid nginx array of handler pointers.
    let slot = unsafe { ngx_array_push(phase) } as *mut ngx_http_handler_pt;
    if slot.is_null() {
        return Err("out of memory");
    }
    // SAFETY: a fresh element of the array.
    unsafe { *slot = Some(access_handler) };
    Ok(())
}

extern "C" fn access_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx calls phase handlers with a valid request.
    guard(unsafe { request_log(r) }, "the access check", INTERNAL_ERROR, || {
        test_panic("access");
        // SAFETY: as above.
        unsafe { check(r) }
    })
}

/// # Safety
/// `r` is a valid request.
unsafe fn check(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: per the contract.
    let request = unsafe { Request::from_ngx_http_request(r) };
    let Some((lcf, index)) = EntraModule::location_conf(request).and_then(|lcf| Some((lcf, lcf.provider?)))
    else {
        return Status::NGX_DECLINED.into();
    };
    let Some(worker) = worker::current() else { return INTERNAL_ERROR };
    let state = &worker.providers[index];
    let provider = &state.provider;
    // SAFETY: per the contract.
    let log = unsafe { request_log(r) };
    state.sync_keys(log);
    let counters = state.counters();

    // After an internal redirect the token was judged already; judge again only for another
    // provider, whose keys, audiences and issuers differ, or after waiting for keys.
    // SAFETY: per the contract.
    let previous = unsafe { outcome::get(r) };
    let previous_wait = previous.as_ref().and_then(|o| o.wait_until);
    let outcome = match previous {
        Some(o) if o.provider == index && o.wait_until.is_none() => o,
        _ => {
            // SAFETY: per the contract; the header, if any, is a valid table element.
            let header = unsafe { (*r).headers_in.authorization.as_ref() }.map(|h| h.value.as_bytes());
            let judgment = provider.judge(header, now());
            if let Some(counters) = counters {
                counters.judged(judgment.checked_for, judgment.verdict.is_ok());
            }
            debug!(
                log,
                "judging the token with provider \"{}\": {} ({})",
                provider.name,
                judgment.verdict.as_ref().map_or_else(|d| d.reason(), |_| "valid"),
                if judgment.checked_for.is_some() { "checked" } else { "cached" }
            );
            let mut verified = judgment.verdict;
            let mut wait_until = None;
            if matches!(verified, Err(Denial::UnknownKid)) {
                match wait_for_keys(&worker, index, previous_wait) {
                    KeyWait::Park(until) => wait_until = Some(until),
                    KeyWait::Unavailable => verified = Err(Denial::KeysUnavailable),
                    KeyWait::Judged => {}
                }
            }
            let judged = Outcome { provider: index, verified, denial: None, wait_until };
            // SAFETY: per the contract.
            match unsafe { outcome::store(r, judged) } {
                // SAFETY: as above.
                Some(o) if o.wait_until.is_some() => return unsafe { park(r) },
                Some(o) => o,
                None => return INTERNAL_ERROR,
            }
        }
    };
    let decision = match &outcome.verified {
        Ok(token) => lcf.policy.check(token),
        Err(denial) => Err(*denial),
    };
    outcome.denial = decision.err();
    if let Some(counters) = counters {
        counters.decided(decision);
    }
    match decision {
        Ok(()) => Status::NGX_OK.into(),
        Err(denial) => {
            crate::log::denial(log, provider, denial, outcome.verified.as_deref().ok());
            // SAFETY: per the contract.
            unsafe { deny(r, provider, denial) }
        }
    }
}

/// What a token with an unknown `kid` waits for, with a provider that fetches its keys.
enum KeyWait {
    /// Park the request until this time (ms): keys are being fetched.
    Park(u64),
    /// No keys were ever obtained, and the wait is over: 503.
    Unavailable,
    /// Nothing (more) to wait for: the `kid` is unknown.
    Judged,
}

fn wait_for_keys(worker: &Worker, index: usize, previous: Option<u64>) -> KeyWait {
    let state = &worker.providers[index];
    let (Some(slot), Some((discovery, _))) = (&state.slot, state.discovery()) else { return KeyWait::Judged };
    let now = now_ms();
    let deadline = previous.unwrap_or(now + discovery.timeout.as_millis() as u64);
    if state.provider.key_state().keys.is_empty() {
        // Before the first keys: wait for the fetch (starting it if this worker may), then 503.
        fetch::start_if_due(worker, index);
        return if now < deadline { KeyWait::Park(deadline) } else { KeyWait::Unavailable };
    }
    // This worker's own fetch counts too: after a reload gave the slot away, it is the only one.
    let fetching = match previous {
        None => fetch::refresh_for_unknown_kid(worker, index),
        Some(_) => slot.fetching(now, discovery.timeout) || state.in_flight.get(),
    };
    if fetching && now < deadline {
        KeyWait::Park(deadline)
    } else {
        KeyWait::Judged
    }
}

/// Poll interval of a parked request: it watches the shared zone, so a fetch made by another
/// worker wakes it too.
const PARK_POLL_MS: usize = 20;

/// Parks the request the way nginx's limit_req delays one: a timer on the connection's write
/// event (deleted with the connection if the client goes), and the access phase run again.
///
/// # Safety
/// `r` is a valid request.
unsafe fn park(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: per the contract; a request's connection has a write event.
    unsafe {
        let wev = (*(*r).connection).write;
        (*wev).set_delayed(1);
        ngx_add_timer(wev, PARK_POLL_MS);
        (*r).read_event_handler = Some(ngx_http_test_reading);
        (*r).write_event_handler = Some(resume);
    }
    Status::NGX_AGAIN.into()
}

unsafe extern "C" fn resume(r: *mut ngx_http_request_t) {
    // SAFETY: nginx calls the write event handler set by `park` with the parked request.
    guard(unsafe { request_log(r) }, "a parked request", (), || unsafe {
        let wev = (*(*r).connection).write;
        if (*wev).delayed() != 0 {
            // Woken before the timer: keep waiting.
            if ngx_handle_write_event(wev, 0) != NGX_OK as ngx_int_t {
                ngx_http_finalize_request(r, INTERNAL_ERROR);
            }
            return;
        }
        (*r).read_event_handler = Some(ngx_http_block_reading);
        (*r).write_event_handler = Some(ngx_http_core_run_phases);
        ngx_http_core_run_phases(r);
    })
}

/// The one place where a denial becomes a status and a challenge.
///
/// # Safety
/// `r` is a valid request.
unsafe fn deny(r: *mut ngx_http_request_t, provider: &Provider, denial: Denial) -> ngx_int_t {
    let realm = &provider.name;
    let challenge = |error: &str| {
        format!("Bearer realm=\"{realm}\", error=\"{error}\", error_description=\"{}\"", denial.reason())
    };
    let (status, header, value, www_authenticate) = match denial.class() {
        // Sign-in denials come from sessions, which no location uses yet: a bare challenge.
        DenialClass::Challenge | DenialClass::SignIn => {
            (NGX_HTTP_UNAUTHORIZED, WWW_AUTHENTICATE, format!("Bearer realm=\"{realm}\""), true)
        }
        DenialClass::InvalidToken => {
            (NGX_HTTP_UNAUTHORIZED, WWW_AUTHENTICATE, challenge("invalid_token"), true)
        }
        DenialClass::InsufficientScope => {
            (NGX_HTTP_FORBIDDEN, WWW_AUTHENTICATE, challenge("insufficient_scope"), true)
        }
        DenialClass::Unavailable => (NGX_HTTP_SERVICE_UNAVAILABLE, RETRY_AFTER, "5".to_owned(), false),
    };
    // SAFETY: per the contract.
    match unsafe { set_header(r, header, &value, www_authenticate) } {
        Some(()) => status as ngx_int_t,
        None => INTERNAL_ERROR,
    }
}

const WWW_AUTHENTICATE: &[u8] = b"WWW-Authenticate";
const RETRY_AFTER: &[u8] = b"Retry-After";

/// Adds a response header; `www_authenticate` also makes it the one nginx's `satisfy any`
/// hides when another access module lets the request in.
///
/// # Safety
/// `r` is a valid request.
unsafe fn set_header(
    r: *mut ngx_http_request_t,
    name: &'static [u8],
    value: &str,
    www_authenticate: bool,
) -> Option<()> {
    // SAFETY: per the contract: the request's header list and pool are valid.
    unsafe {
        let h = ngx_list_push(&mut (*r).headers_out.headers) as *mut ngx_table_elt_t;
        let data = ngx_pnalloc((*r).pool, value.len()) as *mut u8;
        if h.is_null() || data.is_null() {
            return None;
        }
        ptr::copy_nonoverlapping(value.as_ptr(), data, value.len());
        // Zeroed first: the element's fields differ between nginx versions (`next` since 1.23).
        ptr::write_bytes(h, 0, 1);
        (*h).hash = 1;
        (*h).key.len = name.len();
        (*h).key.data = name.as_ptr() as *mut u8;
        (*h).value.len = value.len();
        (*h).value.data = data;
        if www_authenticate {
            (*r).headers_out.www_authenticate = h;
        }
    }
    Some(())
}
