//! Single sign-out's record of each provider ([`entra_core::revocation`]) in the zone: a fixed
//! place per provider beside the slots, given by provider name (so a reload that changes a
//! provider's tenant or metadata keeps its record and its logouts), with its table in slab
//! memory. Writers hold the zone's mutex; session requests read without it.

use core::alloc::Layout;
use core::ptr::{self, NonNull};
use core::sync::atomic::Ordering::SeqCst;
use std::hash::{DefaultHasher, Hash, Hasher};

use entra_core::revocation::{
    state_key, table_len, Entry, Key, Once, Record, RecordStatus, Revocation, Snapshot,
};
use entra_core::session::Session;
use ngx::allocator::Allocator;
use ngx::core::slab::LockedSlabPool;
use ngx::core::SlabPool;
use ngx::ffi::ngx_shm_zone_t;

use super::root::{pool, sign_in_part, RecordSlot, SignInShared};

/// What a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// The sessions issued, and the logouts that ended them.
    Sessions,
    /// The sign-in attempts' states used (each once).
    States,
    /// With a fleet (`entra_shared_store`): the sign-outs its instances published, and the
    /// sessions this instance issued (to tell a store restarted empty), by their fleet keys.
    Fleet,
}

/// One record the configuration wants: its kind, its provider's name and its capacity.
pub type WantedRecord = (RecordKind, String, u64);

/// Which record it is: its kind and its provider's name alone.
pub fn record_name(kind: RecordKind, provider: &str) -> u64 {
    let mut h = DefaultHasher::new();
    (kind, provider).hash(&mut h);
    h.finish() | 1
}

fn table_layout(len: usize) -> Layout {
    Layout::array::<Entry>(len).expect("a table of a configured size")
}

/// Bytes of the zone a record of `capacity` entries takes.
pub fn record_bytes(capacity: u64) -> usize {
    table_layout(table_len(capacity)).size()
}

/// The record of `slot`, if it has a table. The caller holds the lock, or reads only through
/// [`Record::is_revoked`] (whose generation check covers a table given up meanwhile).
fn record_of(slot: &RecordSlot) -> Option<Record<'_>> {
    let (table, len) = (slot.table.load(SeqCst), slot.table_len.load(SeqCst));
    // SAFETY: a non-null table holds `len` entries allocated by `give`; a table given up stays
    // mapped (slab memory), so a reader that raced with it reads stale atomics, which the
    // generation check then discards.
    (!table.is_null() && len.is_power_of_two())
        .then(|| Record::new(&slot.header, unsafe { core::slice::from_raw_parts(table, len) }))
}

/// Gives every session provider of a committed configuration its records (kind, name and
/// capacity), in the master: a provider keeps a record when its name stays, taken over into a new table
/// when its capacity changed; the records no provider uses any more are freed. The lock is held.
pub(super) fn assign_records(
    locked: &LockedSlabPool,
    part: &SignInShared,
    wanted: &[WantedRecord],
    kept: &[Option<Snapshot>],
    now_ms: u64,
) -> Result<(), String> {
    let records = &part.records;
    let names: Vec<u64> = wanted.iter().map(|(kind, name, _)| record_name(*kind, name)).collect();
    for slot in records.iter().filter(|s| s.name.load(SeqCst) != 0) {
        if !names.contains(&slot.name.load(SeqCst)) {
            give_up(locked, slot);
        }
    }
    for (position, ((_, provider, capacity), &name)) in wanted.iter().zip(&names).enumerate() {
        let existing = records.iter().find(|s| s.name.load(SeqCst) == name);
        if let Some(slot) = existing {
            if record_of(slot).is_some_and(|r| r.status().capacity == *capacity) {
                continue;
            }
        }
        let fresh = records
            .iter()
            .find(|s| s.name.load(SeqCst) == 0)
            .ok_or_else(|| format!("the shared zone has no free record for provider \"{provider}\""))?;
        let len = table_len(*capacity);
        let table = locked.allocate_zeroed(table_layout(len)).map_err(|_| {
            format!("no room in the shared zone for provider \"{provider}\"'s session record")
        })?;
        fresh.table.store(table.as_ptr() as *mut Entry, SeqCst);
        fresh.table_len.store(len, SeqCst);
        let record = record_of(fresh).expect("a table was just given");
        record.start(*capacity, now_ms);
        match (existing.and_then(record_of), kept.get(position).and_then(Option::as_ref)) {
            (Some(previous), _) => record.take_over(&previous, now_ms),
            // A start: what the previous run kept on disk.
            (None, Some(snapshot)) => record.restore(snapshot, now_ms),
            (None, None) => {}
        }
        fresh.name.store(name, SeqCst);
        if let Some(old) = existing {
            give_up(locked, old);
        }
    }
    Ok(())
}

/// Frees a record's table and its place; readers still holding it see its generation move and
/// its name go, and fail closed.
fn give_up(locked: &LockedSlabPool, slot: &RecordSlot) {
    if let Some(record) = record_of(slot) {
        record.retire();
    }
    slot.name.store(0, SeqCst);
    let (table, len) = (slot.table.swap(ptr::null_mut(), SeqCst), slot.table_len.swap(0, SeqCst));
    if let Some(table) = NonNull::new(table) {
        // SAFETY: allocated by assign_records from this pool with this layout.
        unsafe { locked.deallocate(table.cast(), table_layout(len)) };
    }
}

/// One worker's handle on its provider's record.
pub struct RecordRef {
    pool: SlabPool,
    slot: NonNull<RecordSlot>,
    name: u64,
}

// SAFETY: the record lives in shared memory mapped for the whole life of the process; it is
// atomics throughout, changed only under the pool's lock.
unsafe impl Send for RecordRef {}
// SAFETY: as above.
unsafe impl Sync for RecordRef {}

impl RecordRef {
    /// The record of `kind` [`assign_records`] gave provider `name`, if any.
    pub fn find(zone: *mut ngx_shm_zone_t, kind: RecordKind, name: &str) -> Option<RecordRef> {
        let pool = pool(zone)?;
        let name = record_name(kind, name);
        let slot = {
            let _locked = pool.lock();
            let records = &sign_in_part(&pool)?.records;
            NonNull::from(records.iter().find(|s| s.name.load(SeqCst) == name)?)
        };
        Some(RecordRef { pool, slot, name })
    }

    fn slot(&self) -> &RecordSlot {
        // SAFETY: see the Send impl.
        unsafe { self.slot.as_ref() }
    }

    /// The record, while it is still this provider's.
    fn record(&self) -> Option<Record<'_>> {
        let slot = self.slot();
        (slot.name.load(SeqCst) == self.name).then(|| record_of(slot)).flatten()
    }

    /// Runs `body` with the lock held, while the record is this provider's.
    fn locked<R>(&self, body: impl FnOnce(Record) -> R) -> Option<R> {
        let _locked = self.pool.lock();
        self.record().map(body)
    }

    /// Whether a logout ended `session` (of record key `key`): read without the lock while no
    /// writer is at work; a record given up or given away (a worker that outlived a reload)
    /// refuses every session.
    pub fn is_revoked(&self, session: &Session, key: Key) -> bool {
        let recorded = !session.unrecorded;
        let read = || self.record()?.is_revoked(key, session.signed_in, recorded);
        let answer = read().or_else(|| {
            let _locked = self.pool.lock();
            read()
        });
        // Still this provider's after the read, or the answer may be another table's.
        answer.filter(|_| self.slot().name.load(SeqCst) == self.name).unwrap_or(true)
    }

    /// Whether the fleet signed out a session signed in at `signed_in_ms` named by `keys` (its
    /// fleet keys; the fleet record's watermark refuses every session before it). Read like
    /// [`RecordRef::is_revoked`]; a record given away refuses every session.
    pub fn is_signed_out(&self, keys: &[Key], signed_in_ms: u64) -> bool {
        let read = || {
            let record = self.record()?;
            keys.iter().try_fold(false, |out, &key| Some(out | record.is_revoked(key, signed_in_ms, false)?))
        };
        let answer = read().or_else(|| {
            let _locked = self.pool.lock();
            read()
        });
        answer.filter(|_| self.slot().name.load(SeqCst) == self.name).unwrap_or(true)
    }

    /// A logout of `key` when the record holds it; `false` when it does not (or is gone).
    pub fn revoke_known(&self, key: Key, now_ms: u64) -> bool {
        self.locked(|r| r.revoke_known(key, now_ms)).unwrap_or(false)
    }

    /// A sign-out the fleet published (see [`Record::deny`]).
    pub fn deny(&self, key: Key, revoked_at_ms: u64, expires_ms: u64, now_ms: u64) {
        self.locked(|r| r.deny(key, revoked_at_ms, expires_ms, now_ms));
    }

    pub fn raise_watermark(&self, at_ms: u64) {
        self.locked(|r| r.raise_watermark(at_ms));
    }

    /// Records `key` until `expires_ms`; `false` when the record could not take it.
    pub fn record_key(&self, key: Key, expires_ms: u64, now_ms: u64) -> bool {
        self.locked(|r| r.record(key, expires_ms, now_ms)).unwrap_or(false)
    }

    /// Its live entries (a copy, under the lock).
    pub fn entries(&self, now_ms: u64) -> Vec<entra_core::revocation::Kept> {
        self.locked(|r| r.entries().into_iter().filter(|k| k.expires_ms > now_ms).collect())
            .unwrap_or_default()
    }

    /// Records a session signed in now; `false` when the record could not take it.
    pub fn record_session(&self, session: &Session, now_ms: u64) -> bool {
        let expires_ms = session.expires.saturating_mul(1000);
        self.locked(|r| r.record(session.record_key(), expires_ms, now_ms)).unwrap_or(false)
    }

    /// Takes a sign-in attempt's state once; `Once::Full` without a record (refused either way).
    pub fn claim_state(&self, state: &str, expires_ms: u64, now_ms: u64) -> Once {
        self.locked(|r| r.claim_once(state_key(state), expires_ms, now_ms)).unwrap_or(Once::Full)
    }

    /// A front-channel logout of `key`; `None` without a record.
    pub fn revoke(&self, key: Key, now_ms: u64) -> Option<Revocation> {
        self.locked(|r| r.revoke(key, now_ms))
    }

    /// `entra_logout` of `session`; `false` without a record.
    pub fn end_session(&self, session: &Session, now_ms: u64) -> bool {
        self.locked(|r| r.end_session(session.record_key(), !session.unrecorded, now_ms)).is_some()
    }

    pub fn status(&self) -> Option<RecordStatus> {
        self.record().map(|r| r.status())
    }

    /// A copy of the record to keep on disk, when it changed since the last one kept and no
    /// worker is keeping one now (a claim older than `stale_ms` is taken over): its generation
    /// and content. Call [`RecordRef::kept`] when done, or [`RecordRef::not_kept`].
    pub fn snapshot_to_keep(&self, now_ms: u64, stale_ms: u64) -> Option<(u64, Snapshot)> {
        let slot = self.slot();
        let generation = self.record()?.generation();
        if generation == slot.kept_generation.load(SeqCst) {
            return None;
        }
        let since = slot.keeping_since_ms.load(SeqCst);
        let free = since == 0 || now_ms >= since.saturating_add(stale_ms);
        if !free || slot.keeping_since_ms.compare_exchange(since, now_ms.max(1), SeqCst, SeqCst).is_err() {
            return None;
        }
        self.locked(|r| (r.generation(), r.snapshot(now_ms)))
    }

    /// The copy of `generation` is on disk.
    pub fn kept(&self, generation: u64) {
        self.slot().kept_generation.store(generation, SeqCst);
        self.slot().keeping_since_ms.store(0, SeqCst);
    }

    /// The copy could not be written: the next tick tries again.
    pub fn not_kept(&self) {
        self.slot().keeping_since_ms.store(0, SeqCst);
    }

    /// `true` at most once a minute per provider: whether to log a watermark that rose.
    pub fn should_warn(&self, now_s: u64) -> bool {
        let warned = &self.slot().warned;
        let last = warned.load(SeqCst);
        (last == 0 || now_s >= last + 60) && warned.compare_exchange(last, now_s, SeqCst, SeqCst).is_ok()
    }
}

/// Counts a callback of the client at `address` (the bytes of `$binary_remote_addr`) at `now_s`:
/// `true` while it has had at most `limit` this minute. Without a zone: refused.
pub fn admit_callback(zone: *mut ngx_shm_zone_t, address: &[u8], now_s: u64, limit: u64) -> bool {
    let Some(pool) = pool(zone) else { return false };
    let Some(part) = sign_in_part(&pool) else { return false };
    let mut h = DefaultHasher::new();
    (part.bucket_seed.load(SeqCst), address).hash(&mut h);
    entra_core::throttle::admit(&part.callback_buckets, h.finish(), now_s, limit)
}
