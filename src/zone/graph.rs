//! Microsoft Graph's answers in the zone, shared by the workers: per provider a table of
//! answers (which of the asked groups a user is in, or a remembered refusal), and for all
//! providers the tenants' app tokens and what their token endpoints said; the tables' rules are
//! `entra_core::answers`. Everything here is read and written under the pool's mutex, for a
//! probe of eight entries or a copy of a token; never across I/O or cryptography.

use core::alloc::Layout;
use core::ptr::{self, NonNull};
use std::hash::{DefaultHasher, Hash, Hasher};

use entra_core::answers::{table_len, Answer, AnswerEntry, Asker, Lookup, Tables, TenantState};
use entra_core::graph::LookupKey;
use ngx::allocator::Allocator;
use ngx::core::slab::LockedSlabPool;
use ngx::core::SlabPool;
use ngx::ffi::ngx_shm_zone_t;

use super::root::{copy_in, graph_part, pool, release, AnswerTable, GraphShared};

/// Bytes of the zone a table of `entries` answers takes.
pub fn answers_bytes(entries: u64) -> usize {
    table_len(entries) * core::mem::size_of::<AnswerEntry>()
}

fn table_layout(len: usize) -> Layout {
    Layout::array::<AnswerEntry>(len).expect("a table of a configured size")
}

fn table_name(provider: &str) -> u64 {
    let mut h = DefaultHasher::new();
    ("graph answers", provider).hash(&mut h);
    h.finish() | 1
}

/// Gives every Graph provider (name, entries) of a committed configuration its table (in the
/// master): a table whose name and size stay is kept, the others are made afresh and the
/// unused freed. The lock is held.
pub(super) fn assign_tables(
    locked: &LockedSlabPool,
    part: &mut GraphShared,
    wanted: &[(String, u64)],
) -> Result<(), String> {
    let names: Vec<(u64, usize)> = wanted.iter().map(|(name, n)| (table_name(name), table_len(*n))).collect();
    for table in part.tables.iter_mut().filter(|t| t.name != 0 && !names.contains(&(t.name, t.len))) {
        free_table(locked, table);
    }
    for ((provider, _), &(name, len)) in wanted.iter().zip(&names) {
        if part.tables.iter().any(|t| t.name == name) {
            continue;
        }
        let table =
            part.tables.iter_mut().find(|t| t.name == 0).ok_or("the shared zone has no free Graph table")?;
        let entries = locked
            .allocate_zeroed(table_layout(len))
            .map_err(|_| format!("no room in the shared zone for provider \"{provider}\"'s Graph answers"))?;
        *table = AnswerTable { name, entries: entries.as_ptr() as *mut AnswerEntry, len };
    }
    Ok(())
}

fn free_table(locked: &LockedSlabPool, table: &mut AnswerTable) {
    if let Some(entries) = NonNull::new(table.entries) {
        // SAFETY: allocated by assign_tables from this pool with this layout.
        unsafe { locked.deallocate(entries.cast(), table_layout(table.len)) };
    }
    *table = AnswerTable { name: 0, entries: ptr::null_mut(), len: 0 };
}

/// The zone's Graph part made (zeroed) the first time a configuration asks Graph. The lock is held.
pub(super) fn make_part(locked: &LockedSlabPool) -> Result<*mut GraphShared, String> {
    let part = locked
        .allocate_zeroed(Layout::new::<GraphShared>())
        .map_err(|_| "no room in the shared zone for Graph's answers".to_owned())?;
    Ok(part.as_ptr() as *mut GraphShared)
}

/// What the zone says of a user's membership, for a request (no `Debug`: it may hold a token).
pub enum Found {
    /// The zone's answer, or what to do.
    Known(Lookup),
    /// The caller claimed the lookup: the tenant's token to ask with, or `None` to get one.
    Claimed(Option<String>),
    /// No table (a worker that outlived the reload that gave it away): 503.
    Unavailable,
}

/// How a lookup ended, to store (no `Debug`: it may hold a token).
#[derive(Default)]
pub struct Finished {
    /// A new app token for the tenant, and until when it is used (ms).
    pub token: Option<(String, u64)>,
    /// What to remember of the tenant, until (ms).
    pub tenant: Option<(TenantState, u64)>,
    /// The answer, and until when it holds (ms).
    pub answer: Option<(Answer, u64)>,
    /// The tenant's token is not to be used again (Graph refused it).
    pub forget_token: bool,
}

/// One worker's handle on its provider's Graph answers and the tenants' tokens.
pub struct GraphRef {
    pool: SlabPool,
    name: u64,
}

// SAFETY: the zone lives in shared memory mapped for the whole life of the process; its Graph
// part is only touched under the pool's lock.
unsafe impl Send for GraphRef {}
// SAFETY: as above.
unsafe impl Sync for GraphRef {}

impl Finished {
    /// What the tables keep of it but the token (whose memory is the zone's to make).
    fn stored(&self) -> entra_core::answers::Finished {
        entra_core::answers::Finished {
            token: None,
            tenant: self.tenant,
            answer: self.answer,
            forget_token: self.forget_token,
        }
    }
}

impl GraphRef {
    pub fn find(zone: *mut ngx_shm_zone_t, provider: &str) -> Option<GraphRef> {
        Some(GraphRef { pool: pool(zone)?, name: table_name(provider) })
    }

    /// Runs `body` on the tenants and this provider's answers, under the lock.
    fn locked<R>(&self, body: impl FnOnce(&LockedSlabPool, Tables) -> R) -> Option<R> {
        let locked = self.pool.lock();
        let part = graph_part(&self.pool)?;
        // SAFETY: the part lives as long as the zone; the lock is held, so nothing else touches it.
        let part = unsafe { &mut *part };
        let table = part.tables.iter().find(|t| t.name == self.name && !t.entries.is_null())?;
        // SAFETY: a table of `len` entries allocated by assign_tables, only touched under the lock.
        let answers = unsafe { core::slice::from_raw_parts_mut(table.entries, table.len) };
        Some(body(&locked, Tables { tenants: &mut part.tenants, answers }))
    }

    /// The answer in force for `answer_key`, if any (one probe under the lock).
    pub fn answered(&self, answer_key: &LookupKey, now_ms: u64) -> Option<Lookup> {
        self.locked(|_, mut tables| tables.answered(answer_key, now_ms)).flatten()
    }

    /// What is known of `keys` (answer, tenant) at `now_ms` for a request waiting since
    /// `waiting_since` if it waits, claiming the lookup for `asker` when nobody asks.
    pub fn lookup(
        &self,
        keys: (&LookupKey, &LookupKey),
        now_ms: u64,
        waiting_since: Option<u64>,
        asker: Asker,
    ) -> Found {
        self.locked(|locked, mut tables| {
            let (found, freed) = tables.lookup(keys, now_ms, waiting_since, asker);
            release_token(locked, freed);
            match found {
                Lookup::Claimed { token } => Found::Claimed(token.map(|(p, len)| {
                    // SAFETY: `len` bytes written by `finish` into memory of this pool, which
                    // the tables keep until they hand it back to free, under the lock held.
                    let bytes = unsafe { core::slice::from_raw_parts(p as *const u8, len) };
                    String::from_utf8_lossy(bytes).into_owned()
                })),
                known => Found::Known(known),
            }
        })
        .unwrap_or(Found::Unavailable)
    }

    /// Stores how worker `pid`'s lookup of `keys` ended, and lets go of its claims.
    pub fn finish(&self, keys: (&LookupKey, &LookupKey), finished: Finished, now_ms: u64, pid: u32) {
        self.locked(|locked, mut tables| {
            let token = finished.token.as_ref().and_then(|(token, until)| {
                let copy = copy_in(locked, token.as_bytes())?;
                Some(((copy as usize, token.len()), *until))
            });
            let stored = entra_core::answers::Finished { token, ..finished.stored() };
            release_token(locked, tables.finish(keys, stored, now_ms, pid));
        });
    }

    /// `true` at most once a minute per tenant: whether to log a failure of its lookups.
    pub fn should_log(&self, tenant_key: &LookupKey, now_s: u64) -> bool {
        self.locked(|_, mut tables| tables.should_log(tenant_key, now_s)).unwrap_or(false)
    }

    /// Answers in force and the table's size.
    pub fn status(&self, now_ms: u64) -> Option<(usize, usize)> {
        self.locked(|_, tables| tables.status(now_ms))
    }
}

fn release_token(locked: &LockedSlabPool, token: Option<(usize, usize)>) {
    if let Some((p, len)) = token {
        release(locked, p as *mut u8, len);
    }
}
