//! Graph's answers and the tenants' app tokens as the shared zone keeps them: fixed-size entries
//! (zero is empty) in sets of eight, a key in one set only, the oldest entry of a full set leaving
//! first; an entry someone is asking for is never evicted. At most one lookup per user and one
//! token request per tenant is under way: whoever finds neither an answer nor a live claim claims
//! it, and a claim older than its stale time (its worker died) is taken over.
//!
//! The caller holds the zone's lock around every call, and owns the memory of the tokens: an
//! entry names its token by address and length only, and the calls say which token memory to
//! free. No I/O, no cryptography, no allocation.

use crate::graph::{LookupKey, Membership};

/// Entries one key may land in.
pub const WAYS: usize = 8;

/// What a tenant's token endpoint (or Graph, for its 429) said last.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantState {
    Fine,
    /// It refused the app (4xx), until `until_ms`: the HTTP status and AADSTS code (0: none).
    Refused {
        status: u16,
        code: u32,
    },
    /// It or Graph answered 429: nobody asks before `until_ms`.
    Throttled,
}

/// A tenant's app token (by the caller's memory) and what its token endpoint said.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct TenantEntry {
    key: LookupKey,
    /// When it was made (ms); 0: free.
    made_ms: u64,
    /// The token's memory (address and length, 0: none) and until when it is used (ms).
    token: (usize, usize),
    token_until_ms: u64,
    /// The worker asking for a token (0: none), and since when (ms).
    asking: (u32, u64),
    state: TenantState,
    until_ms: u64,
    /// When a failure was last logged (s).
    logged_s: u64,
}

/// An answer as kept.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// None yet.
    Pending,
    /// Which asked groups the user is in.
    Members(Membership),
    /// Graph refused to say (403) or does not know the user (404): 403 until `until_ms`.
    Refused,
    /// The lookup at `asked_ms` learnt nothing (unreachable, slow, 5xx, a bad answer): the
    /// requests that waited for it get a 503; a later request asks again.
    Failed,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct AnswerEntry {
    key: LookupKey,
    made_ms: u64,
    answer: Answer,
    asked_ms: u64,
    until_ms: u64,
    asking: (u32, u64),
}

/// What is known of a user's membership, for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// The answer in force, and until when it holds (ms).
    Answered(Membership, u64),
    /// 403: Graph refused, or the tenant's token endpoint refused the app.
    Refused,
    /// 503 for this many seconds: the tenant is throttled.
    Throttled(u64),
    /// Another request's lookup (or token request) is under way, or its set is all claimed: wait.
    Asking,
    /// The lookup this request waited for learnt nothing: 503.
    Failed,
    /// The caller claimed the lookup; it asks with the tenant's token (its memory), or gets
    /// one first (claimed for the tenant too).
    Claimed { token: Option<(usize, usize)> },
}

/// How a lookup ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Finished {
    /// A new app token for the tenant (its memory, now the table's) and until when it is used.
    pub token: Option<((usize, usize), u64)>,
    /// What to remember of the tenant, until (ms).
    pub tenant: Option<(TenantState, u64)>,
    /// The answer, and until when it holds (ms).
    pub answer: Option<(Answer, u64)>,
    /// The tenant's token is not to be used again (Graph refused it).
    pub forget_token: bool,
}

/// Who asks: the worker's pid, and after how long (ms) a claim counts as abandoned.
#[derive(Debug, Clone, Copy)]
pub struct Asker {
    pub pid: u32,
    pub stale_ms: u64,
}

/// The tenants' entries and one provider's answers, under the caller's lock.
pub struct Tables<'a> {
    pub tenants: &'a mut [TenantEntry],
    pub answers: &'a mut [AnswerEntry],
}

/// The first of the [`WAYS`] entries `key` may be in, in a table of `len` (a multiple of it).
fn set_of(key: &LookupKey, len: usize) -> usize {
    let sets = (len / WAYS).max(1) as u64;
    (u64::from_le_bytes(key[..8].try_into().expect("8 bytes")) % sets) as usize * WAYS
}

/// Entries a table of at least `wanted` takes: whole sets.
pub fn table_len(wanted: u64) -> usize {
    (wanted as usize).div_ceil(WAYS).max(1) * WAYS
}

fn live((pid, since): (u32, u64), now_ms: u64, stale_ms: u64) -> bool {
    pid != 0 && now_ms < since.saturating_add(stale_ms)
}

/// A place in `set` for a new key: a free entry, else the oldest nobody asks for.
fn room<T>(set: &mut [T], view: impl Fn(&T) -> (u64, bool)) -> Option<&mut T> {
    let free = set.iter().position(|e| view(e).0 == 0);
    let oldest =
        || set.iter().enumerate().filter(|(_, e)| !view(e).1).min_by_key(|(_, e)| view(e).0).map(|(i, _)| i);
    let i = free.or_else(oldest)?;
    Some(&mut set[i])
}

impl Tables<'_> {
    fn tenant_set(&mut self, key: &LookupKey) -> &mut [TenantEntry] {
        let (at, len) = (set_of(key, self.tenants.len()), self.tenants.len());
        &mut self.tenants[at..(at + WAYS).min(len)]
    }

    fn answer_set(&mut self, key: &LookupKey) -> &mut [AnswerEntry] {
        let (at, len) = (set_of(key, self.answers.len()), self.answers.len());
        &mut self.answers[at..(at + WAYS).min(len)]
    }

    fn tenant(&mut self, key: &LookupKey) -> Option<&mut TenantEntry> {
        self.tenant_set(key).iter_mut().find(|t| t.made_ms != 0 && t.key == *key)
    }

    fn answer(&mut self, key: &LookupKey) -> Option<&mut AnswerEntry> {
        // The first bytes tell the entries of a set apart, most of the time without a call.
        self.answer_set(key)
            .iter_mut()
            .find(|e| e.made_ms != 0 && e.key[8..16] == key[8..16] && e.key == *key)
    }

    /// The answer in force for `answer_key` at `now_ms`, if there is one (a member list or a
    /// remembered refusal): what most requests need, without the tenant's key.
    pub fn answered(&mut self, answer_key: &LookupKey, now_ms: u64) -> Option<Lookup> {
        let e = self.answer(answer_key)?;
        match e.answer {
            Answer::Members(members) if now_ms < e.until_ms => Some(Lookup::Answered(members, e.until_ms)),
            Answer::Refused if now_ms < e.until_ms => Some(Lookup::Refused),
            _ => None,
        }
    }

    /// What is known of `answer_key` (of tenant `tenant_key`) at `now_ms` (ms since the epoch)
    /// for a request waiting since `waiting_since` if it waits, claiming the lookup for `asker`
    /// when nobody asks. Also the token memory to free, of a tenant entry that made room.
    pub fn lookup(
        &mut self,
        (answer_key, tenant_key): (&LookupKey, &LookupKey),
        now_ms: u64,
        waiting_since: Option<u64>,
        asker: Asker,
    ) -> (Lookup, Option<(usize, usize)>) {
        let now_ms = now_ms.max(1);
        let stale = asker.stale_ms;
        if let Some(known) = self.answered(answer_key, now_ms) {
            return (known, None);
        }
        if let Some(e) = self.answer(answer_key) {
            match e.answer {
                _ if live(e.asking, now_ms, stale) => return (Lookup::Asking, None),
                Answer::Failed if waiting_since.is_some_and(|since| e.asked_ms >= since) => {
                    return (Lookup::Failed, None)
                }
                _ => {}
            }
        }
        // Nobody asks: what the tenant allows, and its token.
        let mut freed = None;
        let token = match self.tenant(tenant_key) {
            Some(t) => {
                match t.state {
                    TenantState::Refused { .. } if now_ms < t.until_ms => return (Lookup::Refused, None),
                    TenantState::Throttled if now_ms < t.until_ms => {
                        return (Lookup::Throttled((t.until_ms - now_ms).div_ceil(1000)), None)
                    }
                    _ => {}
                }
                if t.token.0 != 0 && now_ms < t.token_until_ms {
                    Some(t.token)
                } else if live(t.asking, now_ms, stale) {
                    return (Lookup::Asking, None);
                } else {
                    None
                }
            }
            None => None,
        };
        // Claim the answer first: a full set of claimed answers claims nothing.
        let claimed = match self.answer(answer_key) {
            Some(e) => {
                e.asking = (asker.pid, now_ms);
                true
            }
            None => match room(self.answer_set(answer_key), |e| (e.made_ms, live(e.asking, now_ms, stale))) {
                Some(e) => {
                    *e = AnswerEntry {
                        key: *answer_key,
                        made_ms: now_ms,
                        answer: Answer::Pending,
                        asked_ms: 0,
                        until_ms: 0,
                        asking: (asker.pid, now_ms),
                    };
                    true
                }
                None => false,
            },
        };
        if !claimed {
            return (Lookup::Asking, None);
        }
        if token.is_none() {
            match self.tenant(tenant_key) {
                Some(t) => t.asking = (asker.pid, now_ms),
                None => {
                    let Some(t) =
                        room(self.tenant_set(tenant_key), |t| (t.made_ms, live(t.asking, now_ms, stale)))
                    else {
                        // Every tenant of its set is asking: let go of the answer and wait.
                        if let Some(e) = self.answer(answer_key) {
                            e.asking = (0, 0);
                        }
                        return (Lookup::Asking, None);
                    };
                    freed = (t.token.0 != 0).then_some(t.token);
                    *t = TenantEntry {
                        key: *tenant_key,
                        made_ms: now_ms,
                        token: (0, 0),
                        token_until_ms: 0,
                        asking: (asker.pid, now_ms),
                        state: TenantState::Fine,
                        until_ms: 0,
                        logged_s: 0,
                    };
                }
            }
        }
        (Lookup::Claimed { token }, freed)
    }

    /// Stores how `pid`'s lookup ended, and lets go of its claims. Returns the token memory to
    /// free: a replaced token, or the new one when its tenant has no entry any more.
    pub fn finish(
        &mut self,
        (answer_key, tenant_key): (&LookupKey, &LookupKey),
        finished: Finished,
        now_ms: u64,
        pid: u32,
    ) -> Option<(usize, usize)> {
        let now_ms = now_ms.max(1);
        let mut freed = finished.token.map(|(token, _)| token);
        if let Some(t) = self.tenant(tenant_key) {
            if t.asking.0 == pid {
                t.asking = (0, 0);
            }
            if let Some((token, until_ms)) = finished.token {
                freed = (t.token.0 != 0).then_some(t.token);
                (t.token, t.token_until_ms) = (token, until_ms);
            } else if finished.forget_token && t.token.0 != 0 {
                freed = Some(t.token);
                (t.token, t.token_until_ms) = ((0, 0), 0);
            }
            match finished.tenant {
                Some((state, until_ms)) => (t.state, t.until_ms) = (state, until_ms),
                None if finished.answer.is_some() => t.state = TenantState::Fine,
                None => {}
            }
        }
        if let Some(e) = self.answer(answer_key) {
            if e.asking.0 == pid {
                e.asking = (0, 0);
            }
            if let Some((answer, until_ms)) = finished.answer {
                // A failure never replaces an answer still in force.
                let in_force =
                    matches!(e.answer, Answer::Members(_) | Answer::Refused) && now_ms < e.until_ms;
                if !(answer == Answer::Failed && in_force) {
                    (e.answer, e.until_ms, e.asked_ms) = (answer, until_ms, now_ms);
                }
            }
        }
        freed
    }

    /// `true` at most once a minute per tenant: whether to log a failure of its lookups.
    pub fn should_log(&mut self, tenant_key: &LookupKey, now_s: u64) -> bool {
        // A tenant that lost its entry meanwhile is logged rather than left silent.
        let Some(t) = self.tenant(tenant_key) else { return true };
        let due = t.logged_s == 0 || now_s >= t.logged_s + 60;
        if due {
            t.logged_s = now_s;
        }
        due
    }

    /// Answers in force at `now_ms`, and the table's size.
    pub fn status(&self, now_ms: u64) -> (usize, usize) {
        let kept = self
            .answers
            .iter()
            .filter(|e| e.made_ms != 0 && matches!(e.answer, Answer::Members(_) | Answer::Refused))
            .filter(|e| now_ms < e.until_ms)
            .count();
        (kept, self.answers.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZERO_T: TenantEntry = TenantEntry {
        key: [0; 32],
        made_ms: 0,
        token: (0, 0),
        token_until_ms: 0,
        asking: (0, 0),
        state: TenantState::Fine,
        until_ms: 0,
        logged_s: 0,
    };
    const ZERO_A: AnswerEntry = AnswerEntry {
        key: [0; 32],
        made_ms: 0,
        answer: Answer::Pending,
        asked_ms: 0,
        until_ms: 0,
        asking: (0, 0),
    };
    const ME: Asker = Asker { pid: 7, stale_ms: 10_000 };
    const TENANT: LookupKey = [9; 32];

    fn user(n: u8) -> LookupKey {
        // All in set 0 of a one-set table.
        let mut k = [0; 32];
        k[31] = n;
        k
    }

    fn members(bit: u8) -> Membership {
        let mut m = Membership::default();
        m.0[0] = bit;
        m
    }

    /// A lookup of `key` claimed at `now` and answered until `until` (the tenant's token got
    /// first when it had none).
    fn answered(t: &mut Tables, key: LookupKey, now: u64, until: u64) {
        let (claimed, _) = t.lookup((&key, &TENANT), now, None, ME);
        let Lookup::Claimed { token } = claimed else { panic!("{claimed:?}") };
        let token = token.is_none().then_some(((0x1000, 1), u64::MAX));
        let done = Finished {
            token,
            tenant: None,
            answer: Some((Answer::Members(members(1)), until)),
            ..Default::default()
        };
        t.finish((&key, &TENANT), done, now, ME.pid);
    }

    #[test]
    fn one_lookup_per_user_then_the_answer_until_it_expires() {
        let (mut tenants, mut answers) = ([ZERO_T; 8], [ZERO_A; 8]);
        let mut t = Tables { tenants: &mut tenants, answers: &mut answers };
        let k = user(1);
        assert_eq!(t.lookup((&k, &TENANT), 1000, None, ME).0, Lookup::Claimed { token: None });
        assert_eq!(t.lookup((&k, &TENANT), 1001, None, Asker { pid: 8, ..ME }).0, Lookup::Asking);
        let token = Finished {
            token: Some(((0x1000, 40), 500_000)),
            tenant: None,
            answer: Some((Answer::Members(members(2)), 61_000)),
            ..Default::default()
        };
        assert_eq!(t.finish((&k, &TENANT), token, 1000, ME.pid), None);
        assert_eq!(t.lookup((&k, &TENANT), 60_999, None, ME).0, Lookup::Answered(members(2), 61_000));
        // Expired: asked again, with the tenant's token.
        assert_eq!(
            t.lookup((&k, &TENANT), 61_000, None, ME).0,
            Lookup::Claimed { token: Some((0x1000, 40)) }
        );
        assert_eq!(t.status(61_000), (0, 8));
    }

    #[test]
    fn a_full_set_loses_its_oldest_answer_never_one_being_asked() {
        let (mut tenants, mut answers) = ([ZERO_T; 8], [ZERO_A; 8]);
        let mut t = Tables { tenants: &mut tenants, answers: &mut answers };
        for n in 1..=8 {
            answered(&mut t, user(n), u64::from(n) * 10, 1_000_000);
        }
        assert_eq!(t.status(100).0, 8);
        answered(&mut t, user(9), 200, 1_000_000);
        assert!(
            matches!(t.lookup((&user(1), &TENANT), 300, None, ME).0, Lookup::Claimed { .. }),
            "the oldest left"
        );
        // user(1) now claimed: the next newcomer takes the oldest unclaimed (user 2), not it.
        answered(&mut t, user(10), 400, 1_000_000);
        assert_eq!(t.lookup((&user(1), &TENANT), 401, None, Asker { pid: 8, ..ME }).0, Lookup::Asking);
        assert!(matches!(
            t.lookup((&user(2), &TENANT), 402, None, Asker { pid: 8, ..ME }).0,
            Lookup::Claimed { .. }
        ));
    }

    #[test]
    fn a_set_all_being_asked_makes_the_newcomer_wait() {
        let (mut tenants, mut answers) = ([ZERO_T; 8], [ZERO_A; 8]);
        let mut t = Tables { tenants: &mut tenants, answers: &mut answers };
        answered(&mut t, user(0), 1, 2);
        for n in 1..=8 {
            assert!(matches!(t.lookup((&user(n), &TENANT), 100, None, ME).0, Lookup::Claimed { .. }));
        }
        assert_eq!(t.lookup((&user(9), &TENANT), 101, None, ME).0, Lookup::Asking);
        // A claim older than its stale time is taken over.
        assert!(matches!(
            t.lookup((&user(9), &TENANT), 100 + ME.stale_ms, None, ME).0,
            Lookup::Claimed { .. }
        ));
    }

    #[test]
    fn refusals_and_failures() {
        let (mut tenants, mut answers) = ([ZERO_T; 8], [ZERO_A; 8]);
        let mut t = Tables { tenants: &mut tenants, answers: &mut answers };
        let k = user(1);
        t.lookup((&k, &TENANT), 1000, None, ME);
        let refused = Finished {
            token: None,
            tenant: None,
            answer: Some((Answer::Refused, 61_000)),
            ..Default::default()
        };
        t.finish((&k, &TENANT), refused, 1000, ME.pid);
        assert_eq!(t.lookup((&k, &TENANT), 60_000, None, ME).0, Lookup::Refused);
        // A failure: the request that waited since before it gets a 503, a newer one asks again.
        let k2 = user(2);
        let (claimed, _) = t.lookup((&k2, &TENANT), 2000, None, ME);
        assert_eq!(claimed, Lookup::Claimed { token: None }, "the tenant has no token yet");
        t.finish(
            (&k2, &TENANT),
            Finished {
                token: None,
                tenant: None,
                answer: Some((Answer::Failed, 2500)),
                ..Default::default()
            },
            2500,
            ME.pid,
        );
        assert_eq!(t.lookup((&k2, &TENANT), 2600, Some(2000), ME).0, Lookup::Failed);
        assert!(matches!(t.lookup((&k2, &TENANT), 2600, None, ME).0, Lookup::Claimed { .. }));
        let unfinished = Finished { answer: None, ..Default::default() };
        t.finish((&k2, &TENANT), unfinished, 2600, ME.pid);
        // A failure never replaces an answer in force.
        answered(&mut t, user(3), 3000, 90_000);
        t.lookup((&user(3), &TENANT), 90_000, None, ME);
        t.finish(
            (&user(3), &TENANT),
            Finished {
                token: None,
                tenant: None,
                answer: Some((Answer::Failed, 4000)),
                ..Default::default()
            },
            4000,
            ME.pid,
        );
        assert_eq!(t.lookup((&user(3), &TENANT), 5000, None, ME).0, Lookup::Answered(members(1), 90_000));
    }

    #[test]
    fn a_tenant_refused_or_throttled_answers_for_all_its_users() {
        let (mut tenants, mut answers) = ([ZERO_T; 8], [ZERO_A; 8]);
        let mut t = Tables { tenants: &mut tenants, answers: &mut answers };
        t.lookup((&user(1), &TENANT), 1000, None, ME);
        let refused = Finished {
            token: None,
            tenant: Some((TenantState::Refused { status: 400, code: 700016 }, 601_000)),
            ..Default::default()
        };
        t.finish((&user(1), &TENANT), refused, 1000, ME.pid);
        assert_eq!(t.lookup((&user(2), &TENANT), 2000, None, ME).0, Lookup::Refused);
        let other: LookupKey = [3; 32];
        t.lookup((&user(3), &other), 1000, None, ME);
        let throttled = Finished {
            token: None,
            tenant: Some((TenantState::Throttled, 31_000)),
            answer: None,
            ..Default::default()
        };
        t.finish((&user(3), &other), throttled, 1000, ME.pid);
        assert_eq!(t.lookup((&user(4), &other), 2000, None, ME).0, Lookup::Throttled(29));
        assert!(matches!(t.lookup((&user(4), &other), 31_000, None, ME).0, Lookup::Claimed { token: None }));
        // One token request per tenant: another user waits for it.
        assert_eq!(t.lookup((&user(5), &other), 31_001, None, Asker { pid: 8, ..ME }).0, Lookup::Asking);
        assert!(t.should_log(&other, 40) && !t.should_log(&other, 99) && t.should_log(&other, 100));
    }

    #[test]
    fn a_replaced_token_is_handed_back_to_free() {
        let (mut tenants, mut answers) = ([ZERO_T; 8], [ZERO_A; 8]);
        let mut t = Tables { tenants: &mut tenants, answers: &mut answers };
        t.lookup((&user(1), &TENANT), 1000, None, ME);
        let first = Finished { token: Some(((0x10, 5), 2000)), ..Default::default() };
        assert_eq!(t.finish((&user(1), &TENANT), first, 1000, ME.pid), None);
        assert_eq!(t.lookup((&user(1), &TENANT), 2000, None, ME).0, Lookup::Claimed { token: None });
        let second = Finished { token: Some(((0x20, 6), 9000)), ..Default::default() };
        assert_eq!(t.finish((&user(1), &TENANT), second, 2000, ME.pid), Some((0x10, 5)));
        assert_eq!(
            t.lookup((&user(2), &TENANT), 2001, None, ME).0,
            Lookup::Claimed { token: Some((0x20, 6)) }
        );
        // Graph refused it: handed back, and the next lookup gets another.
        let refused =
            Finished { answer: Some((Answer::Failed, 2002)), forget_token: true, ..Default::default() };
        assert_eq!(t.finish((&user(2), &TENANT), refused, 2002, ME.pid), Some((0x20, 6)));
        assert_eq!(t.lookup((&user(3), &TENANT), 2003, None, ME).0, Lookup::Claimed { token: None });
    }
}
