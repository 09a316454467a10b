//! Subrequests into an `entra_auth` location (`auth_request`, SSI `include virtual`, `mirror`,
//! `slice`): nginx never runs the access phase for them, so they are judged here, in the rewrite
//! phase, before `return` or `rewrite` can answer. The main request's outcome is reused when the
//! same provider judged the same kind of proof; otherwise the main request's credentials are
//! judged by the same rules, with the main request's method. A subrequest never waits for keys
//! and never redirects: without a session, or with one due for revalidation, it gets a 401.

use std::sync::Arc;

use entra_core::{Denial, VerifiedToken};
use ngx::core::Status;
use ngx::ffi::{ngx_conf_t, ngx_http_phases_NGX_HTTP_REWRITE_PHASE, ngx_http_request_t, ngx_int_t};

use crate::access::{decide, judge_token, proves_with, settle, Asker, Protected};
use crate::denial::RETRY_SECONDS;
use crate::fetch;
use crate::log::{guard, request_log};
use crate::outcome::{self, Outcome, Source};
use crate::request::Incoming;
use crate::response::{set_cookies, set_headers, INTERNAL_ERROR};
use crate::session::{self, Revalidation};

/// Registers the handler first in nginx's rewrite phase (postconfiguration).
pub fn register(cf: *mut ngx_conf_t) -> Result<(), &'static str> {
    crate::module::add_phase_handler(
        cf,
        ngx_http_phases_NGX_HTTP_REWRITE_PHASE,
        crate::module::Order::First,
        rewrite_handler,
    )
}

extern "C" fn rewrite_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx calls phase handlers with a valid request.
    if unsafe { (*r).main } == r {
        return Status::NGX_DECLINED.into();
    }
    // SAFETY: as above.
    guard(unsafe { request_log(r) }, "a subrequest's check", INTERNAL_ERROR, || unsafe { check(r) })
}

/// # Safety
/// `r` is a valid subrequest.
unsafe fn check(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: per the contract.
    let p = match unsafe { Protected::of(r) } {
        Ok(p) => p,
        Err(rc) => return rc,
    };
    // A subrequest has its parent's request headers.
    // SAFETY: per the contract; the header, if any, is a valid table element.
    let header = unsafe { (*r).headers_in.authorization.as_ref() }.map(|h| h.value.as_bytes());
    let source = proves_with(p.lcf.mode, header);
    // SAFETY: per the contract; the outcome is the main request's.
    let main_outcome = unsafe { outcome::get(r) };
    let reusable = main_outcome.as_ref().filter(|o| {
        o.provider == p.index && o.source == source && o.wait_until.is_none() && o.pending.is_none()
    });
    let mut graph = reusable.and_then(|o| o.graph);
    let verified = match reusable {
        Some(o) => o.verified.clone(),
        None => {
            // SAFETY: per the contract.
            let judged = unsafe { judge(r, &p, source, header) };
            // Kept for the main request's variables and log when it has no outcome of its own
            // (`auth_request` from an unguarded location); never replacing one.
            if main_outcome.is_none() {
                let kept =
                    Outcome { verified: judged.clone(), source, ..Outcome::denied(p.index, Denial::NoToken) };
                // SAFETY: per the contract.
                if unsafe { outcome::store(r, kept) }.is_none() {
                    return INTERNAL_ERROR;
                }
            }
            judged
        }
    };
    // Never parked: a lookup Graph has not answered yet is started, and this answer is a 503.
    // SAFETY: per the contract.
    let decision = unsafe { decide(r, &p, &verified, &mut graph, None, false) }
        .unwrap_or(Err(Denial::GroupsUnavailable(RETRY_SECONDS)));
    // SAFETY: per the contract.
    unsafe { settle(r, &p, decision, &verified, source, Asker::Subrequest) }
}

/// Judges the main request's credentials for the subrequest's location, without waiting: what
/// the main request would have waited for is started.
///
/// # Safety
/// `r` is a valid subrequest.
unsafe fn judge(
    r: *mut ngx_http_request_t,
    p: &Protected,
    source: Source,
    header: Option<&[u8]>,
) -> Result<Arc<VerifiedToken>, Denial> {
    let state = p.state();
    match source {
        Source::Session => {
            // SAFETY: per the contract.
            let judged = session::judge(&unsafe { Incoming::new(r) }, state, p.log, Revalidation::Never);
            // A session re-sealed for its idle timeout reaches the browser with the main
            // request's answer (the subrequest's own headers are never sent).
            let cookies: Vec<_> = set_cookies(judged.set_cookies).collect();
            // SAFETY: per the contract: a subrequest's main request is valid.
            if !cookies.is_empty() && unsafe { set_headers((*r).main, &cookies) }.is_none() {
                return Err(Denial::SessionInvalid);
            }
            judged.verdict
        }
        Source::Bearer => match judge_token(state, header, p.log) {
            Err(Denial::UnknownKid) if state.discovery().is_some() => {
                if state.provider.key_state().keys.is_empty() {
                    fetch::start_if_due(&p.worker, p.index);
                    Err(Denial::KeysUnavailable)
                } else {
                    fetch::refresh_for_unknown_kid(&p.worker, p.index);
                    Err(Denial::UnknownKid)
                }
            }
            judged => judged,
        },
    }
}
