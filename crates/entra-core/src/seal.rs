//! Sealed cookie values for browser sign-in: AES-256-GCM (ring) with keys read from
//! `session_key_file`, one base64 line each, the first sealing and all opening.
//!
//! Each key line is stretched with HKDF-SHA256 into one key per purpose (the session, the sign-in
//! transaction), so a value sealed for one purpose never opens as another. A sealed value is
//! base64url of: a 4-byte key id (derived from the key line), a fresh random 12-byte nonce, the
//! ciphertext and its tag. The key id lets opening try one key, and tells "sealed with a key no
//! longer configured" from "tampered with". The caller's associated data (cookie name, provider,
//! format version) binds a value to where it may be used.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::digest::{digest, SHA256};
use ring::hkdf::{Salt, HKDF_SHA256};
use ring::rand::{SecureRandom, SystemRandom};
use thiserror::Error;

use crate::base64url;

/// The least key material per line: 256 bits.
pub const MIN_KEY_BYTES: usize = 32;
const KEY_ID_LEN: usize = 4;
const TAG_LEN: usize = 16;

/// What a sealed value is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Session,
    Transaction,
    /// A Graph answer kept in the fleet's store (`entra_shared_store`).
    GraphAnswer,
}

impl Purpose {
    fn info(self) -> &'static [u8] {
        match self {
            Purpose::Session => b"ngx-entra session v1",
            Purpose::Transaction => b"ngx-entra transaction v1",
            Purpose::GraphAnswer => b"ngx-entra graph answer v1",
        }
    }
}

/// Why a `session_key_file` is refused (the line numbers count from 1).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyFileError {
    #[error("no key in it")]
    Empty,
    #[error("line {0} is not base64")]
    NotBase64(usize),
    #[error("line {line} holds {bytes} bytes, {MIN_KEY_BYTES} at least")]
    TooShort { line: usize, bytes: usize },
}

/// Why a sealed value does not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum OpenError {
    #[error("not a sealed value")]
    Malformed,
    #[error("sealed with a key that is not configured")]
    UnknownKey,
    #[error("altered, or sealed for another use")]
    Tampered,
}

struct SealKey {
    /// The id sealed values carry: derived by HKDF, like the keys, so it says nothing more of
    /// the material than they do.
    id: [u8; KEY_ID_LEN],
    /// The id releases before issue 22 put in front (a SHA-256 prefix of the material): values
    /// sealed then still open.
    legacy_id: [u8; KEY_ID_LEN],
    session: LessSafeKey,
    transaction: LessSafeKey,
    graph_answer: LessSafeKey,
    /// Names a session in the fleet's store (`entra_shared_store`): HMAC-SHA-256, its own purpose.
    fleet: ring::hmac::Key,
}

/// HKDF output of `len` bytes.
struct Bytes(usize);

impl ring::hkdf::KeyType for Bytes {
    fn len(&self) -> usize {
        self.0
    }
}

impl SealKey {
    fn new(material: &[u8]) -> SealKey {
        let mut legacy_id = [0; KEY_ID_LEN];
        legacy_id.copy_from_slice(&digest(&SHA256, material).as_ref()[..KEY_ID_LEN]);
        let prk = Salt::new(HKDF_SHA256, b"ngx-entra").extract(material);
        let mut id = [0; KEY_ID_LEN];
        prk.expand(&[b"ngx-entra key id v1"], Bytes(KEY_ID_LEN))
            .and_then(|okm| okm.fill(&mut id))
            .expect("a 4-byte HKDF output is a valid length");
        let derive = |purpose: Purpose| {
            let info = [purpose.info()];
            let okm = prk.expand(&info, &AES_256_GCM).expect("an AES-256 key is a valid HKDF length");
            LessSafeKey::new(UnboundKey::from(okm))
        };
        let fleet = prk
            .expand(&[b"ngx-entra fleet session v1"], ring::hmac::HMAC_SHA256)
            .expect("an HMAC key is a valid HKDF length");
        SealKey {
            id,
            legacy_id,
            session: derive(Purpose::Session),
            transaction: derive(Purpose::Transaction),
            graph_answer: derive(Purpose::GraphAnswer),
            fleet: ring::hmac::Key::from(fleet),
        }
    }

    fn key(&self, purpose: Purpose) -> &LessSafeKey {
        match purpose {
            Purpose::Session => &self.session,
            Purpose::Transaction => &self.transaction,
            Purpose::GraphAnswer => &self.graph_answer,
        }
    }
}

/// The keys of one `session_key_file`.
pub struct SealKeys {
    keys: Vec<SealKey>,
    random: SystemRandom,
}

impl std::fmt::Debug for SealKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key material.
        f.debug_struct("SealKeys").field("keys", &self.keys.len()).finish()
    }
}

impl SealKeys {
    /// Reads the file's text: one key per line in standard base64 (padding optional), blank
    /// lines skipped.
    pub fn parse(text: &str) -> Result<SealKeys, KeyFileError> {
        let mut keys = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let unpadded = line.trim_end_matches('=');
            let material = base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(unpadded)
                .or_else(|_| STANDARD.decode(line))
                .map_err(|_| KeyFileError::NotBase64(index + 1))?;
            if material.len() < MIN_KEY_BYTES {
                return Err(KeyFileError::TooShort { line: index + 1, bytes: material.len() });
            }
            keys.push(SealKey::new(&material));
        }
        if keys.is_empty() {
            return Err(KeyFileError::Empty);
        }
        Ok(SealKeys { keys, random: SystemRandom::new() })
    }

    /// Seals `plaintext` with the first key for `purpose`, bound to `aad`.
    pub fn seal(&self, purpose: Purpose, aad: &[u8], plaintext: &[u8]) -> String {
        let key = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        // The system's random source does not fail on Linux once the process runs.
        self.random.fill(&mut nonce).expect("random bytes");
        let mut out = Vec::with_capacity(KEY_ID_LEN + NONCE_LEN + plaintext.len() + TAG_LEN);
        out.extend_from_slice(&key.id);
        out.extend_from_slice(&nonce);
        let mut sealed = plaintext.to_vec();
        key.key(purpose)
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut sealed)
            .expect("a plaintext within AES-GCM's limits");
        out.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// A session's names in the fleet's store, one per key line (the first line's first):
    /// HMAC-SHA-256 of the provider and the session's identity ([`crate::revocation::identity`]),
    /// cut to a record key. Never the `sid` itself: the store sees only these. An instance
    /// records a sign-in under its first line; a sign-out is looked up and published under every
    /// line, so instances in the middle of a key rotation (the new line first on some, second on
    /// others) still name each other's sessions alike.
    pub fn fleet_keys(&self, provider: &str, identity: &[u8]) -> Vec<crate::revocation::Key> {
        self.keys
            .iter()
            .map(|k| {
                let mut context = ring::hmac::Context::with_key(&k.fleet);
                context.update(provider.as_bytes());
                context.update(&[0]);
                context.update(identity);
                crate::revocation::key_from_digest(context.sign().as_ref())
            })
            .collect()
    }

    /// Opens a value sealed by [`SealKeys::seal`] with any configured key.
    pub fn open(&self, purpose: Purpose, aad: &[u8], sealed: impl AsRef<[u8]>) -> Result<Vec<u8>, OpenError> {
        let mut bytes = base64url::decode(sealed).map_err(|_| OpenError::Malformed)?;
        if bytes.len() < KEY_ID_LEN + NONCE_LEN + TAG_LEN {
            return Err(OpenError::Malformed);
        }
        let (id, rest) = bytes.split_at(KEY_ID_LEN);
        let key = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .or_else(|| self.keys.iter().find(|k| k.legacy_id == id))
            .ok_or(OpenError::UnknownKey)?;
        let nonce = Nonce::try_assume_unique_for_key(&rest[..NONCE_LEN]).map_err(|_| OpenError::Malformed)?;
        // Decrypted where it lies, moved to the front by the same pass: no copy of its own.
        let len = key
            .key(purpose)
            .open_within(nonce, Aad::from(aad), &mut bytes, KEY_ID_LEN + NONCE_LEN..)
            .map_err(|_| OpenError::Tampered)?
            .len();
        bytes.truncate(len);
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // 32 bytes
    const TWO: &str = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA"; // 32 bytes, unpadded

    #[test]
    fn a_sealed_value_opens_with_the_same_purpose_and_data_only() {
        let keys = SealKeys::parse(ONE).unwrap();
        let sealed = keys.seal(Purpose::Session, b"__Host-entra|contoso|1", b"payload");
        assert_eq!(keys.open(Purpose::Session, b"__Host-entra|contoso|1", &sealed).unwrap(), b"payload");
        assert_eq!(
            keys.open(Purpose::Transaction, b"__Host-entra|contoso|1", &sealed),
            Err(OpenError::Tampered)
        );
        assert_eq!(keys.open(Purpose::Session, b"__Host-entra|other|1", &sealed), Err(OpenError::Tampered));
        assert_ne!(
            sealed,
            keys.seal(Purpose::Session, b"__Host-entra|contoso|1", b"payload"),
            "a fresh nonce"
        );
        assert!(!sealed.contains("payload"));
    }

    #[test]
    fn the_key_id_is_derived_by_hkdf_and_the_old_prefix_still_opens() {
        let material = [7u8; 32];
        let keys = SealKeys::parse(&STANDARD.encode(material)).unwrap();
        let sealed = URL_SAFE_NO_PAD.decode(keys.seal(Purpose::Session, b"a", b"plain")).unwrap();
        let hash = digest(&SHA256, &material);
        let prefix = &hash.as_ref()[..KEY_ID_LEN];
        assert_ne!(&sealed[..KEY_ID_LEN], prefix, "no prefix of the key's own hash");
        // A value of a release before: the same sealing, the hash prefix in front.
        let mut old = prefix.to_vec();
        old.extend_from_slice(&sealed[KEY_ID_LEN..]);
        assert_eq!(keys.open(Purpose::Session, b"a", URL_SAFE_NO_PAD.encode(old)).unwrap(), b"plain");
    }

    #[test]
    fn any_altered_byte_is_refused() {
        let keys = SealKeys::parse(ONE).unwrap();
        let sealed = URL_SAFE_NO_PAD.decode(keys.seal(Purpose::Session, b"a", b"some session")).unwrap();
        for i in KEY_ID_LEN..sealed.len() {
            let mut altered = sealed.clone();
            altered[i] ^= 0x01;
            assert_eq!(
                keys.open(Purpose::Session, b"a", URL_SAFE_NO_PAD.encode(&altered)),
                Err(OpenError::Tampered)
            );
        }
        let truncated = URL_SAFE_NO_PAD.encode(&sealed[..sealed.len() - 1]);
        assert_eq!(keys.open(Purpose::Session, b"a", &truncated), Err(OpenError::Tampered));
        assert_eq!(keys.open(Purpose::Session, b"a", "AAAA"), Err(OpenError::Malformed));
        assert_eq!(keys.open(Purpose::Session, b"a", "not base64!"), Err(OpenError::Malformed));
    }

    #[test]
    fn the_first_key_seals_every_key_opens_and_a_removed_key_is_named() {
        let old = SealKeys::parse(ONE).unwrap();
        let rotating = SealKeys::parse(&format!("{TWO}\n\n{ONE}\n")).unwrap();
        let new_only = SealKeys::parse(TWO).unwrap();
        let by_old = old.seal(Purpose::Session, b"a", b"x");
        assert_eq!(
            rotating.open(Purpose::Session, b"a", &by_old).unwrap(),
            b"x",
            "the second line still opens"
        );
        let by_rotating = rotating.seal(Purpose::Session, b"a", b"y");
        assert_eq!(
            new_only.open(Purpose::Session, b"a", &by_rotating).unwrap(),
            b"y",
            "the first line seals"
        );
        assert_eq!(new_only.open(Purpose::Session, b"a", &by_old), Err(OpenError::UnknownKey));
    }

    #[test]
    fn key_files_are_checked() {
        assert_eq!(SealKeys::parse("\n  \n").unwrap_err(), KeyFileError::Empty);
        assert_eq!(SealKeys::parse(&format!("{ONE}\nnot*base64")).unwrap_err(), KeyFileError::NotBase64(2));
        assert_eq!(SealKeys::parse("c2hvcnQ=").unwrap_err(), KeyFileError::TooShort { line: 1, bytes: 5 });
        assert!(!format!("{:?}", SealKeys::parse(ONE).unwrap()).contains(ONE), "Debug shows no key");
    }

    #[test]
    fn fleet_keys_are_one_per_line_bound_to_the_provider_and_never_the_local_key() {
        use crate::revocation::{identity, sid_key};
        let both = SealKeys::parse(&format!("{TWO}\n{ONE}\n")).unwrap();
        let one = SealKeys::parse(ONE).unwrap();
        let sid = identity("a-sid", "", "", 0);
        let names = both.fleet_keys("live", &sid);
        assert_eq!(names.len(), 2, "one per line");
        assert_eq!(
            names[1],
            one.fleet_keys("live", &sid)[0],
            "the same line names a session alike everywhere"
        );
        assert_ne!(names[0], names[1]);
        assert_ne!(one.fleet_keys("other", &sid), one.fleet_keys("live", &sid), "bound to the provider");
        assert_ne!(names[1], sid_key("a-sid"), "a keyed hash, not the local record's SHA-256");
        assert_eq!(one.fleet_keys("live", &identity("a-sid", "oid", "tid", 5)), one.fleet_keys("live", &sid));
    }
}
