//! A fleet of instances sharing sign-ins and sign-outs through `entra_shared_store` (logic:
//! entra-core `fleet.rs`). Requests never talk to the store: the callback, `entra_logout` and the
//! front-channel call put what the store must be told in the zone's outbox and ask for a round;
//! one worker per instance at a time (the zone's round claim) takes the outbox, and on a pool
//! thread tells the store, asks it about `sid`s this instance did not issue, and reads the
//! sign-outs the other instances published; back on its event loop it puts them in the fleet
//! record that session requests read. Rounds run once a second (the refresh tick), and at once
//! when something is to be told.

use std::sync::Arc;

use entra_core::fleet::{run_round, Item, ItemKind, ProviderRound, RoundAnswer};
use entra_core::provider::{KeySource, DEFAULT_FETCH_TIMEOUT};
use entra_core::revocation::{sid_key, Key, SessionKeys};
use entra_core::store::{Store, StoreError};

use crate::clock::epoch_ms;
use crate::conf::ext::{Conf, ConfError};
use crate::conf::MainConf;
use crate::log::{error, info};
use crate::threads;
use crate::worker::{self, cycle_log, Awaited, ProviderState, Worker};
use crate::zone::RoundPart;

/// Rounds start at most this often without something to tell: a little under the tick's
/// second, since the wall clock and the timers' monotonic clock may round a millisecond apart.
const ROUND_EVERY_MS: u64 = 900;

/// Once the http block is parsed: the store's client, with the providers' smallest
/// `fetch_timeout` for its connects and commands, and the session providers told to name their
/// sessions in the fleet.
pub fn configure(cf: &Conf, main: &mut MainConf) -> Result<(), ConfError> {
    let Some(config) = main.store.clone() else { return Ok(()) };
    let timeout = main
        .providers
        .iter()
        .filter_map(|p| match &p.source {
            KeySource::Discovery { discovery, .. } => Some(discovery.timeout),
            KeySource::File => None,
        })
        .min()
        .unwrap_or(DEFAULT_FETCH_TIMEOUT);
    let sessions: Vec<_> = main.providers.iter().filter(|p| p.sign_in.keys.is_some()).collect();
    if sessions.is_empty() {
        cf.warn_about(&"entra: \"entra_shared_store\" is set but no entra_provider has a session_key_file: the fleet shares nothing");
    }
    for provider in sessions {
        provider.sign_in.name_in_fleet();
    }
    for provider in main.providers.iter().filter(|p| p.graph.is_some() && p.sign_in.keys.is_none()) {
        cf.warn_about(&format_args!(
            "entra: provider \"{}\": its Graph answers are not shared through \"entra_shared_store\": it has no \
             session_key_file to seal them with",
            provider.name
        ));
    }
    main.fleet = Some(Arc::new(Store::new(config, timeout)));
    Ok(())
}

fn pid() -> u32 {
    // SAFETY: ngx_pid is set once at process start.
    unsafe { ngx::ffi::ngx_pid as u32 }
}

/// A round claimed longer ago than this is taken over (its worker died).
fn stale_ms(store: &Store) -> u64 {
    store.timeout.as_millis() as u64 * 6 + 1000
}

/// One round trip with the store, on the default pool.
struct RoundJob {
    store: Arc<Store>,
    known: Option<String>,
    now_ms: u64,
    rounds: Vec<ProviderRound>,
    /// Per provider index: what was taken of its slot.
    parts: Vec<(usize, RoundPart)>,
    result: Option<Result<RoundAnswer, StoreError>>,
}

impl threads::Job for RoundJob {
    fn run(&mut self) {
        // At most the store's timeout for reading, so that a start's first read of many
        // entries is bounded too.
        let read_for = self.store.timeout;
        self.result =
            Some(run_round(&self.store, self.known.as_deref(), self.now_ms, &self.rounds, read_for));
    }

    fn done(self: Box<Self>) {
        let Some(worker) = worker::current() else { return };
        worker.round_in_flight.set(false);
        finish(&worker, *self);
    }

    fn what(&self) -> &'static str {
        "a round trip with the shared store"
    }
}

/// The refresh tick: a round when one is due.
pub fn tick(worker: &Worker) {
    start_round(worker, false);
}

/// Starts a round if this worker can take the claim (`urgent`: something waits to be told).
fn start_round(worker: &Worker, urgent: bool) {
    let Some((store, part)) = &worker.fleet else { return };
    if worker.round_in_flight.get() {
        return;
    }
    let now_ms = epoch_ms();
    if !part.claim_round(pid(), now_ms, ROUND_EVERY_MS, stale_ms(store), urgent) {
        return;
    }
    let mut rounds = Vec::new();
    let mut parts = Vec::new();
    for state in &worker.providers {
        let Some(fleet) = &state.fleet else { continue };
        let Some(mut taken) = fleet.take_round(pid(), now_ms, stale_ms(store)) else { continue };
        let lifetime_ms = state.provider.sign_in.session_lifetime.saturating_mul(1000);
        if taken.republish {
            taken.items.extend(fleet.record.entries(now_ms).into_iter().map(|k| match k.revoked_at_ms {
                0 => Item { kind: ItemKind::SignIn, key: k.key, at_ms: k.expires_ms },
                at_ms => Item { kind: ItemKind::SignOut, key: k.key, at_ms },
            }));
            let watermark = fleet.record.status().map_or(0, |r| r.watermark_ms);
            taken.watermark_ms = taken.watermark_ms.max(watermark);
        }
        rounds.push(ProviderRound {
            name: state.provider.name.clone(),
            lifetime_ms,
            items: taken.items.clone(),
            watermark_ms: taken.watermark_ms,
            after: taken.after,
        });
        parts.push((state.index, taken));
    }
    let run_id = part.run_id();
    let taken_back = parts.clone();
    let job = RoundJob {
        store: store.clone(),
        known: Some(run_id).filter(|id| !id.is_empty()),
        now_ms,
        rounds,
        parts,
        result: None,
    };
    if threads::post(threads::DEFAULT_POOL, Box::new(job)) {
        worker.round_in_flight.set(true);
        return;
    }
    // Not posted: what was taken waits in the outbox again.
    for (index, taken) in &taken_back {
        if let Some(fleet) = worker.providers.get(*index).and_then(|s| s.fleet.as_ref()) {
            fleet.end_round(pid(), taken, None, (now_ms, 0, 0), false);
        }
    }
    part.end_round(pid(), now_ms, Err("the thread pool is full or missing"));
}

fn finish(worker: &Worker, job: RoundJob) {
    let Some((store, part)) = &worker.fleet else { return };
    let now_ms = epoch_ms();
    let answer = match &job.result {
        Some(Ok(answer)) => Ok(answer),
        Some(Err(e)) => Err(e.to_string()),
        None => Err("the round did not run".to_owned()),
    };
    let ended =
        part.end_round(pid(), now_ms, answer.as_ref().map(|a| a.run_id.as_str()).map_err(String::as_str));
    if let (Err(why), true) = (&answer, ended) {
        error!(
            cycle_log(),
            "entra_shared_store \"{}\" did not answer: {}; sign-outs wait in the zone and sessions are judged by this \
             instance's records",
            store.config.name(),
            why
        );
    }
    // A round of a store a reload replaced since: what it read is another store's (its
    // position above all); what it took waits for the new store.
    let answer = if part.current() { answer } else { Err("the store was replaced by a reload".to_owned()) };
    let restarted = answer.as_ref().is_ok_and(|a| a.restarted);
    if restarted {
        part.note_restart(now_ms);
        info!(
            cycle_log(),
            "entra_shared_store \"{}\" is another or restarted: telling it again what this instance holds",
            store.config.name()
        );
    }
    let grace = part.in_restart_grace(now_ms);
    for (position, (index, taken)) in job.parts.iter().enumerate() {
        let Some(state) = worker.providers.get(*index) else { continue };
        let Some(fleet) = &state.fleet else { continue };
        let provider_answer = answer.as_ref().ok().and_then(|a| a.providers.get(position));
        let times = (
            now_ms,
            state.provider.leeway.saturating_mul(1000),
            state.provider.sign_in.session_lifetime.saturating_mul(1000),
        );
        fleet.end_round(pid(), taken, provider_answer, times, grace);
        if restarted {
            fleet.ask_republish();
        }
    }
    // Session requests parked for the first read are judged now.
    worker.wake(Awaited::Keys);
    // What came meanwhile goes at once (calls asked again after a restart, at the next tick),
    // and a stream not read to its end is read on.
    let waiting = worker.providers.iter().any(|s| s.fleet.as_ref().is_some_and(|f| f.waiting() > 0));
    let unread = answer.as_ref().is_ok_and(|a| a.providers.iter().any(|p| !p.read_through));
    if answer.is_ok() && (restarted || unread || (waiting && !grace)) {
        start_round(worker, true);
    }
}

/// Until when (monotonic ms) a session request of `state`'s provider waits for the instance's first read
/// of the store (a start, or another store): at most the store's timeout after it began. `None`
/// once read, or once that time passed (the instance's own records judge meanwhile, and the
/// failed round has said why at `error`).
pub fn first_read_until(worker: &Worker, state: &ProviderState, now_ms: u64) -> Option<u64> {
    let ((store, _), fleet) = (worker.fleet.as_ref()?, state.fleet.as_ref()?);
    let until = fleet.first_read_until(store.timeout.as_millis() as u64)?;
    (now_ms < until && worker.may_wait()).then(|| {
        start_round(worker, true);
        until
    })
}

/// A session signed in here (the callback): issued, in the fleet record and the store.
pub fn signed_in(worker: &Worker, state: &ProviderState, keys: &SessionKeys, expires_ms: u64) {
    let (Some(fleet), Some(&first)) = (&state.fleet, keys.fleet.first()) else { return };
    fleet.record.record_key(first, expires_ms, epoch_ms());
    fleet.tell(Item { kind: ItemKind::SignIn, key: first, at_ms: expires_ms });
    start_round(worker, true);
}

/// A session ended here (`entra_logout`, or a front-channel call this instance's record knew):
/// published under each of its names.
pub fn signed_out(worker: &Worker, state: &ProviderState, fleet_keys: &[Key], at_ms: u64) {
    let Some(fleet) = &state.fleet else { return };
    for &key in fleet_keys {
        fleet.tell(Item { kind: ItemKind::SignOut, key, at_ms });
    }
    start_round(worker, true);
}

/// What a front-channel call did with a fleet.
pub enum FrontChannel {
    /// This instance issued the `sid`: ended here, and published.
    Ended,
    /// Another instance may have: the store is asked (ended and published if so).
    Asked,
}

/// A front-channel call for `sid` with a fleet (`None` without one: the record alone decides).
pub fn frontchannel(worker: &Worker, state: &ProviderState, sid: &str, now_ms: u64) -> Option<FrontChannel> {
    let fleet = state.fleet.as_ref()?;
    let record = state.record.as_ref()?;
    let keys = state.provider.sign_in.keys.as_ref()?;
    let names = keys.fleet_keys(&state.provider.name, &entra_core::revocation::identity(sid, "", "", 0));
    if record.revoke_known(sid_key(sid), now_ms) {
        signed_out(worker, state, &names, now_ms);
        return Some(FrontChannel::Ended);
    }
    for key in names {
        fleet.tell(Item { kind: ItemKind::Query, key, at_ms: now_ms });
    }
    start_round(worker, true);
    Some(FrontChannel::Asked)
}
