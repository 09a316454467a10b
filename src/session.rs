//! The browser session in the access phase: the session cookie judged (by one call into
//! entra-core, `Provider::judge_session`), and for a navigation without a session the redirect
//! that starts a sign-in, or for a signed-in user who may not pass, the page that says why.

use entra_core::oidc::{with_query, SELECT_ACCOUNT};
use entra_core::session::GroupsAnswered;
use entra_core::signin::{AttemptKind, Leftover, Redirect, SessionJudgment, SetCookie, StartError};
use entra_core::{Denial, Policy, VerifiedToken};
use ngx::core::Status;
use ngx::ffi::{ngx_http_request_t, ngx_int_t, ngx_log_t};
use ngx::http::{HttpModuleLocationConf, NgxHttpCoreModule};

use crate::clock::now;
use crate::log::info;
use crate::request::Incoming;
use crate::response::{escape, page, send, set_cookies, set_headers, Header, INTERNAL_ERROR};
use crate::worker::ProviderState;
use crate::zone::SignInEvent;

/// Whether a session due for revalidation is answered with its silent sign-in.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Revalidation {
    /// A main request's: the access phase redirects.
    Offered,
    /// A subrequest's, which never redirects: the session is judged as it is.
    Never,
}

/// Judges the request's session cookie for `state`'s provider, counted; a cookie that does not
/// open is logged once at `info` with the reason.
pub fn judge(
    req: &Incoming,
    state: &ProviderState,
    log: *mut ngx_log_t,
    revalidation: Revalidation,
) -> SessionJudgment {
    let provider = &state.provider;
    let request = req.session_request(now());
    let is_revoked = |session: &_, keys: &_| state.is_revoked(session, keys);
    let judgment = match revalidation {
        Revalidation::Offered => provider.judge_session(&request, is_revoked),
        Revalidation::Never => {
            provider.sign_in.judge_session(&request, || None, |s, keys| provider.admits(s, keys, is_revoked))
        }
    };
    if let Some(counters) = state.counters() {
        if let Some(opening) = judgment.opening {
            counters.session_opened(opening.took, opening.accepted);
        }
        if matches!(judgment.revalidation, Some(Ok(_))) {
            counters.sign_in(SignInEvent::Started);
        }
    }
    if let Some(fault) = judgment.fault {
        info!(log, "provider \"{}\": the session cookie counts as none: {}", provider.name, fault);
    }
    judgment
}

/// Re-seals the request's session with Graph's answer to its group overage (`groups` of the
/// set asked, `answered` says which and when), sent with the main request's answer.
///
/// # Safety
/// `r` is a valid request.
pub unsafe fn reseal_groups<'g>(
    r: *mut ngx_http_request_t,
    state: &ProviderState,
    answered: GroupsAnswered,
    groups: impl Iterator<Item = &'g str>,
) {
    // SAFETY: per the contract.
    let req = unsafe { Incoming::new(r) };
    let request = req.session_request(now());
    let cookies: Vec<_> =
        set_cookies(state.provider.sign_in.reseal_groups(&request, answered, groups)).collect();
    if !cookies.is_empty() {
        // SAFETY: per the contract: a request's main request is valid.
        unsafe { set_headers((*r).main, &cookies) };
    }
}

/// `true` once the provider's authorize endpoint is known.
pub fn can_start(state: &ProviderState) -> bool {
    state.provider.key_state().endpoints.authorize.is_some()
}

/// A new sign-in attempt for this request, counted; `None` before the authorize endpoint is
/// known, `Some(Err)` when it cannot start (logged). `return_url` defaults to the request's own.
fn attempt(
    req: &Incoming,
    state: &ProviderState,
    kind: AttemptKind,
    return_url: Option<String>,
    leftover: Leftover,
    log: *mut ngx_log_t,
) -> Option<Result<Redirect, StartError>> {
    let redirect =
        state.provider.sign_in_redirect(&req.session_request(now()), kind, return_url, leftover)?;
    match &redirect {
        Ok(_) => {
            if let Some(counters) = state.counters() {
                counters.sign_in(SignInEvent::Started);
            }
        }
        Err(e) => info!(log, "provider \"{}\": no sign-in can start: {}", state.provider.name, e),
    }
    Some(redirect)
}

/// The answer to a request whose sign-in cannot start: 400 when its `Host` header makes the
/// attempt too large for its cookie, else 500.
fn cannot_start(error: Option<StartError>) -> ngx_int_t {
    match error {
        Some(StartError::TooLarge) => ngx::ffi::NGX_HTTP_BAD_REQUEST as ngx_int_t,
        _ => INTERNAL_ERROR,
    }
}

/// The headers of a redirect that starts a sign-in, clearing `clear` too.
pub fn redirect_headers(redirect: Redirect, clear: Vec<SetCookie>) -> Vec<Header> {
    let mut headers = vec![(&b"Location"[..], redirect.location)];
    headers.extend(set_cookies(redirect.set_cookies).chain(set_cookies(clear)));
    headers
}

/// The headers of a redirect that starts a sign-in of `kind` returning to `return_url` (the
/// request's own by default), clearing the session cookies as `leftover` says and `clear`;
/// `Err` is the status to answer with when none can start.
pub fn sign_in_headers(
    req: &Incoming,
    state: &ProviderState,
    kind: AttemptKind,
    return_url: Option<String>,
    leftover: Leftover,
    clear: Vec<SetCookie>,
    log: *mut ngx_log_t,
) -> Result<Vec<Header>, ngx_int_t> {
    match attempt(req, state, kind, return_url, leftover, log) {
        Some(Ok(redirect)) => Ok(redirect_headers(redirect, clear)),
        Some(Err(e)) => Err(cannot_start(Some(e))),
        None => Err(cannot_start(None)),
    }
}

/// The 302 to the authorize endpoint from the access phase, with a new transaction cookie.
///
/// # Safety
/// `r` is a valid request.
pub unsafe fn start(r: *mut ngx_http_request_t, state: &ProviderState, leftover: Leftover) -> ngx_int_t {
    // SAFETY: per the contract.
    let (req, log) = unsafe { (Incoming::new(r), crate::log::request_log(r)) };
    match sign_in_headers(&req, state, AttemptKind::default(), None, leftover, Vec::new(), log) {
        // SAFETY: per the contract.
        Ok(headers) => unsafe { redirect(r, &headers) },
        Err(status) => status,
    }
}

/// Answers with the 302 of `headers` from a phase handler.
///
/// # Safety
/// `r` is a valid request.
pub unsafe fn redirect(r: *mut ngx_http_request_t, headers: &[Header]) -> ngx_int_t {
    // SAFETY: per the contract.
    match unsafe { set_headers(r, headers) } {
        Some(()) => 302,
        None => INTERNAL_ERROR,
    }
}

/// Whether nginx would answer `status` with an `error_page` of the location (or must, with
/// `satisfy any`, where another access module may still let the request in).
///
/// # Safety
/// `r` is a valid request.
unsafe fn nginx_answers(r: *mut ngx_http_request_t, status: u16) -> bool {
    // SAFETY: per the contract.
    let request = unsafe { ngx::http::Request::from_ngx_http_request(r) };
    let Some(clcf) = NgxHttpCoreModule::location_conf(request) else { return true };
    if clcf.satisfy != ngx::ffi::NGX_HTTP_SATISFY_ALL as ngx::ffi::ngx_uint_t {
        return true;
    }
    // SAFETY: nginx keeps the location's error pages in an array of ngx_http_err_page_t, or null.
    let pages = unsafe { clcf.error_pages.as_ref() }.map_or(&[][..], |a| unsafe {
        core::slice::from_raw_parts(a.elts as *const ngx::ffi::ngx_http_err_page_t, a.nelts)
    });
    pages.iter().any(|p| p.status == status as ngx_int_t)
}

/// A navigation refused with 403 for a signed-in user: a small page naming the reason and the
/// user, with a link to sign in as someone else (`prompt=select_account`, started only when
/// clicked) and one to sign out of Entra. `None` when the location's `error_page`
/// answers instead, or nginx must (`satisfy any`).
///
/// # Safety
/// `r` is a valid request in the access phase.
pub unsafe fn forbidden_page(
    r: *mut ngx_http_request_t,
    state: &ProviderState,
    denial: Denial,
    who: Option<&VerifiedToken>,
    policy: &Policy,
) -> Option<ngx_int_t> {
    // SAFETY: per the contract.
    if unsafe { nginx_answers(r, 403) } {
        return None;
    }
    // SAFETY: per the contract.
    let req = unsafe { Incoming::new(r) };
    let key_state = state.provider.key_state();
    let headers: Vec<Header> = Vec::new();
    let mut links = Vec::new();
    // The attempt starts only on a click (the callback path answers the link): a page viewed
    // sets no transaction cookie.
    if key_state.endpoints.authorize.is_some() {
        let sign_in = &state.provider.sign_in;
        let back = entra_core::oidc::return_url(req.unparsed_uri());
        let link = with_query(sign_in.redirect_uri.path(), &[(SELECT_ACCOUNT, &back)]);
        links.push(format!("<a href=\"{}\">Sign in as someone else</a>", escape(&link)));
    }
    if let Some(end_session) = key_state.endpoints.end_session.as_deref() {
        links.push(format!("<a href=\"{}\">Sign out</a>", escape(end_session)));
    }
    let user = who.and_then(|t| t.upn().or_else(|| t.str("name"))).unwrap_or("you");
    // Which requirement refused (values the configuration names, not the user's).
    let refusing = who.and_then(|t| policy.refusing(t, denial));
    let required =
        refusing.map(|r| format!("This page needs {}.", escape(&r.described()))).unwrap_or_default();
    let body = page(
        "Access denied",
        &[
            format!(
                "You are signed in as <b>{}</b>, but this page is not for you: {}.",
                escape(user),
                escape(&denial.to_string())
            ),
            format!("Reason: <code>{}</code>", denial.reason()),
            required,
            links.join(" &middot; "),
        ],
    );
    // SAFETY: per the contract.
    let sent = unsafe { send(r, 403, &headers, "text/html; charset=utf-8", &body) };
    // The answer is complete: finish the request here and stop the phases.
    // SAFETY: per the contract.
    unsafe { ngx::ffi::ngx_http_finalize_request(r, sent) };
    Some(Status::NGX_DONE.into())
}

/// Answers with a new sign-in of `kind` returning to `return_url` (the callback's restarts, and
/// the 403 page's "sign in as someone else" when clicked), clearing the session cookies as
/// `leftover` says and `clear`.
///
/// # Safety
/// `r` is a valid request.
pub unsafe fn restart(
    r: *mut ngx_http_request_t,
    state: &ProviderState,
    kind: AttemptKind,
    return_url: String,
    leftover: Leftover,
    clear: Vec<SetCookie>,
) -> ngx_int_t {
    // SAFETY: per the contract.
    let (req, log) = unsafe { (Incoming::new(r), crate::log::request_log(r)) };
    match sign_in_headers(&req, state, kind, Some(return_url), leftover, clear, log) {
        // SAFETY: per the contract.
        Ok(headers) => unsafe { crate::response::send(r, 302, &headers, "", "") },
        Err(status) => status,
    }
}
