//! Group overage answered by Microsoft Graph, for a request: the answer read from the zone, or a
//! lookup claimed there and posted to the `entra_graph` pool while the request waits (parked,
//! like a request waiting for keys). The job carries its own data only; what it learnt is stored
//! in the zone back on the event loop, and wakes this worker's waiting requests.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use entra_core::fleet::{fetch_answer, keep_answer, open_answer, seal_answer, Names};
use entra_core::graph::{
    app_token_form, check_member_groups, fetch_app_token, token_url, AppToken, Graph, GraphError, LookupKey,
    Membership, GROUPS_PER_CALL, NOT_FOUND_MEMORY, TOKEN_MARGIN,
};
use entra_core::seal::SealKeys;
use entra_core::store::Store;
use entra_core::values::is_guid;
use entra_core::{Denial, Provider, VerifiedToken};
use ring::rand::SystemRandom;

use crate::clock::{epoch_ms, now_ms};
use crate::denial::RETRY_SECONDS;
use crate::log::{debug, error};
use crate::threads;
use crate::worker::{self, cycle_log, Awaited, ProviderState, Worker};
use crate::zone::{Finished, Found, GraphEvent};
use entra_core::answers::{Answer, Asker, Lookup, TenantState};

/// Lookups one worker has on the pool per provider at most; beyond, requests wait for a turn.
const LOOKUPS_IN_FLIGHT: usize = 64;

/// What a request with group overage gets from Graph.
pub enum Groups {
    /// Which of the asked groups the user is in, and when Graph said so (seconds since the
    /// epoch: a session keeps the answer until then plus `groups_cache`, never longer).
    Answered(Membership, u64),
    /// Wait (parked), then look again: since when (ms since the epoch), until when (ms), and
    /// the answer's key (whose lookup's end wakes it).
    Wait(u64, u64, [u8; 32]),
    /// Refused: 403 `group_overage` or 503 `groups_unavailable`.
    Denied(Denial),
}

/// How long a request waits for a lookup, and after how long a claim counts as abandoned (its
/// worker died): a token request and one call per 20 groups, each within twice `fetch_timeout`.
fn lookup_time(graph: &Graph) -> (u64, u64) {
    let timeout = graph.settings.timeout.as_millis() as u64;
    let calls = graph.asked().groups().len().div_ceil(GROUPS_PER_CALL) as u64 + 1;
    (3 * timeout + 1000, calls * 2 * timeout + 1000)
}

fn unavailable() -> Denial {
    Denial::GroupsUnavailable(RETRY_SECONDS)
}

/// The user's groups for `token` (group overage): from the zone, or after a lookup this request
/// waits for (`waiting`: since when (ms) and until when, if it waits already). A subrequest
/// (`may_wait` false) never waits: it starts the lookup and gets a 503.
pub fn groups(
    worker: &Worker,
    state: &ProviderState,
    token: &VerifiedToken,
    waiting: Option<(u64, u64)>,
    may_wait: bool,
) -> Groups {
    let (Some(graph), Some(zone)) = (state.provider.graph.as_ref(), state.graph.as_ref()) else {
        return Groups::Denied(Denial::GroupOverage);
    };
    // Only names that are no object ids are required: Graph cannot tell about them.
    if graph.asked().is_empty() {
        return Groups::Denied(Denial::GroupOverage);
    }
    let count = |event| {
        if let Some(counters) = state.counters() {
            counters.graph(event);
        }
    };
    // Most requests find the answer: this worker's copy while it holds, else one probe of the
    // zone, with the token's keys made once.
    let now_epoch = epoch_ms();
    let seen = *token.answer_seen.lock().unwrap_or_else(|p| p.into_inner());
    let asked_at = |until_ms: u64| (until_ms / 1000).saturating_sub(graph.settings.cache);
    if let Some((bits, until)) = seen.filter(|(_, until)| now_epoch < *until) {
        count(GraphEvent::Answered);
        return Groups::Answered(Membership(bits), asked_at(until));
    }
    // Both are verified claims; without them (or as anything but object ids, which go into
    // the token endpoint's and Graph's URLs) there is nobody to ask about.
    let (Some(tid), Some(oid)) = (token.tid(), token.oid()) else {
        return Groups::Denied(Denial::GroupOverage);
    };
    if !is_guid(tid) || !is_guid(oid) {
        return Groups::Denied(Denial::GroupOverage);
    }
    let keys = *token.lookup_keys.get_or_init(|| (graph.answer_key(tid, oid), graph.tenant_key(tid)));
    // What the zone knows, other than a wait: an answer (kept as this worker's copy until it
    // expires) or a refusal. The same whether the first probe or the full lookup found it
    // (another worker may store the answer in between).
    let settle = |known: Lookup| match known {
        Lookup::Answered(members, until) => {
            *token.answer_seen.lock().unwrap_or_else(|p| p.into_inner()) = Some((members.0, until));
            Some(Groups::Answered(members, asked_at(until)))
        }
        Lookup::Refused => Some(Groups::Denied(Denial::GroupOverage)),
        Lookup::Throttled(seconds) => {
            Some(Groups::Denied(Denial::GroupsUnavailable(u32::try_from(seconds).unwrap_or(u32::MAX))))
        }
        Lookup::Failed => Some(Groups::Denied(unavailable())),
        Lookup::Asking | Lookup::Claimed { .. } => None,
    };
    if let Some(known) = zone.answered(&keys.0, now_epoch) {
        if waiting.is_none() {
            count(GraphEvent::Answered);
        }
        if let Some(groups) = settle(known) {
            return groups;
        }
    }
    let (wait_ms, stale_ms) = lookup_time(graph);
    let now = now_ms();
    let (since, deadline) = waiting.unwrap_or((epoch_ms(), now + wait_ms));
    let wait = || match may_wait && now < deadline && (waiting.is_some() || worker.may_wait()) {
        true => Groups::Wait(since, deadline, keys.0),
        false => Groups::Denied(unavailable()),
    };
    let asker = Asker { pid: pid(), stale_ms };
    match zone.lookup((&keys.0, &keys.1), epoch_ms(), waiting.map(|(since, _)| since), asker) {
        Found::Known(known) => settle(known).unwrap_or_else(wait),
        Found::Unavailable => Groups::Denied(unavailable()),
        Found::Claimed(token) => {
            let shared = worker.fleet.as_ref().map(|(store, _)| store.clone());
            if state.lookups.get() >= LOOKUPS_IN_FLIGHT || !post(state, (tid, oid), keys, token, shared) {
                let nothing = Finished::default();
                zone.finish((&keys.0, &keys.1), nothing, epoch_ms(), pid());
                return wait();
            }
            count(GraphEvent::Lookup);
            wait()
        }
    }
}

fn pid() -> u32 {
    // SAFETY: ngx_pid is set once at process start.
    unsafe { ngx::ffi::ngx_pid as u32 }
}

/// Posts the lookup of `oid` in `tid` (asking the fleet's store first, when `shared`); `false`
/// when the pool would not take it.
fn post(
    state: &ProviderState,
    (tid, oid): (&str, &str),
    keys: (LookupKey, LookupKey),
    token: Option<String>,
    shared: Option<Arc<Store>>,
) -> bool {
    let job = LookupJob {
        index: state.index,
        provider: state.provider.clone(),
        tid: tid.to_owned(),
        oid: oid.to_owned(),
        keys,
        token,
        posted: epoch_ms(),
        shared,
        result: None,
    };
    if !threads::post(threads::GRAPH_POOL, Box::new(job)) {
        return false;
    }
    state.lookups.set(state.lookups.get() + 1);
    true
}

/// A lookup as a pool job: its own data only.
struct LookupJob {
    index: usize,
    provider: Arc<Provider>,
    tid: String,
    oid: String,
    keys: (LookupKey, LookupKey),
    /// The tenant's app token from the zone, or `None` to get one first.
    token: Option<String>,
    /// When it was posted (ms since the epoch): the assertion's `iat`, the token's start.
    posted: u64,
    /// The fleet's store, where another instance's answer may wait (providers with a
    /// `session_key_file`, whose keys seal the answers).
    shared: Option<Arc<Store>>,
    result: Option<Ran>,
}

/// What the pool thread did.
struct Ran {
    /// A new app token, if one was asked for, and what that cost.
    fetched: Option<Result<AppToken, GraphError>>,
    membership: Option<Result<Membership, GraphError>>,
    took: Duration,
    /// The answer came from the fleet's store, sealed by another instance: until when (ms).
    shared_until: Option<u64>,
    /// What went wrong with the store (never fatal: Graph is asked then).
    store_fault: Option<String>,
}

impl LookupJob {
    /// The store's names for this provider's things, and the keys that seal its answers.
    fn shared(&self) -> Option<(&Store, Names<'_>, &SealKeys)> {
        let store = self.shared.as_deref()?;
        let keys = self.provider.sign_in.keys.as_ref()?;
        Some((store, Names { prefix: &store.config.prefix, provider: &self.provider.name }, keys))
    }

    /// Another instance's answer from the fleet's store, if it holds one that opens.
    fn answer_from_store(&self, now_ms: u64, fault: &mut Option<String>) -> Option<(Membership, u64)> {
        let (store, names, keys) = self.shared()?;
        let sealed = match fetch_answer(store, &names.answer(&self.keys.0)) {
            Ok(sealed) => sealed?,
            Err(e) => {
                *fault = Some(format!("the store did not answer: {e}"));
                return None;
            }
        };
        match open_answer(keys, &self.provider.name, &self.keys.0, &sealed, now_ms) {
            Ok(answer) => answer,
            Err(e) => {
                *fault = Some(format!("an answer in the store does not open ({e}): ignored"));
                None
            }
        }
    }

    /// Keeps Graph's answer in the fleet's store for the other instances, sealed, until it expires.
    fn keep_in_store(&self, members: &Membership, now_ms: u64, fault: &mut Option<String>) {
        let (Some((store, names, keys)), Some(graph)) = (self.shared(), self.provider.graph.as_ref()) else {
            return;
        };
        let ttl_ms = graph.settings.cache * 1000;
        let sealed = seal_answer(keys, &self.provider.name, &self.keys.0, members, now_ms + ttl_ms);
        if let Err(e) = keep_answer(store, &names.answer(&self.keys.0), &sealed, ttl_ms) {
            *fault = Some(format!("the answer could not be kept in the store: {e}"));
        }
    }

    fn app_token(&self, graph: &Graph) -> Result<AppToken, GraphError> {
        let url = token_url(&graph.authority, &self.tid);
        let mut assertion = String::new();
        let credential = self.provider.sign_in.client_credential(
            &graph.client_id,
            &url,
            self.posted / 1000,
            &SystemRandom::new(),
            &mut assertion,
        );
        let Some(credential) = credential else {
            return Err(GraphError::Unavailable("the provider has no client credential".into()));
        };
        let form = app_token_form(&graph.client_id, &graph.settings.graph_url, credential);
        fetch_app_token(&graph.settings, &url, &form)
    }
}

impl threads::Job for LookupJob {
    fn run(&mut self) {
        let Some(graph) = self.provider.graph.as_ref() else { return };
        let started = Instant::now();
        // The pool thread's own clock: nginx's cached time belongs to the event loop.
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let mut store_fault = None;
        if let Some((members, until)) = self.answer_from_store(now_ms, &mut store_fault) {
            let membership = Some(Ok(members));
            let took = started.elapsed();
            self.result =
                Some(Ran { fetched: None, membership, took, shared_until: Some(until), store_fault });
            return;
        }
        let fetched = self.token.is_none().then(|| self.app_token(graph));
        let token = match (&self.token, &fetched) {
            (Some(token), _) => Some(token.as_str()),
            (None, Some(Ok(fetched))) => Some(fetched.token.as_str()),
            _ => None,
        };
        let membership =
            token.map(|token| check_member_groups(&graph.settings, token, &self.oid, graph.asked()));
        if let Some(Ok(members)) = &membership {
            self.keep_in_store(members, now_ms, &mut store_fault);
        }
        let took = started.elapsed();
        self.result = Some(Ran { fetched, membership, took, shared_until: None, store_fault });
    }

    fn done(self: Box<Self>) {
        let Some(worker) = worker::current() else { return };
        let Some(state) = worker.providers.get(self.index) else { return };
        state.lookups.set(state.lookups.get().saturating_sub(1));
        // A reload since: the answer would be another configuration's.
        if !Arc::ptr_eq(&state.provider, &self.provider) {
            return;
        }
        let (Some(graph), Some(zone)) = (self.provider.graph.as_ref(), state.graph.as_ref()) else { return };
        let now = epoch_ms();
        let ran = self.result.unwrap_or(Ran {
            fetched: None,
            membership: Some(Err(GraphError::Unavailable("the lookup did not run".into()))),
            took: Duration::ZERO,
            shared_until: None,
            store_fault: None,
        });
        let counters = state.counters();
        if let Some(counters) = counters {
            counters.graph_took(ran.took);
        }
        let count = |event| {
            if let Some(counters) = counters {
                counters.graph(event);
            }
        };
        let cache_ms = graph.settings.cache * 1000;
        let mut finished = Finished::default();
        let mut failure = None;
        match ran.fetched {
            Some(Ok(fetched)) => {
                count(GraphEvent::TokenRequest);
                let holds = fetched.expires_in.saturating_sub(TOKEN_MARGIN).max(fetched.expires_in / 2);
                finished.token = Some((fetched.token, self.posted + holds * 1000));
            }
            Some(Err(e)) => {
                count(GraphEvent::TokenRequest);
                failure = Some(e);
            }
            None => {}
        }
        if let Some(fault) = &ran.store_fault {
            if zone.should_log(&self.keys.1, now / 1000) {
                error!(cycle_log(), "provider \"{}\": shared Graph answers: {}", self.provider.name, fault);
            }
        }
        if let Some(fleet) = state.fleet.as_ref().and_then(|f| f.counters()) {
            let counter = if ran.shared_until.is_some() { &fleet.graph_shared } else { &fleet.graph_asked };
            if self.shared.is_some() {
                counter.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
            }
        }
        match ran.membership {
            Some(Ok(members)) => {
                finished.answer = Some((Answer::Members(members), ran.shared_until.unwrap_or(now + cache_ms)))
            }
            Some(Err(e)) => failure = Some(e),
            None => {}
        }
        if let Some(e) = &failure {
            let (event, tenant, answer) = match e {
                GraphError::TokenRefused { status, code } => (
                    GraphEvent::RefusedConsent,
                    Some((TenantState::Refused { status: *status, code: code.unwrap_or(0) }, now + cache_ms)),
                    None,
                ),
                GraphError::Throttled { retry_after, .. } => {
                    (GraphEvent::Throttled, Some((TenantState::Throttled, now + retry_after * 1000)), None)
                }
                GraphError::Forbidden => (
                    GraphEvent::RefusedForbidden,
                    None,
                    Some((Answer::Refused, now + NOT_FOUND_MEMORY * 1000)),
                ),
                GraphError::NotFound => (
                    GraphEvent::RefusedNotFound,
                    None,
                    Some((Answer::Refused, now + NOT_FOUND_MEMORY * 1000)),
                ),
                GraphError::Unavailable(_) => (GraphEvent::Unavailable, None, Some((Answer::Failed, now))),
                GraphError::TokenNotAccepted => {
                    finished.forget_token = true;
                    (GraphEvent::Unavailable, None, Some((Answer::Failed, now)))
                }
                GraphError::BadAnswer { .. } => (GraphEvent::BadAnswer, None, Some((Answer::Failed, now))),
            };
            count(event);
            (finished.tenant, finished.answer) = (tenant, answer);
            if zone.should_log(&self.keys.1, now / 1000) {
                error!(
                    cycle_log(),
                    "provider \"{}\": group overage of tenant {} not answered: {}",
                    self.provider.name,
                    self.tid,
                    e
                );
            }
        } else {
            debug!(
                cycle_log(),
                "provider \"{}\": Graph answered for tenant {}", self.provider.name, self.tid
            );
        }
        zone.finish((&self.keys.0, &self.keys.1), finished, now, pid());
        worker.wake(Awaited::Lookup(self.keys.0));
    }

    fn what(&self) -> &'static str {
        "a Graph lookup"
    }
}
