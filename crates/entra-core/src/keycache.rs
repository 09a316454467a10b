//! `entra_keys_cache_path`: a fetched key set kept on disk, so that nginx restarted while the IdP
//! cannot be reached serves with the keys it had (Entra overlaps its keys for weeks). One file
//! per provider, tied to its tenant and metadata URL; written (mode 0600, a new file renamed over
//! the old) by the worker that fetched, off its event loop; read by the master at configuration
//! time. Whoever can write the directory could plant signing keys: it must be the operator's.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::discovery::{Endpoints, Fetched};
use crate::keys::KeySet;
use crate::revocation::Snapshot;

/// The format of the files; another version is ignored.
const VERSION: u32 = 1;
/// The most of a cache file that is read (a key set fetched is at most 1 MiB too).
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// Where the files go and how old one may be to be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyCache {
    pub dir: PathBuf,
    /// Seconds.
    pub max_age: u64,
}

/// Why a cache file is not used.
#[derive(Debug, Error)]
pub enum CacheError {
    #[error("cannot read it: {0}")]
    Read(std::io::Error),
    #[error("it is not a regular file (a symbolic link, a FIFO or a device is never read)")]
    NotRegular,
    #[error("it is owned by uid {0}, neither root nor the worker user")]
    Owner(u32),
    #[error("it is larger than it may be (1 MiB for keys)")]
    TooLarge,
    #[error("{0}")]
    Url(String),
    #[error("not a key cache file of this version: {0}")]
    Format(String),
    #[error("it is for tenant \"{0}\"")]
    OtherTenant(String),
    #[error("it is for metadata \"{0}\"")]
    OtherMetadata(String),
    #[error("it was fetched {0} s ago, more than max_age")]
    TooOld(u64),
    #[error("its key set does not parse: {0}")]
    KeySet(String),
}

/// Why a directory may not hold key caches.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DirError {
    #[error("cannot use it: {0}")]
    Unusable(String),
    #[error(
        "it is writable by group or others (mode {0:o}): anyone who can write it could plant signing keys"
    )]
    Loose(u32),
    #[error("it is owned by uid {0}, neither root nor the worker user")]
    Owner(u32),
}

#[derive(Serialize, Deserialize)]
struct File {
    version: u32,
    tenant: String,
    metadata_url: String,
    /// Seconds since the epoch.
    fetched_at: u64,
    issuers: Vec<String>,
    endpoints: [Option<String>; 3],
    /// The key set as fetched.
    jwks: String,
}

/// Keys read back from a cache file.
#[derive(Debug)]
pub struct Cached {
    pub fetched: Fetched,
    pub fetched_at: u64,
}

impl KeyCache {
    /// The file of provider `name` (names are `[A-Za-z0-9_.-]`).
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.keys.json"))
    }

    /// Refuses a directory that is not a directory, is writable by group or others, or is owned
    /// by anyone but root or `worker_uid`.
    pub fn check_dir(dir: &Path, worker_uid: u32) -> Result<(), DirError> {
        let meta = fs::metadata(dir).map_err(|e| DirError::Unusable(e.to_string()))?;
        if !meta.is_dir() {
            return Err(DirError::Unusable("not a directory".into()));
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o022 != 0 {
            return Err(DirError::Loose(mode));
        }
        if meta.uid() != 0 && meta.uid() != worker_uid {
            return Err(DirError::Owner(meta.uid()));
        }
        Ok(())
    }

    /// Writes what a fetch of `metadata_url` for `tenant` brought at `now`: a new file, mode
    /// 0600, renamed over the old one. Blocking: never on an event loop.
    pub fn write(
        &self,
        name: &str,
        tenant: &str,
        metadata_url: &str,
        fetched: &Fetched,
        now: u64,
    ) -> std::io::Result<()> {
        let e = &fetched.endpoints;
        let file = File {
            version: VERSION,
            tenant: tenant.to_owned(),
            metadata_url: metadata_url.to_owned(),
            fetched_at: now,
            issuers: fetched.issuers.clone(),
            endpoints: [e.authorize.clone(), e.token.clone(), e.end_session.clone()],
            jwks: String::from_utf8_lossy(&fetched.jwks).into_owned(),
        };
        let text = serde_json::to_vec(&file).map_err(std::io::Error::other)?;
        self.replace(&self.file(name), &format!("{name}.keys.json"), &text)
    }

    /// Puts `bytes` in place of `path`: a new file of mode 0600 (named after `base`, this
    /// process and a dot), synced and renamed over the old one, which a reader never sees half
    /// written.
    fn replace(&self, path: &Path, base: &str, bytes: &[u8]) -> std::io::Result<()> {
        let temporary = self.dir.join(format!(".{base}.{}", std::process::id()));
        let written = (|| {
            let mut out = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&temporary)?;
            out.write_all(bytes)?;
            out.sync_all()?;
            fs::rename(&temporary, path)
        })();
        if written.is_err() {
            let _ = fs::remove_file(&temporary);
        }
        written
    }

    /// The file of provider `name`'s record of sessions.
    pub fn record_file(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.sessions"))
    }

    /// Keeps provider `name`'s record of sessions. Blocking: never on an event loop.
    pub fn write_record(&self, name: &str, snapshot: &Snapshot) -> std::io::Result<()> {
        self.replace(&self.record_file(name), &format!("{name}.sessions"), &snapshot.encode())
    }

    /// Reads provider `name`'s record of sessions back, read as [`KeyCache::read`] reads (but
    /// up to the size of the largest record). `Ok(None)`: there is none.
    pub fn read_record(&self, name: &str, worker_uid: u32) -> Result<Option<Snapshot>, CacheError> {
        let max = 64 + 32 * crate::revocation::MAX_SNAPSHOT_ENTRIES as u64;
        let Some(bytes) = read_guarded(&self.record_file(name), worker_uid, max)? else { return Ok(None) };
        Snapshot::decode(&bytes).map(Some).map_err(|e| CacheError::Format(e.to_string()))
    }

    /// The master reads it as root, before any worker runs: only a regular file owned by root
    /// or `worker_uid`, never through a symbolic link, never waiting on a FIFO, at most 1 MiB;
    /// the URLs it names pass the rules a fetched metadata document's do.
    pub fn read(
        &self,
        name: &str,
        tenant: &str,
        metadata_url: &str,
        now: u64,
        worker_uid: u32,
    ) -> Result<Option<Cached>, CacheError> {
        let Some(text) = read_guarded(&self.file(name), worker_uid, MAX_FILE_BYTES)? else { return Ok(None) };
        let file: File = crate::token::json_object(&text).map_err(|e| CacheError::Format(e.to_string()))?;
        if file.version != VERSION {
            return Err(CacheError::Format(format!("version {}", file.version)));
        }
        if file.tenant != tenant {
            return Err(CacheError::OtherTenant(file.tenant));
        }
        if file.metadata_url != metadata_url {
            return Err(CacheError::OtherMetadata(file.metadata_url));
        }
        let age = now.saturating_sub(file.fetched_at);
        if age > self.max_age {
            return Err(CacheError::TooOld(age));
        }
        let (keys, warnings) =
            KeySet::from_jwks(file.jwks.as_bytes()).map_err(|e| CacheError::KeySet(e.to_string()))?;
        for url in file.endpoints.iter().flatten() {
            crate::values::parse_url("endpoint", url).map_err(|e| CacheError::Url(e.to_string()))?;
        }
        let [authorize, token, end_session] = file.endpoints;
        let fetched = Fetched {
            jwks: file.jwks.into_bytes(),
            keys,
            issuers: file.issuers,
            endpoints: Endpoints { authorize, token, end_session },
            metadata_requests: 0,
            warnings,
        };
        Ok(Some(Cached { fetched, fetched_at: file.fetched_at }))
    }
}

/// A cache file's bytes, read as [`KeyCache::read`] says, at most `max`; `None` when there is
/// none.
fn read_guarded(path: &Path, worker_uid: u32, max: u64) -> Result<Option<Vec<u8>>, CacheError> {
    let opened = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path);
    let file = match opened {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(CacheError::NotRegular),
        Err(e) => return Err(CacheError::Read(e)),
    };
    // Judged on the file opened (fstat), not on its name, which may change meanwhile.
    let meta = file.metadata().map_err(CacheError::Read)?;
    if !meta.file_type().is_file() {
        return Err(CacheError::NotRegular);
    }
    if meta.uid() != 0 && meta.uid() != worker_uid {
        return Err(CacheError::Owner(meta.uid()));
    }
    if meta.len() > max {
        return Err(CacheError::TooLarge);
    }
    let mut text = Vec::with_capacity(meta.len() as usize);
    file.take(max + 1).read_to_end(&mut text).map_err(CacheError::Read)?;
    if text.len() as u64 > max {
        return Err(CacheError::TooLarge);
    }
    Ok(Some(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetched() -> Fetched {
        let jwks = br#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k1","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
        Fetched {
            jwks: jwks.to_vec(),
            keys: KeySet::from_jwks(jwks).unwrap().0,
            issuers: vec!["https://login.example/t/v2.0".into()],
            endpoints: Endpoints {
                authorize: Some("https://login.example/a".into()),
                token: None,
                end_session: None,
            },
            metadata_requests: 2,
            warnings: Vec::new(),
        }
    }

    /// This process's user: the owner of the cache directory the test made.
    fn me(c: &KeyCache) -> u32 {
        fs::metadata(&c.dir).unwrap().uid()
    }

    fn cache(max_age: u64) -> KeyCache {
        let dir = std::env::temp_dir().join(format!("entra-keycache-{}-{max_age}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        KeyCache { dir, max_age }
    }

    #[test]
    fn a_file_written_reads_back_for_its_tenant_and_metadata_only() {
        let c = cache(3600);
        c.write("p", "t", "https://login.example/meta", &fetched(), 1000).unwrap();
        let mode = fs::metadata(c.file("p")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let back = c.read("p", "t", "https://login.example/meta", 1500, me(&c)).unwrap().unwrap();
        assert_eq!((back.fetched_at, back.fetched.keys.len()), (1000, 1));
        assert_eq!(back.fetched.issuers, fetched().issuers);
        assert_eq!(back.fetched.endpoints, fetched().endpoints);
        assert!(matches!(
            c.read("p", "other", "https://login.example/meta", 1500, me(&c)),
            Err(CacheError::OtherTenant(_))
        ));
        assert!(matches!(
            c.read("p", "t", "https://login.example/x", 1500, me(&c)),
            Err(CacheError::OtherMetadata(_))
        ));
        assert!(matches!(
            c.read("p", "t", "https://login.example/meta", 4601, me(&c)),
            Err(CacheError::TooOld(3601))
        ));
        assert!(c.read("q", "t", "https://login.example/meta", 1500, me(&c)).unwrap().is_none());
        fs::write(c.file("p"), b"[1]").unwrap();
        assert!(matches!(
            c.read("p", "t", "https://login.example/meta", 1500, me(&c)),
            Err(CacheError::Format(_))
        ));
        fs::remove_dir_all(&c.dir).unwrap();
    }

    #[test]
    fn a_directory_others_can_write_or_another_user_owns_is_refused() {
        let c = cache(1);
        let uid = fs::metadata(&c.dir).unwrap().uid();
        assert_eq!(KeyCache::check_dir(&c.dir, uid), Ok(()));
        fs::set_permissions(&c.dir, fs::Permissions::from_mode(0o770)).unwrap();
        assert_eq!(KeyCache::check_dir(&c.dir, uid), Err(DirError::Loose(0o770)));
        fs::set_permissions(&c.dir, fs::Permissions::from_mode(0o755)).unwrap();
        if uid != 0 {
            assert_eq!(KeyCache::check_dir(&c.dir, uid + 1), Err(DirError::Owner(uid)));
        }
        assert!(matches!(KeyCache::check_dir(&c.dir.join("none"), uid), Err(DirError::Unusable(_))));
        fs::remove_dir_all(&c.dir).unwrap();
    }

    #[test]
    fn links_fifos_devices_large_files_and_foreign_urls_are_never_used() {
        // A directory of its own (named by max_age): the tests run in parallel.
        let c = cache(7200);
        let url = "https://login.example/meta";
        let read = |name: &str| c.read(name, "t", url, 1500, me(&c));
        c.write("p", "t", url, &fetched(), 1000).unwrap();
        std::os::unix::fs::symlink(c.file("p"), c.file("link")).unwrap();
        assert!(matches!(read("link"), Err(CacheError::NotRegular)), "a symbolic link, even to a good file");
        std::os::unix::fs::symlink("/dev/zero", c.file("zero")).unwrap();
        assert!(matches!(read("zero"), Err(CacheError::NotRegular)));
        assert!(std::process::Command::new("mkfifo").arg(c.file("fifo")).status().unwrap().success());
        assert!(matches!(read("fifo"), Err(CacheError::NotRegular)), "a FIFO is refused, not waited on");
        fs::write(c.file("big"), vec![b' '; MAX_FILE_BYTES as usize + 1]).unwrap();
        assert!(matches!(read("big"), Err(CacheError::TooLarge)));
        if me(&c) != 0 {
            assert!(
                matches!(c.read("p", "t", url, 1500, me(&c) + 1), Err(CacheError::Owner(_))),
                "another user's"
            );
        }
        let text = fs::read_to_string(c.file("p"))
            .unwrap()
            .replace("https://login.example/a", "http://evil.example/a");
        fs::write(c.file("p"), text).unwrap();
        assert!(matches!(read("p"), Err(CacheError::Url(_))), "an endpoint that fails the URL rules");
        fs::remove_dir_all(&c.dir).unwrap();
    }
}
