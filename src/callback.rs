//! The module's own paths of browser sign-in: the redirect URI's callback, with its code
//! exchanged on the `entra_signin` thread pool while the request is parked, and Entra's
//! front-channel logout call. Recognised in the server-rewrite phase (before any location of the
//! operator's could shadow them), passed through the server block's own PREACCESS and ACCESS
//! phases, and answered in the precontent phase.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::fleet::FrontChannel;
use entra_core::browser::frontchannel_sid;
use entra_core::exchange::{exchange, ExchangeError};
use entra_core::oidc::{select_account_return, token_request, TRANSACTION_LIFETIME};
use entra_core::provider::KeySource;
use entra_core::revocation::{sid_key, Once, Revocation};
use entra_core::session::GroupsAnswered;
use entra_core::signin::{AttemptKind, Leftover, Matched, Next};
use entra_core::{Denial, DenialClass, Provider};
use ngx::core::Status;
use ngx::ffi::{
    ngx_conf_t, ngx_http_phases_NGX_HTTP_PRECONTENT_PHASE, ngx_http_phases_NGX_HTTP_SERVER_REWRITE_PHASE,
    ngx_http_request_t, ngx_int_t, ngx_log_t,
};
use ngx::http::HttpModuleServerConf;
use ring::rand::SystemRandom;

use crate::clock::{epoch_ms, mono_s, now, now_ms};
use crate::denial::{sign_in_failed, RETRY_AFTER, RETRY_SECONDS};
use crate::log::{debug, guard, info, request_log, WithoutRequestLine};
use crate::lookup::{self, Groups};
use crate::module::EntraModule;
use crate::outcome::{self, Outcome, OwnPath, Source};
use crate::park::{park, ExchangeAnswer, Pending, Waiting};
use crate::request::Incoming;
use crate::response::{page, send, send_framed, set_cookies, Framing, INTERNAL_ERROR};
use crate::session::restart;
use crate::threads;
use crate::worker::{self, ProviderState, Worker};
use crate::zone::{admit_callback, SignInEvent, StepUpEvent};

/// Callbacks one worker keeps parked for their code exchange at most.
const MAX_PARKED_CALLBACKS: usize = 64;

/// Registers the handlers (postconfiguration): one first in the server-rewrite phase, which
/// recognises the paths and sends their requests on with the server's own configuration, and
/// one first in the precontent phase, which answers them once the server's PREACCESS and
/// ACCESS phases (`limit_req`, `limit_conn`, `allow`/`deny`, `auth_basic`) let them through.
pub fn register(cf: *mut ngx_conf_t) -> Result<(), &'static str> {
    crate::module::add_phase_handler(
        cf,
        ngx_http_phases_NGX_HTTP_SERVER_REWRITE_PHASE,
        crate::module::Order::First,
        server_rewrite_handler,
    )?;
    crate::module::add_phase_handler(
        cf,
        ngx_http_phases_NGX_HTTP_PRECONTENT_PHASE,
        crate::module::Order::First,
        precontent_handler,
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
        let Some((index, path)) = (unsafe { own_path(r) }) else { return Status::NGX_DECLINED.into() };
        let answering = Outcome { answering: Some(path), ..Outcome::denied(index, Denial::NoSession) };
        // SAFETY: as above.
        if unsafe { outcome::store(r, answering) }.is_none() {
            return INTERNAL_ERROR;
        }
        // SAFETY: as above; DECLINED is what this handler returns next.
        if unsafe { crate::module::skip_to_preaccess(r) } {
            return Status::NGX_DECLINED.into();
        }
        // nginx's phase table is not as expected: answer at once, as releases before did.
        // SAFETY: as above.
        unsafe { answer(r) }
    })
}

/// Which provider's callback or front-channel logout path the request is for, if any.
///
/// # Safety
/// `r` is a valid request.
unsafe fn own_path(r: *mut ngx_http_request_t) -> Option<(usize, OwnPath)> {
    // SAFETY: per the contract.
    let (req, request) = unsafe { (Incoming::new(r), ngx::http::Request::from_ngx_http_request(r)) };
    let server = EntraModule::server_conf(request)?;
    let worker = worker::current()?;
    let uri = req.uri();
    server.sign_in.iter().find_map(|used| {
        let sign_in = &worker.providers.get(used.provider)?.provider.sign_in;
        if uri == sign_in.redirect_uri.path().as_bytes() {
            Some((used.provider, OwnPath::Callback))
        } else if uri == sign_in.frontchannel_logout_uri.as_bytes() {
            Some((used.provider, OwnPath::FrontChannelLogout))
        } else {
            None
        }
    })
}

extern "C" fn precontent_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx calls phase handlers with a valid request.
    if unsafe { (*r).main } != r {
        return Status::NGX_DECLINED.into();
    }
    // SAFETY: as above.
    guard(unsafe { request_log(r) }, "the sign-in callback", INTERNAL_ERROR, || {
        // SAFETY: as above.
        let (done, declined): (ngx_int_t, ngx_int_t) = (Status::NGX_DONE.into(), Status::NGX_DECLINED.into());
        match unsafe { answer(r) } {
            rc if rc == done || rc == declined => rc,
            // Answered: finish it here and stop the phases (an answer's NGX_OK is no "go on").
            rc => {
                // SAFETY: as above.
                unsafe { ngx::ffi::ngx_http_finalize_request(r, rc) };
                Status::NGX_DONE.into()
            }
        }
    })
}

/// Answers a request for one of the module's own paths: `NGX_DONE` while a callback is parked,
/// `NGX_DECLINED` for any other request, else the answer's status.
///
/// # Safety
/// `r` is a valid main request.
unsafe fn answer(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: per the contract.
    let Some((index, path)) = (unsafe { outcome::answering(r) }) else {
        return Status::NGX_DECLINED.into();
    };
    let Some(worker) = worker::current() else { return INTERNAL_ERROR };
    let Some(state) = worker.providers.get(index) else { return INTERNAL_ERROR };
    match path {
        // SAFETY: per the contract.
        OwnPath::Callback => unsafe { callback(r, &worker, index) },
        // SAFETY: per the contract.
        OwnPath::FrontChannelLogout => unsafe { frontchannel_logout(r, &worker, state) },
    }
}

/// Code exchanges one worker has on the thread pool per provider at most.
const EXCHANGES_IN_FLIGHT: usize = 64;

/// The exchange as a pool job: its own data only. The client credential is made there too: a
/// `client_certificate` assertion is an RSA signature, never made on the event loop.
struct ExchangeJob {
    provider: Arc<Provider>,
    endpoint: String,
    code: String,
    redirect_uri: String,
    verifier: String,
    /// Seconds since the epoch when the job was posted (the assertion's `iat`).
    now: u64,
    ca_file: Option<std::path::PathBuf>,
    timeout: Duration,
    answer: ExchangeAnswer,
    _in_flight: InFlight,
}

/// One exchange counted among its provider's in flight, while the job lives.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(count: &Arc<AtomicUsize>) -> InFlight {
        count.fetch_add(1, Relaxed);
        InFlight(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

impl threads::Job for ExchangeJob {
    fn run(&mut self) {
        let (provider, mut assertion) = (&self.provider, String::new());
        let credential = provider.sign_in.client_credential(
            &provider.client_id,
            &self.endpoint,
            self.now,
            &SystemRandom::new(),
            &mut assertion,
        );
        let answer = match credential {
            Some(credential) => {
                let body = token_request(
                    &self.code,
                    &self.redirect_uri,
                    &provider.client_id,
                    &self.verifier,
                    credential,
                );
                exchange(&self.endpoint, &body, &self.ca_file, self.timeout)
            }
            None => Err(ExchangeError::Unavailable("the provider has no client credential".into())),
        };
        *self.answer.lock().unwrap_or_else(|p| p.into_inner()) = Some(answer);
    }

    fn done(self: Box<Self>) {
        // The parked request polls the answer; a job outliving its request just ends here.
    }

    fn what(&self) -> &'static str {
        "a code exchange"
    }
}

/// The redirect URI's callback: match it to its transaction and start the code exchange, or,
/// run again while parked, finish what the exchange answered.
///
/// # Safety
/// `r` is a valid request.
unsafe fn callback(r: *mut ngx_http_request_t, worker: &Worker, index: usize) -> ngx_int_t {
    let state = &worker.providers[index];
    // SAFETY: per the contract.
    let log = unsafe { request_log(r) };
    // SAFETY: the request's log outlives this call.
    let _no_code_in_the_log = unsafe { WithoutRequestLine::new(log) };
    // The endpoints may have come to the zone through another worker's fetch.
    state.sync_keys(log);
    // SAFETY: per the contract.
    if let Some(pending) = unsafe { outcome::get(r) }.and_then(|o| o.pending.take()) {
        // SAFETY: per the contract.
        return unsafe { poll_exchange(r, worker, state, pending, log) };
    }
    // The 403 page's "sign in as someone else", clicked.
    // SAFETY: per the contract.
    if let Some(return_url) = select_account_return(unsafe { Incoming::new(r) }.args()) {
        let kind = AttemptKind { extra: vec![("prompt", "select_account")], ..AttemptKind::default() };
        // SAFETY: per the contract.
        return unsafe { restart(r, state, kind, return_url, Leftover::Keep, Vec::new()) };
    }
    // A fresh state costs one navigation: bound the callbacks themselves, per client address
    // (counted in every worker, for every provider).
    // SAFETY: per the contract.
    let address = unsafe { Incoming::new(r) }.client_address();
    let limit = state.provider.sign_in.callbacks_per_minute;
    if limit.is_some_and(|limit| !admit_callback(worker.zone, &address, now(), limit)) {
        count(state, SignInEvent::CallbackRefused);
        let why = "too many sign-in callbacks from this address";
        // SAFETY: per the contract.
        return unsafe { sign_in_failed(r, state, Denial::IdpUnavailable, why, Vec::new()) };
    }
    // SAFETY: per the contract.
    unsafe { start_exchange(r, worker, state) }
}

/// Counts an event of a step-up that asked for an authentication context (`context`) or only a
/// recent sign-in.
fn count_step_up(state: &ProviderState, context: bool, event: StepUpEvent) {
    if let Some(counters) = state.counters() {
        counters.step_up(context, event);
    }
}

/// Counts an event of the sign-in callback in the provider's counters.
fn count(state: &ProviderState, event: SignInEvent) {
    if let Some(counters) = state.counters() {
        counters.sign_in(event);
    }
}

/// Matches the callback to its transaction and posts the code exchange, parking the request.
///
/// # Safety
/// `r` is a valid request.
unsafe fn start_exchange(r: *mut ngx_http_request_t, worker: &Worker, state: &ProviderState) -> ngx_int_t {
    let provider = &state.provider;
    let sign_in = &provider.sign_in;
    // SAFETY: per the contract.
    let log = unsafe { request_log(r) };
    // SAFETY: per the contract.
    let matched = match unsafe { transaction(r, state) } {
        Ok(matched) => matched,
        Err(answered) => return answered,
    };
    let key_state = provider.key_state();
    let (Some(endpoint), KeySource::Discovery { discovery, .. }) =
        (key_state.endpoints.token.clone(), &provider.source)
    else {
        // SAFETY: per the contract.
        return unsafe {
            sign_in_failed(r, state, Denial::IdpUnavailable, "no token endpoint yet", vec![matched.clear])
        };
    };
    let busy = worker.parked_callbacks.get() >= MAX_PARKED_CALLBACKS
        || state.exchanges.load(Relaxed) >= EXCHANGES_IN_FLIGHT;
    if busy || sign_in.credential.is_none() {
        count(state, SignInEvent::CallbackRefused);
        let why = if busy { "too many sign-ins at once" } else { "no client credential" };
        // The state is not used yet: the browser may come back with it.
        // SAFETY: per the contract.
        return unsafe { sign_in_failed(r, state, Denial::IdpUnavailable, why, vec![matched.clear]) };
    }
    // Each attempt's state is exchanged once, in every worker: a replayed callback never reaches
    // the token endpoint again.
    let t = &matched.transaction;
    let expires_ms = t.created.saturating_add(TRANSACTION_LIFETIME).saturating_mul(1000);
    let used =
        state.states.as_ref().map_or(Once::Full, |s| s.claim_state(&t.attempt.state, expires_ms, epoch_ms()));
    let refusal = match used {
        Once::First => None,
        Once::Again => {
            count(state, SignInEvent::StateReplayed);
            Some((Denial::StateMismatch, "the sign-in attempt's state was used already"))
        }
        Once::Full => {
            count(state, SignInEvent::CallbackRefused);
            Some((Denial::IdpUnavailable, "the record of states used is full"))
        }
    };
    if let Some((denial, why)) = refusal {
        // SAFETY: per the contract.
        return unsafe { sign_in_failed(r, state, denial, why, vec![matched.clear]) };
    }
    let answer = Arc::new(Mutex::new(None));
    let job = ExchangeJob {
        provider: provider.clone(),
        endpoint,
        code: matched.code.clone(),
        redirect_uri: t.redirect_uri.clone(),
        verifier: t.attempt.verifier.clone(),
        now: now(),
        ca_file: discovery.ca_file.clone(),
        timeout: discovery.timeout,
        answer: answer.clone(),
        _in_flight: InFlight::new(&state.exchanges),
    };
    if !threads::post(threads::SIGNIN_POOL, Box::new(job)) {
        let why = "the entra_signin thread pool is full";
        // SAFETY: per the contract.
        return unsafe { sign_in_failed(r, state, Denial::IdpUnavailable, why, vec![matched.clear]) };
    }
    let deadline = now_ms() + 2 * discovery.timeout.as_millis() as u64 + 1000;
    let pending = Pending::new(worker, answer, matched, deadline);
    debug!(
        log,
        "sign-in callback waits for its code exchange ({} in this worker)",
        worker.parked_callbacks.get()
    );
    let index = state.index;
    let parked = Outcome {
        provider: index,
        source: Source::Session,
        answering: Some(OwnPath::Callback),
        ..Outcome::denied(index, Denial::NoSession)
    };
    // SAFETY: per the contract.
    match unsafe { outcome::store(r, parked) } {
        // SAFETY: per the contract.
        Some(_) => unsafe { wait(r, pending) },
        None => INTERNAL_ERROR,
    }
}

/// The sign-in attempt the callback answers, by the `state` it names; `Err` is the answer when
/// there is none to go on with (a page, or one interactive attempt after a silent one).
///
/// # Safety
/// `r` is a valid request.
unsafe fn transaction(r: *mut ngx_http_request_t, state: &ProviderState) -> Result<Matched, ngx_int_t> {
    let sign_in = &state.provider.sign_in;
    // SAFETY: per the contract.
    let (req, log) = unsafe { (Incoming::new(r), request_log(r)) };
    let refused = match sign_in.callback(req.args(), &req.cookies(), req.is_secure_for(sign_in), now()) {
        Ok(matched) => return Ok(matched),
        Err(refused) => refused,
    };
    let name = &state.provider.name;
    Err(match refused.next {
        // A silent revalidation needs the user: one interactive attempt, never a second silent one.
        Next::AskUser(return_url) => {
            info!(
                log,
                "provider \"{}\": silent revalidation answered {}: signing in again", name, refused.detail
            );
            // SAFETY: per the contract.
            unsafe { restart(r, state, AttemptKind::default(), return_url, Leftover::Keep, refused.clear) }
        }
        // Entra wants the user for the contexts the session held: it keeps its sign-in, drops
        // them, and its navigation revalidates again without asking for any.
        Next::DropContexts(location) => {
            info!(
                log,
                "provider \"{}\": silent revalidation answered {} for the session's authentication contexts: \
                 they are dropped",
                name,
                refused.detail
            );
            let mut cookies = sign_in.drop_auth_contexts(&req.session_request(now()));
            cookies.extend(refused.clear);
            let mut headers = vec![(&b"Location"[..], location)];
            headers.extend(set_cookies(cookies));
            // SAFETY: per the contract.
            unsafe { send(r, 302, &headers, "", "") }
        }
        Next::Page => {
            if refused.denial.class() == DenialClass::StepUp {
                let context = matches!(refused.denial, Denial::AuthContextMissing(_));
                count_step_up(state, context, StepUpEvent::Refused);
            }
            // SAFETY: per the contract.
            unsafe { sign_in_failed(r, state, refused.denial, &refused.detail, refused.clear) }
        }
    })
}

/// A parked callback's poll: waits on, or answers with what the exchange gave.
///
/// # Safety
/// `r` is a valid request.
unsafe fn poll_exchange(
    r: *mut ngx_http_request_t,
    worker: &Worker,
    state: &ProviderState,
    mut pending: Pending,
    log: *mut ngx_log_t,
) -> ngx_int_t {
    let fail = |denial, detail: &str, pending: Pending| {
        // SAFETY: per the contract.
        unsafe { sign_in_failed(r, state, denial, detail, vec![pending.matched.clear]) }
    };
    let id_token = match pending.take_answer() {
        // SAFETY: per the contract.
        None if now_ms() < pending.deadline => return unsafe { wait(r, pending) },
        None => return fail(Denial::IdpUnavailable, "the code exchange took too long", pending),
        Some(Err(e)) => {
            let denial = match e {
                ExchangeError::Rejected { .. } => Denial::CodeRejected,
                _ => Denial::IdpUnavailable,
            };
            return fail(denial, &e.to_string(), pending);
        }
        Some(Ok(id_token)) => id_token,
    };
    state.sync_keys(log);
    let verified =
        state.provider.verify_id_token(&id_token, now(), &pending.matched.transaction.attempt.nonce);
    if verified.as_ref().is_err_and(|d| *d == Denial::UnknownKid) && now_ms() < pending.deadline {
        // A key rotated since the last fetch: refresh (once) and judge again.
        let fetching = if pending.waiting_for_keys {
            state.fetch_running(now_ms())
        } else {
            pending.waiting_for_keys = true;
            crate::fetch::refresh_for_unknown_kid(worker, state.index)
        };
        if fetching {
            pending.keep_answer(Ok(id_token));
            // SAFETY: per the contract.
            return unsafe { wait(r, pending) };
        }
    }
    match verified {
        // SAFETY: per the contract.
        Ok(token) => unsafe { signed_in(r, worker, state, &token, pending.matched, log) },
        Err(denial) => fail(denial, "the ID token is refused", pending),
    }
}

/// The ID token is good: seal the session into its cookies and send the browser back.
///
/// # Safety
/// `r` is a valid request.
unsafe fn signed_in(
    r: *mut ngx_http_request_t,
    worker: &Worker,
    state: &ProviderState,
    token: &entra_core::VerifiedToken,
    matched: Matched,
    log: *mut ngx_log_t,
) -> ngx_int_t {
    let provider = &state.provider;
    let sign_in = &provider.sign_in;
    // SAFETY: per the contract.
    let req = unsafe { Incoming::new(r) };
    let Matched { transaction, clear, slot, .. } = matched;
    let now_ms = epoch_ms();
    let mut session = token.to_session(now_ms, sign_in.session_lifetime, &sign_in.claims);
    if let Some((oid, tid)) = &transaction.revalidating {
        if (oid, tid) != (&session.oid, &session.tid) {
            // Entra's own session is another user's now: this one ends.
            info!(
                log,
                "provider \"{}\": revalidation answered for another user: signing in again", provider.name
            );
            // SAFETY: per the contract.
            return unsafe {
                restart(
                    r,
                    state,
                    AttemptKind::default(),
                    transaction.return_url,
                    Leftover::Clear,
                    vec![clear],
                )
            };
        }
    }
    // Group overage: Graph's answer goes into the session when the zone has it; else its lookup
    // starts now, never waited for here: the first request that needs it waits for the rest.
    if let (Some(graph), true) = (provider.graph.as_ref(), session.group_overage && state.graph.is_some()) {
        if !graph.asked().is_empty() {
            if let Groups::Answered(members, at) = lookup::groups(worker, state, token, None, false) {
                session.groups = members.groups(graph.asked()).collect();
                session.groups_answered = Some(GroupsAnswered { asked: graph.asked_prefix(), at });
            }
        }
    }
    // A step-up continues the session it steps up: the contexts it satisfied before are kept
    // (Entra names only those asked now).
    let step_up = transaction.step_up;
    if step_up.steps_up() {
        if let Some(previous) = sign_in.session_of(&req.session_request(now())) {
            let p = &previous.session;
            let holds = now() < p.expires
                && provider.admits(p, &previous.keys, |s, keys| state.is_revoked(s, keys)).is_ok();
            if (&p.oid, &p.tid) == (&session.oid, &session.tid) && holds {
                let kept = p.auth_contexts.iter().filter(|c| !session.auth_contexts.contains(c)).cloned();
                session.auth_contexts.extend(kept.collect::<Vec<_>>());
            }
        }
    }
    // Recorded for single sign-out; a session the record cannot take says so in its cookie.
    session.unrecorded = !state.record.as_ref().is_some_and(|record| record.record_session(&session, now_ms));
    crate::fleet::signed_in(worker, state, &sign_in.keys_of(&session), session.expires.saturating_mul(1000));
    let mut cookies = match sign_in.session_cookies(&session, &req.cookies(), req.is_secure_for(sign_in)) {
        Ok(cookies) => cookies,
        Err(denial) => {
            let detail = format!("{} groups", session.groups.len());
            // SAFETY: per the contract.
            return unsafe { sign_in_failed(r, state, denial, &detail, vec![clear]) };
        }
    };
    // The transactions of other tabs that would pass the cookie budget beside the new session.
    let others = sign_in.fit_with_session(&req.cookies(), req.is_secure_for(sign_in), &cookies, slot);
    cookies.push(clear);
    cookies.extend(others);
    let sid = if session.sid.is_empty() { "-" } else { &session.sid };
    info!(
        log,
        "signed in: provider \"{}\", oid {}, tid {}, sid {}, {} groups{}",
        provider.name,
        session.oid,
        session.tid,
        sid,
        session.groups.len(),
        if session.unrecorded { " (unrecorded: the session record is full)" } else { "" }
    );
    if session.sid.is_empty() {
        crate::log::warning!(
            log,
            "provider \"{}\": the ID token has no sid: front-channel logout cannot end this session (add the optional claim sid)",
            provider.name
        );
    }
    if let Some(counters) = state.counters() {
        counters.sign_in(SignInEvent::Completed);
    }
    if step_up.steps_up() {
        // The user is signed in either way; a step-up Entra did not grant ends on a page that
        // says what was asked, never on another attempt.
        if let Some(unmet) = step_up.unmet(&session, now(), provider.leeway) {
            count_step_up(state, step_up.context.is_some(), StepUpEvent::Refused);
            let detail = "the ID token does not have what the step-up asked for";
            // SAFETY: per the contract.
            return unsafe { sign_in_failed(r, state, unmet, detail, cookies) };
        }
        count_step_up(state, step_up.context.is_some(), StepUpEvent::Satisfied);
    }
    let mut headers = vec![(&b"Location"[..], transaction.return_location())];
    headers.extend(set_cookies(cookies));
    // SAFETY: per the contract.
    unsafe { send(r, 302, &headers, "", "") }
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
    unsafe { park(r, Waiting::Keys) };
    // The precontent phase stops here; the timer runs the phases again from it.
    Status::NGX_DONE.into()
}

/// Entra's front-channel logout call, `GET <frontchannel_logout_uri>?sid=...` (in a hidden
/// iframe, usually without cookies): the `sid` goes into the shared zone's deny-list, so that
/// every worker refuses its sessions signed in up to now, across reloads.
///
/// # Safety
/// `r` is a valid request.
unsafe fn frontchannel_logout(
    r: *mut ngx_http_request_t,
    worker: &Worker,
    state: &ProviderState,
) -> ngx_int_t {
    // SAFETY: per the contract.
    let (req, log) = unsafe { (Incoming::new(r), request_log(r)) };
    let provider = &state.provider;
    let sign_in = &provider.sign_in;
    if !matches!(req.method(), "GET" | "HEAD") {
        // SAFETY: per the contract.
        return unsafe { send(r, 405, &[(b"Allow", "GET, HEAD".into())], "", "") };
    }
    let sid = match frontchannel_sid(req.args()) {
        Ok(sid) => sid,
        Err(why) => {
            info!(log, "front-channel logout refused: provider \"{}\": {}", provider.name, why);
            // SAFETY: per the contract.
            return unsafe { send(r, 400, &[], "", "") };
        }
    };
    // With a fleet, a sid this instance did not issue is asked about; nothing rises meanwhile.
    let called = match crate::fleet::frontchannel(worker, state, sid, epoch_ms()) {
        Some(FrontChannel::Ended) => Some(Revocation::Recorded),
        Some(FrontChannel::Asked) => None,
        None => {
            let Some(revocation) =
                state.record.as_ref().and_then(|record| record.revoke(sid_key(sid), epoch_ms()))
            else {
                crate::log::error!(
                    log,
                    "front-channel logout: provider \"{}\" has no record of sessions in the shared zone",
                    provider.name
                );
                // SAFETY: per the contract.
                return unsafe { send(r, 503, &[(RETRY_AFTER, RETRY_SECONDS.to_string())], "", "") };
            };
            Some(revocation)
        }
    };
    match called {
        Some(Revocation::Recorded) => {
            info!(log, "front-channel logout: provider \"{}\", sid {}: its sessions end", provider.name, sid)
        }
        Some(Revocation::Unknown) => {
            info!(
                log,
                "front-channel logout: provider \"{}\", sid {} is not one this instance signed in: \
                 only unrecorded sessions signed in before now end",
                provider.name,
                sid
            );
            if state.record.as_ref().is_some_and(|record| record.should_warn(mono_s())) {
                crate::log::warning!(
                    log,
                    "provider \"{}\": a front-channel logout named a sid this instance never recorded: its watermark \
                     rose, ending the unrecorded sessions (signed in before the record began, or while it was full; \
                     see session_record)",
                    provider.name
                );
            }
        }
        None => info!(
            log,
            "front-channel logout: provider \"{}\", sid {} is not one this instance signed in: asking the fleet's \
             store whether another did",
            provider.name,
            sid
        ),
    }
    if let Some(counters) = state.counters() {
        counters.sign_in(SignInEvent::FrontChannelLogout);
    }
    // Cookies come along only when the browser allows third-party ones: clear them then too.
    let clear: Vec<_> = set_cookies(sign_in.clear_all(&req.cookies(), req.is_secure_for(sign_in))).collect();
    let body = page("Signed out", &["You are signed out of this application.".into()]);
    // SAFETY: per the contract.
    unsafe { send_framed(r, Framing::Allowed, 200, &clear, "text/html; charset=utf-8", &body) }
}
