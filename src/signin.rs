//! Browser sign-in inside the worker: the session cookie judged in the access phase, the
//! redirect to the authorize endpoint, the callback (answered in the server-rewrite phase, so no
//! location of the operator's can shadow it) with its code exchanged on the `entra_signin`
//! thread pool while the request is parked, and `entra_logout`. The rules are entra-core's
//! [`entra_core::signin`]; this file reads the request and makes the answers.

use core::ffi::{c_char, c_void};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use entra_core::browser::{is_valid_sid, sid_key};
use entra_core::exchange::{exchange, ExchangeError};
use entra_core::oidc::token_request;
use entra_core::provider::KeySource;
use entra_core::session::{Session, Standing};
use entra_core::signin::{AttemptKind, Matched, SetCookie, SignIn};
use entra_core::{Denial, DenialClass, VerifiedToken};
use ngx::core::{Status, NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::ffi::{
    ngx_command_t, ngx_conf_t, ngx_http_phases_NGX_HTTP_SERVER_REWRITE_PHASE, ngx_http_request_t, ngx_int_t,
    ngx_log_t,
};
use ngx::http::{HttpModuleLocationConf, HttpModuleServerConf, NgxHttpCoreModule};
use ring::rand::SystemRandom;

use crate::clock::{epoch_ms, mono_s, now, now_ms};
use crate::conf::LocationConf;
use crate::log::{debug, guard, info, request_log, WithoutRequestLine};
use crate::outcome::{self, Outcome, Source};
use crate::request::Incoming;
use crate::response::{escape, page, send, set_headers, INTERNAL_ERROR};
use crate::state::SignInEvent;
use crate::worker::{self, ProviderState};
use crate::{access, threads, EntraModule};

/// Callbacks one worker keeps parked for their code exchange at most.
const MAX_PARKED_CALLBACKS: usize = 64;

/// Cookies of the module's are `Secure` (and `__Host-` by default) when the connection is TLS or
/// the redirect URI says `https://` (TLS ends at a load balancer in front).
fn is_secure(req: &Incoming, sign_in: &SignIn) -> bool {
    req.is_tls() || sign_in.redirect_uri.is_https()
}

/// `scheme://host[:port]` of this request, as the browser sees it.
fn own_origin(req: &Incoming, sign_in: &SignIn) -> String {
    let scheme = if is_secure(req, sign_in) { "https" } else { "http" };
    format!("{scheme}://{}", req.host_header())
}

/// The origin part of an absolute URL.
fn origin_of(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    url[after_scheme..].find('/').map_or(url, |i| &url[..after_scheme + i])
}

/// What the session cookie says in the access phase, and the cookies to set with the answer.
pub struct Judged {
    pub verdict: Result<Arc<VerifiedToken>, Denial>,
    pub set_cookies: Vec<SetCookie>,
    /// A navigation with a session due for revalidation (`session_revalidate`).
    pub revalidate: Option<Revalidate>,
}

/// Judges the request's session cookie, opened or found opened in this worker's cache. A cookie
/// that does not open is no session (logged once at `info` with the reason); the deny-list and
/// the session's times are checked on every request; a session in use with an idle timeout is
/// re-sealed at most once a minute; a session from another site that would change something is
/// refused.
pub fn judge_session(req: &Incoming, state: &ProviderState, log: *mut ngx_log_t) -> Judged {
    let provider = &state.provider;
    let sign_in = &provider.sign_in;
    let secure = is_secure(req, sign_in);
    let jar = req.cookies();
    let mut set_cookies = Vec::new();
    let mut revalidate = None;
    let headers = req.browser();
    let verdict = (|| {
        let sealed = sign_in.session_cookie(&jar, secure).ok_or(Denial::NoSession)?;
        let now = now();
        let (opened, took) = match sealed {
            Ok(sealed) => sign_in.open_cached(&provider.name, &sealed, secure, now),
            Err(fault) => (Err(fault), Some(Duration::ZERO)),
        };
        if let Some(counters) = state.counters() {
            counters.session_opened(took, opened.is_ok());
        }
        let opened = opened.map_err(|fault| {
            info!(log, "provider \"{}\": the session cookie counts as none: {}", provider.name, fault);
            Denial::SessionInvalid
        })?;
        let session = &opened.session;
        if state.is_revoked(&session.sid, session.signed_in) {
            return Err(Denial::SessionRevoked);
        }
        match session.standing(now, sign_in.lifetimes, headers.is_navigation())? {
            Standing::Valid { touch: true } => {
                let touched = Session { last_used: now, ..session.clone() };
                if let Ok(cookies) = sign_in.session_cookies(&provider.name, &touched, &jar, secure) {
                    set_cookies = cookies;
                }
            }
            Standing::Revalidate => {
                revalidate = Some(Revalidate {
                    login_hint: session.login_hint.clone(),
                    oid: session.oid.clone(),
                    tid: session.tid.clone(),
                })
            }
            Standing::Valid { touch: false } => {}
        }
        if headers.may_change_something() && headers.is_cross_origin(&own_origin(req, sign_in)) {
            return Err(Denial::CrossOrigin);
        }
        Ok(opened.identity.clone())
    })();
    Judged { verdict, set_cookies, revalidate }
}

/// Whether a denied request in a session mode is sent to sign in: a top-level navigation.
pub fn is_navigation(req: &Incoming) -> bool {
    req.browser().is_navigation()
}

/// `true` once the provider's authorize endpoint is known.
pub fn can_start(state: &ProviderState) -> bool {
    state.provider.key_state().endpoints.authorize.is_some()
}

/// A new sign-in attempt for this request: the authorize URL and its transaction cookie, or
/// `None` before the authorize endpoint is known. `return_url` defaults to the request's own.
fn new_attempt(
    req: &Incoming,
    state: &ProviderState,
    return_url: Option<String>,
    kind: AttemptKind,
) -> Option<entra_core::signin::Start> {
    let provider = &state.provider;
    let sign_in = &provider.sign_in;
    let endpoint = provider.key_state().endpoints.authorize.clone()?;
    let secure = is_secure(req, sign_in);
    let redirect_uri =
        sign_in.redirect_uri.resolve(if secure { "https" } else { "http" }, req.host_header(), req.host());
    let jar = req.cookies();
    let started = sign_in
        .start(
            &provider.name,
            &provider.client_id,
            &endpoint,
            redirect_uri,
            return_url.unwrap_or_else(|| entra_core::oidc::return_url(req.unparsed_uri())),
            &jar,
            secure,
            kind,
            now(),
            &SystemRandom::new(),
        )
        .ok()?;
    if let Some(counters) = state.counters() {
        counters.sign_in(SignInEvent::Started);
    }
    Some(started)
}

/// The headers of a redirect that starts a sign-in, clearing `clear` too.
fn redirect_to_sign_in(
    req: &Incoming,
    state: &ProviderState,
    return_url: Option<String>,
    kind: AttemptKind,
    clear: Vec<SetCookie>,
) -> Option<Vec<(&'static [u8], String)>> {
    let started = new_attempt(req, state, return_url, kind)?;
    let mut headers = vec![(&b"Location"[..], started.location), (&b"Set-Cookie"[..], started.cookie)];
    headers.extend(clear.into_iter().map(|c| (&b"Set-Cookie"[..], c)));
    Some(headers)
}

/// The session cookies (not the transactions) of the request, cleared.
fn clear_session(req: &Incoming, sign_in: &SignIn) -> Vec<SetCookie> {
    sign_in.clear_session(&req.cookies(), is_secure(req, sign_in))
}

/// The 302 to the authorize endpoint from the access phase, with a new transaction cookie;
/// `clear` says to clear the session cookies that did not open. A revalidation is silent
/// (`prompt=none`, with the session's `login_hint`).
///
/// # Safety
/// `r` is a valid request.
pub unsafe fn start(
    r: *mut ngx_http_request_t,
    state: &ProviderState,
    clear: bool,
    revalidate: Option<Revalidate>,
) -> ngx_int_t {
    // SAFETY: per the contract.
    let req = unsafe { Incoming::new(r) };
    let cleared = if clear { clear_session(&req, &state.provider.sign_in) } else { Vec::new() };
    let kind = match &revalidate {
        Some(r) => AttemptKind {
            extra: vec![("prompt", "none"), ("login_hint", &r.login_hint)],
            revalidating: Some((r.oid.clone(), r.tid.clone())),
        },
        None => AttemptKind::default(),
    };
    let Some(headers) = redirect_to_sign_in(&req, state, None, kind, cleared) else { return INTERNAL_ERROR };
    // SAFETY: per the contract.
    match unsafe { set_headers(r, &headers) } {
        Some(()) => 302,
        None => INTERNAL_ERROR,
    }
}

/// A session due for revalidation with Entra.
pub struct Revalidate {
    pub login_hint: String,
    pub oid: String,
    pub tid: String,
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
/// user, with a link to sign in as someone else (`prompt=select_account`, its transaction
/// cookie set here) and one to sign out of Entra. `None` when the location's `error_page`
/// answers instead, or nginx must (`satisfy any`).
///
/// # Safety
/// `r` is a valid request in the access phase.
pub unsafe fn forbidden_page(
    r: *mut ngx_http_request_t,
    state: &ProviderState,
    denial: Denial,
    who: Option<&VerifiedToken>,
) -> Option<ngx_int_t> {
    // SAFETY: per the contract.
    if unsafe { nginx_answers(r, 403) } {
        return None;
    }
    // SAFETY: per the contract.
    let req = unsafe { Incoming::new(r) };
    let provider = &state.provider;
    let key_state = provider.key_state();
    let mut headers: Vec<(&'static [u8], String)> = Vec::new();
    let mut links = Vec::new();
    let kind = AttemptKind { extra: vec![("prompt", "select_account")], revalidating: None };
    if let Some(again) = new_attempt(&req, state, None, kind) {
        links.push(format!("<a href=\"{}\">Sign in as someone else</a>", escape(&again.location)));
        headers.push((b"Set-Cookie", again.cookie));
    }
    if let Some(end_session) = key_state.endpoints.end_session.as_deref() {
        links.push(format!("<a href=\"{}\">Sign out</a>", escape(end_session)));
    }
    let user = who.and_then(|t| t.upn().or_else(|| t.str("name"))).unwrap_or("you");
    let body = page(
        "Access denied",
        &[
            format!(
                "You are signed in as <b>{}</b>, but this page is not for you: {}.",
                escape(user),
                escape(&denial.to_string())
            ),
            format!("Reason: <code>{}</code>", denial.reason()),
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

/// Registers the callback handler in nginx's server-rewrite phase (postconfiguration).
pub fn register(cf: *mut ngx_conf_t) -> Result<(), &'static str> {
    crate::add_phase_handler(
        cf,
        ngx_http_phases_NGX_HTTP_SERVER_REWRITE_PHASE,
        crate::Order::First,
        server_rewrite_handler,
    )
}

extern "C" fn server_rewrite_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // A subrequest to the callback or logout path is no browser's: its location answers.
    // SAFETY: nginx calls phase handlers with a valid request.
    if unsafe { (*r).main } != r {
        return Status::NGX_DECLINED.into();
    }
    // SAFETY: as above.
    guard(unsafe { request_log(r) }, "the sign-in callback", INTERNAL_ERROR, || {
        // SAFETY: as above.
        let (req, request) = unsafe { (Incoming::new(r), ngx::http::Request::from_ngx_http_request(r)) };
        let Some(server) = EntraModule::server_conf(request) else { return Status::NGX_DECLINED.into() };
        let Some(worker) = worker::current() else { return INTERNAL_ERROR };
        let uri = req.uri();
        for used in &server.sign_in {
            let Some(state) = worker.providers.get(used.provider) else { continue };
            if uri == state.provider.sign_in.redirect_uri.path().as_bytes() {
                // SAFETY: as above.
                return unsafe { callback(r, &worker, used.provider) };
            }
            if uri == state.provider.sign_in.frontchannel_logout_uri.as_bytes() {
                // SAFETY: as above.
                return unsafe { frontchannel_logout(r, state) };
            }
        }
        Status::NGX_DECLINED.into()
    })
}

/// A code exchange on its way: shared by the parked request and the pool thread.
pub struct Pending {
    result: Arc<Mutex<Option<Result<String, ExchangeError>>>>,
    matched: Matched,
    /// When the request stops waiting (ms).
    deadline: u64,
    /// The ID token named a key this worker does not have, and a refresh was asked for.
    waiting_for_keys: bool,
    _parked: ParkedCallback,
}

/// One of the worker's parked callbacks, counted while it lives.
struct ParkedCallback;

impl ParkedCallback {
    fn new(worker: &worker::Worker) -> ParkedCallback {
        worker.parked_callbacks.set(worker.parked_callbacks.get() + 1);
        ParkedCallback
    }
}

impl Drop for ParkedCallback {
    fn drop(&mut self) {
        if let Some(worker) = worker::current() {
            worker.parked_callbacks.set(worker.parked_callbacks.get().saturating_sub(1));
        }
    }
}

/// The exchange as a pool job: its own data only.
struct ExchangeJob {
    endpoint: String,
    body: String,
    ca_file: Option<std::path::PathBuf>,
    timeout: Duration,
    result: Arc<Mutex<Option<Result<String, ExchangeError>>>>,
}

impl threads::Job for ExchangeJob {
    fn run(&mut self) {
        let answer = exchange(&self.endpoint, &self.body, &self.ca_file, self.timeout);
        *self.result.lock().unwrap_or_else(|p| p.into_inner()) = Some(answer);
    }

    fn done(self: Box<Self>) {
        // The parked request polls the result; a job outliving its request just ends here.
    }

    fn what(&self) -> &'static str {
        "a code exchange"
    }
}

/// The redirect URI's callback: match it to its transaction, exchange the code off the event
/// loop, validate the ID token and set the session.
///
/// # Safety
/// `r` is a valid request.
unsafe fn callback(r: *mut ngx_http_request_t, worker: &worker::Worker, index: usize) -> ngx_int_t {
    let state = &worker.providers[index];
    let provider = &state.provider;
    let sign_in = &provider.sign_in;
    // SAFETY: per the contract.
    let (req, log) = unsafe { (Incoming::new(r), request_log(r)) };
    // SAFETY: the request's log outlives this call.
    let _no_code_in_the_log = unsafe { WithoutRequestLine::new(log) };
    // The endpoints may have come to the zone through another worker's fetch.
    state.sync_keys(log);
    let secure = is_secure(&req, sign_in);
    let jar = req.cookies();
    let counters = state.counters();
    // SAFETY: per the contract.
    if let Some(mut pending) = unsafe { outcome::get(r) }.and_then(|o| o.pending.take()) {
        let answer = pending.result.lock().unwrap_or_else(|p| p.into_inner()).take();
        return match answer {
            None if now_ms() < pending.deadline => {
                // SAFETY: per the contract.
                unsafe { wait(r, pending) }
            }
            None => {
                // SAFETY: per the contract.
                unsafe {
                    fail(
                        r,
                        state,
                        Denial::IdpUnavailable,
                        "the code exchange took too long",
                        vec![pending.matched.clear],
                    )
                }
            }
            Some(Err(e)) => {
                let denial = match e {
                    ExchangeError::Rejected { .. } => Denial::CodeRejected,
                    _ => Denial::IdpUnavailable,
                };
                // SAFETY: per the contract.
                unsafe { fail(r, state, denial, &e.to_string(), vec![pending.matched.clear]) }
            }
            Some(Ok(id_token)) => {
                state.sync_keys(log);
                let now = now();
                let verified =
                    provider.verify_id_token(&id_token, now, &pending.matched.transaction.attempt.nonce);
                if verified.as_ref().is_err_and(|d| *d == Denial::UnknownKid) && now_ms() < pending.deadline {
                    // A key rotated since the last fetch: refresh (once) and judge again.
                    let fetching = if pending.waiting_for_keys {
                        state.slot.as_ref().is_some_and(|slot| {
                            state.discovery().is_some_and(|(d, _)| slot.fetching(now_ms(), d.timeout))
                        }) || state.in_flight.get()
                    } else {
                        pending.waiting_for_keys = true;
                        crate::fetch::refresh_for_unknown_kid(worker, index)
                    };
                    if fetching {
                        *pending.result.lock().unwrap_or_else(|p| p.into_inner()) = Some(Ok(id_token));
                        // SAFETY: per the contract.
                        return unsafe { wait(r, pending) };
                    }
                }
                let Matched { transaction, clear, .. } = pending.matched;
                let token = match verified {
                    Ok(token) => token,
                    // SAFETY: per the contract.
                    Err(denial) => {
                        return unsafe { fail(r, state, denial, "the ID token is refused", vec![clear]) }
                    }
                };
                let session = Session::from_id_token(&token, epoch_ms(), sign_in.lifetime, &sign_in.claims);
                if let Some((oid, tid)) = &transaction.revalidating {
                    if (oid, tid) != (&session.oid, &session.tid) {
                        // Entra's own session is another user's now: this one ends.
                        info!(
                            log,
                            "provider \"{}\": revalidation answered for another user: signing in again",
                            provider.name
                        );
                        let mut cleared = clear_session(&req, sign_in);
                        cleared.push(clear);
                        // SAFETY: per the contract.
                        return unsafe { restart(r, state, transaction.return_url, cleared) };
                    }
                }
                let mut cookies = match sign_in.session_cookies(&provider.name, &session, &jar, secure) {
                    Ok(cookies) => cookies,
                    Err(denial) => {
                        let detail = format!("{} groups", session.groups.len());
                        // SAFETY: per the contract.
                        return unsafe { fail(r, state, denial, &detail, vec![clear]) };
                    }
                };
                cookies.push(clear);
                info!(
                    log,
                    "signed in: provider \"{}\", oid {}, tid {}, sid {}, {} groups",
                    provider.name,
                    session.oid,
                    session.tid,
                    if session.sid.is_empty() { "-" } else { &session.sid },
                    session.groups.len()
                );
                if session.sid.is_empty() {
                    crate::log::warning!(
                        log,
                        "provider \"{}\": the ID token has no sid: front-channel logout cannot end this session (add the optional claim sid)",
                        provider.name
                    );
                }
                if let Some(counters) = counters {
                    counters.sign_in(SignInEvent::Completed);
                }
                let location = format!("{}{}", origin_of(&transaction.redirect_uri), transaction.return_url);
                let mut headers = vec![(&b"Location"[..], location)];
                headers.extend(cookies.into_iter().map(|c| (&b"Set-Cookie"[..], c)));
                // SAFETY: per the contract.
                unsafe { send(r, 302, &headers, "", "") }
            }
        };
    }
    let matched = match sign_in.callback(&provider.name, req.args(), &jar, secure, now()) {
        Ok(matched) => matched,
        Err(refused) => {
            if let Some(return_url) = refused.ask_user {
                // A silent revalidation needs the user: one interactive attempt, never a second
                // silent one.
                info!(
                    log,
                    "provider \"{}\": silent revalidation answered {}: signing in again",
                    provider.name,
                    refused.detail
                );
                // SAFETY: per the contract.
                return unsafe { restart(r, state, return_url, refused.clear) };
            }
            // SAFETY: per the contract.
            return unsafe { fail(r, state, refused.denial, &refused.detail, refused.clear) };
        }
    };
    let key_state = provider.key_state();
    let (Some(endpoint), KeySource::Discovery { discovery, .. }) =
        (key_state.endpoints.token.clone(), &provider.source)
    else {
        // SAFETY: per the contract.
        return unsafe {
            fail(r, state, Denial::IdpUnavailable, "no token endpoint yet", vec![matched.clear])
        };
    };
    if worker.parked_callbacks.get() >= MAX_PARKED_CALLBACKS {
        // SAFETY: per the contract.
        return unsafe {
            fail(r, state, Denial::IdpUnavailable, "too many sign-ins at once", vec![matched.clear])
        };
    }
    let mut assertion = String::new();
    let random = SystemRandom::new();
    let Some(credential) =
        sign_in.client_credential(&provider.client_id, &endpoint, now(), &random, &mut assertion)
    else {
        return INTERNAL_ERROR;
    };
    let t = &matched.transaction;
    let body =
        token_request(&matched.code, &t.redirect_uri, &provider.client_id, &t.attempt.verifier, credential);
    let result = Arc::new(Mutex::new(None));
    let job = ExchangeJob {
        endpoint,
        body,
        ca_file: discovery.ca_file.clone(),
        timeout: discovery.timeout,
        result: result.clone(),
    };
    if !threads::post(threads::SIGNIN_POOL, Box::new(job)) {
        // SAFETY: per the contract.
        return unsafe {
            fail(
                r,
                state,
                Denial::IdpUnavailable,
                "the entra_signin thread pool is full",
                vec![matched.clear],
            )
        };
    }
    let deadline = now_ms() + 2 * discovery.timeout.as_millis() as u64 + 1000;
    let pending =
        Pending { result, matched, deadline, waiting_for_keys: false, _parked: ParkedCallback::new(worker) };
    debug!(
        log,
        "sign-in callback waits for its code exchange ({} in this worker)",
        worker.parked_callbacks.get()
    );
    let parked =
        Outcome { provider: index, source: Source::Session, ..Outcome::denied(index, Denial::NoSession) };
    // SAFETY: per the contract.
    match unsafe { outcome::store(r, parked) } {
        Some(_) => unsafe { wait(r, pending) },
        None => INTERNAL_ERROR,
    }
}

/// Answers a callback with a new interactive attempt for `return_url`, clearing `clear`.
///
/// # Safety
/// `r` is a valid request.
unsafe fn restart(
    r: *mut ngx_http_request_t,
    state: &ProviderState,
    return_url: String,
    clear: Vec<SetCookie>,
) -> ngx_int_t {
    // SAFETY: per the contract.
    let req = unsafe { Incoming::new(r) };
    match redirect_to_sign_in(&req, state, Some(return_url), AttemptKind::default(), clear) {
        // SAFETY: per the contract.
        Some(headers) => unsafe { send(r, 302, &headers, "", "") },
        None => INTERNAL_ERROR,
    }
}

/// Parks the callback until its exchange is done (or its deadline passes).
///
/// # Safety
/// `r` is a valid request with an outcome.
unsafe fn wait(r: *mut ngx_http_request_t, pending: Pending) -> ngx_int_t {
    // SAFETY: per the contract.
    let Some(outcome) = (unsafe { outcome::get(r) }) else { return INTERNAL_ERROR };
    outcome.pending = Some(pending);
    // SAFETY: per the contract.
    unsafe { access::park(r) };
    // The server-rewrite phase stops here; the timer runs the phases again.
    Status::NGX_DONE.into()
}

/// A failed callback: one `info` line with the reason, and a page that offers to start again
/// (never a redirect, which could loop).
///
/// # Safety
/// `r` is a valid request.
unsafe fn fail(
    r: *mut ngx_http_request_t,
    state: &ProviderState,
    denial: Denial,
    detail: &str,
    clear: Vec<SetCookie>,
) -> ngx_int_t {
    // SAFETY: per the contract.
    let log = unsafe { request_log(r) };
    let provider = &state.provider;
    info!(log, "sign-in failed: {} (provider \"{}\"): {}", denial.reason(), provider.name, detail);
    if let Some(counters) = state.counters() {
        counters.decided(Err(denial));
    }
    // SAFETY: per the contract.
    if let Some(o) = unsafe { outcome::store(r, Outcome::denied(state.index, denial)) } {
        o.denial = Some(denial);
    }
    let status = match (denial, denial.class()) {
        (Denial::IdpError(true), _) | (_, DenialClass::Forbidden) => 403,
        (_, DenialClass::Unavailable) => 503,
        _ => 401,
    };
    let mut headers: Vec<(&'static [u8], String)> =
        clear.into_iter().map(|c| (&b"Set-Cookie"[..], c)).collect();
    if status == 503 {
        headers.push((b"Retry-After", "5".into()));
    }
    let what = match denial {
        Denial::IdpError(_) => {
            format!("Entra answered the sign-in with the error <code>{}</code>.", escape(detail))
        }
        other => escape(&other.to_string()),
    };
    let body = page(
        "Sign-in failed",
        &[
            format!("The sign-in could not be completed: {what}"),
            format!("Reason: <code>{}</code>", denial.reason()),
            "<a href=\"/\">Sign in again</a>".into(),
        ],
    );
    // SAFETY: per the contract.
    unsafe { send(r, status, &headers, "text/html; charset=utf-8", &body) }
}

/// Entra's front-channel logout call, `GET <frontchannel_logout_uri>?sid=...` (in a hidden
/// iframe, usually without cookies): the `sid` goes into the shared zone's deny-list, so that
/// every worker refuses its sessions signed in up to now, across reloads.
///
/// # Safety
/// `r` is a valid request.
unsafe fn frontchannel_logout(r: *mut ngx_http_request_t, state: &ProviderState) -> ngx_int_t {
    // SAFETY: per the contract.
    let (req, log) = unsafe { (Incoming::new(r), request_log(r)) };
    let provider = &state.provider;
    let sign_in = &provider.sign_in;
    if !matches!(req.method(), "GET" | "HEAD") {
        // SAFETY: per the contract.
        return unsafe { send(r, 405, &[(b"Allow", "GET, HEAD".into())], "", "") };
    }
    let sids: Vec<&str> = req.args().split('&').filter_map(|p| p.strip_prefix("sid=")).collect();
    let [sid] = sids[..] else {
        info!(
            log,
            "front-channel logout refused: provider \"{}\": {} sid parameters",
            provider.name,
            sids.len()
        );
        // SAFETY: per the contract.
        return unsafe { send(r, 400, &[], "", "") };
    };
    if !is_valid_sid(sid) {
        info!(
            log,
            "front-channel logout refused: provider \"{}\": the sid is not of Entra's form", provider.name
        );
        // SAFETY: per the contract.
        return unsafe { send(r, 400, &[], "", "") };
    }
    let Some(revoked) = state.slot.as_ref().and_then(|slot| {
        let lifetime_ms = sign_in.lifetime.saturating_mul(1000);
        slot.revoke(sid_key(sid), epoch_ms(), lifetime_ms).map(|r| (slot, r))
    }) else {
        crate::log::error!(
            log,
            "front-channel logout: provider \"{}\" has no deny-list in the shared zone",
            provider.name
        );
        // SAFETY: per the contract.
        return unsafe { send(r, 503, &[(b"Retry-After", "5".into())], "", "") };
    };
    let (slot, revoked) = revoked;
    info!(
        log,
        "front-channel logout: provider \"{}\", sid {} ({} in the deny-list)",
        provider.name,
        sid,
        revoked.entries
    );
    if revoked.evicted && slot.should_log_overflow(mono_s()) {
        crate::log::warning!(
            log,
            "provider \"{}\": the front-channel logout deny-list is full: every session signed in before the oldest \
             logout it dropped is refused (enlarge entra_shared_zone)",
            provider.name
        );
    }
    if let Some(counters) = state.counters() {
        counters.sign_in(SignInEvent::FrontChannelLogout);
    }
    // Cookies come along only when the browser allows third-party ones: clear them then too.
    let secure = is_secure(&req, sign_in);
    let clear: Vec<_> =
        sign_in.clear_all(&req.cookies(), secure).into_iter().map(|c| (&b"Set-Cookie"[..], c)).collect();
    let body = page("Signed out", &["You are signed out of this application.".into()]);
    // SAFETY: per the contract.
    unsafe { send(r, 200, &clear, "text/html; charset=utf-8", &body) }
}

/// `entra_logout;`
pub extern "C" fn set_logout(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx calls directive handlers with a valid cf and this module's location conf.
    guard(unsafe { (*cf).log }, "entra_logout", NGX_CONF_ERROR, || {
        // SAFETY: as above.
        let lcf = unsafe { &mut *(conf as *mut LocationConf) };
        lcf.logout = true;
        // SAFETY: as above, in a location.
        match unsafe { NgxHttpCoreModule::location_conf_mut(&*cf) } {
            Some(clcf) => {
                clcf.handler = Some(logout_handler);
                NGX_CONF_OK
            }
            None => NGX_CONF_ERROR,
        }
    })
}

extern "C" fn logout_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx calls content handlers with a valid request.
    guard(unsafe { request_log(r) }, "entra_logout", INTERNAL_ERROR, || unsafe { logout(r) })
}

/// Ends the session: a `POST` (or a `GET` shown to come from this origin) clears every session
/// and transaction cookie and goes to the end-session endpoint; any other `GET` gets a page with
/// a button that posts the logout, and logs nobody out.
///
/// # Safety
/// `r` is a valid request.
unsafe fn logout(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: per the contract.
    let (req, request) = unsafe { (Incoming::new(r), ngx::http::Request::from_ngx_http_request(r)) };
    let Some(lcf) = EntraModule::location_conf(request) else { return INTERNAL_ERROR };
    let (Some(index), Some(worker)) = (lcf.provider, worker::current()) else {
        return Status::NGX_DECLINED.into();
    };
    let state = &worker.providers[index];
    // SAFETY: per the contract.
    state.sync_keys(unsafe { request_log(r) });
    let provider = &state.provider;
    let sign_in = &provider.sign_in;
    let headers = req.browser();
    let origin = own_origin(&req, sign_in);
    let same_origin = headers.sec_fetch_site.is_some_and(|s| s.eq_ignore_ascii_case("same-origin"))
        || headers.origin.is_some_and(|o| o.eq_ignore_ascii_case(&origin));
    let post = req.method() == "POST";
    if post && headers.is_cross_origin(&origin) {
        // SAFETY: per the contract.
        return unsafe {
            fail(r, state, Denial::CrossOrigin, "a logout posted from another site", Vec::new())
        };
    }
    if !post && !same_origin {
        let form = format!(
            "<form method=\"post\" action=\"{}\"><button type=\"submit\">Sign out</button></form>",
            escape(req.unparsed_uri())
        );
        let body = page("Sign out", &["Sign out of this application?".into(), form]);
        // SAFETY: per the contract.
        return unsafe { send(r, 200, &[], "text/html; charset=utf-8", &body) };
    }
    // SAFETY: per the contract.
    let hint = unsafe { outcome::get(r) }
        .and_then(|o| o.verified.as_ref().ok().and_then(|t| t.str("login_hint").map(str::to_owned)));
    let secure = is_secure(&req, sign_in);
    let mut out: Vec<(&'static [u8], String)> =
        sign_in.clear_all(&req.cookies(), secure).into_iter().map(|c| (&b"Set-Cookie"[..], c)).collect();
    let after = sign_in.post_logout_redirect.clone().unwrap_or_else(|| format!("{origin}/"));
    let location = match provider.key_state().endpoints.end_session.as_deref() {
        Some(end_session) => {
            let mut pairs = vec![("post_logout_redirect_uri", after.as_str())];
            if let Some(hint) = hint.as_deref() {
                pairs.push(("logout_hint", hint));
            }
            entra_core::oidc::with_query(end_session, &pairs)
        }
        None => after,
    };
    // SAFETY: per the contract.
    info!(unsafe { request_log(r) }, "signed out: provider \"{}\"", provider.name);
    if let Some(counters) = state.counters() {
        counters.sign_in(SignInEvent::Logout);
    }
    out.push((b"Location", location));
    // SAFETY: per the contract.
    unsafe { send(r, 302, &out, "", "") }
}
