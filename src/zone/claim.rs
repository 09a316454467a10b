//! The fetch claim: one fetch of a provider's keys for all workers, taken and given back under
//! the zone's lock, taken over when its worker died.

use core::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::time::Duration;

use entra_core::discovery::Fetched;
use entra_core::schedule::{claim_is_live, is_due, retry_in, Schedule};

use super::root::{store_keys, Slot, StoreError, ERROR_BYTES};
use super::slot::SlotRef;

/// The answer to [`SlotRef::claim_fetch`].
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// This worker fetches now.
    Taken,
    /// Not due, or another worker fetches.
    NotNow,
    /// A reload gave the slot to another provider.
    Reassigned,
}

impl SlotRef {
    /// Takes the fetch for worker `pid` if one is due and nobody (alive) is fetching.
    pub fn claim_fetch(&self, pid: u32, now: u64, now_ms: u64, timeout: Duration) -> Claim {
        self.locked(|_, slot, _| {
            let due = is_due(now, slot.next_refresh.load(SeqCst), slot.forced.load(SeqCst) != 0);
            let owner = slot.fetch_owner.load(SeqCst);
            let busy = owner != 0 && claim_is_live(slot.fetch_started_ms.load(SeqCst), now_ms, timeout);
            if !due || busy {
                return Claim::NotNow;
            }
            // The start first: `fetching` reads both without the lock, and must never see the new
            // owner with the old (stale) start.
            slot.fetch_started_ms.store(now_ms, SeqCst);
            slot.fetch_owner.store(pid, SeqCst);
            Claim::Taken
        })
        .unwrap_or(Claim::Reassigned)
    }

    /// Gives a claimed fetch back without a result (it could not be started).
    pub fn release_claim(&self, pid: u32) {
        self.locked(|_, slot, _| {
            let _ = slot.fetch_owner.compare_exchange(pid, 0, SeqCst, SeqCst);
        });
    }

    /// Stores what worker `pid` fetched at `now` (wall clock, for the status); the next refresh
    /// is due at `next_refresh` (monotonic). Returns the new generation.
    pub fn finish_with_keys(
        &self,
        pid: u32,
        fetched: &Fetched,
        now: u64,
        next_refresh: u64,
    ) -> Result<u64, StoreError> {
        self.locked(|locked, slot, g| {
            slot.counters.fetches.fetch_add(1, Relaxed);
            let generation = store_keys(locked, slot, g, fetched)?;
            slot.counters.metadata_fetches.fetch_add(u64::from(fetched.metadata_requests), Relaxed);
            slot.failures.store(0, SeqCst);
            slot.last_success.store(now, SeqCst);
            slot.next_refresh.store(next_refresh, SeqCst);
            Self::end_fetch(slot, pid);
            Ok(generation)
        })
        .unwrap_or(Err(StoreError::Reassigned))
    }

    /// Records a failed fetch of worker `pid` and schedules the retry; returns its backoff in
    /// seconds, or `None` when the slot is no longer this provider's.
    pub fn finish_with_error(&self, pid: u32, error: &str, now: u64) -> Option<u64> {
        self.locked(|_, slot, g| {
            slot.counters.fetches.fetch_add(1, Relaxed);
            slot.counters.fetch_errors.fetch_add(1, Relaxed);
            // Kept short; never a secret: URLs and reasons only.
            let mut end = error.len().min(ERROR_BYTES);
            while !error.is_char_boundary(end) {
                end -= 1;
            }
            g.last_error[..end].copy_from_slice(&error.as_bytes()[..end]);
            g.last_error_len = end;
            let backoff = retry_in(slot.failures.fetch_add(1, SeqCst));
            slot.next_refresh.store(now + backoff, SeqCst);
            Self::end_fetch(slot, pid);
            backoff
        })
    }

    fn end_fetch(slot: &Slot, pid: u32) {
        slot.forced.store(0, SeqCst);
        let _ = slot.fetch_owner.compare_exchange(pid, 0, SeqCst, SeqCst);
    }

    /// Asks for a refresh because a token names an unknown `kid`, at most once per
    /// `refresh_on_unknown_kid`. Returns `true` when it was asked now.
    pub fn ask_refresh(&self, now: u64, schedule: &Schedule) -> bool {
        self.locked(|_, slot, _| {
            if !schedule.may_force(slot.last_forced.load(SeqCst), now) {
                return false;
            }
            slot.last_forced.store(now, SeqCst);
            slot.forced.store(1, SeqCst);
            true
        })
        .unwrap_or(false)
    }

    /// `true` while a refresh is asked for or some live worker fetches this provider's keys.
    pub fn fetching(&self, now_ms: u64, timeout: Duration) -> bool {
        let slot = self.slot();
        let forced = slot.forced.load(SeqCst) != 0;
        let owned = slot.fetch_owner.load(SeqCst) != 0
            && claim_is_live(slot.fetch_started_ms.load(SeqCst), now_ms, timeout);
        self.is_mine() && (forced || owned)
    }
}
