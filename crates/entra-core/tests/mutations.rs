//! Nothing but the exact token passes, nothing panics; a discovery provider judges with what it was given.

mod common;

use common::*;

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn no_mutation_of_a_valid_token_passes_and_none_panics() {
    let p = provider();
    let good = token(MintOptions { groups: Some(vec!["g1".into()]), ..Default::default() }).into_bytes();
    assert!(judge(&p, &good).is_ok());
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ \x00\xff{}\"";
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for round in 0..3000 {
        let mut t = good.clone();
        for _ in 0..1 + rng.below(3) {
            match rng.below(4) {
                0 => {
                    let i = rng.below(t.len());
                    t[i] = alphabet[rng.below(alphabet.len())];
                }
                1 => t.truncate(rng.below(t.len().max(1))),
                2 => {
                    let i = rng.below(t.len() + 1);
                    t.insert(i, alphabet[rng.below(alphabet.len())]);
                }
                _ => {
                    let i = rng.below(t.len().max(1));
                    t.remove(i.min(t.len().saturating_sub(1)));
                }
            }
            if t.is_empty() {
                break;
            }
        }
        if t == good {
            continue;
        }
        // A cached verification must not leak to a near copy either: judge twice.
        for _ in 0..2 {
            if let Ok(j) = judge(&p, &t) {
                // base64 has more than one spelling of the last bits of a segment; anything
                // else that passes must decode to the very same header, claims and signature.
                let decode = |tok: &[u8]| {
                    use base64::Engine;
                    let text = String::from_utf8(tok.to_vec()).unwrap();
                    text.split('.')
                        .map(|part| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap())
                        .collect::<Vec<_>>()
                };
                assert_eq!(decode(&t), decode(&good), "round {round}: a mutated token passed");
                assert_eq!(j.oid(), judge(&p, &good).unwrap().oid());
            }
        }
    }
}

#[test]
fn a_discovery_provider_judges_with_the_keys_and_issuers_it_was_given() {
    use entra_core::provider::KeySource;
    let mut cfg = config();
    cfg.keys = None;
    let p = cfg.build("live").unwrap();
    assert!(matches!(p.source, KeySource::Discovery { .. }));
    assert!(p.issuers.is_empty(), "the metadata names them");
    let t = token(MintOptions::default());
    assert_eq!(judge(&p, t.as_bytes()).unwrap_err(), Denial::UnknownKid, "no keys yet");
    let v2_issuer = format!("{GLOBAL_AUTHORITY}/{DEV_TENANT}/v2.0");
    p.update_keys(KeyState { keys: keys(), issuers: vec![v2_issuer], ..Default::default() });
    assert!(judge(&p, t.as_bytes()).is_ok());
    let v1 = token(MintOptions { version: Some(1), ..Default::default() });
    assert_eq!(judge(&p, v1.as_bytes()).unwrap_err(), Denial::WrongIssuer, "only the issuers named");
    // A key set without the signing key: the cached verification goes with it.
    let other = idp().stranger.jwks().unwrap().to_string();
    p.update_keys(KeyState { keys: KeySet::from_jwks(other.as_bytes()).unwrap().0, ..Default::default() });
    assert_eq!(judge(&p, t.as_bytes()).unwrap_err(), Denial::UnknownKid);
}
