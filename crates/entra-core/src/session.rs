//! A browser session, as kept (sealed, see [`crate::seal`]) in its cookie: only what location
//! requirements and `$entra_*` variables need, in a compact binary form so that a user in 200
//! groups still fits two cookies.
//!
//! Layout (all integers big-endian): the format version (1 byte), the token version (1), flags
//! (1: bit 0 group overage, bit 1 unrecorded, bit 2 groups answered by Graph), sign-in time, expiry, last revalidation and last use (8 each, seconds
//! since the epoch), then the text fields `oid tid sub sid login_hint name username email` (each a 2-byte
//! length and UTF-8), the groups (2-byte count, then per group a tag: 0 and 16 bytes for a
//! canonical GUID, 1 and a text field for any other form Entra emits), the roles (2-byte count
//! and text fields) and the kept claims (2-byte count, then name and JSON text fields), then
//! extensions to the end, each a tag (1 byte) and a text field: tag 1 the app's client id (the
//! ID token's `aud`), tag 2 Graph's answer to a group overage (the asked set's digest, 8 bytes in
//! hexadecimal, `:`, and when it was asked, in seconds; the groups are then Graph's), tag 3 the
//! authentication contexts the sign-in satisfied (`acrs`, comma-separated), tag 4 when the user
//! authenticated (`auth_time`, decimal seconds). A tag this release does not know is skipped, so later fields never make a
//! cookie of this version undecodable; sessions sealed before an extension existed lack it.
//! Decoding checks every length against what is left: garbage is an error, never a panic.

use crate::binary::{put_len, put_text, put_u64, Reader};
pub use crate::binary::{DecodeError, TooLong};
use crate::error::{AuthContext, Denial};
use crate::group::Groups;
use serde_json::{Map, Value};

/// Groups Microsoft Graph answered for a session's group overage: for which set of groups asked
/// (the first 8 bytes of its digest) and when (seconds since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupsAnswered {
    pub asked: [u8; 8],
    pub at: u64,
}

/// The version of the layout above; part of the sealing's associated data too.
pub const FORMAT_VERSION: u8 = 1;
const OVERAGE: u8 = 1;
const UNRECORDED: u8 = 2;
const GRAPH: u8 = 4;
const CLIENT_ID_EXTENSION: u8 = 1;
const GRAPH_EXTENSION: u8 = 2;
const AUTH_CONTEXTS_EXTENSION: u8 = 3;
const AUTH_TIME_EXTENSION: u8 = 4;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Session {
    /// `ver` of the ID token it came from: 1 or 2.
    pub token_version: u8,
    /// The ID token had `_claim_names.groups` or `hasgroups`: membership cannot be decided.
    pub group_overage: bool,
    /// The record of sessions issued was full at sign-in ([`crate::revocation`]): a logout
    /// cannot name this session alone. Older releases never set it (their sessions predate any
    /// record, so count as unrecorded all the same).
    pub unrecorded: bool,
    /// When the user signed in, in milliseconds since the epoch: a front-channel logout refuses
    /// the sessions of its `sid` signed in up to the moment of the call, not a second later.
    pub signed_in: u64,
    /// The other times are in seconds since the epoch.
    pub expires: u64,
    pub revalidated: u64,
    /// When a request last used it (kept for `session_idle_timeout`, re-sealed at most once a
    /// minute).
    pub last_used: u64,
    pub oid: String,
    pub tid: String,
    pub sub: String,
    /// Entra's sign-in session id, for single sign-out.
    pub sid: String,
    pub login_hint: String,
    pub name: String,
    /// `preferred_username`, else `upn`.
    pub username: String,
    pub email: String,
    /// Object ids as their bytes; or other forms (sAMAccountName, display names) as given.
    pub groups: Groups,
    pub roles: Vec<String>,
    /// `session_claims`: name and the claim's JSON text.
    pub claims: Vec<(String, String)>,
    /// The app it was signed in to (the ID token's `aud`); empty in sessions sealed before it
    /// was kept.
    pub client_id: String,
    /// Group overage answered by Graph: `groups` are the asked groups the user is in.
    pub groups_answered: Option<GroupsAnswered>,
    /// The authentication contexts (`c1` to `c99`) the sign-in satisfied, kept for the
    /// session's life; none in sessions sealed before they were kept.
    pub auth_contexts: Vec<String>,
    /// The ID token's `auth_time`: when the user last authenticated (seconds).
    pub auth_time: Option<u64>,
}

impl Session {
    pub fn encode(&self) -> Result<Vec<u8>, TooLong> {
        let mut out = Vec::with_capacity(64 + 17 * self.groups.len());
        out.extend_from_slice(&[
            FORMAT_VERSION,
            self.token_version,
            if self.group_overage { OVERAGE } else { 0 }
                | if self.unrecorded { UNRECORDED } else { 0 }
                | if self.groups_answered.is_some() { GRAPH } else { 0 },
        ]);
        for time in [self.signed_in, self.expires, self.revalidated, self.last_used] {
            put_u64(&mut out, time);
        }
        for text in [
            &self.oid,
            &self.tid,
            &self.sub,
            &self.sid,
            &self.login_hint,
            &self.name,
            &self.username,
            &self.email,
        ] {
            put_text(&mut out, text)?;
        }
        self.groups.encode(&mut out)?;
        put_len(&mut out, self.roles.len())?;
        for role in &self.roles {
            put_text(&mut out, role)?;
        }
        put_len(&mut out, self.claims.len())?;
        for (name, json) in &self.claims {
            put_text(&mut out, name)?;
            put_text(&mut out, json)?;
        }
        if !self.client_id.is_empty() {
            out.push(CLIENT_ID_EXTENSION);
            put_text(&mut out, &self.client_id)?;
        }
        if let Some(answered) = &self.groups_answered {
            out.push(GRAPH_EXTENSION);
            let hex: String = answered.asked.iter().map(|b| format!("{b:02x}")).collect();
            put_text(&mut out, &format!("{hex}:{}", answered.at))?;
        }
        if !self.auth_contexts.is_empty() {
            out.push(AUTH_CONTEXTS_EXTENSION);
            put_text(&mut out, &self.auth_contexts.join(","))?;
        }
        if let Some(at) = self.auth_time {
            out.push(AUTH_TIME_EXTENSION);
            put_text(&mut out, &at.to_string())?;
        }
        Ok(out)
    }

    /// Decodes a session's payload, which its groups keep (they are read where they lie).
    pub fn decode(plain: Vec<u8>) -> Result<Session, DecodeError> {
        let mut r = Reader(&plain);
        r.version(FORMAT_VERSION)?;
        let token_version = r.byte()?;
        let flags = r.byte()?;
        let (group_overage, unrecorded) = (flags & OVERAGE != 0, flags & UNRECORDED != 0);
        let (signed_in, expires, revalidated, last_used) = (r.u64()?, r.u64()?, r.u64()?, r.u64()?);
        let mut texts = [(); 8].map(|_| String::new());
        for text in &mut texts {
            *text = r.text()?;
        }
        let [oid, tid, sub, sid, login_hint, name, username, email] = texts;
        let groups = Groups::read(&mut r, plain.len())?;
        let roles = (0..r.len()?).map(|_| r.text()).collect::<Result<_, _>>()?;
        let claims = (0..r.len()?).map(|_| Ok((r.text()?, r.text()?))).collect::<Result<_, _>>()?;
        let mut client_id = String::new();
        let mut groups_answered = None;
        let (mut auth_contexts, mut auth_time) = (Vec::new(), None);
        while !r.0.is_empty() {
            let (tag, text) = (r.byte()?, r.text()?);
            match tag {
                CLIENT_ID_EXTENSION => client_id = text,
                // Only with its flag; a malformed one is none (the groups get asked again).
                GRAPH_EXTENSION if flags & GRAPH != 0 => groups_answered = read_answered(&text),
                // Only ids of their form; anything else is no context.
                AUTH_CONTEXTS_EXTENSION => auth_contexts = auth_context_ids(text.split(',')),
                AUTH_TIME_EXTENSION => auth_time = text.parse().ok(),
                _ => {}
            }
        }
        r.finish()?;
        let groups = Groups::opened(plain, groups);
        Ok(Session {
            token_version,
            group_overage,
            unrecorded,
            signed_in,
            expires,
            revalidated,
            last_used,
            oid,
            tid,
            sub,
            sid,
            login_hint,
            name,
            username,
            email,
            groups,
            roles,
            claims,
            client_id,
            groups_answered,
            auth_contexts,
            auth_time,
        })
    }
}

/// The authentication context ids among `values`, as `c1` to `c99`.
pub(crate) fn auth_context_ids<'a>(values: impl Iterator<Item = &'a str>) -> Vec<String> {
    values.filter_map(AuthContext::parse).map(|id| id.to_string()).collect()
}

/// Graph's answer of a session, as its extension writes it: 16 hex digits, `:`, seconds.
fn read_answered(text: &str) -> Option<GroupsAnswered> {
    let (hex, at) = text.split_once(':')?;
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut asked = [0u8; 8];
    for (i, byte) in asked.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(GroupsAnswered { asked, at: at.parse().ok()? })
}

impl Session {
    /// Its key in the record of sessions issued ([`crate::revocation::session_key`]).
    pub fn record_key(&self) -> crate::revocation::Key {
        crate::revocation::session_key(&self.sid, &self.oid, &self.tid, self.signed_in)
    }

    /// What names it: the bytes its keys are made of ([`crate::revocation::identity`]).
    pub fn identity_bytes(&self) -> Vec<u8> {
        crate::revocation::identity(&self.sid, &self.oid, &self.tid, self.signed_in)
    }

    /// The session's own field for claim `name`, as its identity reads it: `None` for a claim
    /// a session never keeps (`session_claims` aside, which the caller reads first).
    pub fn field(&self, name: &str) -> Option<&str> {
        let text = match name {
            "oid" => &self.oid,
            "tid" => &self.tid,
            "sub" => &self.sub,
            "sid" => &self.sid,
            "login_hint" => &self.login_hint,
            "name" => &self.name,
            "preferred_username" => &self.username,
            "email" => &self.email,
            "ver" => return Some(if self.token_version == 1 { "1.0" } else { "2.0" }),
            _ => return None,
        };
        (!text.is_empty()).then_some(text.as_str())
    }

    /// The session as every claim of its identity (`VerifiedToken::of_session`): no `scp` and
    /// no `azp` (a session is no delegated access token). Built only when something asks for a
    /// claim its fields do not answer.
    pub(crate) fn claims(&self) -> Map<String, Value> {
        let mut c = Map::new();
        for name in ["oid", "tid", "sub", "sid", "login_hint", "name", "preferred_username", "email", "ver"] {
            if let Some(value) = self.field(name) {
                c.insert(name.to_owned(), Value::String(value.to_owned()));
            }
        }
        c.insert("groups".into(), self.groups.iter().map(|g| g.to_string()).collect());
        c.insert("roles".into(), self.roles.iter().cloned().collect());
        if self.group_overage {
            c.insert("_claim_names".into(), serde_json::json!({ "groups": "src1" }));
        }
        if !self.auth_contexts.is_empty() {
            c.insert("acrs".into(), self.auth_contexts.iter().cloned().collect());
        }
        if let Some(at) = self.auth_time {
            c.insert("auth_time".into(), at.into());
        }
        for (name, json) in &self.claims {
            if let Ok(value) = serde_json::from_str(json) {
                c.insert(name.clone(), value);
            }
        }
        c
    }
}

/// The claims every session keeps (besides `session_claims`), as its identity reads them.
pub const KEPT_CLAIMS: [&str; 13] = [
    "oid",
    "tid",
    "sub",
    "sid",
    "login_hint",
    "name",
    "preferred_username",
    "email",
    "ver",
    "groups",
    "roles",
    "acrs",
    "auth_time",
];

/// How often a session in use is re-sealed with a new last-use time, at most (seconds).
pub const TOUCH_INTERVAL: u64 = 60;

/// The session settings of a provider that decide whether a session still holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Freshness {
    /// `session_idle_timeout`: unused this long, a session ends.
    pub idle_timeout: Option<u64>,
    /// `session_revalidate`: this long after the last check, a navigation checks with Entra again.
    pub revalidate: Option<u64>,
}

/// What a session that opened allows at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// In force; `touch` says to re-seal it with `now` as its last use.
    Valid { touch: bool },
    /// In force, but a navigation should go through a silent sign-in first (`prompt=none`).
    Revalidate,
}

impl Session {
    /// Judges the session at `now`: past its expiry, unused for longer than the idle timeout, or
    /// overdue for revalidation by more than another interval (a script's requests then get 401
    /// so that the page reloads and its navigation revalidates).
    /// `navigation` is asked only of a session due for revalidation.
    pub fn standing(
        &self,
        now: u64,
        freshness: Freshness,
        navigation: impl FnOnce() -> bool,
    ) -> Result<Standing, Denial> {
        if now >= self.expires {
            return Err(Denial::SessionExpired);
        }
        if let Some(idle) = freshness.idle_timeout {
            if now >= self.last_used.saturating_add(idle) {
                return Err(Denial::SessionIdle);
            }
        }
        if let Some(every) = freshness.revalidate {
            let due = self.revalidated.saturating_add(every);
            if now >= due && navigation() {
                return Ok(Standing::Revalidate);
            }
            if now >= due.saturating_add(every) {
                return Err(Denial::SessionStale);
            }
        }
        let touch = freshness.idle_timeout.is_some() && now >= self.last_used.saturating_add(TOUCH_INTERVAL);
        Ok(Standing::Valid { touch })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::Group;

    fn alice(groups: usize) -> Session {
        Session {
            token_version: 2,
            signed_in: 1_790_000_000,
            expires: 1_790_028_800,
            revalidated: 1_790_000_000,
            oid: "00000000-0000-0000-0000-00000000a11c".into(),
            tid: "9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93".into(),
            sub: "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ".into(),
            sid: "0027c5e2-4c19-5a5f-6e19-1f1e7a1b8c2d".into(),
            login_hint: "O.CiQ3ZmZmZmZmZi04ZjJmLTQ".into(),
            name: "Alice Example".into(),
            username: "alice@contoso.example".into(),
            email: "alice@contoso.example".into(),
            groups: (0..groups).map(|i| format!("0b9f3f6e-4a4c-4c1e-9a63-{i:012x}")).collect(),
            roles: vec!["Orders.Read".into(), "Admin".into()],
            claims: vec![("department".into(), "\"Finance\"".into())],
            ..Default::default()
        }
    }

    #[test]
    fn a_session_survives_encoding_and_guids_take_sixteen_bytes() {
        let mut s = alice(3);
        s.groups.push(Group::Name("Domain Users")).unwrap();
        s.groups.push(Group::Name("0B9F3F6E-4A4C-4C1E-9A63-2F1D8F1B57E1")).unwrap();
        s.group_overage = true;
        let bytes = s.encode().unwrap();
        assert_eq!(Session::decode(bytes.to_vec()).unwrap(), s, "other group forms are kept as they were");
        let (one, two) = (alice(1).encode().unwrap().len(), alice(2).encode().unwrap().len());
        assert_eq!(two - one, 17, "a canonical GUID is a tag and 16 bytes");
    }

    #[test]
    fn graphs_answer_is_kept_with_its_flag_and_a_malformed_one_is_none() {
        let answered = GroupsAnswered { asked: [0xab, 1, 2, 3, 4, 5, 6, 0xff], at: 1_790_000_600 };
        let with = Session { group_overage: true, groups_answered: Some(answered), ..alice(2) };
        let bytes = with.encode().unwrap();
        assert_eq!(bytes[2], OVERAGE | GRAPH, "the flag says the groups came from Graph");
        assert_eq!(Session::decode(bytes.to_vec()).unwrap(), with);
        // The extension without its flag, or not in its form, is no answer: asked again.
        let mut unflagged = bytes.clone();
        unflagged[2] = OVERAGE;
        assert_eq!(Session::decode(unflagged.to_vec()).unwrap().groups_answered, None);
        for text in ["ab010203040506ff", "ab010203040506f:1", "ab010203040506fg:1", "ab010203040506ff:x"] {
            assert_eq!(read_answered(text), None, "{text}");
        }
    }

    #[test]
    fn auth_contexts_and_the_signin_time_are_kept() {
        let with = Session {
            auth_contexts: vec!["c1".into(), "c25".into()],
            auth_time: Some(1_790_000_000),
            ..alice(2)
        };
        let bytes = with.encode().unwrap();
        let opened = Session::decode(bytes.to_vec()).unwrap();
        assert_eq!(opened, with, "read as claims: token.rs");
        let older = Session::decode(alice(2).encode().unwrap().to_vec()).unwrap();
        assert!(older.auth_contexts.is_empty() && older.auth_time.is_none(), "none kept: none read");
        assert_eq!(auth_context_ids(["c1", "C7", "c100", "c0", "x", "c01"].into_iter()), ["c1", "c7"]);
    }

    #[test]
    fn two_hundred_groups_fit_in_under_four_kilobytes() {
        let bytes = alice(200).encode().unwrap();
        assert!(bytes.len() < 4000, "{} bytes", bytes.len());
    }

    #[test]
    fn extensions_carry_the_client_id_and_unknown_ones_are_skipped() {
        let with = Session { client_id: "6e1c4d2a-8b3f-4a7e-9c05-2f7d1b3e8a64".into(), ..alice(2) };
        let mut bytes = with.encode().unwrap();
        assert_eq!(Session::decode(bytes.to_vec()).unwrap(), with);
        // A later release's extension: tag 9, a text field.
        bytes.extend_from_slice(&[9, 0, 3, b'a', b'b', b'c']);
        assert_eq!(Session::decode(bytes.to_vec()).unwrap(), with, "skipped");
        let without = alice(2);
        assert_eq!(Session::decode(without.encode().unwrap().to_vec()).unwrap().client_id, "", "none kept");
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        let bytes = alice(5).encode().unwrap();
        for n in 0..bytes.len() {
            assert!(Session::decode(bytes[..n].to_vec()).is_err(), "truncated at {n}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(Session::decode(longer.to_vec()), Err(DecodeError::Truncated), "an extension's tag alone");
        let mut other = bytes.clone();
        other[0] = 9;
        assert_eq!(Session::decode(other.to_vec()), Err(DecodeError::Version(9)));
        // Every single-byte change decodes to something or fails cleanly.
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0xa5;
            let _ = Session::decode(b.to_vec());
        }
    }

    #[test]
    fn a_session_ends_at_its_expiry_or_when_idle() {
        let s = Session { expires: 1000, last_used: 100, revalidated: 100, ..alice(0) };
        let idle = Freshness { idle_timeout: Some(300), revalidate: None };
        assert_eq!(s.standing(999, Freshness::default(), || false), Ok(Standing::Valid { touch: false }));
        assert_eq!(s.standing(1000, Freshness::default(), || false), Err(Denial::SessionExpired));
        assert_eq!(s.standing(399, idle, || false), Ok(Standing::Valid { touch: true }));
        assert_eq!(
            s.standing(159, idle, || false),
            Ok(Standing::Valid { touch: false }),
            "touched at most once a minute"
        );
        assert_eq!(s.standing(400, idle, || false), Err(Denial::SessionIdle));
    }

    #[test]
    fn a_navigation_revalidates_when_due_and_scripts_go_stale_an_interval_later() {
        let s = Session { expires: 100_000, last_used: 0, revalidated: 1000, ..alice(0) };
        let every = Freshness { idle_timeout: None, revalidate: Some(900) };
        assert_eq!(s.standing(1899, every, || true), Ok(Standing::Valid { touch: false }));
        let not_asked = || -> bool { panic!("whether it is a navigation is asked only when due") };
        assert_eq!(s.standing(1899, every, not_asked), Ok(Standing::Valid { touch: false }));
        assert_eq!(s.standing(1900, every, || true), Ok(Standing::Revalidate));
        assert_eq!(
            s.standing(1900, every, || false),
            Ok(Standing::Valid { touch: false }),
            "a script is served"
        );
        assert_eq!(s.standing(2799, every, || false), Ok(Standing::Valid { touch: false }));
        assert_eq!(s.standing(2800, every, || false), Err(Denial::SessionStale));
        assert_eq!(
            s.standing(2800, every, || true),
            Ok(Standing::Revalidate),
            "a navigation still revalidates"
        );
    }

    #[test]
    fn a_field_over_the_length_limit_is_refused() {
        let mut s = alice(0);
        s.name = "x".repeat(70_000);
        assert_eq!(s.encode(), Err(TooLong));
    }
}
