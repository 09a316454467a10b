//! The access-phase check: find the bearer token, judge it once per request, apply the
//! location's requirements, and answer 401, 403 or 503 with the matching header. A request
//! whose token names a key not yet known waits (parked) while the keys are fetched.

use std::rc::Rc;
use std::sync::Arc;

use entra_core::{Denial, DenialClass, Provider, VerifiedToken};
use ngx::core::Status;
use ngx::ffi::{
    ngx_add_timer, ngx_conf_t, ngx_handle_write_event, ngx_http_block_reading, ngx_http_core_run_phases,
    ngx_http_finalize_request, ngx_http_phases_NGX_HTTP_ACCESS_PHASE, ngx_http_request_t,
    ngx_http_test_reading, ngx_int_t, ngx_log_t, NGX_HTTP_FORBIDDEN, NGX_HTTP_SERVICE_UNAVAILABLE,
    NGX_HTTP_UNAUTHORIZED, NGX_OK,
};
use ngx::http::{HttpModuleLocationConf, Request};

use crate::clock::{now, now_ms};
use crate::conf::location::{AuthMode, LocationConf};
use crate::log::{debug, guard, request_log, test_panic};
use crate::outcome::{self, Outcome, Source};
use crate::request::Incoming;
use crate::response::{set_header, Known, INTERNAL_ERROR};
use crate::signin;
use crate::worker::{self, ProviderState, Worker};
use crate::{fetch, EntraModule};

/// Registers the handler in nginx's access phase (postconfiguration), to run after nginx's own
/// access modules: under `satisfy any` a request they let in never waits, parks or gets a 503
/// here, and under `satisfy all` an address they refuse costs no cryptography.
pub fn register(cf: *mut ngx_conf_t) -> Result<(), &'static str> {
    crate::add_phase_handler(cf, ngx_http_phases_NGX_HTTP_ACCESS_PHASE, crate::Order::Last, access_handler)
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
    let waiting = || unsafe { outcome::get(r) }.is_some_and(|o| o.wait_until.is_some());
    let waited = waiting();
    // SAFETY: per the contract.
    let rc = unsafe { judge(r) };
    if waited && !waiting() {
        if let Some(worker) = worker::current() {
            // SAFETY: per the contract.
            worker.stop_waiting(unsafe { (*r).main });
        }
    }
    rc
}

/// Where `entra_auth` is in force for `r`: its location configuration, the provider's index, the
/// worker and the request's log, with the worker's copy of the provider's keys brought up to
/// date. `Err` is the answer otherwise: declined where no `entra_auth` is in force.
///
/// # Safety
/// `r` is a valid request.
pub unsafe fn guarded<'a>(
    r: *mut ngx_http_request_t,
) -> Result<(&'a LocationConf, usize, Rc<Worker>, *mut ngx_log_t), ngx_int_t> {
    // SAFETY: per the contract.
    let request = unsafe { Request::from_ngx_http_request(r) };
    let Some((lcf, index)) = EntraModule::location_conf(request).and_then(|lcf| Some((lcf, lcf.provider?)))
    else {
        return Err(Status::NGX_DECLINED.into());
    };
    let worker = worker::current().ok_or(INTERNAL_ERROR)?;
    // SAFETY: per the contract.
    let log = unsafe { request_log(r) };
    worker.providers[index].sync_keys(log);
    Ok((lcf, index, worker, log))
}

/// # Safety
/// `r` is a valid request.
unsafe fn judge(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: per the contract.
    let (lcf, index, worker, log) = match unsafe { guarded(r) } {
        Ok(guarded) => guarded,
        Err(rc) => return rc,
    };
    let state = &worker.providers[index];
    let provider = &state.provider;
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
            let judged = if proves_with(lcf.mode, header) == Source::Session {
                // SAFETY: per the contract.
                let judged = signin::judge_session(&unsafe { Incoming::new(r) }, state, log);
                let cookies: Vec<_> =
                    judged.set_cookies.into_iter().map(|c| (&b"Set-Cookie"[..], c)).collect();
                // SAFETY: per the contract.
                if !cookies.is_empty() && unsafe { crate::response::set_headers(r, &cookies) }.is_none() {
                    return INTERNAL_ERROR;
                }
                if let Some(revalidate) = judged.revalidate.filter(|_| signin::can_start(state)) {
                    // SAFETY: per the contract.
                    return unsafe { signin::start(r, state, false, Some(revalidate)) };
                }
                Outcome {
                    verified: judged.verdict,
                    source: Source::Session,
                    ..Outcome::denied(index, Denial::NoSession)
                }
            } else {
                let mut verified = judge_token(state, header, log);
                let mut wait_until = None;
                if matches!(verified, Err(Denial::UnknownKid)) {
                    match wait_for_keys(&worker, index, previous_wait) {
                        KeyWait::Park(until) => wait_until = Some(until),
                        KeyWait::Unavailable => verified = Err(Denial::KeysUnavailable),
                        KeyWait::Judged => {}
                    }
                }
                Outcome { verified, wait_until, ..Outcome::denied(index, Denial::NoToken) }
            };
            // SAFETY: per the contract.
            match unsafe { outcome::store(r, judged) } {
                // SAFETY: as above.
                Some(o) if o.wait_until.is_some() => {
                    return unsafe { park_for_keys(r, &worker, previous_wait) }
                }
                Some(o) => o,
                None => return INTERNAL_ERROR,
            }
        }
    };
    let decision = match &outcome.verified {
        Ok(token) => lcf.policy.check(token),
        Err(denial) => Err(*denial),
    };
    // SAFETY: per the contract.
    let navigation = decision.is_err() && signin::is_navigation(&unsafe { Incoming::new(r) });
    let mut decision = decision;
    if let Err(denial) = decision {
        let sign_in =
            outcome.source == Source::Session && denial.class() == DenialClass::SignIn && navigation;
        if sign_in && !lcf.logout && !signin::can_start(state) {
            // Before the metadata was ever fetched: wait like a bearer request for its keys,
            // counted and logged once, when answered.
            match wait_for_metadata(&worker, index, previous_wait) {
                Some(until) => {
                    outcome.wait_until = Some(until);
                    // SAFETY: per the contract.
                    return unsafe { park_for_keys(r, &worker, previous_wait) };
                }
                None => decision = Err(Denial::KeysUnavailable),
            }
        }
    }
    outcome.denial = decision.err();
    if let Some(counters) = counters {
        counters.decided(decision);
    }
    let denial = match decision {
        Ok(()) => return Status::NGX_OK.into(),
        // `entra_logout` answers with or without a session.
        Err(_) if lcf.logout => return Status::NGX_OK.into(),
        Err(denial) => denial,
    };
    // SAFETY: per the contract.
    unsafe {
        crate::log::denial(r, worker.request_id_index, provider, denial, outcome.verified.as_deref().ok())
    };
    if outcome.source == Source::Session && denial.class() == DenialClass::SignIn && navigation {
        // SAFETY: per the contract.
        return unsafe { signin::start(r, state, denial == Denial::SessionInvalid, None) };
    }
    let forbidden = matches!(denial.class(), DenialClass::InsufficientScope | DenialClass::Forbidden);
    if outcome.source == Source::Session && forbidden && navigation {
        // SAFETY: per the contract.
        if let Some(answered) =
            unsafe { signin::forbidden_page(r, state, denial, outcome.verified.as_deref().ok()) }
        {
            return answered;
        }
    }
    // SAFETY: per the contract.
    unsafe { deny(r, provider, denial) }
}

/// What proves the identity for a location of `mode`: a bearer token, or (`session`, and `any`
/// without `Authorization`) the session.
pub fn proves_with(mode: AuthMode, header: Option<&[u8]>) -> Source {
    match mode {
        AuthMode::Bearer => Source::Bearer,
        AuthMode::Session => Source::Session,
        AuthMode::Any if header.is_some() => Source::Bearer,
        AuthMode::Any => Source::Session,
    }
}

/// Judges the bearer token in `header` (the `Authorization` value, if any), counted and logged.
pub fn judge_token(
    state: &ProviderState,
    header: Option<&[u8]>,
    log: *mut ngx_log_t,
) -> Result<Arc<VerifiedToken>, Denial> {
    let provider = &state.provider;
    let judgment = provider.judge(header, now());
    if let Some(counters) = state.counters() {
        counters.judged(judgment.checked_for, judgment.verdict.is_ok());
    }
    debug!(
        log,
        "judging the token with provider \"{}\": {} ({})",
        provider.name,
        judgment.verdict.as_ref().map_or_else(|d| d.reason(), |_| "valid"),
        if judgment.checked_for.is_some() { "checked" } else { "cached" }
    );
    judgment.verdict
}

/// Until when (ms) a navigation waits for the provider's first metadata, or `None` when the
/// wait is over.
fn wait_for_metadata(worker: &Worker, index: usize, previous: Option<u64>) -> Option<u64> {
    let (_, Some((discovery, _))) = (&worker.providers[index].slot, worker.providers[index].discovery())
    else {
        return None;
    };
    let now = now_ms();
    let deadline = previous.unwrap_or(now + discovery.timeout.as_millis() as u64);
    fetch::start_if_due(worker, index);
    let room = previous.is_some() || worker.may_wait_for_keys();
    (room && now < deadline && worker.providers[index].provider.key_state().keys.is_empty())
        .then_some(deadline)
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
    let room = previous.is_some() || worker.may_wait_for_keys();
    if state.provider.key_state().keys.is_empty() {
        // Before the first keys: wait for the fetch (starting it if this worker may), then 503.
        fetch::start_if_due(worker, index);
        return if room && now < deadline { KeyWait::Park(deadline) } else { KeyWait::Unavailable };
    }
    // This worker's own fetch counts too: after a reload gave the slot away, it is the only one.
    let fetching = match previous {
        None => fetch::refresh_for_unknown_kid(worker, index),
        Some(_) => slot.fetching(now, discovery.timeout) || state.in_flight.get(),
    };
    if fetching && room && now < deadline {
        KeyWait::Park(deadline)
    } else {
        KeyWait::Judged
    }
}

/// Parks a request waiting for keys or metadata, counted among the worker's waiters from its
/// first wait on.
///
/// # Safety
/// `r` is a valid request.
unsafe fn park_for_keys(
    r: *mut ngx_http_request_t,
    worker: &Worker,
    previous_wait: Option<u64>,
) -> ngx_int_t {
    // SAFETY: per the contract.
    if previous_wait.is_none() && unsafe { worker.wait_for_keys((*r).main) }.is_err() {
        return INTERNAL_ERROR;
    }
    // SAFETY: per the contract.
    unsafe { park(r) }
}

/// Poll interval of a parked request: it watches the shared zone, so a fetch made by another
/// worker wakes it too.
const PARK_POLL_MS: usize = 20;

/// Parks the request the way nginx's limit_req delays one: a timer on the connection's write
/// event (deleted with the connection if the client goes), and the access phase run again.
///
/// # Safety
/// `r` is a valid request.
pub unsafe fn park(r: *mut ngx_http_request_t) -> ngx_int_t {
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
pub unsafe fn deny(r: *mut ngx_http_request_t, provider: &Provider, denial: Denial) -> ngx_int_t {
    let realm = &provider.name;
    let challenge = |error: &str| {
        format!("Bearer realm=\"{realm}\", error=\"{error}\", error_description=\"{}\"", denial.reason())
    };
    let (status, header, value, www_authenticate) = match denial.class() {
        // A session's absence or end, for a request that is not a navigation: the page's
        // script can react to a bare challenge.
        DenialClass::Challenge | DenialClass::SignIn | DenialClass::Callback => {
            (NGX_HTTP_UNAUTHORIZED, WWW_AUTHENTICATE, format!("Bearer realm=\"{realm}\""), true)
        }
        DenialClass::InvalidToken => {
            (NGX_HTTP_UNAUTHORIZED, WWW_AUTHENTICATE, challenge("invalid_token"), true)
        }
        DenialClass::InsufficientScope => {
            (NGX_HTTP_FORBIDDEN, WWW_AUTHENTICATE, challenge("insufficient_scope"), true)
        }
        DenialClass::Unavailable => (NGX_HTTP_SERVICE_UNAVAILABLE, RETRY_AFTER, "5".to_owned(), false),
        DenialClass::Forbidden => (NGX_HTTP_FORBIDDEN, CACHE_CONTROL, "no-store".to_owned(), false),
    };
    let known = if www_authenticate { Known::WwwAuthenticate } else { Known::None };
    // SAFETY: per the contract.
    let set = unsafe { set_header(r, header, &value, known) };
    // A denial is never cached (a shared cache must not serve it to a request that would pass).
    // SAFETY: per the contract.
    let no_store = || unsafe { set_header(r, CACHE_CONTROL, "no-store", Known::None) };
    match set.and_then(|()| if header == CACHE_CONTROL { Some(()) } else { no_store() }) {
        Some(()) => status as ngx_int_t,
        None => INTERNAL_ERROR,
    }
}

const WWW_AUTHENTICATE: &[u8] = b"WWW-Authenticate";
const RETRY_AFTER: &[u8] = b"Retry-After";
const CACHE_CONTROL: &[u8] = b"Cache-Control";
