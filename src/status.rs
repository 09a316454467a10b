//! `entra_status;`: what the module knows, per provider, as JSON or (`?format=prometheus`) in
//! Prometheus' text format. Key ids, times, errors and counters only: never a key or a token.

use core::ffi::{c_char, c_void};
use core::fmt::Write;

use entra_core::error::REASONS;
use entra_core::revocation::RecordStatus;
use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::ffi::{
    ngx_command_t, ngx_conf_t, ngx_http_request_t, ngx_int_t, ngx_log_t, NGX_HTTP_INTERNAL_SERVER_ERROR,
};
use ngx::http::{HttpModuleLocationConf, NgxHttpCoreModule};
use serde_json::{json, Value};

use crate::clock::{epoch_ms, mono_s, now};
use crate::log::{guard, request_log, test_panic};
use crate::worker::{self, Worker};
use crate::zone::{
    CounterValues, StoreState, StoreStatus, GRAPH_EVENTS, JUDGED, JUDGING_BUCKETS_US, STEP_UP_EVENTS,
    STEP_UP_REASONS,
};

const INTERNAL_ERROR: ngx_int_t = NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;

pub extern "C" fn set_status(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    _conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx calls directive handlers with a valid cf.
    guard(unsafe { (*cf).log }, "entra_status", NGX_CONF_ERROR, || {
        // SAFETY: as above, in a location.
        match unsafe { NgxHttpCoreModule::location_conf_mut(&*cf) } {
            Some(clcf) => {
                clcf.handler = Some(status_handler);
                NGX_CONF_OK
            }
            None => NGX_CONF_ERROR,
        }
    })
}

/// One counter every provider reports.
struct Counter {
    name: &'static str,
    /// Prometheus' `# HELP` text.
    help: &'static str,
    read: fn(&CounterValues) -> u64,
}

/// A [`Counter`] of the field of [`CounterValues`] of the same name (or shown as `$name`).
macro_rules! counter {
    ($field:ident, $help:literal) => {
        counter!($field = $field, $help)
    };
    ($name:ident = $field:ident, $help:literal) => {
        Counter { name: stringify!($name), help: $help, read: |c| c.$field }
    };
}

/// Every provider's counters, in the order shown.
const COUNTERS: [Counter; 16] = [
    counter!(allowed, "Requests let in."),
    counter!(sign_in_challenges, "Navigations without a session sent to sign in (not denials)."),
    counter!(cache_hits, "Tokens and sessions found in the worker's caches."),
    // Shown under its first name, which dashboards read.
    counter!(cache_misses = tokens_verified, "Tokens not found in the cache that verified and passed."),
    counter!(verify_microseconds, "Time spent judging tokens not found in the cache."),
    counter!(fetches, "Key set fetches."),
    counter!(fetch_errors, "Failed key set fetches."),
    counter!(metadata_fetches, "Metadata document requests."),
    counter!(signins_started, "Browsers sent to sign in."),
    counter!(signins_completed, "Sign-ins that set a session."),
    counter!(sessions_accepted, "Session cookies that opened."),
    counter!(session_microseconds, "Time spent opening session cookies."),
    counter!(logouts, "Logouts through entra_logout."),
    counter!(frontchannel_logouts, "Front-channel logouts from Entra."),
    counter!(replayed_states, "Sign-in callbacks refused: their state was used already."),
    counter!(refused_callbacks, "Sign-in callbacks refused before the token endpoint: too many."),
];

/// What Prometheus is shown of a record of sessions: name, type, help and reading.
type RecordMetric = (&'static str, &'static str, &'static str, fn(&RecordStatus) -> u64);
const RECORD_METRICS: [RecordMetric; 6] = [
    ("session_record_entries", "gauge", "Sessions recorded for single sign-out.", |r| r.entries),
    ("session_record_capacity", "gauge", "Sessions the record can hold (session_record).", |r| r.capacity),
    ("session_record_revoked", "gauge", "Recorded sessions a logout ended.", |r| r.revoked),
    ("unrecorded_sign_ins_total", "counter", "Sign-ins the full record could not take.", |r| r.unrecorded),
    ("unknown_logouts_total", "counter", "Front-channel calls for a sid never recorded.", |r| r.unknown),
    ("session_watermark_seconds", "gauge", "Unrecorded sessions signed in before this are refused.", |r| {
        r.watermark_ms / 1000
    }),
];

struct ProviderStatus {
    name: String,
    source: &'static str,
    kids: Vec<String>,
    last_fetch: u64,
    last_error: String,
    next_refresh: u64,
    /// Readings of [`COUNTERS`], in its order; empty without a shared zone.
    counters: Vec<u64>,
    denied: Vec<(&'static str, u64)>,
    /// Single sign-out's record (session providers).
    record: Option<RecordStatus>,
    /// Group overage answered by Graph: readings of [`GRAPH_EVENTS`], the time the lookups took
    /// (µs), the answers kept and the table's size.
    graph: Option<GraphStatus>,
    /// Readings of the step-ups, by [`STEP_UP_REASONS`] then [`STEP_UP_EVENTS`].
    step_ups: Vec<u64>,
    /// With `entra_shared_store`.
    fleet: Option<FleetReading>,
    /// Judgments by how long they took: by [`JUDGED`], then by bucket (not cumulative).
    judging: Vec<u64>,
}

/// The module's version and what it was built with.
fn build() -> [(&'static str, &'static str); 3] {
    [
        ("version", env!("CARGO_PKG_VERSION")),
        ("nginx", ngx::ffi::NGINX_VERSION.to_str().unwrap_or("?")),
        ("signatures", entra_core::signature::LIBRARY),
    ]
}

/// What a provider's fleet reports: name, Prometheus help, kind.
const FLEET_FIELDS: [(&str, &str, &str); 11] = [
    ("published", "Sign-outs and watermarks this instance published to the store.", "counter"),
    ("received", "Sign-outs and watermarks read from the store.", "counter"),
    ("confirmed", "Front-channel calls for sids another instance issued.", "counter"),
    ("unknown", "Front-channel calls for sids no instance issued (ignored).", "counter"),
    (
        "dropped",
        "Sign-outs not published (outbox full, or over the rate): each raised the watermark.",
        "counter",
    ),
    ("watermarks", "Times the fleet watermark rose.", "counter"),
    ("malformed", "Store entries that were not the module's.", "counter"),
    ("graph_shared", "Graph lookups answered from the store (another instance asked Graph).", "counter"),
    ("graph_asked", "Graph lookups that asked Graph and kept the answer in the store.", "counter"),
    ("waiting", "Entries waiting in the outbox for the store.", "gauge"),
    ("signed_out", "Sessions the fleet record refuses by name.", "gauge"),
];

/// A provider's fleet as `entra_status` shows it.
struct FleetReading {
    /// [`FLEET_FIELDS`]' readings, in its order.
    values: Vec<u64>,
    /// The fleet record's watermark (ms; 0: none).
    watermark_ms: u64,
}

fn fleet_reading(state: &crate::worker::ProviderState) -> Option<FleetReading> {
    let fleet = state.fleet.as_ref()?;
    let c = fleet.counters()?;
    let read = |a: &core::sync::atomic::AtomicU64| a.load(core::sync::atomic::Ordering::Relaxed);
    let record = fleet.record.status().unwrap_or_default();
    let values = vec![
        read(&c.published),
        read(&c.received),
        read(&c.confirmed),
        read(&c.unknown),
        read(&c.dropped),
        read(&c.watermarks),
        read(&c.malformed),
        read(&c.graph_shared),
        read(&c.graph_asked),
        fleet.waiting() as u64,
        record.revoked,
    ];
    Some(FleetReading { values, watermark_ms: record.watermark_ms })
}

struct GraphStatus {
    events: Vec<u64>,
    microseconds: u64,
    entries: usize,
    capacity: usize,
}

fn collect(worker: &Worker, log: *mut ngx_log_t) -> Vec<ProviderStatus> {
    worker
        .providers
        .iter()
        .map(|state| {
            // Report the keys in force now, even if no request made this worker look yet.
            state.sync_keys(log);
            let p = &state.provider;
            let mut status = ProviderStatus {
                name: p.name.clone(),
                source: if state.discovery().is_some() { "metadata" } else { "jwks_file" },
                kids: p.key_state().keys.kids().map(str::to_owned).collect(),
                last_fetch: 0,
                last_error: String::new(),
                next_refresh: 0,
                counters: Vec::new(),
                denied: Vec::new(),
                record: state.record.as_ref().and_then(|r| r.status()),
                graph: None,
                step_ups: Vec::new(),
                fleet: fleet_reading(state),
                judging: Vec::new(),
            };
            if let Some((entries, capacity)) = state.graph.as_ref().and_then(|g| g.status(epoch_ms())) {
                let counters = state.slot.as_ref().and_then(|s| s.status()).map(|s| s.counters);
                status.graph = Some(GraphStatus {
                    events: counters
                        .as_ref()
                        .map_or_else(|| vec![0; GRAPH_EVENTS.len()], |c| c.graph.clone()),
                    microseconds: counters.as_ref().map_or(0, |c| c.graph_microseconds),
                    entries,
                    capacity,
                });
            }
            if let Some(slot) = state.slot.as_ref().and_then(|s| s.status()) {
                status.last_fetch = slot.last_success;
                // Scheduled on the monotonic clock; shown on the wall clock.
                status.next_refresh = if slot.next_refresh > 0 {
                    now() + slot.next_refresh.saturating_sub(mono_s())
                } else {
                    0
                };
                status.last_error = slot.last_error;
                status.counters = COUNTERS.iter().map(|counter| (counter.read)(&slot.counters)).collect();
                if state.record.is_some() {
                    // Providers that sign browsers in.
                    status.step_ups = slot.counters.step_ups.clone();
                }
                status.denied = REASONS.iter().map(|r| r.word).zip(slot.counters.denied).collect();
                status.judging = slot.counters.judging;
            }
            status
        })
        .collect()
}

fn as_json(providers: &[ProviderStatus], store: Option<&StoreView>) -> String {
    let providers: Vec<Value> = providers
        .iter()
        .map(|p| {
            let counters: serde_json::Map<String, Value> = COUNTERS
                .iter()
                .zip(&p.counters)
                .map(|(counter, n)| (counter.name.to_owned(), json!(n)))
                .collect();
            let denied: serde_json::Map<String, Value> =
                p.denied.iter().filter(|(_, n)| *n > 0).map(|(r, n)| (r.to_string(), json!(n))).collect();
            let mut provider = json!({
                "name": p.name,
                "key_source": p.source,
                "kids": p.kids,
                "last_fetch": (p.last_fetch > 0).then_some(p.last_fetch),
                "last_error": (!p.last_error.is_empty()).then_some(&p.last_error),
                "next_refresh": (p.next_refresh > 0).then_some(p.next_refresh),
                "counters": counters,
                "denied": denied,
            });
            // Providers that sign browsers in.
            if let Some(r) = p.record {
                provider["session_record"] = json!({
                    "entries": r.entries,
                    "capacity": r.capacity,
                    "revoked": r.revoked,
                    "unrecorded_sign_ins": r.unrecorded,
                    "unknown_logouts": r.unknown,
                    "watermark": (r.watermark_ms > 0).then_some(r.watermark_ms / 1000),
                });
            }
            if let Some(g) = &p.graph {
                let mut graph: serde_json::Map<String, Value> = GRAPH_EVENTS
                    .iter()
                    .zip(&g.events)
                    .map(|((_, name), n)| (name.to_string(), json!(n)))
                    .collect();
                graph.insert("lookup_microseconds".into(), json!(g.microseconds));
                graph.insert("entries".into(), json!(g.entries));
                graph.insert("capacity".into(), json!(g.capacity));
                provider["graph"] = Value::Object(graph);
            }
            if !p.step_ups.is_empty() {
                let by_reason = |events: &[u64]| -> Value {
                    STEP_UP_EVENTS.iter().zip(events).map(|(e, n)| (e.to_string(), json!(n))).collect()
                };
                provider["step_ups"] = STEP_UP_REASONS
                    .iter()
                    .zip(p.step_ups.chunks(STEP_UP_EVENTS.len()))
                    .map(|(reason, events)| (reason.to_string(), by_reason(events)))
                    .collect();
            }
            if let Some(reading) = &p.fleet {
                let mut fleet: serde_json::Map<String, Value> = FLEET_FIELDS
                    .iter()
                    .zip(&reading.values)
                    .map(|((name, ..), n)| (name.to_string(), json!(n)))
                    .collect();
                let watermark = reading.watermark_ms / 1000;
                fleet.insert("watermark".into(), json!((watermark > 0).then_some(watermark)));
                provider["fleet"] = Value::Object(fleet);
            }
            provider
        })
        .collect();
    let module: serde_json::Map<String, Value> =
        build().iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    let mut out = json!({ "module": module, "providers": providers });
    if let Some(store) = store {
        let s = &store.status;
        out["store"] = json!({
            "name": store.name,
            "state": s.state.word(),
            "since": (s.since_ms > 0).then_some(s.since_ms / 1000),
            "last_error": (!s.last_error.is_empty()).then_some(&s.last_error),
            "rounds": s.rounds,
            "failed_rounds": s.failures,
        });
    }
    out.to_string() + "\n"
}

/// What `entra_status` shows of the store: its name and status.
struct StoreView {
    name: String,
    status: StoreStatus,
}

fn store_view(worker: &Worker) -> Option<StoreView> {
    let (store, part) = worker.fleet.as_ref()?;
    Some(StoreView { name: store.config.name(), status: part.status() })
}

fn as_prometheus(providers: &[ProviderStatus], store: Option<&StoreView>) -> String {
    let mut out = String::new();
    let metric = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP entra_{name} {help}\n# TYPE entra_{name} {kind}");
    };
    let family =
        |out: &mut String, name: &str, kind: &str, help: &str, value: &dyn Fn(&ProviderStatus) -> u64| {
            metric(out, name, kind, help);
            for p in providers {
                let _ = writeln!(out, "entra_{name}{{provider=\"{}\"}} {}", p.name, value(p));
            }
        };
    metric(&mut out, "build_info", "gauge", "The module's version, nginx's and the signature library.");
    let labels: Vec<String> = build().iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    let _ = writeln!(out, "entra_build_info{{{}}} 1", labels.join(","));
    family(&mut out, "keys", "gauge", "Signing keys in force.", &|p| p.kids.len() as u64);
    family(&mut out, "last_key_fetch_timestamp_seconds", "gauge", "Last successful key fetch.", &|p| {
        p.last_fetch
    });
    for (i, counter) in COUNTERS.iter().enumerate() {
        let name = format!("{}_total", counter.name);
        family(&mut out, &name, "counter", counter.help, &|p| p.counters.get(i).copied().unwrap_or(0));
    }
    for (name, kind, help, read) in RECORD_METRICS {
        metric(&mut out, name, kind, help);
        for p in providers {
            if let Some(record) = &p.record {
                let _ = writeln!(out, "entra_{name}{{provider=\"{}\"}} {}", p.name, read(record));
            }
        }
    }
    metric(&mut out, "graph_events_total", "counter", "Graph lookups and their ends, by event.");
    for p in providers.iter().filter_map(|p| Some((&p.name, p.graph.as_ref()?))) {
        for ((_, event), n) in GRAPH_EVENTS.iter().zip(&p.1.events) {
            let _ = writeln!(out, "entra_graph_events_total{{provider=\"{}\",event=\"{event}\"}} {n}", p.0);
        }
    }
    type GraphMetric = (&'static str, &'static str, &'static str, fn(&GraphStatus) -> u64);
    const GRAPH_METRICS: [GraphMetric; 3] = [
        ("graph_lookup_microseconds_total", "counter", "Time Graph lookups took on the pool.", |g| {
            g.microseconds
        }),
        ("graph_answers", "gauge", "Graph answers kept in the zone.", |g| g.entries as u64),
        ("graph_answers_capacity", "gauge", "Graph answers the zone can keep (groups_cache_entries).", |g| {
            g.capacity as u64
        }),
    ];
    for (name, kind, help, read) in GRAPH_METRICS {
        metric(&mut out, name, kind, help);
        for p in providers.iter().filter_map(|p| Some((&p.name, p.graph.as_ref()?))) {
            let _ = writeln!(out, "entra_{name}{{provider=\"{}\"}} {}", p.0, read(p.1));
        }
    }
    metric(
        &mut out,
        "step_ups_total",
        "counter",
        "Browsers sent to sign in again for a step-up, and its end.",
    );
    for p in providers {
        let events = STEP_UP_REASONS.iter().flat_map(|r| STEP_UP_EVENTS.iter().map(move |e| (r, e)));
        for ((reason, event), n) in events.zip(&p.step_ups) {
            let labels = format!("provider=\"{}\",reason=\"{reason}\",event=\"{event}\"", p.name);
            let _ = writeln!(out, "entra_step_ups_total{{{labels}}} {n}");
        }
    }
    for (i, (name, help, kind)) in FLEET_FIELDS.iter().enumerate() {
        let name = if *kind == "counter" { format!("fleet_{name}_total") } else { format!("fleet_{name}") };
        metric(&mut out, &name, kind, help);
        for p in providers {
            if let Some(n) = p.fleet.as_ref().and_then(|f| f.values.get(i)) {
                let _ = writeln!(out, "entra_{name}{{provider=\"{}\"}} {n}", p.name);
            }
        }
    }
    if let Some(store) = store {
        metric(
            &mut out,
            "store_up",
            "gauge",
            "Whether the last round trip with entra_shared_store succeeded.",
        );
        let up = u8::from(store.status.state == StoreState::Up);
        let _ = writeln!(out, "entra_store_up{{store=\"{}\"}} {up}", store.name);
    }
    judging_histogram(&mut out, providers);
    metric(&mut out, "denied_total", "counter", "Requests refused, by reason.");
    for p in providers {
        for (reason, n) in &p.denied {
            let _ = writeln!(out, "entra_denied_total{{provider=\"{}\",reason=\"{reason}\"}} {n}", p.name);
        }
    }
    out
}

/// `entra_judging_seconds`: how long judging a token or a session took, when no cache answered
/// (a cached answer takes about a microsecond and is counted in `cache_hits`).
fn judging_histogram(out: &mut String, providers: &[ProviderStatus]) {
    let name = "entra_judging_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Time to judge a token or session no cache answered.\n# TYPE {name} histogram"
    );
    // The histogram's sums are the counters of time spent, by the same [`JUDGED`] order.
    let index_of = |name: &str| COUNTERS.iter().position(|c| c.name == name).unwrap_or(usize::MAX);
    let sums = [index_of("verify_microseconds"), index_of("session_microseconds")];
    for p in providers.iter().filter(|p| !p.judging.is_empty()) {
        for ((judged, buckets), sum) in
            JUDGED.iter().zip(p.judging.chunks(JUDGING_BUCKETS_US.len() + 1)).zip(sums)
        {
            let labels = format!("provider=\"{}\",judged=\"{judged}\"", p.name);
            let mut count = 0;
            for (i, n) in buckets.iter().enumerate() {
                count += n;
                let le = match JUDGING_BUCKETS_US.get(i) {
                    Some(us) => format!("{}", *us as f64 / 1e6),
                    None => "+Inf".to_owned(),
                };
                let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {count}");
            }
            let seconds = p.counters.get(sum).copied().unwrap_or(0) as f64 / 1e6;
            let _ = writeln!(out, "{name}_sum{{{labels}}} {seconds}\n{name}_count{{{labels}}} {count}");
        }
    }
}

extern "C" fn status_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx calls content handlers with a valid request.
    guard(unsafe { request_log(r) }, "entra_status", INTERNAL_ERROR, || {
        test_panic("status");
        // SAFETY: as above.
        unsafe { respond(r) }
    })
}

/// # Safety
/// `r` is a valid request.
unsafe fn respond(r: *mut ngx_http_request_t) -> ngx_int_t {
    let Some(worker) = worker::current() else { return INTERNAL_ERROR };
    // SAFETY: per the contract.
    let (log, args) = unsafe { (request_log(r), (*r).args.as_bytes()) };
    let prometheus = args.split(|b| *b == b'&').any(|a| a == b"format=prometheus");
    let providers = collect(&worker, log);
    let store = store_view(&worker);
    let (body, content_type) = if prometheus {
        (as_prometheus(&providers, store.as_ref()), "text/plain; version=0.0.4")
    } else {
        (as_json(&providers, store.as_ref()), "application/json")
    };
    // SAFETY: per the contract, in a content handler.
    unsafe { crate::response::send(r, 200, &[], content_type, &body) }
}
