//! The http block's configuration: the providers, the shared zone, the key cache, and what
//! the block's parsing found out for the module's start.

use std::sync::Arc;

use entra_core::discovery::Fetched;
use entra_core::keycache::KeyCache;
use entra_core::Provider;

use super::zone::ZoneConf;

/// http-level configuration: the providers, in the order written, and the shared zone.
#[derive(Default)]
pub struct MainConf {
    pub providers: Vec<Arc<Provider>>,
    pub zone: ZoneConf,
    /// Some location signs browsers in (`entra_auth ... session|any`).
    pub sign_in_used: bool,
    /// `entra_keys_cache_path`.
    pub keys_cache: Option<KeyCache>,
    /// The cached keys a start may serve with, per provider (read once the block is parsed).
    pub cached_keys: Vec<Option<Fetched>>,
    /// The record of sessions of each provider that signs browsers in: its name and capacity
    /// (set once the block is parsed, by [`MainConf::size_records`]).
    pub records: Vec<(String, u64)>,
    /// Requirement lines (file, line) already warned about for want of `entra_auth`.
    pub unguarded_warned: std::collections::HashSet<(String, usize)>,
    /// nginx's `$request_id`, indexed so that the denial line and the access log read the
    /// same cached value (postconfiguration).
    pub request_id_index: Option<usize>,
}

impl MainConf {
    /// The provider a location names, by its index in `providers`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.providers.iter().position(|p| p.name == name)
    }
}

impl MainConf {
    /// Sizes the records of sessions of the providers that sign browsers in: `session_record`
    /// as written, else an equal share of half the zone. Refused when they do not fit in
    /// three quarters of it.
    pub fn size_records(&mut self, zone_size: usize) -> Result<(), String> {
        let signing_in: Vec<&Arc<Provider>> =
            self.providers.iter().filter(|p| p.sign_in.keys.is_some()).collect();
        let share = zone_size / 2 / signing_in.len().max(1);
        // The largest power of two whose table fits the share.
        let fits = (share / entra_core::revocation::BYTES_PER_SESSION).max(4) as u64;
        let default = 1u64 << (63 - fits.leading_zeros());
        self.records = signing_in
            .iter()
            .map(|p| (p.name.clone(), p.sign_in.session_record.unwrap_or(default)))
            .collect();
        let bytes: usize = self.records.iter().map(|(_, n)| crate::zone::record_bytes(*n)).sum();
        if bytes > zone_size / 4 * 3 {
            return Err(format!(
                "the session records ({}) take {} KiB, more than three quarters of entra_shared_zone's {} KiB: \
                 lower \"session_record\" or enlarge the zone",
                self.records.iter().map(|(name, n)| format!("\"{name}\" {n}")).collect::<Vec<_>>().join(", "),
                bytes / 1024,
                zone_size / 1024
            ));
        }
        Ok(())
    }
}
