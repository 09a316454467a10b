//! Callbacks per client address and minute, counted in a fixed array of buckets in shared memory
//! (no keys kept, no lock): an address's count is its bucket's, so addresses that share a bucket
//! are counted together, which refuses more than asked, never less. The bucket is chosen with a
//! secret seed, so a client cannot aim at another's.

use core::sync::atomic::{AtomicU64, Ordering::SeqCst};

/// One bucket: the minute it counts (since the epoch) and its count.
#[repr(C)]
#[derive(Default)]
pub struct Bucket {
    minute: AtomicU64,
    count: AtomicU64,
}

/// Counts one callback of the client whose (seeded) hash is `hash` at `now_s`: `true` while
/// the bucket has had at most `limit` this minute.
pub fn admit(buckets: &[Bucket], hash: u64, now_s: u64, limit: u64) -> bool {
    let Some(bucket) = buckets.get(hash as usize % buckets.len().max(1)) else { return false };
    let minute = now_s / 60;
    let seen = bucket.minute.load(SeqCst);
    if seen != minute && bucket.minute.compare_exchange(seen, minute, SeqCst, SeqCst).is_ok() {
        bucket.count.store(0, SeqCst);
    }
    bucket.count.fetch_add(1, SeqCst) < limit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_its_limit_per_minute() {
        let buckets: Vec<Bucket> = (0..8).map(|_| Bucket::default()).collect();
        let admitted = (0..10).filter(|_| admit(&buckets, 3, 120, 4)).count();
        assert_eq!(admitted, 4, "four in the minute");
        assert!(admit(&buckets, 4, 120, 4), "another bucket counts apart");
        assert!(admit(&buckets, 3, 180, 4), "the next minute starts afresh");
        assert!(!admit(&[], 3, 180, 4), "no buckets: refused");
    }
}
