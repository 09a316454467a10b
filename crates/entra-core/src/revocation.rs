//! Single sign-out's record, one per provider: the sessions this instance issued, by a key of
//! their `sid`, and the time a logout ended each. It lives in shared memory (the module lays it
//! out); this is its logic, over atomics only, so that a session request reads it without a lock.
//!
//! Why a record and not a bare deny-list: the front-channel logout URL is called without
//! credentials, so anyone may name any `sid`. A deny-list of whatever is named fills up with
//! made-up `sid`s and must then either forget real logouts (fail open) or refuse everyone (a
//! denial of service). The record holds only `sid`s this instance signed someone in with, kept
//! until their sessions expire and never evicted while live, so a call for any other `sid`
//! changes nothing the record holds. Sessions the record could not take (it was full, or they
//! were signed in before it began) are "unrecorded": a call for an unknown `sid` may be theirs,
//! so it raises a watermark that refuses the unrecorded sessions signed in before it. Degraded
//! cases sign out more sessions than asked, never fewer.
//!
//! The table is open addressing with linear probing, at most half full. Writers (the caller
//! serialises them, under the zone's mutex) make the generation odd while they change it;
//! readers probe without a lock and try again when the generation moved meanwhile (a seqlock).

use core::sync::atomic::{AtomicU64, Ordering::SeqCst};

use ring::digest::{digest, SHA256};

/// A session's key in the record: 16 bytes of SHA-256 (never all zero, which marks a free entry).
pub type Key = [u64; 2];

fn key_of(parts: &[&[u8]]) -> Key {
    key_from_digest(digest(&SHA256, &parts.join(&0u8)).as_ref())
}

/// A record key from the first 16 bytes of a digest (never all zero: the low bit is set).
pub fn key_from_digest(hash: &[u8]) -> Key {
    let word = |i: usize| u64::from_be_bytes(hash[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    [word(0) | 1, word(1)]
}

/// What names one session, as [`session_key`] hashes it: its `sid`, or the user and the moment
/// of signing in (the fleet's store names sessions by a keyed hash of the same bytes).
pub fn identity(sid: &str, oid: &str, tid: &str, signed_in_ms: u64) -> Vec<u8> {
    if sid.is_empty() {
        [b"session", oid.as_bytes(), tid.as_bytes(), &signed_in_ms.to_be_bytes()].join(&0u8)
    } else {
        [&b"sid"[..], sid.as_bytes()].join(&0u8)
    }
}

/// The key of Entra's `sid`, as a front-channel logout names it.
pub fn sid_key(sid: &str) -> Key {
    key_of(&[b"sid", sid.as_bytes()])
}

/// The key of a sign-in attempt's `state`, in the record of states used (each is used once).
pub fn state_key(state: &str) -> Key {
    key_of(&[b"state", state.as_bytes()])
}

/// The key of one session: its `sid`, or for an ID token without one, the user and the moment
/// of signing in (so that `entra_logout` can still end that session alone).
pub fn session_key(sid: &str, oid: &str, tid: &str, signed_in_ms: u64) -> Key {
    key_from_digest(digest(&SHA256, &identity(sid, oid, tid, signed_in_ms)).as_ref())
}

/// What names one opened session: its key in the local record, and its names in the fleet's
/// store (one per `session_key_file` line; none without `entra_shared_store`), made once when
/// the cookie opens so that a request costs no hash.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionKeys {
    pub record: Key,
    pub fleet: Vec<Key>,
}

/// One entry of the table.
#[repr(C)]
#[derive(Default)]
pub struct Entry {
    key: [AtomicU64; 2],
    /// When the last session recorded under this key expires (ms).
    expires_ms: AtomicU64,
    /// When a logout ended the sessions of this key signed in up to then (ms; 0: none did).
    revoked_at_ms: AtomicU64,
}

/// The record's fixed part.
#[repr(C)]
#[derive(Default)]
pub struct Header {
    /// Odd while a writer changes the record; it only ever grows.
    generation: AtomicU64,
    /// Live entries the record may hold.
    capacity: AtomicU64,
    /// Entries in use (expired ones until the next sweep).
    used: AtomicU64,
    /// Entries a logout ended.
    revoked: AtomicU64,
    /// Unrecorded sessions signed in at or before this time (ms) are refused.
    watermark_ms: AtomicU64,
    /// When the record began (ms): sessions signed in before count as unrecorded.
    began_ms: AtomicU64,
    /// Sign-ins the full record could not take.
    unrecorded: AtomicU64,
    /// Front-channel calls for a `sid` the record does not hold.
    unknown: AtomicU64,
}

/// What the record holds, for `entra_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecordStatus {
    pub entries: u64,
    pub capacity: u64,
    pub revoked: u64,
    pub unrecorded: u64,
    pub unknown: u64,
    pub watermark_ms: u64,
    pub began_ms: u64,
}

/// What a front-channel logout did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    /// The `sid`'s sessions signed in up to now are refused.
    Recorded,
    /// The record does not hold it: the watermark rose to now, for unrecorded sessions.
    Unknown,
}

/// Bytes of table per session a record of a power-of-two capacity holds (half full at most).
pub const BYTES_PER_SESSION: usize = 2 * core::mem::size_of::<Entry>();

/// What [`Record::claim_once`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Once {
    /// Not seen before (or only expired): it is taken now.
    First,
    /// Taken already, and not expired: a replay.
    Again,
    /// The record is full of live entries: it cannot say, so the caller refuses.
    Full,
}

/// The table's length for `capacity` live entries: a power of two, at most half full.
pub fn table_len(capacity: u64) -> usize {
    (capacity.max(4) as usize * 2).next_power_of_two()
}

/// A record: its header and its table (of [`table_len`] entries).
pub struct Record<'a> {
    header: &'a Header,
    table: &'a [Entry],
}

/// One entry's content, as copied when the table is rebuilt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kept {
    pub key: Key,
    pub expires_ms: u64,
    pub revoked_at_ms: u64,
}

impl<'a> Record<'a> {
    /// `table` has a power-of-two length.
    pub fn new(header: &'a Header, table: &'a [Entry]) -> Record<'a> {
        debug_assert!(table.len().is_power_of_two());
        Record { header, table }
    }

    /// Starts an empty record of `capacity` entries, begun at `began_ms`, keeping the
    /// generation (a reader of a previous use of this memory sees it move). Writer.
    pub fn start(&self, capacity: u64, began_ms: u64) {
        self.write(|| {
            self.clear();
            let h = self.header;
            h.capacity.store(capacity.min(self.table.len() as u64 / 2), SeqCst);
            for counter in [&h.watermark_ms, &h.unrecorded, &h.unknown] {
                counter.store(0, SeqCst);
            }
            h.began_ms.store(began_ms, SeqCst);
        })
    }

    /// Makes the generation move for readers of a record being given up. Writer.
    pub fn retire(&self) {
        self.write(|| self.header.capacity.store(0, SeqCst))
    }

    fn write<R>(&self, change: impl FnOnce() -> R) -> R {
        self.header.generation.fetch_add(1, SeqCst);
        let result = change();
        self.header.generation.fetch_add(1, SeqCst);
        result
    }

    fn clear(&self) {
        for e in self.table {
            for word in e.key.iter().chain([&e.expires_ms, &e.revoked_at_ms]) {
                word.store(0, SeqCst);
            }
        }
        self.header.used.store(0, SeqCst);
        self.header.revoked.store(0, SeqCst);
    }

    /// The entry of `key`, or the free one where it would go; `None` when the table is full.
    fn slot(&self, key: Key) -> Option<&'a Entry> {
        let mask = self.table.len().checked_sub(1)?;
        let start = key[1] as usize & mask;
        (0..self.table.len()).map(|i| &self.table[(start + i) & mask]).find(|e| {
            let found = [e.key[0].load(SeqCst), e.key[1].load(SeqCst)];
            found == key || found == [0, 0]
        })
    }

    fn find(&self, key: Key) -> Option<&'a Entry> {
        self.slot(key).filter(|e| e.key[0].load(SeqCst) != 0)
    }

    /// Records a session of `key` that expires at `expires_ms`; `false` when the record is full
    /// of live entries (the session is then unrecorded, and counted). Writer.
    pub fn record(&self, key: Key, expires_ms: u64, now_ms: u64) -> bool {
        self.write(|| {
            if let Some(e) = self.find(key) {
                e.expires_ms.fetch_max(expires_ms, SeqCst);
                return true;
            }
            let inserted = self.insert(key, expires_ms, now_ms);
            if !inserted {
                self.header.unrecorded.fetch_add(1, SeqCst);
            }
            inserted
        })
    }

    /// Takes `key` once, until `expires_ms` (a sign-in attempt's `state`). Writer.
    pub fn claim_once(&self, key: Key, expires_ms: u64, now_ms: u64) -> Once {
        self.write(|| {
            if let Some(e) = self.find(key) {
                if e.expires_ms.load(SeqCst) > now_ms {
                    return Once::Again;
                }
                e.expires_ms.store(expires_ms, SeqCst);
                return Once::First;
            }
            if self.insert(key, expires_ms, now_ms) {
                Once::First
            } else {
                Once::Full
            }
        })
    }

    /// Puts a new `key` in, the expired entries swept first when the record is full; `false`
    /// when it is full of live ones. Inside a write.
    fn insert(&self, key: Key, expires_ms: u64, now_ms: u64) -> bool {
        if self.header.used.load(SeqCst) >= self.header.capacity.load(SeqCst) {
            self.sweep(now_ms);
        }
        let room = self.header.used.load(SeqCst) < self.header.capacity.load(SeqCst);
        match self.slot(key).filter(|_| room) {
            Some(e) => {
                self.put(e, Kept { key, expires_ms, revoked_at_ms: 0 });
                true
            }
            None => false,
        }
    }

    fn put(&self, e: &Entry, kept: Kept) {
        e.expires_ms.store(kept.expires_ms, SeqCst);
        e.revoked_at_ms.store(kept.revoked_at_ms, SeqCst);
        e.key[1].store(kept.key[1], SeqCst);
        e.key[0].store(kept.key[0], SeqCst);
        self.header.used.fetch_add(1, SeqCst);
        if kept.revoked_at_ms != 0 {
            self.header.revoked.fetch_add(1, SeqCst);
        }
    }

    /// Drops the expired entries: the table is rebuilt from the live ones (linear probing has
    /// no cheaper removal). Inside a write.
    fn sweep(&self, now_ms: u64) {
        let live: Vec<Kept> = self.entries().into_iter().filter(|k| k.expires_ms > now_ms).collect();
        self.clear();
        for kept in live {
            if let Some(e) = self.slot(kept.key) {
                self.put(e, kept);
            }
        }
    }

    /// Every entry in use.
    pub fn entries(&self) -> Vec<Kept> {
        self.table
            .iter()
            .map(|e| Kept {
                key: [e.key[0].load(SeqCst), e.key[1].load(SeqCst)],
                expires_ms: e.expires_ms.load(SeqCst),
                revoked_at_ms: e.revoked_at_ms.load(SeqCst),
            })
            .filter(|k| k.key[0] != 0)
            .collect()
    }

    /// Takes over a previous record's entries, watermark and start (a reload that changed its
    /// capacity). Entries past the capacity are left out, the revoked ones kept first; a session
    /// left out is judged as unrecorded. Writer.
    pub fn take_over(&self, previous: &Record, now_ms: u64) {
        let mut kept: Vec<Kept> = previous.entries().into_iter().filter(|k| k.expires_ms > now_ms).collect();
        kept.sort_by_key(|k| k.revoked_at_ms == 0);
        self.write(|| {
            let capacity = self.header.capacity.load(SeqCst) as usize;
            for k in kept.into_iter().take(capacity) {
                if let Some(e) = self.slot(k.key) {
                    self.put(e, k);
                }
            }
            let (from, to) = (previous.header, self.header);
            for (a, b) in [
                (&from.watermark_ms, &to.watermark_ms),
                (&from.unrecorded, &to.unrecorded),
                (&from.unknown, &to.unknown),
            ] {
                b.store(a.load(SeqCst), SeqCst);
            }
            to.began_ms.store(from.began_ms.load(SeqCst), SeqCst);
        })
    }

    /// A front-channel logout of `key` at `now_ms`. Writer.
    pub fn revoke(&self, key: Key, now_ms: u64) -> Revocation {
        self.write(|| match self.find(key) {
            Some(e) => {
                if e.revoked_at_ms.swap(now_ms, SeqCst) == 0 {
                    self.header.revoked.fetch_add(1, SeqCst);
                }
                Revocation::Recorded
            }
            None => {
                self.header.watermark_ms.fetch_max(now_ms, SeqCst);
                self.header.unknown.fetch_add(1, SeqCst);
                Revocation::Unknown
            }
        })
    }

    /// A logout of `key` when the record holds it (`true`); else nothing changes: with a fleet,
    /// the store says whether another instance issued it. Writer.
    pub fn revoke_known(&self, key: Key, now_ms: u64) -> bool {
        self.write(|| match self.find(key) {
            Some(e) => {
                if e.revoked_at_ms.swap(now_ms, SeqCst) == 0 {
                    self.header.revoked.fetch_add(1, SeqCst);
                }
                true
            }
            None => false,
        })
    }

    /// A sign-out the fleet published, in the fleet's record: the sessions of `key` signed in up
    /// to `revoked_at_ms` are refused, kept until `expires_ms`. A record full of live entries
    /// raises its watermark instead (closed, never open); `false` then. Writer.
    pub fn deny(&self, key: Key, revoked_at_ms: u64, expires_ms: u64, now_ms: u64) -> bool {
        self.write(|| {
            let e = match self.find(key) {
                Some(e) => e,
                None if self.insert(key, expires_ms, now_ms) => self.find(key).expect("just put in"),
                None => {
                    self.header.watermark_ms.fetch_max(revoked_at_ms, SeqCst);
                    return false;
                }
            };
            e.expires_ms.fetch_max(expires_ms, SeqCst);
            if e.revoked_at_ms.fetch_max(revoked_at_ms, SeqCst) == 0 {
                self.header.revoked.fetch_add(1, SeqCst);
            }
            true
        })
    }

    /// Refuses every session judged with `recorded` false signed in up to `at_ms`. Writer.
    pub fn raise_watermark(&self, at_ms: u64) {
        self.write(|| self.header.watermark_ms.fetch_max(at_ms, SeqCst));
    }

    /// `entra_logout` of one session: its key when the record holds it, else (unrecorded) the
    /// watermark, which signs out more than this session, never less. Writer.
    pub fn end_session(&self, key: Key, recorded: bool, now_ms: u64) {
        self.write(|| match self.find(key).filter(|_| recorded) {
            Some(e) => {
                if e.revoked_at_ms.swap(now_ms, SeqCst) == 0 {
                    self.header.revoked.fetch_add(1, SeqCst);
                }
            }
            None => {
                self.header.watermark_ms.fetch_max(now_ms, SeqCst);
            }
        })
    }

    /// Whether a logout ended the session of `key` signed in at `signed_in_ms` (`recorded`: its
    /// cookie says the record took it). Read without a lock: `None` when writers kept changing
    /// the record meanwhile (the caller asks again under the lock).
    pub fn is_revoked(&self, key: Key, signed_in_ms: u64, recorded: bool) -> Option<bool> {
        for _ in 0..4 {
            let before = self.header.generation.load(SeqCst);
            if before % 2 == 1 {
                core::hint::spin_loop();
                continue;
            }
            let answer = self.judge(key, signed_in_ms, recorded);
            if self.header.generation.load(SeqCst) == before {
                return Some(answer);
            }
        }
        None
    }

    fn judge(&self, key: Key, signed_in_ms: u64, recorded: bool) -> bool {
        let h = self.header;
        let before_watermark = signed_in_ms <= h.watermark_ms.load(SeqCst);
        let recorded = recorded && signed_in_ms >= h.began_ms.load(SeqCst);
        match self.find(key) {
            Some(e) => {
                let revoked_at = e.revoked_at_ms.load(SeqCst);
                (revoked_at != 0 && signed_in_ms <= revoked_at) || (!recorded && before_watermark)
            }
            // A recorded session the record lost (a reload shrank it) counts as unrecorded.
            None => before_watermark,
        }
    }

    pub fn status(&self) -> RecordStatus {
        let h = self.header;
        RecordStatus {
            entries: h.used.load(SeqCst),
            capacity: h.capacity.load(SeqCst),
            revoked: h.revoked.load(SeqCst),
            unrecorded: h.unrecorded.load(SeqCst),
            unknown: h.unknown.load(SeqCst),
            watermark_ms: h.watermark_ms.load(SeqCst),
            began_ms: h.began_ms.load(SeqCst),
        }
    }
}

/// A record as kept on disk across restarts (`entra_keys_cache_path`): its header and live
/// entries. Layout (big-endian): the magic `ENTRAREC`, the format version (1 byte), written at,
/// began at, watermark (ms), unrecorded sign-ins, unknown calls, the entry count (4 bytes), then
/// per entry its key (two words), expiry and logout time. Decoding checks every length: a file
/// that does not read back is not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub written_ms: u64,
    pub began_ms: u64,
    pub watermark_ms: u64,
    pub unrecorded: u64,
    pub unknown: u64,
    pub entries: Vec<Kept>,
}

const SNAPSHOT_MAGIC: &[u8; 8] = b"ENTRAREC";
const SNAPSHOT_VERSION: u8 = 1;
/// Entries a snapshot holds at most (a `session_record` of its largest).
pub const MAX_SNAPSHOT_ENTRIES: usize = 4_000_000;

/// Why a snapshot does not read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("not a record of sessions of this version")]
    Format,
    #[error("truncated or with bytes after its entries")]
    Length,
}

impl Snapshot {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(61 + 32 * self.entries.len());
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.push(SNAPSHOT_VERSION);
        for word in [self.written_ms, self.began_ms, self.watermark_ms, self.unrecorded, self.unknown] {
            out.extend_from_slice(&word.to_be_bytes());
        }
        out.extend_from_slice(&(self.entries.len() as u32).to_be_bytes());
        for e in &self.entries {
            for word in [e.key[0], e.key[1], e.expires_ms, e.revoked_at_ms] {
                out.extend_from_slice(&word.to_be_bytes());
            }
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Snapshot, SnapshotError> {
        let rest = bytes.strip_prefix(SNAPSHOT_MAGIC.as_slice()).ok_or(SnapshotError::Format)?;
        let (&version, rest) = rest.split_first().ok_or(SnapshotError::Format)?;
        if version != SNAPSHOT_VERSION {
            return Err(SnapshotError::Format);
        }
        let mut words = rest.chunks_exact(8).map(|c| u64::from_be_bytes(c.try_into().expect("8 bytes")));
        let mut word = || words.next().ok_or(SnapshotError::Length);
        let (written_ms, began_ms, watermark_ms, unrecorded, unknown) =
            (word()?, word()?, word()?, word()?, word()?);
        let count = rest.get(40..44).ok_or(SnapshotError::Length)?;
        let count = u32::from_be_bytes(count.try_into().expect("4 bytes")) as usize;
        let body = &rest[44..];
        if count > MAX_SNAPSHOT_ENTRIES || body.len() != count * 32 {
            return Err(SnapshotError::Length);
        }
        let entries = body
            .chunks_exact(32)
            .map(|e| {
                let w = |i: usize| u64::from_be_bytes(e[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
                Kept { key: [w(0), w(1)], expires_ms: w(2), revoked_at_ms: w(3) }
            })
            .filter(|k| k.key[0] & 1 == 1)
            .collect();
        Ok(Snapshot { written_ms, began_ms, watermark_ms, unrecorded, unknown, entries })
    }
}

impl Record<'_> {
    /// The record as it stands, to be kept on disk (a copy; the caller holds the lock).
    pub fn snapshot(&self, now_ms: u64) -> Snapshot {
        let h = self.header;
        Snapshot {
            written_ms: now_ms,
            began_ms: h.began_ms.load(SeqCst),
            watermark_ms: h.watermark_ms.load(SeqCst),
            unrecorded: h.unrecorded.load(SeqCst),
            unknown: h.unknown.load(SeqCst),
            entries: self.entries().into_iter().filter(|k| k.expires_ms > now_ms).collect(),
        }
    }

    /// Puts a record kept on disk back into a fresh one (a start): its live entries, revoked
    /// first, as many as fit; its watermark and start. Sessions recorded after it was written
    /// are not in it, and count as unrecorded: a call for their `sid` raises the watermark,
    /// which then refuses them. Writer.
    pub fn restore(&self, kept: &Snapshot, now_ms: u64) {
        let mut entries: Vec<&Kept> = kept.entries.iter().filter(|k| k.expires_ms > now_ms).collect();
        entries.sort_by_key(|k| k.revoked_at_ms == 0);
        self.write(|| {
            let capacity = self.header.capacity.load(SeqCst) as usize;
            for k in entries.into_iter().take(capacity) {
                if let Some(e) = self.slot(k.key).filter(|e| e.key[0].load(SeqCst) == 0) {
                    self.put(e, *k);
                }
            }
            let h = self.header;
            h.watermark_ms.fetch_max(kept.watermark_ms, SeqCst);
            h.unrecorded.store(kept.unrecorded, SeqCst);
            h.unknown.store(kept.unknown, SeqCst);
            h.began_ms.store(kept.began_ms, SeqCst);
        })
    }

    /// Its generation: it moves with every change.
    pub fn generation(&self) -> u64 {
        self.header.generation.load(SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Owned {
        header: Header,
        table: Vec<Entry>,
    }

    fn owned(capacity: u64, began_ms: u64) -> Owned {
        let o = Owned {
            header: Header::default(),
            table: (0..table_len(capacity)).map(|_| Entry::default()).collect(),
        };
        o.record().start(capacity, began_ms);
        o
    }

    impl Owned {
        fn record(&self) -> Record<'_> {
            Record::new(&self.header, &self.table)
        }
    }

    const HOUR: u64 = 3_600_000;

    #[test]
    fn a_logout_ends_the_sessions_of_its_sid_signed_in_up_to_then() {
        let o = owned(8, 1_000);
        let r = o.record();
        let alice = sid_key("alice-sid");
        assert!(r.record(alice, 10 * HOUR, 2_000));
        assert_eq!(r.is_revoked(alice, 2_000, true), Some(false));
        assert_eq!(r.revoke(alice, 3_000), Revocation::Recorded);
        assert_eq!(r.is_revoked(alice, 2_000, true), Some(true), "signed in before the logout");
        assert_eq!(r.is_revoked(alice, 3_000, true), Some(true), "at the same millisecond");
        assert!(r.record(alice, 11 * HOUR, 4_000), "a later sign-in with the same sid");
        assert_eq!(r.is_revoked(alice, 4_000, true), Some(false), "is accepted");
        assert_eq!(r.status().revoked, 1);
        assert_eq!(r.status().entries, 1);
    }

    #[test]
    fn a_flood_of_unknown_sids_signs_out_no_recorded_session() {
        let o = owned(16, 1_000);
        let r = o.record();
        let keys: Vec<Key> = (0..16).map(|i| sid_key(&format!("real-{i}"))).collect();
        for k in &keys {
            assert!(r.record(*k, 10 * HOUR, 2_000));
        }
        for n in 0..10_000 {
            assert_eq!(r.revoke(sid_key(&format!("flood-{n}")), 3_000), Revocation::Unknown);
        }
        for k in &keys {
            assert_eq!(r.is_revoked(*k, 2_000, true), Some(false), "recorded sessions stay");
        }
        assert_eq!(r.status().unknown, 10_000);
        assert_eq!(r.status().watermark_ms, 3_000);
        assert_eq!(r.is_revoked(sid_key("old"), 900, false), Some(true), "an unrecorded older session goes");
        assert_eq!(
            r.is_revoked(sid_key("real-0"), 900, true),
            Some(true),
            "as does one from before the record"
        );
        assert_eq!(r.is_revoked(sid_key("new"), 3_001, false), Some(false), "not a later one");
    }

    #[test]
    fn a_full_record_never_evicts_a_live_entry() {
        let o = owned(4, 0);
        let r = o.record();
        for i in 0..4 {
            assert!(r.record(sid_key(&format!("s{i}")), 10 * HOUR, 1_000));
        }
        assert!(!r.record(sid_key("fifth"), 10 * HOUR, 1_000), "no room: unrecorded");
        assert_eq!(r.status().unrecorded, 1);
        assert_eq!(r.revoke(sid_key("s0"), 2_000), Revocation::Recorded, "the first is still held");
        // Once the first ones expire, their room is taken again.
        assert!(r.record(sid_key("later"), 20 * HOUR, 10 * HOUR + 1));
        assert_eq!(r.status().entries, 1, "the expired ones were swept");
    }

    #[test]
    fn a_session_without_sid_has_its_own_key() {
        let a = session_key("", "oid-a", "tid", 1);
        assert_ne!(a, session_key("", "oid-a", "tid", 2));
        assert_ne!(a, sid_key(""));
        assert_eq!(session_key("s", "oid-a", "tid", 1), sid_key("s"));
    }

    #[test]
    fn entra_logout_of_an_unrecorded_session_raises_the_watermark() {
        let o = owned(8, 0);
        let r = o.record();
        let k = sid_key("x");
        r.end_session(k, false, 5_000);
        assert_eq!(r.is_revoked(k, 4_000, false), Some(true));
        assert_eq!(r.is_revoked(sid_key("y"), 4_000, false), Some(true), "more than asked, never less");
        assert!(r.record(k, 10 * HOUR, 6_000));
        r.end_session(k, true, 7_000);
        assert_eq!(r.is_revoked(k, 6_000, true), Some(true));
    }

    #[test]
    fn a_larger_record_takes_over_entries_and_watermark() {
        let old = owned(4, 500);
        let r = old.record();
        for i in 0..4 {
            assert!(r.record(sid_key(&format!("s{i}")), 10 * HOUR, 1_000));
        }
        r.revoke(sid_key("s3"), 2_000);
        r.revoke(sid_key("unknown"), 2_500);
        let new = owned(2, 9_999);
        new.record().take_over(&r, 3_000);
        let n = new.record();
        assert_eq!(n.status().entries, 2, "as many as fit");
        assert_eq!(n.is_revoked(sid_key("s3"), 1_000, true), Some(true), "the revoked one first");
        assert_eq!(n.status().watermark_ms, 2_500);
        assert_eq!(n.status().began_ms, 500);
        let lost: Vec<Key> =
            (0..3).map(|i| sid_key(&format!("s{i}"))).filter(|k| n.find(*k).is_none()).collect();
        assert_eq!(lost.len(), 2);
        for k in lost {
            assert_eq!(
                n.is_revoked(k, 1_000, true),
                Some(true),
                "one left out, signed in before the watermark"
            );
        }
    }

    #[test]
    fn a_state_is_taken_once_and_a_full_record_refuses_rather_than_forgets() {
        let o = owned(4, 0);
        let r = o.record();
        let s = state_key("abc");
        assert_eq!(r.claim_once(s, 600_000, 0), Once::First);
        assert_eq!(r.claim_once(s, 600_000, 1_000), Once::Again, "a replay");
        for i in 0..3 {
            assert_eq!(r.claim_once(state_key(&format!("s{i}")), 600_000, 1_000), Once::First);
        }
        assert_eq!(r.claim_once(state_key("more"), 600_000, 1_000), Once::Full, "never forgets a used state");
        assert_eq!(r.claim_once(s, 600_000, 2_000), Once::Again, "which is still refused");
        assert_eq!(
            r.claim_once(state_key("later"), 1_200_000, 600_001),
            Once::First,
            "expired ones make room"
        );
        assert_ne!(state_key("x"), sid_key("x"));
    }

    #[test]
    fn a_record_kept_on_disk_comes_back_after_a_restart() {
        let o = owned(8, 1_000);
        let r = o.record();
        assert!(r.record(sid_key("alice"), 10 * HOUR, 2_000));
        assert!(r.record(sid_key("bob"), 10 * HOUR, 2_000));
        r.revoke(sid_key("alice"), 3_000);
        r.revoke(sid_key("unknown"), 3_500);
        let kept = r.snapshot(4_000);
        let bytes = kept.encode();
        assert_eq!(Snapshot::decode(&bytes).unwrap(), kept, "it reads back");
        let restarted = owned(8, 9_000);
        restarted.record().restore(&Snapshot::decode(&bytes).unwrap(), 9_000);
        let n = restarted.record();
        assert_eq!(n.is_revoked(sid_key("alice"), 2_000, true), Some(true), "a logout survives the restart");
        assert_eq!(n.is_revoked(sid_key("bob"), 2_000, true), Some(false), "a recorded session too");
        assert_eq!(n.status().began_ms, 1_000, "the record began before the restart");
        assert_eq!(n.status().watermark_ms, 3_500);
        assert_eq!(n.is_revoked(sid_key("carol"), 4_500, true), Some(false), "not written: unrecorded");
        n.revoke(sid_key("carol"), 9_500);
        assert_eq!(n.is_revoked(sid_key("carol"), 4_500, true), Some(true), "until a call for it");
        for cut in 0..bytes.len() {
            assert!(Snapshot::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(Snapshot::decode(&longer), Err(SnapshotError::Length));
    }

    #[test]
    fn the_fleet_record_refuses_what_was_published_and_fails_closed_when_full() {
        let o = owned(4, 0);
        let r = o.record();
        let mine = sid_key("issued here");
        assert!(r.record(mine, 10 * HOUR, 1_000));
        assert!(!r.revoke_known(sid_key("never issued"), 2_000), "an unknown sid changes nothing");
        assert_eq!(r.status().watermark_ms, 0);
        assert!(r.deny(sid_key("elsewhere"), 3_000, 10 * HOUR, 2_000));
        assert_eq!(r.is_revoked(sid_key("elsewhere"), 2_500, false), Some(true));
        assert_eq!(r.is_revoked(sid_key("elsewhere"), 3_001, false), Some(false), "a later sign-in");
        assert_eq!(r.is_revoked(mine, 1_000, false), Some(false));
        assert!(r.revoke_known(mine, 4_000));
        assert_eq!(r.is_revoked(mine, 1_000, false), Some(true));
        assert!(
            r.deny(sid_key("a"), 3_000, 10 * HOUR, 2_000) && r.deny(sid_key("b"), 3_000, 10 * HOUR, 2_000)
        );
        assert!(!r.deny(sid_key("no room"), 5_000, 10 * HOUR, 2_000), "full of live entries");
        assert_eq!(r.is_revoked(sid_key("anyone"), 4_999, false), Some(true), "the watermark refuses it");
        assert_eq!(r.is_revoked(sid_key("anyone"), 5_001, false), Some(false));
    }

    #[test]
    fn a_reader_sees_the_generation_move() {
        let o = owned(4, 0);
        let r = o.record();
        o.header.generation.fetch_add(1, SeqCst);
        assert_eq!(r.is_revoked(sid_key("a"), 1, true), None, "a writer never finished: ask under the lock");
    }
}
