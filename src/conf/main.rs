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
