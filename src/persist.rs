//! The records of sessions kept across restarts, in `entra_keys_cache_path`'s directory: once a
//! second at most (the refresh tick), a worker that finds a record changed since the last copy
//! kept (and no other worker keeping one) copies it under the zone's lock and writes it on the
//! thread pool, as a new file renamed over the old one; at a worker's exit, what changed since is
//! written at once. The master reads the files back when a start makes the records afresh.

use entra_core::keycache::KeyCache;
use entra_core::revocation::Snapshot;

use crate::clock::epoch_ms;
use crate::log::{error, warning};
use crate::threads;
use crate::worker::{self, cycle_log, Worker};

/// A claim on keeping a record older than this (a worker that died writing) is taken over.
const STALE_CLAIM_MS: u64 = 10_000;

/// One record's copy, written on the default thread pool.
struct KeepJob {
    cache: KeyCache,
    provider: String,
    index: usize,
    generation: u64,
    snapshot: Snapshot,
    result: Option<std::io::Result<()>>,
}

impl threads::Job for KeepJob {
    fn run(&mut self) {
        self.result = Some(self.cache.write_record(&self.provider, &self.snapshot));
    }

    fn done(self: Box<Self>) {
        let Some(worker) = worker::current() else { return };
        let Some(record) = worker.providers.get(self.index).and_then(|p| p.record.as_ref()) else { return };
        match self.result {
            Some(Ok(())) => record.kept(self.generation),
            Some(Err(e)) => {
                record.not_kept();
                error!(
                    cycle_log(),
                    "provider \"{}\": cannot keep the record of sessions \"{}\": {}",
                    self.provider,
                    self.cache.record_file(&self.provider).display(),
                    e
                );
            }
            None => record.not_kept(),
        }
    }

    fn what(&self) -> &'static str {
        "keeping a record of sessions"
    }
}

/// The records with changes to keep, and the cache to keep them in (the refresh tick).
pub fn keep_changed(worker: &Worker) {
    let Some(cache) = &worker.keys_cache else { return };
    for state in &worker.providers {
        let Some(record) = &state.record else { continue };
        let Some((generation, snapshot)) = record.snapshot_to_keep(epoch_ms(), STALE_CLAIM_MS) else {
            continue;
        };
        let job = KeepJob {
            cache: cache.clone(),
            provider: state.provider.name.clone(),
            index: state.index,
            generation,
            snapshot,
            result: None,
        };
        if !threads::post(threads::DEFAULT_POOL, Box::new(job)) {
            record.not_kept();
        }
    }
}

/// At a worker's exit: what changed since the last copy, written now (the worker serves no more
/// requests, so its event loop waits for nothing).
pub fn keep_at_exit() {
    let Some(worker) = worker::current() else { return };
    let Some(cache) = &worker.keys_cache else { return };
    for state in &worker.providers {
        let Some(record) = &state.record else { continue };
        // Taken over whatever claim another worker holds: the newer copy wins the rename.
        let Some((generation, snapshot)) = record.snapshot_to_keep(epoch_ms(), 0) else { continue };
        match cache.write_record(&state.provider.name, &snapshot) {
            Ok(()) => record.kept(generation),
            Err(e) => {
                record.not_kept();
                let name = &state.provider.name;
                warning!(
                    cycle_log(),
                    "provider \"{}\": cannot keep the record of sessions at exit: {}",
                    name,
                    e
                );
            }
        }
    }
}
