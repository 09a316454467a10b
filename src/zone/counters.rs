//! What `entra_status` counts per provider: atomics in the provider's slot, counted without the
//! zone's lock.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use entra_core::error::REASONS;
use entra_core::Denial;

/// What `entra_status` counts per provider.
#[repr(C)]
pub struct Counters {
    pub(super) allowed: AtomicU64,
    pub(super) denied: [AtomicU64; REASONS.len()],
    pub(super) cache_hits: AtomicU64,
    /// Tokens the cache did not answer that verified and passed (a cache miss that failed is
    /// counted among the denials).
    pub(super) tokens_verified: AtomicU64,
    /// Time spent judging tokens the cache did not answer (signature and claims, passed or
    /// refused): the worker's crypto load, and the benchmark's in-worker measure of it.
    pub(super) verify_nanoseconds: AtomicU64,
    pub(super) fetches: AtomicU64,
    pub(super) fetch_errors: AtomicU64,
    pub(super) metadata_fetches: AtomicU64,
    pub(super) signins_started: AtomicU64,
    pub(super) signins_completed: AtomicU64,
    pub(super) sessions_accepted: AtomicU64,
    /// Time spent opening session cookies, like `verify_nanoseconds` for tokens.
    pub(super) session_nanoseconds: AtomicU64,
    pub(super) logouts: AtomicU64,
    pub(super) frontchannel_logouts: AtomicU64,
    /// Callbacks whose state was used already (replays), refused before the token endpoint.
    pub(super) replayed_states: AtomicU64,
    /// Callbacks refused before the token endpoint for want of room (per address and minute,
    /// exchanges in flight, the record of states).
    pub(super) refused_callbacks: AtomicU64,
    /// Group overage answered by Graph, by [`GraphEvent`].
    pub(super) graph: [AtomicU64; GRAPH_EVENTS.len()],
    /// Time the lookups took, on the pool.
    pub(super) graph_nanoseconds: AtomicU64,
    /// Step-ups, by [`STEP_UP_REASONS`] then [`STEP_UP_EVENTS`].
    pub(super) step_ups: [AtomicU64; STEP_UP_REASONS.len() * STEP_UP_EVENTS.len()],
    /// Navigations without a session sent to sign in: a browser's first visit, not a denial.
    pub(super) sign_in_challenges: AtomicU64,
    /// Judgments the caches did not answer, by [`JUDGED`] then by how long they took (the
    /// bucket of [`JUDGING_BUCKETS_US`] they fall in, the last one for longer).
    pub(super) judging: [AtomicU64; JUDGED.len() * (JUDGING_BUCKETS_US.len() + 1)],
}

/// What is judged, with its name in `entra_status`'s histogram.
pub const JUDGED: [&str; 2] = ["token", "session"];
/// The histogram's upper bounds, in µs: a cached token takes about 1 µs, an RSA-2048 check
/// 30 to 60, a session with 200 groups about 100.
pub const JUDGING_BUCKETS_US: [u64; 9] = [10, 25, 50, 100, 250, 500, 1_000, 2_500, 10_000];

/// Why a browser was sent to sign in again, with its name in `entra_status`: an authentication
/// context (`entra_require_auth_context`, with or without a recent sign-in), or only a recent
/// sign-in (`entra_require_recent_signin`).
pub const STEP_UP_REASONS: [&str; 2] = ["auth_context", "recent_signin"];
/// What became of a step-up: sent to Entra, given what was asked, or not (a 403 page).
pub const STEP_UP_EVENTS: [&str; 3] = ["started", "satisfied", "refused"];

/// A step-up event.
#[derive(Clone, Copy)]
pub enum StepUpEvent {
    Started,
    Satisfied,
    Refused,
}

/// What `entra_status` counts of Graph lookups, with its name there.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum GraphEvent {
    /// App tokens asked of a token endpoint.
    TokenRequest,
    /// Lookups posted to the pool.
    Lookup,
    /// Requests answered without a lookup: by the zone's answer, or this worker's copy of it.
    Answered,
    /// Lookups that ended with: the tenant's token endpoint refusing the app,
    RefusedConsent,
    /// Graph refusing (403),
    RefusedForbidden,
    /// Graph not knowing the user (404),
    RefusedNotFound,
    /// a 429,
    Throttled,
    /// unreachable, slow or 5xx,
    Unavailable,
    /// an answer that is none.
    BadAnswer,
}

/// Every [`GraphEvent`] in its order, with its name in `entra_status`.
pub const GRAPH_EVENTS: [(GraphEvent, &str); 9] = [
    (GraphEvent::TokenRequest, "token_requests"),
    (GraphEvent::Lookup, "lookups"),
    (GraphEvent::Answered, "answered"),
    (GraphEvent::RefusedConsent, "refused_consent"),
    (GraphEvent::RefusedForbidden, "refused_forbidden"),
    (GraphEvent::RefusedNotFound, "refused_not_found"),
    (GraphEvent::Throttled, "throttled"),
    (GraphEvent::Unavailable, "unavailable"),
    (GraphEvent::BadAnswer, "bad_answer"),
];

impl Counters {
    /// Every counter back to 0, by atomic stores: a worker that outlived a reload may still be
    /// counting into them.
    pub(super) fn reset(&self) {
        let singles = [
            &self.allowed,
            &self.cache_hits,
            &self.tokens_verified,
            &self.verify_nanoseconds,
            &self.fetches,
            &self.fetch_errors,
            &self.metadata_fetches,
            &self.signins_started,
            &self.signins_completed,
            &self.sessions_accepted,
            &self.session_nanoseconds,
            &self.logouts,
            &self.frontchannel_logouts,
            &self.replayed_states,
            &self.refused_callbacks,
            &self.graph_nanoseconds,
        ];
        let arrays = self.denied.iter().chain(&self.graph).chain(&self.step_ups).chain(&self.judging);
        for counter in singles.into_iter().chain([&self.sign_in_challenges]).chain(arrays) {
            counter.store(0, Relaxed);
        }
    }
}

/// A sign-in event `entra_status` counts.
#[derive(Clone, Copy)]
pub enum SignInEvent {
    Started,
    Completed,
    Logout,
    FrontChannelLogout,
    /// A callback whose state was used already.
    StateReplayed,
    /// A callback refused for want of room, before the token endpoint.
    CallbackRefused,
}

/// A reading of [`Counters`].
pub struct CounterValues {
    pub allowed: u64,
    pub denied: Vec<u64>,
    pub cache_hits: u64,
    pub tokens_verified: u64,
    pub verify_microseconds: u64,
    pub fetches: u64,
    pub fetch_errors: u64,
    pub metadata_fetches: u64,
    pub signins_started: u64,
    pub signins_completed: u64,
    pub sessions_accepted: u64,
    pub session_microseconds: u64,
    pub logouts: u64,
    pub frontchannel_logouts: u64,
    pub replayed_states: u64,
    pub refused_callbacks: u64,
    /// By [`GRAPH_EVENTS`].
    pub graph: Vec<u64>,
    pub graph_microseconds: u64,
    /// By [`STEP_UP_REASONS`] then [`STEP_UP_EVENTS`].
    pub step_ups: Vec<u64>,
    pub sign_in_challenges: u64,
    /// By [`JUDGED`], then by bucket (not cumulative).
    pub judging: Vec<u64>,
}

impl Counters {
    /// A judged token: from the cache, or checked for `checked_for`.
    pub fn judged(&self, checked_for: Option<Duration>, passed: bool) {
        let Some(took) = checked_for else {
            self.cache_hits.fetch_add(1, Relaxed);
            return;
        };
        self.verify_nanoseconds.fetch_add(nanoseconds(took), Relaxed);
        self.took(0, took);
        if passed {
            self.tokens_verified.fetch_add(1, Relaxed);
        }
    }

    /// A session cookie opened (or refused) in `took`, or found opened in the cache (`None`).
    pub fn session_opened(&self, took: Option<Duration>, accepted: bool) {
        match took {
            None => self.cache_hits.fetch_add(1, Relaxed),
            Some(took) => {
                self.took(1, took);
                self.session_nanoseconds.fetch_add(nanoseconds(took), Relaxed)
            }
        };
        if accepted {
            self.sessions_accepted.fetch_add(1, Relaxed);
        }
    }

    pub fn sign_in(&self, event: SignInEvent) {
        match event {
            SignInEvent::Started => &self.signins_started,
            SignInEvent::Completed => &self.signins_completed,
            SignInEvent::Logout => &self.logouts,
            SignInEvent::FrontChannelLogout => &self.frontchannel_logouts,
            SignInEvent::StateReplayed => &self.replayed_states,
            SignInEvent::CallbackRefused => &self.refused_callbacks,
        }
        .fetch_add(1, Relaxed);
    }

    /// A step-up event of a step-up that asks for an authentication context (`context`) or
    /// only a recent sign-in.
    pub fn step_up(&self, context: bool, event: StepUpEvent) {
        let reason = if context { 0 } else { 1 };
        self.step_ups[reason * STEP_UP_EVENTS.len() + event as usize].fetch_add(1, Relaxed);
    }

    pub fn graph(&self, event: GraphEvent) {
        self.graph[event as usize].fetch_add(1, Relaxed);
    }

    /// A lookup that took `took` on the pool.
    pub fn graph_took(&self, took: Duration) {
        self.graph_nanoseconds.fetch_add(nanoseconds(took), Relaxed);
    }

    /// The access decision of one check; a sign-in challenge is no denial.
    pub fn decided(&self, decision: Result<(), Denial>, challenge: bool) {
        match decision {
            Ok(()) => &self.allowed,
            Err(_) if challenge => &self.sign_in_challenges,
            Err(denial) => &self.denied[denial.index()],
        }
        .fetch_add(1, Relaxed);
    }

    /// A judgment of kind `judged` (index of [`JUDGED`]) that took `took`; nothing when there was
    /// nothing to judge (no token).
    fn took(&self, judged: usize, took: Duration) {
        if took.is_zero() {
            return;
        }
        let us = took.as_micros();
        let bucket =
            JUDGING_BUCKETS_US.iter().position(|&b| us <= u128::from(b)).unwrap_or(JUDGING_BUCKETS_US.len());
        self.judging[judged * (JUDGING_BUCKETS_US.len() + 1) + bucket].fetch_add(1, Relaxed);
    }

    pub(super) fn read(&self) -> CounterValues {
        CounterValues {
            allowed: self.allowed.load(Relaxed),
            denied: self.denied.iter().map(|n| n.load(Relaxed)).collect(),
            cache_hits: self.cache_hits.load(Relaxed),
            tokens_verified: self.tokens_verified.load(Relaxed),
            verify_microseconds: self.verify_nanoseconds.load(Relaxed) / 1000,
            fetches: self.fetches.load(Relaxed),
            fetch_errors: self.fetch_errors.load(Relaxed),
            metadata_fetches: self.metadata_fetches.load(Relaxed),
            signins_started: self.signins_started.load(Relaxed),
            signins_completed: self.signins_completed.load(Relaxed),
            sessions_accepted: self.sessions_accepted.load(Relaxed),
            session_microseconds: self.session_nanoseconds.load(Relaxed) / 1000,
            logouts: self.logouts.load(Relaxed),
            frontchannel_logouts: self.frontchannel_logouts.load(Relaxed),
            replayed_states: self.replayed_states.load(Relaxed),
            refused_callbacks: self.refused_callbacks.load(Relaxed),
            graph: self.graph.iter().map(|n| n.load(Relaxed)).collect(),
            graph_microseconds: self.graph_nanoseconds.load(Relaxed) / 1000,
            step_ups: self.step_ups.iter().map(|n| n.load(Relaxed)).collect(),
            sign_in_challenges: self.sign_in_challenges.load(Relaxed),
            judging: self.judging.iter().map(|n| n.load(Relaxed)).collect(),
        }
    }
}

fn nanoseconds(took: Duration) -> u64 {
    u64::try_from(took.as_nanos()).unwrap_or(u64::MAX)
}

/// What `entra_status` shows of a provider's fleet.
#[repr(C)]
#[derive(Default)]
pub struct FleetCounters {
    pub published: AtomicU64,
    pub received: AtomicU64,
    /// Front-channel calls the store said no instance issued.
    pub unknown: AtomicU64,
    /// Front-channel calls the store confirmed.
    pub confirmed: AtomicU64,
    /// Sign-outs not published (outbox full or over the rate): each raised the watermark.
    pub dropped: AtomicU64,
    pub watermarks: AtomicU64,
    /// Stream entries that were not the module's.
    pub malformed: AtomicU64,
    /// Graph lookups answered from the store (another instance asked Graph), and those that
    /// asked Graph (and kept the answer in the store).
    pub graph_shared: AtomicU64,
    pub graph_asked: AtomicU64,
}
