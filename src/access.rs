//! The access-phase check: find the bearer token, judge it once per request, apply the
//! location's requirements, and answer 401 or 403 with the matching `WWW-Authenticate`.

use core::ptr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use entra_core::token::bearer_token;
use entra_core::{Denial, DenialClass, Judged, Provider};
use ngx::core::Status;
use ngx::ffi::{
    ngx_array_push, ngx_conf_t, ngx_http_handler_pt, ngx_http_phases_NGX_HTTP_ACCESS_PHASE,
    ngx_http_request_t, ngx_int_t, ngx_list_push, ngx_pnalloc, ngx_table_elt_t, ngx_time, NGX_HTTP_FORBIDDEN,
    NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_HTTP_UNAUTHORIZED, NGX_LOG_ALERT,
};
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf, NgxHttpCoreModule, Request};
use ngx::{ngx_log_debug_http, ngx_log_error};

use crate::outcome::{self, Outcome};
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

fn judge(provider: &Provider, header: Option<&[u8]>) -> Result<Judged, Denial> {
    provider.judge(bearer_token(header.ok_or(Denial::NoToken)?)?, ngx_time() as u64)
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

    // After an internal redirect the token was judged already; judge again only for another
    // provider, whose keys, audiences and issuers differ.
    let outcome = match outcome::get(r) {
        Some(o) if Arc::ptr_eq(&o.provider, provider) => o,
        _ => {
            let judged = judge(provider, authorization_header(r));
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
            let judged =
                Outcome { provider: provider.clone(), verified: judged.map(|j| j.token), denial: None };
            match outcome::store(r, judged) {
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
    match decision {
        Ok(()) => Status::NGX_OK.into(),
        Err(denial) => {
            log::denial(r, provider, denial, outcome.verified.as_deref().ok());
            deny(r, provider, denial)
        }
    }
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
        DenialClass::InsufficientScope => (
            NGX_HTTP_FORBIDDEN,
            format!(
                "Bearer realm=\"{realm}\", error=\"insufficient_scope\", error_description=\"{}\"",
                denial.reason()
            ),
        ),
    };
    if set_www_authenticate(r, &challenge).is_none() {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    }
    status as ngx_int_t
}

unsafe fn set_www_authenticate(r: *mut ngx_http_request_t, value: &str) -> Option<()> {
    const NAME: &[u8] = b"WWW-Authenticate";
    let h = ngx_list_push(&mut (*r).headers_out.headers) as *mut ngx_table_elt_t;
    let data = ngx_pnalloc((*r).pool, value.len()) as *mut u8;
    if h.is_null() || data.is_null() {
        return None;
    }
    ptr::copy_nonoverlapping(value.as_ptr(), data, value.len());
    // Zeroed first: the element's fields differ between nginx versions (`next` since 1.23).
    ptr::write_bytes(h, 0, 1);
    (*h).hash = 1;
    (*h).key.len = NAME.len();
    (*h).key.data = NAME.as_ptr() as *mut u8;
    (*h).value.len = value.len();
    (*h).value.data = data;
    (*r).headers_out.www_authenticate = h;
    Some(())
}
