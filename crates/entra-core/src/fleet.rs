//! Sessions across a fleet of nginx instances sharing one store (`entra_shared_store`): what
//! each instance tells the others and how it reads what they told.
//!
//! - A sign-in is recorded in the store under a keyed hash of its session
//!   ([`crate::seal::SealKeys::fleet_keys`]), for `session_lifetime`: "issued by the fleet".
//! - A sign-out is published on a stream per provider (trimmed to `session_lifetime`); every
//!   instance reads the stream about once a second and refuses the sessions it names signed in
//!   up to the entry's time plus `leeway` (clocks differ).
//! - A front-channel call for a `sid` no local record holds asks the store whether the fleet
//!   issued it: yes, it is published; no, it is ignored (a flood signs nobody out).
//! - Whatever cannot wait for the store stays in a bounded outbox in the shared zone; when it
//!   overflows, or publishing is over its rate, a watermark refuses every session signed in
//!   before it (closed, never open), and the watermark is published in turn.
//!
//! Sign-out entries carry no seal: a forged one can only sign someone out. This file is the
//! logic (over atomics, the caller holding the zone's lock) and the blocking round trip
//! ([`run_round`], pool threads only).

use core::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use redis::Value;

use crate::graph::{LookupKey, Membership};
use crate::revocation::Key;
use crate::seal::{OpenError, Purpose, SealKeys};
use crate::store::{Store, StoreError};

/// Entries an outbox holds per provider.
pub const OUTBOX_CAPACITY: usize = 2048;
/// Sign-outs one instance publishes per provider and second at most; beyond, a watermark.
pub const PUBLISH_PER_SECOND: u64 = 500;
/// How long after noticing that the store restarted empty an instance asks again about a
/// `sid` it said it never saw: the others tell it their sign-ins within about a second.
pub const RESTART_GRACE_MS: u64 = 5000;
/// Stream entries asked for per read.
const READ_BATCH: usize = 1000;

/// What an outbox entry is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    /// A session signed in here: record it as issued (`at_ms`: when it expires).
    SignIn = 1,
    /// A session signed out here: publish it (`at_ms`: when).
    SignOut = 2,
    /// A front-channel call for a `sid` this instance did not issue: ask whether the fleet did,
    /// and if so publish it (`at_ms`: when the call came).
    Query = 3,
}

impl ItemKind {
    fn from_word(word: u64) -> Option<ItemKind> {
        match word {
            1 => Some(ItemKind::SignIn),
            2 => Some(ItemKind::SignOut),
            3 => Some(ItemKind::Query),
            _ => None,
        }
    }
}

/// One thing to tell the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Item {
    pub kind: ItemKind,
    pub key: Key,
    pub at_ms: u64,
}

/// One outbox entry in shared memory.
#[repr(C)]
#[derive(Default)]
pub struct OutboxEntry {
    /// 0: free; 1: waiting; else the pid of the worker sending it, shifted left by one, plus 1.
    state: AtomicU64,
    taken_ms: AtomicU64,
    kind: AtomicU64,
    key: [AtomicU64; 2],
    at_ms: AtomicU64,
}

const FREE: u64 = 0;
const WAITING: u64 = 1;

fn taken_by(pid: u32) -> u64 {
    (u64::from(pid) << 1) | 1
}

/// A provider's outbox: the caller holds the zone's lock for every call.
pub struct Outbox<'a> {
    entries: &'a [OutboxEntry],
}

/// An entry taken to send, and where it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    pub index: usize,
    pub item: Item,
}

impl<'a> Outbox<'a> {
    pub fn new(entries: &'a [OutboxEntry]) -> Outbox<'a> {
        Outbox { entries }
    }

    /// Puts `item` in; `false` when the outbox is full.
    pub fn push(&self, item: Item) -> bool {
        let Some(e) = self.entries.iter().find(|e| e.state.load(SeqCst) == FREE) else { return false };
        e.kind.store(item.kind as u64, SeqCst);
        e.key[0].store(item.key[0], SeqCst);
        e.key[1].store(item.key[1], SeqCst);
        e.at_ms.store(item.at_ms, SeqCst);
        e.state.store(WAITING, SeqCst);
        true
    }

    /// Takes up to `max` entries to send for worker `pid`: those waiting, and those another
    /// worker took more than `stale_ms` ago (it died sending them).
    pub fn take(&self, pid: u32, now_ms: u64, stale_ms: u64, max: usize) -> Vec<Taken> {
        let mut taken = Vec::new();
        for (index, e) in self.entries.iter().enumerate() {
            if taken.len() == max {
                break;
            }
            let state = e.state.load(SeqCst);
            let stale = state > WAITING && e.taken_ms.load(SeqCst).saturating_add(stale_ms) <= now_ms;
            if state != WAITING && !stale {
                continue;
            }
            let Some(kind) = ItemKind::from_word(e.kind.load(SeqCst)) else {
                e.state.store(FREE, SeqCst);
                continue;
            };
            e.state.store(taken_by(pid), SeqCst);
            e.taken_ms.store(now_ms, SeqCst);
            let item = Item {
                kind,
                key: [e.key[0].load(SeqCst), e.key[1].load(SeqCst)],
                at_ms: e.at_ms.load(SeqCst),
            };
            taken.push(Taken { index, item });
        }
        taken
    }

    /// The entries `pid` took: freed when `sent`, else waiting again.
    pub fn settle(&self, pid: u32, taken: &[Taken], sent: bool) {
        for t in taken {
            let Some(e) = self.entries.get(t.index) else { continue };
            if e.state.load(SeqCst) == taken_by(pid) {
                e.state.store(if sent { FREE } else { WAITING }, SeqCst);
            }
        }
    }

    /// Entries waiting or being sent.
    pub fn len(&self) -> usize {
        self.entries.iter().filter(|e| e.state.load(SeqCst) != FREE).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A position in a stream (Redis's `ms-seq`); `0-0` reads from its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    fn parse(text: &str) -> Option<StreamId> {
        let (ms, seq) = text.split_once('-')?;
        Some(StreamId { ms: ms.parse().ok()?, seq: seq.parse().ok()? })
    }

    fn text(self) -> String {
        format!("{}-{}", self.ms, self.seq)
    }
}

/// What another instance published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// The sessions of `key` signed in up to `at_ms` are signed out.
    SignOut { key: Key, at_ms: u64 },
    /// Every session signed in up to `at_ms` is (an instance could not say which).
    Watermark { at_ms: u64 },
}

/// One provider's part of a round.
#[derive(Debug, Clone)]
pub struct ProviderRound {
    pub name: String,
    /// `session_lifetime`, in ms: how long the store keeps what is told.
    pub lifetime_ms: u64,
    pub items: Vec<Item>,
    /// A watermark to publish (0: none).
    pub watermark_ms: u64,
    /// Where this instance's reading stands.
    pub after: StreamId,
}

/// What the store answered for one provider.
#[derive(Debug, Clone, Default)]
pub struct ProviderAnswer {
    /// Front-channel calls whose `sid` the fleet issued: signed out, and now published.
    pub confirmed: Vec<Item>,
    /// Front-channel calls whose `sid` no instance issued (ignored, unless the store just
    /// restarted empty: then the instances may not have told it their sign-ins yet).
    pub unknown: Vec<Item>,
    /// Sign-outs and watermarks published.
    pub published: u64,
    pub received: Vec<Received>,
    /// Entries that were not ours to read (counted, skipped).
    pub malformed: u64,
    pub last: StreamId,
    /// The stream was read to its end (not cut short by the time allowed).
    pub read_through: bool,
}

/// A round trip: what every provider told and read, and the server's `run_id`.
#[derive(Debug, Clone, Default)]
pub struct RoundAnswer {
    pub run_id: String,
    /// The store is another (or restarted empty) since the last round: every provider was read
    /// from the start, and what this instance holds should be told again.
    pub restarted: bool,
    pub providers: Vec<ProviderAnswer>,
}

fn hex(key: Key) -> String {
    format!("{:016x}{:016x}", key[0], key[1])
}

fn unhex(text: &[u8]) -> Option<Key> {
    if text.len() != 32 {
        return None;
    }
    let text = core::str::from_utf8(text).ok()?;
    let word = |range: core::ops::Range<usize>| u64::from_str_radix(text.get(range)?, 16).ok();
    let key = [word(0..16)?, word(16..32)?];
    (key[0] & 1 == 1).then_some(key)
}

/// The store's names for a provider's things.
pub struct Names<'a> {
    pub prefix: &'a str,
    pub provider: &'a str,
}

impl Names<'_> {
    pub fn issued(&self, key: Key) -> String {
        format!("{}:{}:issued:{}", self.prefix, self.provider, hex(key))
    }

    pub fn stream(&self) -> String {
        format!("{}:{}:signouts", self.prefix, self.provider)
    }

    /// Where Graph's answer of `key` (tenant, user and groups asked) is kept.
    pub fn answer(&self, key: &LookupKey) -> String {
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        format!("{}:{}:graph:{hex}", self.prefix, self.provider)
    }
}

/// What a Graph answer is bound to in its seal: the provider and the answer's key.
fn answer_aad(provider: &str, key: &LookupKey) -> Vec<u8> {
    [provider.as_bytes(), b"\0", key.as_slice()].concat()
}

/// A Graph answer as the store keeps it: sealed (AES-256-GCM, a key of its own purpose from
/// `session_key_file`), bound to the provider and the answer's key (the app, tenant, user and
/// groups asked), its expiry inside the seal. The store cannot grant access: what does not open
/// under these is no answer.
pub fn seal_answer(
    keys: &SealKeys,
    provider: &str,
    key: &LookupKey,
    members: &Membership,
    expires_ms: u64,
) -> String {
    let mut plain = expires_ms.to_be_bytes().to_vec();
    plain.extend_from_slice(&members.0);
    keys.seal(Purpose::GraphAnswer, &answer_aad(provider, key), &plain)
}

/// A sealed answer read from the store: the membership and until when (ms) it holds; `None`
/// once expired.
pub fn open_answer(
    keys: &SealKeys,
    provider: &str,
    key: &LookupKey,
    sealed: &[u8],
    now_ms: u64,
) -> Result<Option<(Membership, u64)>, OpenError> {
    let plain = keys.open(Purpose::GraphAnswer, &answer_aad(provider, key), sealed)?;
    let (expires, bits) = plain.split_at_checked(8).ok_or(OpenError::Malformed)?;
    let expires_ms = u64::from_be_bytes(expires.try_into().expect("8 bytes"));
    let bits = bits.try_into().map_err(|_| OpenError::Malformed)?;
    Ok((expires_ms > now_ms).then_some((Membership(bits), expires_ms)))
}

/// The sealed answer kept at `name`, if any (blocking).
pub fn fetch_answer(store: &Store, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
    store.with(|c| Ok(redis::cmd("GET").arg(name).query(c)?))
}

/// Keeps a sealed answer at `name` for `ttl_ms` (blocking).
pub fn keep_answer(store: &Store, name: &str, sealed: &str, ttl_ms: u64) -> Result<(), StoreError> {
    store.with(|c| Ok(redis::cmd("SET").arg(name).arg(sealed).arg("PX").arg(ttl_ms.max(1)).query(c)?))
}

fn publish(pipe: &mut redis::Pipeline, stream: &str, oldest_ms: u64, fields: &[(&str, String)]) {
    let command = pipe.cmd("XADD").arg(stream).arg("MINID").arg("~").arg(oldest_ms).arg("*");
    for (name, value) in fields {
        command.arg(*name).arg(value);
    }
    command.ignore();
}

/// One round trip with the store (blocking: pool threads only): for each provider, its items
/// told, its watermark published, and its stream read on from where it stands (from its start
/// when the store's `run_id` is not `known`), for at most `read_for`.
pub fn run_round(
    store: &Store,
    known: Option<&str>,
    now_ms: u64,
    rounds: &[ProviderRound],
    read_for: Duration,
) -> Result<RoundAnswer, StoreError> {
    let prefix = store.config.prefix.clone();
    store.with(|c| {
        let run_id = Store::run_id(c)?;
        let restarted = known.is_some_and(|k| k != run_id);
        let mut answer = RoundAnswer { run_id, restarted, providers: Vec::new() };
        let deadline = Instant::now() + read_for;
        for round in rounds {
            let names = Names { prefix: &prefix, provider: &round.name };
            let stream = names.stream();
            let oldest = now_ms.saturating_sub(round.lifetime_ms);
            let mut out = ProviderAnswer::default();
            // Sign-ins and sign-outs told, the calls asked about, in one pipeline.
            let mut pipe = redis::pipe();
            let mut queries = Vec::new();
            for item in &round.items {
                match item.kind {
                    ItemKind::SignIn => {
                        let ttl = item.at_ms.saturating_sub(now_ms);
                        if ttl > 0 {
                            pipe.cmd("SET").arg(names.issued(item.key)).arg(1).arg("PX").arg(ttl).ignore();
                        }
                    }
                    ItemKind::SignOut => {
                        publish(
                            &mut pipe,
                            &stream,
                            oldest,
                            &[("k", "s".into()), ("h", hex(item.key)), ("t", item.at_ms.to_string())],
                        );
                        out.published += 1;
                    }
                    ItemKind::Query => {
                        pipe.cmd("EXISTS").arg(names.issued(item.key));
                        queries.push(*item);
                    }
                }
            }
            if round.watermark_ms != 0 {
                publish(
                    &mut pipe,
                    &stream,
                    oldest,
                    &[("k", "w".into()), ("t", round.watermark_ms.to_string())],
                );
                out.published += 1;
            }
            let exists: Vec<i64> = match round.items.is_empty() && round.watermark_ms == 0 {
                true => Vec::new(),
                false => pipe.query(c)?,
            };
            if exists.len() != queries.len() {
                return Err(StoreError::Protocol("EXISTS answered out of step".into()));
            }
            let mut confirm = redis::pipe();
            for (item, found) in queries.into_iter().zip(exists) {
                if found > 0 {
                    publish(
                        &mut confirm,
                        &stream,
                        oldest,
                        &[("k", "s".into()), ("h", hex(item.key)), ("t", item.at_ms.to_string())],
                    );
                    out.confirmed.push(item);
                    out.published += 1;
                } else {
                    out.unknown.push(item);
                }
            }
            if !out.confirmed.is_empty() {
                confirm.query::<()>(c)?;
            }
            out.last = if restarted { StreamId::default() } else { round.after };
            read_stream(c, &stream, oldest, deadline, &mut out)?;
            answer.providers.push(out);
        }
        Ok(answer)
    })
}

/// Reads `stream` after `out.last` until it has no more (or `deadline` passed), keeping the
/// entries younger than `oldest_ms`.
fn read_stream(
    c: &mut redis::Connection,
    stream: &str,
    oldest_ms: u64,
    deadline: Instant,
    out: &mut ProviderAnswer,
) -> Result<(), StoreError> {
    loop {
        let reply: Value = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(READ_BATCH)
            .arg("STREAMS")
            .arg(stream)
            .arg(out.last.text())
            .query(c)?;
        let entries = stream_entries(reply)?;
        let count = entries.len();
        for (id, fields) in entries {
            out.last = out.last.max(id);
            match received(&fields) {
                Some(r) if at_of(r) > oldest_ms => out.received.push(r),
                Some(_) => {}
                None => out.malformed += 1,
            }
        }
        if count < READ_BATCH {
            out.read_through = true;
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Ok(());
        }
    }
}

fn at_of(r: Received) -> u64 {
    match r {
        Received::SignOut { at_ms, .. } | Received::Watermark { at_ms } => at_ms,
    }
}

type Fields = Vec<(Vec<u8>, Vec<u8>)>;

/// XREAD's answer for one stream: nil, or `[[name, [[id, [field, value, ...]], ...]]]`.
fn stream_entries(reply: Value) -> Result<Vec<(StreamId, Fields)>, StoreError> {
    let bad = |what: &str| StoreError::Protocol(format!("XREAD answered {what}"));
    let streams = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(streams) => streams,
        Value::Map(pairs) => pairs.into_iter().map(|(k, v)| Value::Array(vec![k, v])).collect(),
        _ => return Err(bad("no list of streams")),
    };
    let mut out = Vec::new();
    for stream in streams {
        let Value::Array(mut parts) = stream else { return Err(bad("a stream that is no pair")) };
        let Some(Value::Array(entries)) = parts.pop() else { return Err(bad("a stream without entries")) };
        for entry in entries {
            let Value::Array(mut pair) = entry else { return Err(bad("an entry that is no pair")) };
            let (Some(Value::Array(values)), Some(id)) = (pair.pop(), pair.pop()) else {
                return Err(bad("an entry without id and fields"));
            };
            let id =
                text_of(&id).and_then(|t| StreamId::parse(&t)).ok_or_else(|| bad("an id that is none"))?;
            let mut fields = Vec::new();
            let mut words = values.iter().map(bytes_of);
            while let (Some(name), Some(value)) = (words.next(), words.next()) {
                fields.push((name.unwrap_or_default(), value.unwrap_or_default()));
            }
            out.push((id, fields));
        }
    }
    Ok(out)
}

fn bytes_of(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.clone().into_bytes()),
        _ => None,
    }
}

fn text_of(v: &Value) -> Option<String> {
    bytes_of(v).and_then(|b| String::from_utf8(b).ok())
}

/// One stream entry as this module writes it: `k` `s` (a sign-out, with `h` and `t`) or `w`
/// (a watermark, with `t`); anything else is not ours.
fn received(fields: &Fields) -> Option<Received> {
    let field = |name: &[u8]| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice());
    let at_ms: u64 = core::str::from_utf8(field(b"t")?).ok()?.parse().ok()?;
    match field(b"k")? {
        b"s" => Some(Received::SignOut { key: unhex(field(b"h")?)?, at_ms }),
        b"w" => Some(Received::Watermark { at_ms }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox(n: usize) -> Vec<OutboxEntry> {
        (0..n).map(|_| OutboxEntry::default()).collect()
    }

    fn item(n: u64) -> Item {
        Item { kind: ItemKind::SignOut, key: [n | 1, n], at_ms: 1_000 + n }
    }

    #[test]
    fn an_outbox_keeps_what_was_not_sent_and_takes_over_a_dead_sender() {
        let entries = outbox(3);
        let o = Outbox::new(&entries);
        assert!(o.push(item(1)) && o.push(item(2)) && o.push(item(3)));
        assert!(!o.push(item(4)), "bounded");
        let first = o.take(10, 5_000, 1_000, 2);
        assert_eq!(first.iter().map(|t| t.item).collect::<Vec<_>>(), vec![item(1), item(2)]);
        assert_eq!(o.take(11, 5_100, 1_000, 8).len(), 1, "another worker takes only the rest");
        o.settle(10, &first, false);
        assert_eq!(o.take(12, 5_200, 1_000, 8).len(), 2, "not sent: waiting again");
        assert_eq!(o.take(13, 6_300, 1_000, 8).len(), 3, "taken too long ago: its worker died");
        let all = o.take(13, 7_400, 1_000, 8);
        o.settle(13, &all, true);
        assert!(o.is_empty());
    }

    #[test]
    fn stream_entries_read_back_and_others_are_skipped() {
        let key = [0xabcd_ef01_2345_6789, 42];
        let fields = |pairs: &[(&str, &str)]| -> Fields {
            pairs.iter().map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec())).collect()
        };
        assert_eq!(
            received(&fields(&[("k", "s"), ("h", &hex(key)), ("t", "77")])),
            Some(Received::SignOut { key, at_ms: 77 })
        );
        assert_eq!(received(&fields(&[("k", "w"), ("t", "78")])), Some(Received::Watermark { at_ms: 78 }));
        for other in [
            fields(&[("k", "s"), ("h", "zz"), ("t", "1")]),
            fields(&[("k", "s"), ("h", &hex([2, 0])), ("t", "1")]),
            fields(&[("k", "x"), ("t", "1")]),
            fields(&[("k", "w"), ("t", "-1")]),
            fields(&[("k", "w")]),
        ] {
            assert_eq!(received(&other), None, "{other:?}");
        }
        assert_eq!(StreamId::parse("1700000000000-3"), Some(StreamId { ms: 1_700_000_000_000, seq: 3 }));
        assert_eq!(StreamId::parse("5"), None);
    }

    #[test]
    fn a_graph_answer_opens_only_where_it_was_sealed_and_until_it_expires() {
        let keys = SealKeys::parse("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").unwrap();
        let (key, other) = ([7u8; 32], [8u8; 32]);
        let mut members = Membership::default();
        members.0[0] = 0b101;
        let sealed = seal_answer(&keys, "live", &key, &members, 10_000);
        let opened = open_answer(&keys, "live", &key, sealed.as_bytes(), 9_000).unwrap().unwrap();
        assert_eq!((opened.0 .0, opened.1), (members.0, 10_000));
        assert_eq!(open_answer(&keys, "live", &key, sealed.as_bytes(), 10_000), Ok(None), "expired");
        assert!(open_answer(&keys, "live", &other, sealed.as_bytes(), 0).is_err(), "another user's key");
        assert!(open_answer(&keys, "other", &key, sealed.as_bytes(), 0).is_err(), "another provider");
        let forged = keys.seal(Purpose::Session, &answer_aad("live", &key), &[0xff; 40]);
        assert!(
            open_answer(&keys, "live", &key, forged.as_bytes(), 0).is_err(),
            "sealed for another purpose"
        );
        assert!(open_answer(&keys, "live", &key, b"{\"groups\":[\"all\"]}", 0).is_err(), "written by hand");
    }
}
