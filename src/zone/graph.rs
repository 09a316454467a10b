//! Microsoft Graph's answers in the zone, shared by the workers: per provider a table of
//! answers (which of the asked groups a user is in, or a remembered refusal), and for all
//! providers the tenants' app tokens and what their token endpoints said. At most one lookup per
//! user and one token request per tenant is under way: the worker that finds neither answer nor
//! lookup claims it. Everything here is read and written under the pool's mutex, for a probe of
//! eight entries or a copy of a token; never across I/O or cryptography.

use core::alloc::Layout;
use core::ptr::{self, NonNull};
use std::hash::{DefaultHasher, Hash, Hasher};

use entra_core::graph::{LookupKey, Membership};
use ngx::allocator::Allocator;
use ngx::core::slab::LockedSlabPool;
use ngx::core::SlabPool;
use ngx::ffi::ngx_shm_zone_t;

use super::root::{copy_in, graph_part, pool, release, MAX_PROVIDERS};

/// Tenants whose token (or refusal) the zone keeps, for all providers.
pub const TENANTS: usize = 256;
/// Entries one key may land in: the oldest of them leaves first.
const WAYS: usize = 8;

/// The zone's part for Graph lookups.
#[repr(C)]
pub(super) struct GraphShared {
    tenants: [TenantEntry; TENANTS],
    tables: [AnswerTable; MAX_PROVIDERS],
}

/// One provider's answers, by provider name.
#[repr(C)]
struct AnswerTable {
    /// `table_name` of the provider (0: free).
    name: u64,
    entries: *mut AnswerEntry,
    len: usize,
}

/// What a tenant's token endpoint said last.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantState {
    Fine,
    /// It refused the app (4xx) until `until_ms`: HTTP status and AADSTS code.
    Refused {
        status: u16,
        code: u32,
    },
    /// It or Graph answered 429 for this tenant: nobody asks before `until_ms`.
    Throttled,
}

#[repr(C)]
struct TenantEntry {
    /// All zero: free.
    key: LookupKey,
    /// When it was made (ms): the oldest leaves first.
    made_ms: u64,
    /// The app token (slab memory) and until when it is used (ms).
    token: *mut u8,
    token_len: usize,
    token_until_ms: u64,
    /// The worker asking for a token now (0: none), and since when (ms).
    asking_pid: u32,
    asking_since_ms: u64,
    state: TenantState,
    until_ms: u64,
    /// When a failure was last logged (s), at most once a minute per tenant.
    logged_s: u64,
}

/// A remembered answer.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// None yet: a lookup is under way.
    Pending,
    /// Which asked groups the user is in, asked at `asked_ms`.
    Members(Membership),
    /// Graph refused to say (403) or does not know the user (404): 403 until `until_ms`.
    Refused,
    /// The lookup at `asked_ms` learnt nothing (unreachable, slow, 5xx, a bad answer): the
    /// requests that waited for it get a 503; a later request asks again.
    Failed,
}

#[repr(C)]
struct AnswerEntry {
    key: LookupKey,
    made_ms: u64,
    answer: Answer,
    asked_ms: u64,
    until_ms: u64,
    asking_pid: u32,
    asking_since_ms: u64,
}

/// Bytes of the zone the Graph part takes (when a provider asks Graph).
pub fn part_bytes() -> usize {
    core::mem::size_of::<GraphShared>()
}

/// Bytes of the zone a table of `entries` answers takes.
pub fn answers_bytes(entries: u64) -> usize {
    entries as usize * core::mem::size_of::<AnswerEntry>()
}

fn table_layout(len: usize) -> Layout {
    Layout::array::<AnswerEntry>(len).expect("a table of a configured size")
}

fn table_name(provider: &str) -> u64 {
    let mut h = DefaultHasher::new();
    ("graph answers", provider).hash(&mut h);
    h.finish() | 1
}

/// The first of the `WAYS` entries `key` may be in, in a table of `len` (a multiple of `WAYS`).
fn set_of(key: &LookupKey, len: usize) -> usize {
    let sets = len / WAYS;
    (u64::from_le_bytes(key[..8].try_into().expect("8 bytes")) % sets as u64) as usize * WAYS
}

/// Gives every Graph provider (name, entries) of a committed configuration its table (in the
/// master): a table whose name and size stay is kept, the others are made afresh and the
/// unused freed. The lock is held.
pub(super) fn assign_tables(
    locked: &LockedSlabPool,
    part: &mut GraphShared,
    wanted: &[(String, u64)],
) -> Result<(), String> {
    let names: Vec<(u64, usize)> =
        wanted.iter().map(|(name, n)| (table_name(name), (*n as usize).div_ceil(WAYS) * WAYS)).collect();
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

/// What the zone says about a user's membership, for a request (no `Debug`: it may hold a token).
pub enum Lookup {
    /// The answer in force.
    Answered(Membership),
    /// 403: Graph refused, or the tenant's token endpoint refused the app.
    Refused,
    /// 503 for this many seconds: the tenant is throttled.
    Throttled(u64),
    /// Another request's lookup (or token request) is under way: wait.
    Asking,
    /// The lookup this request waited for learnt nothing: 503.
    Failed,
    /// This worker claimed the lookup; it asks with the token given, or fetches one first
    /// (claimed for the tenant too).
    Claimed { token: Option<String> },
    /// No table or no room: 503.
    Unavailable,
}

/// How a lookup ended, to store (no `Debug`: it may hold a token).
pub struct Finished {
    /// A new app token for the tenant, held until (ms).
    pub token: Option<(String, u64)>,
    /// The tenant's token endpoint refused (status, AADSTS code), or it or Graph throttled
    /// (seconds): remembered for the tenant.
    pub tenant: Option<(TenantState, u64)>,
    /// The answer, and until when it holds (ms).
    pub answer: Option<(Answer, u64)>,
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

impl GraphRef {
    pub fn find(zone: *mut ngx_shm_zone_t, provider: &str) -> Option<GraphRef> {
        Some(GraphRef { pool: pool(zone)?, name: table_name(provider) })
    }

    /// Runs `body` on the part and this provider's table, under the lock.
    fn locked<R>(
        &self,
        body: impl FnOnce(&LockedSlabPool, &mut [TenantEntry], &mut [AnswerEntry]) -> R,
    ) -> Option<R> {
        let locked = self.pool.lock();
        let part = graph_part(&self.pool)?;
        // SAFETY: the part lives as long as the zone; the lock is held, so nothing else touches it.
        let part = unsafe { &mut *part };
        let table = part.tables.iter().find(|t| t.name == self.name && !t.entries.is_null())?;
        // SAFETY: a table of `len` entries allocated by assign_tables, only touched under the lock.
        let answers = unsafe { core::slice::from_raw_parts_mut(table.entries, table.len) };
        Some(body(&locked, &mut part.tenants, answers))
    }

    /// What is known of `answer_key` (of tenant `tenant_key`) at `now_ms` for a request waiting
    /// since `waiting_since` (ms) if it waits, claiming the lookup for worker `pid` when nobody
    /// asks; a claim older than `stale_ms` is taken over.
    pub fn lookup(
        &self,
        (answer_key, tenant_key): (&LookupKey, &LookupKey),
        now_ms: u64,
        waiting_since: Option<u64>,
        (pid, stale_ms): (u32, u64),
    ) -> Lookup {
        self.locked(|locked, tenants, answers| {
            let live = |asking: u32, since: u64| asking != 0 && now_ms < since.saturating_add(stale_ms);
            let at = set_of(answer_key, answers.len());
            let set = &mut answers[at..at + WAYS];
            let found = set.iter().position(|e| e.key == *answer_key);
            if let Some(i) = found {
                let e = &set[i];
                match e.answer {
                    Answer::Members(members) if now_ms < e.until_ms => return Lookup::Answered(members),
                    Answer::Refused if now_ms < e.until_ms => return Lookup::Refused,
                    _ if live(e.asking_pid, e.asking_since_ms) => return Lookup::Asking,
                    Answer::Failed if waiting_since.is_some_and(|since| e.asked_ms >= since) => {
                        return Lookup::Failed
                    }
                    _ => {}
                }
            }
            // Nobody asks: what the tenant allows.
            let t_at = set_of(tenant_key, TENANTS);
            let tenant = tenants[t_at..t_at + WAYS].iter_mut().find(|t| t.key == *tenant_key);
            let mut token = None;
            if let Some(t) = tenant {
                match t.state {
                    TenantState::Refused { .. } if now_ms < t.until_ms => return Lookup::Refused,
                    TenantState::Throttled if now_ms < t.until_ms => {
                        return Lookup::Throttled((t.until_ms - now_ms).div_ceil(1000))
                    }
                    _ => {}
                }
                if !t.token.is_null() && now_ms < t.token_until_ms {
                    // SAFETY: `token_len` bytes written by `store_token`.
                    let bytes = unsafe { core::slice::from_raw_parts(t.token, t.token_len) };
                    token = Some(String::from_utf8_lossy(bytes).into_owned());
                } else if live(t.asking_pid, t.asking_since_ms) {
                    return Lookup::Asking;
                } else {
                    (t.asking_pid, t.asking_since_ms) = (pid, now_ms);
                }
            } else {
                let room = make_room(&mut tenants[t_at..t_at + WAYS], |t| {
                    (t.made_ms, live(t.asking_pid, t.asking_since_ms))
                });
                let Some(t) = room else { return Lookup::Asking };
                release_token_of(locked, t);
                *t = TenantEntry {
                    key: *tenant_key,
                    made_ms: now_ms,
                    token: ptr::null_mut(),
                    token_len: 0,
                    token_until_ms: 0,
                    asking_pid: pid,
                    asking_since_ms: now_ms,
                    state: TenantState::Fine,
                    until_ms: 0,
                    logged_s: 0,
                };
            }
            let entry = match found {
                Some(i) => &mut set[i],
                None => {
                    let room = make_room(set, |e| (e.made_ms, live(e.asking_pid, e.asking_since_ms)));
                    let Some(e) = room else { return Lookup::Asking };
                    *e = AnswerEntry {
                        key: *answer_key,
                        made_ms: now_ms,
                        answer: Answer::Pending,
                        asked_ms: 0,
                        until_ms: 0,
                        asking_pid: 0,
                        asking_since_ms: 0,
                    };
                    e
                }
            };
            (entry.asking_pid, entry.asking_since_ms) = (pid, now_ms);
            Lookup::Claimed { token }
        })
        .unwrap_or(Lookup::Unavailable)
    }

    /// Stores how worker `pid`'s lookup of `answer_key` ended, and frees its claims.
    pub fn finish(
        &self,
        answer_key: &LookupKey,
        tenant_key: &LookupKey,
        finished: Finished,
        now_ms: u64,
        pid: u32,
    ) {
        self.locked(|locked, tenants, answers| {
            let t_at = set_of(tenant_key, TENANTS);
            if let Some(t) = tenants[t_at..t_at + WAYS].iter_mut().find(|t| t.key == *tenant_key) {
                if t.asking_pid == pid {
                    (t.asking_pid, t.asking_since_ms) = (0, 0);
                }
                if let Some((token, until_ms)) = &finished.token {
                    release_token_of(locked, t);
                    if let Some(copy) = copy_in(locked, token.as_bytes()) {
                        (t.token, t.token_len, t.token_until_ms) = (copy, token.len(), *until_ms);
                    }
                }
                match finished.tenant {
                    Some((state, until_ms)) => (t.state, t.until_ms) = (state, until_ms),
                    None if finished.answer.is_some() => t.state = TenantState::Fine,
                    None => {}
                }
            }
            let at = set_of(answer_key, answers.len());
            if let Some(e) = answers[at..at + WAYS].iter_mut().find(|e| e.key == *answer_key) {
                if e.asking_pid == pid {
                    (e.asking_pid, e.asking_since_ms) = (0, 0);
                }
                if let Some((answer, until_ms)) = finished.answer {
                    // A failure never replaces an answer still in force.
                    let keep = answer == Answer::Failed
                        && matches!(e.answer, Answer::Members(_) | Answer::Refused)
                        && now_ms < e.until_ms;
                    if !keep {
                        (e.answer, e.until_ms, e.asked_ms) = (answer, until_ms, now_ms);
                    }
                }
            }
        });
    }

    /// `true` at most once a minute per tenant: whether to log a failure of its lookups.
    pub fn should_log(&self, tenant_key: &LookupKey, now_s: u64) -> bool {
        self.locked(|_, tenants, _| {
            let t_at = set_of(tenant_key, TENANTS);
            let t = tenants[t_at..t_at + WAYS].iter_mut().find(|t| t.key == *tenant_key)?;
            let due = t.logged_s == 0 || now_s >= t.logged_s + 60;
            due.then(|| t.logged_s = now_s)
        })
        .flatten()
        .is_some()
    }

    /// Answers kept (not expired) and the table's size.
    pub fn status(&self, now_ms: u64) -> Option<(usize, usize)> {
        self.locked(|_, _, answers| {
            let kept = answers.iter().filter(|e| e.key != [0; 32] && now_ms < e.until_ms).count();
            (kept, answers.len())
        })
    }
}

/// An entry of `set` for a new key: a free one, else the oldest nobody is asking for (`view`
/// gives when an entry was made, 0 if free, and whether it is claimed); `None` when all are claimed.
fn make_room<T>(set: &mut [T], view: impl Fn(&T) -> (u64, bool)) -> Option<&mut T> {
    let free = set.iter().position(|e| view(e).0 == 0);
    let oldest =
        || set.iter().enumerate().filter(|(_, e)| !view(e).1).min_by_key(|(_, e)| view(e).0).map(|(i, _)| i);
    let i = free.or_else(oldest)?;
    Some(&mut set[i])
}

fn release_token_of(locked: &LockedSlabPool, t: &mut TenantEntry) {
    release(locked, t.token, t.token_len);
    (t.token, t.token_len, t.token_until_ms) = (ptr::null_mut(), 0, 0);
}
