//! `entra_keys_cache_path dir [max_age=time];`: where fetched key sets are kept for a start while
//! the IdP cannot be reached (the files themselves are entra-core's `keycache`), and reading them
//! back once the configuration is parsed.

use core::ffi::{c_char, c_void};
use std::path::PathBuf;

use entra_core::discovery::Fetched;
use entra_core::keycache::KeyCache;
use entra_core::provider::KeySource;
use entra_core::revocation::Snapshot;
use ngx::core::NGX_CONF_ERROR;
use ngx::ffi::{ngx_command_t, ngx_conf_t, ngx_core_conf_t, ngx_core_module};

use super::ext::{answer, time_value, Conf, ConfError};
use super::main::MainConf;
use crate::clock::now;
use crate::log::guard;
use crate::zone::RecordKind;

const DEFAULT_MAX_AGE: u64 = 72 * 3600;

/// `entra_keys_cache_path`
pub extern "C" fn set_cache_path(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx calls directive handlers with a valid cf and this module's main conf.
    let (conf_ctx, main) = unsafe { (Conf::new(cf), &mut *(conf as *mut MainConf)) };
    // SAFETY: as above.
    guard(unsafe { (*cf).log }, "entra_keys_cache_path", NGX_CONF_ERROR, || {
        answer(&conf_ctx, conf_ctx.args().and_then(|a| set(&conf_ctx, main, &a)))
    })
}

fn set(cf: &Conf, main: &mut MainConf, a: &[&str]) -> Result<(), ConfError> {
    if main.keys_cache.is_some() || main.keys_cache_off {
        return Err(ConfError::Duplicate("entra_keys_cache_path".into()));
    }
    if a[1..] == ["off"] {
        main.keys_cache_off = true;
        return Ok(());
    }
    let max_age = match a.get(2) {
        None => DEFAULT_MAX_AGE,
        Some(option) => {
            let value = option.strip_prefix("max_age=").ok_or_else(|| ConfError::Invalid {
                directive: "entra_keys_cache_path",
                value: (*option).to_owned(),
                expected: "the only option is max_age=time",
            })?;
            time_value("entra_keys_cache_path max_age", value, true)?.as_secs()
        }
    };
    let dir = PathBuf::from(cf.full_path(a[1])?);
    KeyCache::check_dir(&dir, worker_uid(cf))
        .map_err(|e| ConfError::Rule(format!("entra_keys_cache_path \"{}\": {e}", dir.display())))?;
    main.keys_cache = Some(KeyCache { dir, max_age });
    Ok(())
}

/// The directory the keys cache uses when `entra_keys_cache_path` is not written: the Debian
/// package makes it (0700, for nginx's worker user). A debug build takes another from
/// `NGX_ENTRA_TEST_KEYS_CACHE` (for the tests).
fn default_dir() -> PathBuf {
    #[cfg(debug_assertions)]
    if let Some(dir) = std::env::var_os("NGX_ENTRA_TEST_KEYS_CACHE") {
        return PathBuf::from(dir);
    }
    PathBuf::from("/var/cache/nginx/entra")
}

/// Without `entra_keys_cache_path`, a provider that fetches its keys uses the default directory
/// if it exists (a restart during an IdP outage then starts with the last keys); one that does
/// not pass the directory's checks is left alone, with a warning.
pub fn use_default(cf: &Conf, main: &mut MainConf) {
    let fetches = main.providers.iter().any(|p| matches!(p.source, KeySource::Discovery { .. }));
    if main.keys_cache.is_some() || main.keys_cache_off || !fetches {
        return;
    }
    let dir = default_dir();
    if !dir.is_dir() {
        return;
    }
    match KeyCache::check_dir(&dir, worker_uid(cf)) {
        Ok(()) => main.keys_cache = Some(KeyCache { dir, max_age: DEFAULT_MAX_AGE }),
        Err(e) => cf.warn_about(&format_args!(
            "entra: the default keys cache \"{}\" is not used: {e} (write \"entra_keys_cache_path off;\" to say \
             that none is wanted)",
            dir.display()
        )),
    }
}

/// The user the workers will run as: the `user` directive's when it came first, else whoever
/// runs nginx (a master started as root without `user` runs its workers as nginx's default
/// user, which then must own the directory, or root).
fn worker_uid(cf: &Conf) -> u32 {
    // SAFETY: the core module's configuration exists once the main context is being parsed.
    let ccf = unsafe {
        let cycle = (*cf.as_ptr()).cycle;
        *(*cycle).conf_ctx.add(ngx_core_module.index) as *const ngx_core_conf_t
    };
    // SAFETY: as above.
    match unsafe { ccf.as_ref() }.map(|c| c.user) {
        // nginx's "unset" is all bits set.
        Some(user) if user != ngx::ffi::ngx_uid_t::MAX => user,
        // SAFETY: geteuid cannot fail.
        _ => unsafe { ngx::ffi::geteuid() },
    }
}

/// The cached keys of each provider (in the configuration's order) that a start may serve with:
/// read by the master once the configuration is parsed, used only where the shared zone has no
/// keys for the provider yet. Files that do not fit are logged and left alone.
pub fn read_cached(cf: &Conf, main: &MainConf) -> Vec<Option<Fetched>> {
    let Some(cache) = &main.keys_cache else { return Vec::new() };
    let uid = worker_uid(cf);
    main.providers
        .iter()
        .map(|provider| {
            let KeySource::Discovery { discovery, .. } = &provider.source else { return None };
            let file = cache.file(&provider.name);
            let read =
                cache.read(&provider.name, provider.tenant.as_str(), &discovery.metadata_url, now(), uid);
            match read {
                Ok(Some(cached)) => Some(cached.fetched),
                Ok(None) => None,
                Err(e) => {
                    cf.warn_about(&format_args!(
                        "entra: provider \"{}\": key cache \"{}\" is not used: {e}",
                        provider.name,
                        file.display()
                    ));
                    None
                }
            }
        })
        .collect()
}

/// The records of sessions kept across restarts, one per wanted record (in `main.records`'s
/// order; only records of sessions are kept): read by the master once the configuration is
/// parsed, used only where the shared zone has no such record yet (a start). Files that do not
/// read back are logged and left alone.
pub fn read_records(cf: &Conf, main: &MainConf) -> Vec<Option<Snapshot>> {
    let Some(cache) = &main.keys_cache else { return Vec::new() };
    let uid = worker_uid(cf);
    main.records
        .iter()
        .map(|(kind, name, _)| {
            if *kind != RecordKind::Sessions {
                return None;
            }
            match cache.read_record(name, uid) {
                Ok(kept) => kept,
                Err(e) => {
                    cf.warn_about(&format_args!(
                        "entra: provider \"{name}\": the record of sessions \"{}\" is not used: {e}",
                        cache.record_file(name).display()
                    ));
                    None
                }
            }
        })
        .collect()
}
