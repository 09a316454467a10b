//! The verified-token cache.

mod common;

use common::*;

#[test]
fn a_verified_token_is_served_from_the_cache_the_second_time() {
    let p = provider();
    let t = token(MintOptions::default());
    let first = judgment(&p, t.as_bytes());
    let second = judgment(&p, t.as_bytes());
    assert!(first.checked_for.is_some(), "the first is verified");
    assert!(second.checked_for.is_none(), "the second comes from the cache");
    assert!(std::sync::Arc::ptr_eq(&first.verdict.unwrap(), &second.verdict.unwrap()));
}

#[test]
fn the_cache_never_answers_for_another_token_with_the_same_signature() {
    let p = provider();
    let good = token(MintOptions::default());
    judge(&p, good.as_bytes()).unwrap();
    // Same signature (the hashed tail), another payload: must be judged, and fail.
    let (head, rest) = good.split_once('.').unwrap();
    let (_, sig) = rest.split_once('.').unwrap();
    let payload = base64_url(r#"{"aud":"x"}"#);
    let forged = format!("{head}.{payload}.{sig}");
    assert_eq!(judge(&p, forged.as_bytes()).unwrap_err(), Denial::BadSignature);
}

#[test]
fn failures_are_not_cached_and_off_means_off() {
    let p = provider();
    let bad = token(MintOptions { signing: Signing::Corrupt, ..Default::default() });
    assert!(judge(&p, bad.as_bytes()).is_err());
    assert!(judge(&p, bad.as_bytes()).is_err());
    let mut cfg = config();
    cfg.token_cache = Some(0);
    let p = cfg.build("nocache").unwrap();
    let t = token(MintOptions::default());
    for _ in 0..2 {
        let j = judgment(&p, t.as_bytes());
        assert!(j.verdict.is_ok() && j.checked_for.is_some(), "verified each time");
    }
}

#[test]
fn cached_verifications_end_with_the_token_and_the_cache_is_bounded() {
    use entra_core::cache::TokenCache;
    let verified = std::sync::Arc::new(verify(MintOptions::default()).unwrap());
    let cache = TokenCache::new(2);
    cache.insert(&[b"token-a"], verified.clone(), 1000, 900);
    assert!(cache.get(&[b"token-a"], 1000).is_some());
    assert!(cache.get(&[b"token-a"], 1001).is_none(), "not past exp + leeway");
    cache.insert(&[b"token-b"], verified.clone(), 1000, 900);
    cache.insert(&[b"token-c"], verified.clone(), 1000, 900);
    assert_eq!(cache.len(), 2);
    assert!(cache.get(&[b"token-a"], 950).is_none(), "the oldest went first");
    assert!(cache.get(&[b"token-c"], 950).is_some());
    // Expired entries make room before live ones: both b and c go, not only the oldest.
    cache.insert(&[b"token-d"], verified.clone(), 2000, 1500);
    assert!(cache.get(&[b"token-d"], 1500).is_some());
    assert_eq!(cache.len(), 1, "every expired entry was swept out");
    cache.retain_keys(|kid| kid != verified.kid);
    assert!(cache.is_empty(), "entries of a key that is gone are dropped");
}

#[test]
fn the_exp_of_a_verified_token_is_kept() {
    let t = verify(MintOptions { expires_in: Some(600), ..Default::default() }).unwrap();
    assert!((now() + 590..=now() + 610).contains(&t.exp));
}

#[test]
fn a_hit_compares_the_whole_token_not_its_ends() {
    let p = provider();
    let good = token(MintOptions::default());
    assert!(judgment(&p, good.as_bytes()).verdict.is_ok());
    // Keeps the first 200 bytes and the last 64 characters; one byte between them changes.
    assert!(good.len() > 300, "a token long enough to have a middle: {}", good.len());
    let mut forged = good.clone().into_bytes();
    let middle = 200 + (good.len() - 264) / 2;
    forged[middle] = if forged[middle] == b'A' { b'B' } else { b'A' };
    let judged = judgment(&p, &forged);
    assert!(judged.checked_for.is_some(), "judged, not served from the cache");
    assert!(judged.verdict.is_err(), "and refused");
}
