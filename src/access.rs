//! The access-phase check: judge the request's bearer token or session once per request, apply
//! the location's requirements, and answer: let it in, 401/403/503 with the matching header, or
//! for a browser's navigation a sign-in. A request whose token names a key not yet known waits
//! (parked) while the keys are fetched. Subrequests end in the same [`settle`].

use std::rc::Rc;
use std::sync::Arc;

use entra_core::graph::Membership;
use entra_core::signin::{AttemptKind, Leftover};
use entra_core::stepup::StepUp;
use entra_core::{Denial, DenialClass, VerifiedToken};
use ngx::core::Status;
use ngx::ffi::{ngx_conf_t, ngx_http_phases_NGX_HTTP_ACCESS_PHASE, ngx_http_request_t, ngx_int_t, ngx_log_t};
use ngx::http::{HttpModuleLocationConf, Request};

use crate::clock::{now, now_ms};
use crate::conf::location::{AuthMode, LocationConf};
use crate::denial::challenge;
use crate::fetch;
use crate::log::{debug, guard, request_log, test_panic};
use crate::lookup::{self, Groups};
use crate::module::EntraModule;
use crate::outcome::{self, Outcome, Source};
use crate::park::{park_waiter, Waiting};
use crate::request::Incoming;
use crate::response::{set_cookies, set_headers, INTERNAL_ERROR};
use crate::session::{self, Revalidation};
use crate::worker::{self, KeyFetch, ProviderState, Worker};
use crate::zone::StepUpEvent;
use entra_core::session::GroupsAnswered;
use entra_core::token::SESSION_KID;

/// Registers the handler in nginx's access phase (postconfiguration), to run after nginx's own
/// access modules: under `satisfy any` a request they let in never waits, parks or gets a 503
/// here, and under `satisfy all` an address they refuse costs no cryptography.
pub fn register(cf: *mut ngx_conf_t) -> Result<(), &'static str> {
    crate::module::add_phase_handler(
        cf,
        ngx_http_phases_NGX_HTTP_ACCESS_PHASE,
        crate::module::Order::Last,
        access_handler,
    )
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
    // The module's own paths (callback, front-channel logout) pass the server's access checks,
    // never `entra_auth`: the precontent phase answers them.
    // SAFETY: per the contract.
    if unsafe { outcome::answering(r) }.is_some() {
        return Status::NGX_DECLINED.into();
    }
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

/// A request where `entra_auth` is in force: its location's configuration, this worker, the
/// provider's index and the request's log.
pub struct Protected<'a> {
    pub lcf: &'a LocationConf,
    pub worker: Rc<Worker>,
    pub index: usize,
    pub log: *mut ngx_log_t,
}

impl Protected<'_> {
    /// The provider's state in this worker.
    pub fn state(&self) -> &ProviderState {
        &self.worker.providers[self.index]
    }

    /// Finds what guards `r`, with the worker's copy of the provider's keys brought up to date.
    /// `Err` is the answer otherwise: declined where no `entra_auth` is in force.
    ///
    /// # Safety
    /// `r` is a valid request.
    pub unsafe fn of(r: *mut ngx_http_request_t) -> Result<Self, ngx_int_t> {
        // SAFETY: per the contract.
        let request = unsafe { Request::from_ngx_http_request(r) };
        let Some((lcf, index)) =
            EntraModule::location_conf(request).and_then(|lcf| Some((lcf, lcf.provider?)))
        else {
            return Err(Status::NGX_DECLINED.into());
        };
        let worker = worker::current().ok_or(INTERNAL_ERROR)?;
        // SAFETY: per the contract.
        let log = unsafe { request_log(r) };
        worker.providers[index].sync_keys(log);
        Ok(Protected { lcf, worker, index, log })
    }
}

/// # Safety
/// `r` is a valid request.
unsafe fn judge(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: per the contract.
    let p = match unsafe { Protected::of(r) } {
        Ok(p) => p,
        Err(rc) => return rc,
    };
    // After an internal redirect the request was judged already; judge again for another
    // provider, whose keys, audiences and issuers differ, for a location that accepts another
    // proof (a session never satisfies a bearer-only location), or after waiting for keys.
    // SAFETY: per the contract.
    let previous = unsafe { outcome::get(r) };
    let previous_wait = previous.as_ref().and_then(|o| o.wait_until);
    let waiting = previous.as_ref().and_then(|o| o.groups_since.zip(o.wait_until));
    // SAFETY: per the contract; the header, if any, is a valid table element.
    let header = unsafe { (*r).headers_in.authorization.as_ref() }.map(|h| h.value.as_bytes());
    let source = proves_with(p.lcf.mode, header);
    let outcome = match previous {
        // An outcome stored for one of the module's own paths was never a judgment.
        Some(o)
            if o.provider == p.index
                && o.source == source
                && o.wait_until.is_none()
                && o.answering.is_none() =>
        {
            o
        }
        // SAFETY: per the contract.
        _ => match unsafe { judge_anew(r, &p, header, previous_wait) } {
            Ok(outcome) => outcome,
            Err(rc) => return rc,
        },
    };
    // SAFETY: per the contract.
    let mut decision = match unsafe { decide(r, &p, &outcome.verified, &mut outcome.graph, waiting, true) } {
        Ok(decision) => decision,
        Err((since, until, key)) => {
            (outcome.groups_since, outcome.wait_until) = (Some(since), Some(until));
            // SAFETY: per the contract.
            return unsafe { park_waiter(r, &p.worker, previous_wait, Waiting::Groups(key)) };
        }
    };
    // SAFETY: per the contract.
    let navigation = decision.is_err() && unsafe { Incoming::new(r) }.browser().is_navigation();
    if let Err(denial) = decision {
        if signs_in(outcome.source, denial, navigation) && !p.lcf.logout && !session::can_start(p.state()) {
            // Before the metadata was ever fetched: wait like a bearer request for its keys,
            // counted and logged once, when answered.
            match wait_for_metadata(&p.worker, p.index, previous_wait) {
                Some(until) => {
                    outcome.wait_until = Some(until);
                    // SAFETY: per the contract.
                    return unsafe { park_waiter(r, &p.worker, previous_wait, Waiting::Keys) };
                }
                None => decision = Err(Denial::KeysUnavailable),
            }
        }
    }
    outcome.denial = decision.err();
    // SAFETY: per the contract.
    unsafe { settle(r, &p, decision, &outcome.verified, outcome.source, Asker::Access { navigation }) }
}

/// Judges the request's proof (`header`, the `Authorization` value, or the session) anew and
/// stores the outcome; `Err` is the answer when the request
/// was parked for keys or sent to revalidate its session.
///
/// # Safety
/// `r` is a valid request.
unsafe fn judge_anew<'a>(
    r: *mut ngx_http_request_t,
    p: &Protected,
    header: Option<&[u8]>,
    previous_wait: Option<u64>,
) -> Result<&'a mut Outcome, ngx_int_t> {
    let state = p.state();
    let session = proves_with(p.lcf.mode, header) == Source::Session;
    // A start waits for the fleet's sign-outs before judging a session (as for keys).
    if let Some(until) = session.then(|| crate::fleet::first_read_until(&p.worker, state, now_ms())).flatten()
    {
        // SAFETY: per the contract.
        let parked = unsafe {
            outcome::store(
                r,
                Outcome { wait_until: Some(until), ..Outcome::denied(p.index, Denial::NoSession) },
            )
        };
        return Err(match parked {
            // SAFETY: per the contract.
            Some(_) => unsafe { park_waiter(r, &p.worker, previous_wait, Waiting::Keys) },
            None => INTERNAL_ERROR,
        });
    }
    let judged = if session {
        // SAFETY: per the contract.
        let judged = session::judge(&unsafe { Incoming::new(r) }, state, p.log, Revalidation::Offered);
        let cookies: Vec<_> = set_cookies(judged.set_cookies).collect();
        // SAFETY: per the contract.
        if !cookies.is_empty() && unsafe { set_headers(r, &cookies) }.is_none() {
            return Err(INTERNAL_ERROR);
        }
        match judged.revalidation {
            // SAFETY: per the contract.
            Some(Ok(silent)) => {
                return Err(unsafe { session::redirect(r, &session::redirect_headers(silent, Vec::new())) })
            }
            Some(Err(_)) => return Err(INTERNAL_ERROR),
            None => {}
        }
        Outcome {
            verified: judged.verdict,
            source: Source::Session,
            ..Outcome::denied(p.index, Denial::NoSession)
        }
    } else {
        let mut verified = judge_token(state, header, p.log);
        let mut wait_until = None;
        if matches!(verified, Err(Denial::UnknownKid)) {
            match wait_for_keys(&p.worker, p.index, previous_wait) {
                KeyWait::Park(until) => wait_until = Some(until),
                KeyWait::Unavailable => verified = Err(Denial::KeysUnavailable),
                KeyWait::Judged => {}
            }
        }
        Outcome { verified, wait_until, ..Outcome::denied(p.index, Denial::NoToken) }
    };
    // SAFETY: per the contract.
    match unsafe { outcome::store(r, judged) } {
        // SAFETY: per the contract.
        Some(o) if o.wait_until.is_some() => {
            Err(unsafe { park_waiter(r, &p.worker, previous_wait, Waiting::Keys) })
        }
        Some(o) => Ok(o),
        None => Err(INTERNAL_ERROR),
    }
}

/// Who asked for the check, which decides how it may be answered.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Asker {
    /// A main request in the access phase; a navigation may be sent to sign in.
    Access { navigation: bool },
    /// A subrequest, judged in the rewrite phase: never parked, redirected or shown a page.
    Subrequest,
}

/// The location's requirements on what the request proved. A group requirement on a token
/// with group overage needs Graph's answer (`graph`): a session's own while it holds
/// (`groups_cache`, for the groups asked now), else the zone's, asked for when there is none yet
/// (`Err((since, until, key))` when the request waits for it, only when it `may_wait`); a session
/// given a new answer is re-sealed with it.
///
/// # Safety
/// `r` is a valid request.
pub unsafe fn decide(
    r: *mut ngx_http_request_t,
    p: &Protected,
    verified: &Result<Arc<VerifiedToken>, Denial>,
    graph: &mut Option<Membership>,
    waiting: Option<(u64, u64)>,
    may_wait: bool,
) -> Result<Result<(), Denial>, (u64, u64, [u8; 32])> {
    let token = match verified {
        Ok(token) => token,
        Err(denial) => return Ok(Err(*denial)),
    };
    let state = p.state();
    let settings = state.provider.graph.as_ref().filter(|_| state.graph.is_some());
    let asks = settings.filter(|_| p.lcf.policy.has_group_requirement() && token.has_group_overage());
    if let (Some(g), None) = (asks, graph.as_ref()) {
        let carried = token.groups_answered.filter(|a| a.asked == g.asked_prefix());
        if carried.is_some_and(|a| now() < a.at.saturating_add(g.settings.cache)) {
            *graph = Some(Membership::of(g.asked(), token.groups()));
        } else {
            match lookup::groups(&p.worker, state, token, waiting, may_wait) {
                Groups::Answered(members, asked_at) => {
                    if token.kid == SESSION_KID {
                        // A session keeps the answer for the next requests, as of when Graph
                        // gave it (were its cookies not set, the next request would find the
                        // answer in the zone).
                        let answered = GroupsAnswered { asked: g.asked_prefix(), at: asked_at };
                        // SAFETY: per the contract.
                        unsafe { session::reseal_groups(r, state, answered, members.groups(g.asked())) };
                    }
                    *graph = Some(members);
                }
                Groups::Wait(since, until, key) => return Err((since, until, key)),
                Groups::Denied(denial) => return Ok(Err(denial)),
            }
        }
    }
    let asked = settings.map(|g| g.asked());
    let policy = &p.lcf.policy;
    let decision = policy.check(token, asked.zip(graph.as_ref()));
    // How recently the user authenticated counts for sessions only (access tokens carry no
    // dependable sign-in time).
    Ok(decision.and_then(|()| match token.kid == SESSION_KID {
        true => policy.check_signin(token, now(), state.provider.leeway),
        false => Ok(()),
    }))
}

/// Whether a denial sends a browser to sign in: a session's absence or end, for a navigation.
fn signs_in(source: Source, denial: Denial, navigation: bool) -> bool {
    source == Source::Session && denial.class() == DenialClass::SignIn && navigation
}

/// The end of every check: the decision counted, and a refusal logged and answered (a
/// navigation in a session mode is sent to sign in, or shown the 403 page).
///
/// # Safety
/// `r` is a valid request.
pub unsafe fn settle(
    r: *mut ngx_http_request_t,
    p: &Protected,
    decision: Result<(), Denial>,
    verified: &Result<Arc<VerifiedToken>, Denial>,
    source: Source,
    asker: Asker,
) -> ngx_int_t {
    let state = p.state();
    let navigation = asker == Asker::Access { navigation: true };
    // A navigation without a session is a browser's first visit: a sign-in challenge, counted
    // and logged apart from the refusals.
    let first_visit = decision == Err(Denial::NoSession) && signs_in(source, Denial::NoSession, navigation);
    if let Some(counters) = state.counters() {
        counters.decided(decision, first_visit);
    }
    let allowed = match asker {
        Asker::Access { .. } => Status::NGX_OK.into(),
        Asker::Subrequest => Status::NGX_DECLINED.into(),
    };
    let denial = match decision {
        Ok(()) => return allowed,
        // `entra_logout` answers with or without a session.
        Err(_) if p.lcf.logout && asker != Asker::Subrequest => return allowed,
        Err(denial) => denial,
    };
    let who = verified.as_deref().ok();
    if first_visit {
        debug!(p.log, "no session: sending the browser to sign in (provider \"{}\")", state.provider.name);
    } else {
        let detail = || match who {
            Some(token) => p.lcf.policy.explain(
                token,
                denial,
                if source == Source::Session { "the session" } else { "the token" },
            ),
            // SAFETY: per the contract; the header, if any, is a valid table element.
            None => state.provider.explain(
                denial,
                unsafe { (*r).headers_in.authorization.as_ref() }.map(|h| h.value.as_bytes()),
            ),
        };
        // SAFETY: per the contract.
        unsafe { crate::log::denial(r, p.worker.request_id_index, &state.provider, denial, who, detail) };
    }
    if denial == Denial::SigninTooOld(true) && !state.warned_no_signin_time.replace(true) {
        crate::log::warning!(
            p.log,
            "provider \"{}\": a session has no auth_time, so entra_require_recent_signin can never pass: add the \
             optional claim auth_time to the app registration's ID token",
            state.provider.name
        );
    }
    if let (Source::Session, true, Some(identity)) = (source, navigation, who) {
        // SAFETY: per the contract.
        if let Some(answered) = unsafe { step_up(r, p, denial, identity) } {
            return answered;
        }
    }
    if signs_in(source, denial, navigation) {
        let leftover = if denial == Denial::SessionInvalid { Leftover::Clear } else { Leftover::Keep };
        // SAFETY: per the contract.
        return unsafe { session::start(r, state, leftover) };
    }
    let forbidden = crate::denial::status(denial) == 403;
    if source == Source::Session && forbidden && navigation {
        // SAFETY: per the contract.
        if let Some(answered) = unsafe { session::forbidden_page(r, state, denial, who, &p.lcf.policy) } {
            return answered;
        }
    }
    // SAFETY: per the contract.
    unsafe { challenge(r, &state.provider, denial, who, &p.lcf.policy) }
}

/// A navigation whose session lacks an authentication context, or whose sign-in is too old, sent
/// to sign in again asking for what is missing (with the session's `login_hint`, so that the user
/// is not asked who they are); `None` when the denial is no step-up, or none can start yet.
///
/// # Safety
/// `r` is a valid request.
unsafe fn step_up(
    r: *mut ngx_http_request_t,
    p: &Protected,
    denial: Denial,
    identity: &VerifiedToken,
) -> Option<ngx_int_t> {
    let state = p.state();
    let policy = &p.lcf.policy;
    let context = match denial {
        Denial::AuthContextMissing(_) => policy.missing_context(identity),
        Denial::SigninTooOld(false) => None,
        _ => return None,
    };
    let too_old =
        policy.check_signin(identity, now(), state.provider.leeway) == Err(Denial::SigninTooOld(false));
    let asked = StepUp { context, max_age: policy.recent_signin.filter(|_| too_old), kept_contexts: false };
    if !asked.asks() || !session::can_start(state) {
        return None;
    }
    // SAFETY: per the contract.
    let (req, log) = unsafe { (Incoming::new(r), p.log) };
    let parameters = asked.parameters(identity.str("login_hint").unwrap_or(""));
    let kind = AttemptKind {
        extra: parameters.iter().map(|(name, value)| (*name, value.as_str())).collect(),
        revalidating: None,
        step_up: asked,
    };
    let answered = match session::sign_in_headers(&req, state, kind, None, Leftover::Keep, Vec::new(), log) {
        // SAFETY: per the contract.
        Ok(headers) => unsafe { session::redirect(r, &headers) },
        Err(status) => status,
    };
    if let Some(counters) = state.counters() {
        counters.step_up(context.is_some(), StepUpEvent::Started);
    }
    Some(answered)
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
    let KeyFetch { discovery, .. } = worker.providers[index].key_fetch()?;
    let now = now_ms();
    let deadline = previous.unwrap_or(now + discovery.timeout.as_millis() as u64);
    fetch::start_if_due(worker, index);
    let room = previous.is_some() || worker.may_wait();
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
    let Some(KeyFetch { discovery, .. }) = state.key_fetch() else { return KeyWait::Judged };
    let now = now_ms();
    let deadline = previous.unwrap_or(now + discovery.timeout.as_millis() as u64);
    let room = previous.is_some() || worker.may_wait();
    if state.provider.key_state().keys.is_empty() {
        // Before the first keys: wait for the fetch (starting it if this worker may), then 503.
        fetch::start_if_due(worker, index);
        return if room && now < deadline { KeyWait::Park(deadline) } else { KeyWait::Unavailable };
    }
    let fetching = match previous {
        None => fetch::refresh_for_unknown_kid(worker, index),
        Some(_) => state.fetch_running(now),
    };
    if fetching && room && now < deadline {
        KeyWait::Park(deadline)
    } else {
        KeyWait::Judged
    }
}
