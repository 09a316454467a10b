//! The access-phase check: find the bearer token, judge it once per request, apply the
//! location's requirements, and answer 401 or 403 with the matching `WWW-Authenticate`.

use core::ptr;
use core::sync::atomic::Ordering;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use entra_core::provider::KeySource;
use entra_core::token::bearer_token;
use entra_core::{Denial, DenialClass, Judged, Provider};
use ngx::core::Status;
use ngx::ffi::{
    ngx_add_timer, ngx_array_push, ngx_conf_t, ngx_current_msec, ngx_handle_write_event,
    ngx_http_block_reading, ngx_http_core_run_phases, ngx_http_finalize_request, ngx_http_handler_pt,
    ngx_http_phases_NGX_HTTP_ACCESS_PHASE, ngx_http_request_t, ngx_http_test_reading, ngx_int_t,
    ngx_list_push, ngx_pnalloc, ngx_table_elt_t, ngx_time, NGX_HTTP_FORBIDDEN,
    NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_HTTP_SERVICE_UNAVAILABLE, NGX_HTTP_UNAUTHORIZED, NGX_LOG_ALERT,
    NGX_OK,
};
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf, NgxHttpCoreModule, Request};
use ngx::{ngx_log_debug_http, ngx_log_error};

use crate::conf::MainConf;
use crate::fetch;
use crate::outcome::{self, Outcome};
use crate::state::{sync_keys, Counters};
use crate::{log, EntraModule};

/// Registers the handler in nginx's access phase.
///
/// # Safety
/// Called by nginx during configuration with a valid `cf`.
pub unsafe fn register(cf: *mut ngx_conf_t) -> ngx_int_t {
    let Some(cmcf) = NgxHttpCoreModule::main_conf_mut(&*cf) else {
        return Status::NGX_ERROR.into();
    };
    let slot = ngx_array_push(&mut cmcf.phases[ngx_http_phases_NGX_HTTP_ACCESS_PHASE as usize].handlers)
        as *mut ngx_http_handler_pt;
    if slot.is_null() {
        return Status::NGX_ERROR.into();
    }
    *slot = Some(access_handler);
    Status::NGX_OK.into()
}

/// # Safety
/// `r` must be a valid request.
unsafe fn authorization_header<'a>(r: *mut ngx_http_request_t) -> Option<&'a [u8]> {
    let h = (*r).headers_in.authorization;
    (!h.is_null()).then(|| (*h).value.as_bytes())
}

/// Judges the request's token: from the verified-token cache, else verified, timed and counted
/// in the provider's shared counters.
fn judge(provider: &Provider, header: Option<&[u8]>, counters: Option<&Counters>) -> Result<Judged, Denial> {
    let token = bearer_token(header.ok_or(Denial::NoToken)?)?;
    let now = ngx_time() as u64;
    if let Some(token) = provider.cached(token, now) {
        if let Some(c) = counters {
            c.cache_hits.fetch_add(1, Ordering::Relaxed);
        }
        return Ok(Judged { token, cached: true });
    }
    let started = Instant::now();
    let verified = provider.verify_and_remember(token, now);
    if let Some(c) = counters {
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        c.verify_nanoseconds.fetch_add(nanos, Ordering::Relaxed);
        if verified.is_ok() {
            c.cache_misses.fetch_add(1, Ordering::Relaxed);
        }
    }
    verified.map(|token| Judged { token, cached: false })
}

extern "C" fn access_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // A panic must never unwind into nginx: that would abort the worker.
    // SAFETY: nginx calls phase handlers with a valid request.
    catch_unwind(AssertUnwindSafe(|| unsafe { check(r) })).unwrap_or_else(|_| {
        // SAFETY: as above.
        unsafe {
            ngx_log_error!(
                NGX_LOG_ALERT,
                (*(*r).connection).log,
                "entra: internal error while checking access"
            );
        }
        NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t
    })
}

unsafe fn check(r: *mut ngx_http_request_t) -> ngx_int_t {
    let request = Request::from_ngx_http_request(r);
    let Some(lcf) = EntraModule::location_conf(request) else {
        return Status::NGX_DECLINED.into();
    };
    let Some(provider) = &lcf.provider else {
        return Status::NGX_DECLINED.into();
    };

    let main = EntraModule::main_conf(request).expect("http main conf");
    let shared = main.index_of(provider).and_then(|i| main.shared(i).map(|shared| (i, shared)));
    if let Some((i, (pool, slot))) = &shared {
        sync_keys(provider, *pool, slot, &main.local[*i].generation);
    }

    // After an internal redirect the token was judged already; judge again only for another
    // provider, whose keys, audiences and issuers differ, or after waiting for keys.
    let previous = outcome::get(r);
    let previous_wait = previous.as_ref().and_then(|o| o.wait_until);
    let outcome = match previous {
        Some(o) if Arc::ptr_eq(&o.provider, provider) && o.wait_until.is_none() => o,
        _ => {
            let counters = shared.as_ref().map(|(_, (_, slot))| &slot.counters);
            let judged = judge(provider, authorization_header(r), counters);
            ngx_log_debug_http!(
                request,
                "entra: judging the token with provider \"{}\": {}",
                provider.name,
                match &judged {
                    Ok(j) if j.cached => "cached",
                    Ok(_) => "verified",
                    Err(denial) => denial.reason(),
                }
            );
            let mut verified = judged.map(|j| j.token);
            let mut wait_until = None;
            if let (Err(Denial::UnknownKid), Some((i, _))) = (&verified, &shared) {
                match wait_for_keys(main, *i, provider, previous_wait) {
                    KeyWait::Park(until) => wait_until = Some(until),
                    KeyWait::Unavailable => verified = Err(Denial::KeysUnavailable),
                    KeyWait::Judged => {}
                }
            }
            let judged = Outcome { provider: provider.clone(), verified, denial: None, wait_until };
            match outcome::store(r, judged) {
                Some(o) if o.wait_until.is_some() => return park(r),
                Some(o) => o,
                None => return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t,
            }
        }
    };
    let decision = match &outcome.verified {
        Ok(token) => lcf.policy.check(token),
        Err(denial) => Err(*denial),
    };
    outcome.denial = decision.err();
    if let Some((_, (_, slot))) = &shared {
        let counter = match decision {
            Ok(()) => &slot.counters.allowed,
            Err(denial) => &slot.counters.denied[denial.index()],
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
    match decision {
        Ok(()) => Status::NGX_OK.into(),
        Err(denial) => {
            log::denial(r, provider, denial, outcome.verified.as_deref().ok());
            deny(r, provider, denial)
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

fn wait_for_keys(main: &MainConf, index: usize, provider: &Provider, previous: Option<u64>) -> KeyWait {
    let KeySource::Discovery { discovery, .. } = &provider.source else { return KeyWait::Judged };
    let Some((_, slot)) = main.shared(index) else { return KeyWait::Judged };
    // SAFETY: a plain read of nginx's cached monotonic time.
    let now = unsafe { ngx_current_msec } as u64;
    let deadline = previous.unwrap_or(now + discovery.timeout.as_millis() as u64);
    if provider.key_state().keys.is_empty() {
        // Before the first keys: wait for the fetch (starting it if this worker may), then 503.
        fetch::start_if_due(main, index);
        return if now < deadline { KeyWait::Park(deadline) } else { KeyWait::Unavailable };
    }
    let fetching = match previous {
        None => fetch::refresh_for_unknown_kid(main, index),
        Some(_) => slot.forced.load(Ordering::SeqCst) != 0 || fetch::in_progress(slot, discovery.timeout),
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
unsafe fn park(r: *mut ngx_http_request_t) -> ngx_int_t {
    let wev = (*(*r).connection).write;
    (*wev).set_delayed(1);
    ngx_add_timer(wev, PARK_POLL_MS);
    (*r).read_event_handler = Some(ngx_http_test_reading);
    (*r).write_event_handler = Some(resume);
    Status::NGX_AGAIN.into()
}

unsafe extern "C" fn resume(r: *mut ngx_http_request_t) {
    let wev = (*(*r).connection).write;
    if (*wev).delayed() != 0 {
        // Woken before the timer: keep waiting.
        if ngx_handle_write_event(wev, 0) != NGX_OK as ngx_int_t {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t);
        }
        return;
    }
    (*r).read_event_handler = Some(ngx_http_block_reading);
    (*r).write_event_handler = Some(ngx_http_core_run_phases);
    ngx_http_core_run_phases(r);
}

/// The one place where a denial becomes a status and a challenge.
unsafe fn deny(r: *mut ngx_http_request_t, provider: &Provider, denial: Denial) -> ngx_int_t {
    let realm = &provider.name;
    let (status, challenge) = match denial.class() {
        DenialClass::Challenge => (NGX_HTTP_UNAUTHORIZED, format!("Bearer realm=\"{realm}\"")),
        DenialClass::InvalidToken => (
            NGX_HTTP_UNAUTHORIZED,
            format!(
                "Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"{}\"",
                denial.reason()
            ),
        ),
        DenialClass::Unavailable => {
            return match set_header(r, RETRY_AFTER, "5", false) {
                Some(()) => NGX_HTTP_SERVICE_UNAVAILABLE as ngx_int_t,
                None => NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t,
            };
        }
        DenialClass::InsufficientScope => (
            NGX_HTTP_FORBIDDEN,
            format!(
                "Bearer realm=\"{realm}\", error=\"insufficient_scope\", error_description=\"{}\"",
                denial.reason()
            ),
        ),
    };
    if set_header(r, WWW_AUTHENTICATE, &challenge, true).is_none() {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    }
    status as ngx_int_t
}

const WWW_AUTHENTICATE: &[u8] = b"WWW-Authenticate";
const RETRY_AFTER: &[u8] = b"Retry-After";

/// Adds a response header; `www_authenticate` also makes it the one nginx's `satisfy any`
/// hides when another access module lets the request in.
unsafe fn set_header(
    r: *mut ngx_http_request_t,
    name: &'static [u8],
    value: &str,
    www_authenticate: bool,
) -> Option<()> {
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
    Some(())
}
