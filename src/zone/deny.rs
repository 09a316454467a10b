//! The front-channel logout deny-list: revoked `sid`s beside the slots, one list for all
//! providers, changed only under the zone's lock; workers copy their provider's part when its
//! generation moves.

use core::sync::atomic::Ordering::{Relaxed, SeqCst};

use super::root::{root, DenyEntry, Root};
use super::slot::SlotRef;

/// How many deny-list entries a zone of `size` bytes holds: what is left beside the slots, at
/// most a quarter of the zone, and never fewer than 64.
pub(super) fn deny_capacity(size: usize) -> usize {
    let spare = size.saturating_sub(core::mem::size_of::<Root>()) / 4;
    (spare / core::mem::size_of::<DenyEntry>()).clamp(64, 16384)
}

/// What a worker copies of the deny-list for its provider.
pub struct DenyView {
    pub generation: u64,
    /// SHA-256 prefixes of revoked `sid`s, with the time of their logout (ms).
    pub revoked: std::collections::HashMap<[u8; 16], u64>,
    /// Every session signed in at or before this time (ms) is refused: the deny-list overflowed.
    pub watermark_ms: u64,
}

/// What [`SlotRef::revoke`] did.
pub struct Revoked {
    /// An entry was evicted to make room: its time became the provider's watermark.
    pub evicted: bool,
    /// Entries in the list now.
    pub entries: usize,
}

impl SlotRef {
    /// Runs `body` on the zone's deny-list; the caller holds the lock.
    fn with_deny_list<R>(&self, body: impl FnOnce(&mut [DenyEntry]) -> R) -> Option<R> {
        let root = root(&self.pool);
        // SAFETY: init_zone set the list once, before any worker started; the caller holds the
        // lock, so nobody else touches it meanwhile.
        let entries = unsafe {
            let (p, n) = ((*root).deny, (*root).deny_capacity);
            if p.is_null() {
                return None;
            }
            core::slice::from_raw_parts_mut(p, n)
        };
        Some(body(entries))
    }

    /// The deny-list's generation: it changes whenever an entry comes or goes.
    pub fn deny_generation(&self) -> u64 {
        // SAFETY: the root lives as long as the zone.
        unsafe { (*root(&self.pool)).deny_generation.load(SeqCst) }
    }

    /// Records a front-channel logout of `sid` at `now_ms`, to be kept for `lifetime_ms`. When
    /// the list is full, the entry closest to expiry goes and its time becomes the provider's
    /// watermark: it fails closed, so a flood of `sid`s cannot revive a revoked session.
    pub fn revoke(&self, sid: [u8; 16], now_ms: u64, lifetime_ms: u64) -> Option<Revoked> {
        self.locked(|_, slot, _| {
            let identity = self.identity;
            self.with_deny_list(|entries| {
                for e in entries.iter_mut().filter(|e| e.identity != 0 && e.expires_ms <= now_ms) {
                    e.identity = 0;
                }
                let entry = DenyEntry {
                    identity,
                    sid,
                    at_ms: now_ms,
                    expires_ms: now_ms.saturating_add(lifetime_ms),
                };
                let mut evicted = false;
                let index = match entries.iter().position(|e| e.identity == identity && e.sid == sid) {
                    Some(same) => same,
                    None => match entries.iter().position(|e| e.identity == 0) {
                        Some(free) => free,
                        None => {
                            let (oldest, at) = entries
                                .iter()
                                .enumerate()
                                .min_by_key(|(_, e)| e.expires_ms)
                                .map(|(i, e)| (i, (e.identity, e.at_ms)))?;
                            evicted = true;
                            self.raise_watermark(at.0, at.1);
                            oldest
                        }
                    },
                };
                entries[index] = entry;
                if evicted {
                    slot.counters.deny_evictions.fetch_add(1, Relaxed);
                }
                // SAFETY: the root lives as long as the zone.
                unsafe { (*root(&self.pool)).deny_generation.fetch_add(1, SeqCst) };
                Some(Revoked { evicted, entries: entries.iter().filter(|e| e.identity != 0).count() })
            })
            .flatten()
        })
        .flatten()
    }

    /// Raises the watermark of the provider whose entry was evicted (under the lock).
    fn raise_watermark(&self, identity: u64, at_ms: u64) {
        // SAFETY: the root holds MAX_PROVIDERS slots; the caller holds the lock.
        let slots = unsafe { &(*root(&self.pool)).slots };
        if let Some(slot) = slots.iter().find(|s| s.identity.load(SeqCst) == identity) {
            slot.revoked_before_ms.fetch_max(at_ms, SeqCst);
        }
    }

    /// `true` at most once a minute per provider: whether to log an overflow now.
    pub fn should_log_overflow(&self, now: u64) -> bool {
        let last = self.slot().overflow_logged.load(SeqCst);
        (last == 0 || now >= last + 60)
            && self.slot().overflow_logged.compare_exchange(last, now, SeqCst, SeqCst).is_ok()
    }

    /// This provider's part of the deny-list (a copy, under the lock).
    pub fn deny_view(&self) -> Option<DenyView> {
        self.locked(|_, slot, _| {
            let revoked = self
                .with_deny_list(|entries| {
                    entries.iter().filter(|e| e.identity == self.identity).map(|e| (e.sid, e.at_ms)).collect()
                })
                .unwrap_or_default();
            DenyView {
                generation: self.deny_generation(),
                revoked,
                watermark_ms: slot.revoked_before_ms.load(SeqCst),
            }
        })
    }
}
