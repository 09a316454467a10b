//! The http block's configuration: the providers, the shared zone, the key cache, and what
//! the block's parsing found out for the module's start.

use std::sync::Arc;

use entra_core::discovery::Fetched;
use entra_core::keycache::KeyCache;
use entra_core::Provider;

use entra_core::answers::WAYS;
use entra_core::graph::{Asked, MAX_ASKED_GROUPS};
use entra_core::revocation::{Snapshot, BYTES_PER_SESSION};

use super::zone::ZoneConf;
use crate::zone::{RecordKind, WantedRecord};

/// http-level configuration: the providers, in the order written, and the shared zone.
#[derive(Default)]
pub struct MainConf {
    pub providers: Vec<Arc<Provider>>,
    pub zone: ZoneConf,
    /// Some location signs browsers in (`entra_auth ... session|any`).
    pub sign_in_used: bool,
    /// `entra_keys_cache_path`, or the default directory when it exists.
    pub keys_cache: Option<KeyCache>,
    /// `entra_keys_cache_path off;`: not even the default directory.
    pub keys_cache_off: bool,
    /// `entra_shared_store` as written.
    pub store: Option<entra_core::store::StoreConfig>,
    /// Its client, made once the block is parsed (with the providers' timeout).
    pub fleet: Option<Arc<entra_core::store::Store>>,
    /// The cached keys a start may serve with, per provider (read once the block is parsed).
    pub cached_keys: Vec<Option<Fetched>>,
    /// The records of each provider that signs browsers in (set once the block is parsed, by
    /// [`MainConf::size_records`]).
    pub records: Vec<WantedRecord>,
    /// The records of sessions kept across restarts, per wanted record (read once the block is
    /// parsed, with `entra_keys_cache_path`).
    pub kept_records: Vec<Option<Snapshot>>,
    /// Per provider, the groups its locations require (for `groups_from_graph`), as merged.
    pub required_groups: Vec<Vec<String>>,
    /// The tables of Graph answers (provider name, entries), set by [`MainConf::size_records`].
    pub graph_tables: Vec<(String, u64)>,
    /// Requirement lines (file, line) already warned about for want of `entra_auth`.
    pub unguarded_warned: std::collections::HashSet<(String, usize)>,
    /// nginx's `$request_id`, indexed so that the denial line and the access log read the
    /// same cached value (postconfiguration).
    pub request_id_index: Option<usize>,
}

impl MainConf {
    /// The fleet's store (the first word of its identity) and the providers it names sessions
    /// of, for `assign_slots`.
    pub fn fleet_providers(&self) -> Option<(u64, Vec<String>)> {
        let store = self.store.as_ref()?;
        let id = store.identity();
        let providers = self.providers.iter().filter(|p| p.sign_in.keys.is_some()).map(|p| p.name.clone());
        Some((u64::from_be_bytes(id[..8].try_into().expect("8 bytes")) | 1, providers.collect()))
    }

    /// The provider a location names, by its index in `providers`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.providers.iter().position(|p| p.name == name)
    }
}

impl MainConf {
    /// Notes the groups a location using provider `index` requires.
    pub fn require_groups<'a>(&mut self, index: usize, groups: impl Iterator<Item = &'a str>) {
        if self.required_groups.len() <= index {
            self.required_groups.resize(index + 1, Vec::new());
        }
        self.required_groups[index].extend(groups.map(str::to_owned));
    }

    /// Tells each provider that asks Graph which groups to ask about: those its locations require.
    pub fn ask_graph(&mut self) -> Result<(), String> {
        for (index, provider) in self.providers.iter().enumerate() {
            let Some(graph) = &provider.graph else { continue };
            let required = self.required_groups.get(index).map_or(&[][..], Vec::as_slice);
            let asked = Asked::new(required.iter().map(String::as_str)).ok_or_else(|| {
                format!(
                    "entra_provider \"{}\": its locations require more than {MAX_ASKED_GROUPS} groups, more than \
                     groups_from_graph asks about",
                    provider.name
                )
            })?;
            graph.set_asked(asked);
        }
        Ok(())
    }

    /// Sizes the records of the providers that sign browsers in: sessions (`session_record` as
    /// written, else an equal share of half the zone's room, in a power of two) and states used
    /// (a quarter of that, 64 at least), refused when they do not fit in three quarters of it;
    /// and the tables of Graph answers, refused when all together take more than seven eighths.
    pub fn size_records(&mut self, zone_size: usize) -> Result<(), String> {
        let signing_in: Vec<&Arc<Provider>> =
            self.providers.iter().filter(|p| p.sign_in.keys.is_some()).collect();
        let graph: Vec<&Arc<Provider>> = self.providers.iter().filter(|p| p.graph.is_some()).collect();
        let fleet = self.store.is_some() && !signing_in.is_empty();
        let room = zone_size
            .saturating_sub(crate::zone::fixed_bytes(!signing_in.is_empty(), !graph.is_empty(), fleet))
            .saturating_sub(if fleet { signing_in.len() * crate::zone::outbox_bytes() } else { 0 });
        let share = room / 2 / signing_in.len().max(1);
        // Sessions and a quarter as many states (and with a fleet, as many fleet entries).
        let parts = if fleet { 9 } else { 5 };
        let fits = (share * 4 / parts / BYTES_PER_SESSION).max(4) as u64;
        let default = 1u64 << (63 - fits.leading_zeros());
        self.records = signing_in
            .iter()
            .flat_map(|p| {
                let sessions = p.sign_in.session_record.unwrap_or(default);
                let mut records = vec![
                    (RecordKind::Sessions, p.name.clone(), sessions),
                    (RecordKind::States, p.name.clone(), (sessions / 4).max(64)),
                ];
                if fleet {
                    records.push((RecordKind::Fleet, p.name.clone(), sessions));
                }
                records
            })
            .collect();
        let bytes: usize = self.records.iter().map(|(_, _, n)| crate::zone::record_bytes(*n)).sum();
        if bytes > room / 4 * 3 {
            let sessions = self.records.iter().filter(|(kind, _, _)| *kind == RecordKind::Sessions);
            return Err(format!(
                "the session records ({}) take {} KiB with their records of states{}, more than three quarters of \
                 the {} KiB entra_shared_zone has for them: lower \"session_record\" or enlarge the zone",
                sessions.map(|(_, name, n)| format!("\"{name}\" {n}")).collect::<Vec<_>>().join(", "),
                bytes / 1024,
                if fleet { " and of the fleet's sign-outs" } else { "" },
                room / 1024
            ));
        }
        // Graph's answers: `groups_cache_entries`, else an equal share of a quarter of the room.
        let share = room / 4 / graph.len().max(1);
        let fits = (share / crate::zone::answers_bytes(WAYS as u64) * WAYS).max(64) as u64;
        let default = 1u64 << (63 - fits.leading_zeros());
        self.graph_tables = graph
            .iter()
            .map(|p| (p.name.clone(), p.graph.as_ref().and_then(|g| g.entries).unwrap_or(default)))
            .collect();
        let answers: usize = self.graph_tables.iter().map(|(_, n)| crate::zone::answers_bytes(*n)).sum();
        if bytes + answers > room / 8 * 7 {
            return Err(format!(
                "the Graph answers ({}) and session records take {} KiB, more than seven eighths of the {} KiB \
                 entra_shared_zone has for them: lower \"groups_cache_entries\" or enlarge the zone",
                self.graph_tables.iter().map(|(name, n)| format!("\"{name}\" {n}")).collect::<Vec<_>>().join(", "),
                (bytes + answers) / 1024,
                room / 1024
            ));
        }
        Ok(())
    }
}
