//! The verified-token cache: a token verified once is not verified again until it expires.
//!
//! One cache per provider and per process (nginx worker): a hit takes an uncontended lock, hashes
//! the last bytes of the token (its signature, which is random) and compares the whole token
//! with the cached one, so a hash collision can never hand out another token's identity. The
//! lock is never held across signature verification. Only tokens that passed every rule are
//! cached; a failed token is judged again each time.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex};

use crate::token::VerifiedToken;

/// How many bytes of the token's end are hashed: a good part of any signature.
const HASHED_TAIL: usize = 64;

struct Entry<T> {
    token: Box<[u8]>,
    verified: Arc<T>,
    /// Until when (seconds since the epoch, leeway included) the verification holds.
    valid_until: u64,
    /// Insertion number, to tell a live entry from a replaced one in the eviction queue.
    seq: u64,
}

/// Whether `stored` is `parts` put together.
fn same(stored: &[u8], parts: &[&[u8]]) -> bool {
    let mut rest = stored;
    for part in parts {
        match rest.split_at_checked(part.len()) {
            Some((head, tail)) if head == *part => rest = tail,
            _ => return false,
        }
    }
    rest.is_empty()
}

/// The map's keys are already hashes: use them as they are.
#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Never called for u64 keys; folded anyway rather than panicking.
        self.0 = bytes.iter().fold(self.0, |h, b| h.rotate_left(8) ^ u64::from(*b));
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

struct Slots<T> {
    map: HashMap<u64, Entry<T>, BuildHasherDefault<IdentityHasher>>,
    /// Hashes in insertion order, oldest first, with their insertion numbers.
    order: VecDeque<(u64, u64)>,
    next_seq: u64,
    /// When (seconds) expired entries were last swept out: at most once a second, since a
    /// sweep walks the whole map and a full cache would otherwise pay it on every insert.
    last_sweep: u64,
}

/// What a provider's workers remember of verified tokens; also of opened session cookies
/// (`TokenCache<OpenedSession>`), keyed the same way by the cookie's sealed value.
pub struct TokenCache<T = VerifiedToken> {
    capacity: usize,
    /// Per-process random seed of the tail hash.
    seed: u64,
    slots: Mutex<Slots<T>>,
}

impl<T> std::fmt::Debug for TokenCache<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache").field("capacity", &self.capacity).finish()
    }
}

impl<T> TokenCache<T> {
    pub fn new(capacity: usize) -> TokenCache<T> {
        TokenCache {
            capacity,
            seed: RandomState::new().hash_one(0u64),
            slots: Mutex::new(Slots {
                map: HashMap::default(),
                order: VecDeque::new(),
                next_seq: 0,
                last_sweep: 0,
            }),
        }
    }

    /// A multiply-rotate hash of the value's tail: a few dozen instructions where SipHash takes
    /// hundreds. The tail is a signature or an AEAD tag (random), and the whole value is
    /// compared on a hit. The value comes in parts (a session's cookie chunks), never joined.
    fn key(&self, parts: &[&[u8]]) -> u64 {
        let mix = |h: u64, word: u64| (h ^ word).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
        let mut joined = [0u8; HASHED_TAIL];
        let tail = match parts {
            [.., last] if last.len() >= HASHED_TAIL || parts.len() == 1 => {
                &last[last.len().saturating_sub(HASHED_TAIL)..]
            }
            _ => {
                // The tail spans parts: gathered from the back.
                let mut at = HASHED_TAIL;
                for part in parts.iter().rev() {
                    let take = part.len().min(at);
                    joined[at - take..at].copy_from_slice(&part[part.len() - take..]);
                    at -= take;
                }
                &joined[at..]
            }
        };
        let mut chunks = tail.chunks_exact(8);
        let mut h = self.seed ^ tail.len() as u64;
        for chunk in &mut chunks {
            h = mix(h, u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        chunks.remainder().iter().fold(h, |h, b| mix(h, u64::from(*b)))
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Slots<T>> {
        // A panic while holding the lock leaves whole entries behind: the data stays usable.
        self.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The cached verification of exactly this value (its `parts` in order), if it still holds
    /// at `now`.
    pub fn get(&self, parts: &[&[u8]], now: u64) -> Option<Arc<T>> {
        let key = self.key(parts);
        let slots = self.slots();
        let entry = slots.map.get(&key)?;
        (same(&entry.token, parts) && now <= entry.valid_until).then(|| entry.verified.clone())
    }

    pub fn insert(&self, parts: &[&[u8]], verified: Arc<T>, valid_until: u64, now: u64) {
        if self.capacity == 0 {
            return;
        }
        let key = self.key(parts);
        let mut guard = self.slots();
        let slots = &mut *guard;
        if slots.map.len() >= self.capacity && !slots.map.contains_key(&key) {
            // Make room: drop what has expired, then the oldest entries.
            if now > slots.last_sweep {
                slots.last_sweep = now;
                slots.map.retain(|_, e| e.valid_until >= now);
            }
            while slots.map.len() >= self.capacity {
                let Some((old, seq)) = slots.order.pop_front() else {
                    break;
                };
                if slots.map.get(&old).is_some_and(|e| e.seq == seq) {
                    slots.map.remove(&old);
                }
            }
        }
        let seq = slots.next_seq;
        slots.next_seq += 1;
        slots.order.push_back((key, seq));
        slots.map.insert(key, Entry { token: parts.concat().into(), verified, valid_until, seq });
        // The queue also holds replaced and expired entries: keep it from outgrowing the map.
        if slots.order.len() > 2 * self.capacity {
            let live = &slots.map;
            slots.order.retain(|(k, s)| live.get(k).is_some_and(|e| e.seq == *s));
        }
    }

    pub fn len(&self) -> usize {
        self.slots().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl TokenCache<VerifiedToken> {
    /// Forgets every verification made with a signing key that is gone.
    pub fn retain_keys(&self, still_published: impl Fn(&str) -> bool) {
        self.slots().map.retain(|_, e| still_published(&e.verified.kid));
    }
}
