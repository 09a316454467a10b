//! What a bearer token is: the `Authorization` header's token, the JOSE header and claims read
//! in one borrowed pass with strict JSON types, and the token that passed its provider's rules.
//! The rules themselves are in [`crate::verify`].

use std::borrow::Cow;
use std::sync::{Arc, Mutex, OnceLock};

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::Denial;
use crate::group::{guid_bytes, Group, Groups};
use crate::session::{auth_context_ids, GroupsAnswered, Session};

/// The JOSE header fields that decide anything. `jku`, `x5u`, `jwk` and `x5c` are never read:
/// key material comes only from the provider's key set (rule 9).
#[derive(Deserialize)]
pub(crate) struct JoseHeader<'a> {
    #[serde(borrow)]
    pub(crate) alg: Option<JsonStr<'a>>,
    #[serde(borrow)]
    pub(crate) kid: Option<JsonStr<'a>>,
    pub(crate) crit: Option<IgnoredAny>,
    pub(crate) nonce: Option<IgnoredAny>,
}

/// A JSON string, borrowed from the input unless it has escapes. serde's own `Cow<str>` always
/// copies, which cost a first-sight token a dozen allocations.
pub(crate) struct JsonStr<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for JsonStr<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Text<'a> {
            type Value = JsonStr<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<JsonStr<'a>, E> {
                Ok(JsonStr::borrowed(text))
            }
            fn visit_str<E>(self, text: &str) -> Result<JsonStr<'a>, E> {
                Ok(JsonStr::owned(text))
            }
        }
        d.deserialize_str(Text(std::marker::PhantomData))
    }
}

impl<'a> JsonStr<'a> {
    pub(crate) fn borrowed(text: &'a str) -> JsonStr<'a> {
        JsonStr(Cow::Borrowed(text))
    }

    pub(crate) fn owned(text: &str) -> JsonStr<'a> {
        JsonStr(Cow::Owned(text.to_owned()))
    }
}

impl std::ops::Deref for JsonStr<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// Parses a JSON object into `T`. A struct serde derives also takes an array, its fields by
/// position: a token header or payload, metadata or a token endpoint's answer that is not an
/// object would pass as one.
///
/// The text is checked as UTF-8 once, whole: read as `&str`, serde_json then checks no string
/// again (read from bytes, it checks each string and each raw claim on its own, which costs a
/// token's payload several times more).
pub(crate) fn json_object<'a, T: Deserialize<'a>>(json: &'a [u8]) -> Result<T, serde_json::Error> {
    let text = std::str::from_utf8(json).map_err(|_| serde::de::Error::custom("not UTF-8"))?;
    match text.trim_start_matches([' ', '\t', '\n', '\r']).as_bytes().first() {
        Some(b'{') => serde_json::from_str(text),
        _ => Err(serde::de::Error::custom("not a JSON object")),
    }
}

/// The `kid` of a browser session's identity: no key signed it.
pub const SESSION_KID: &str = "session";

/// A token whose signature and claims passed every rule of its provider, or the identity of a
/// browser session (read like a token's claims).
#[derive(Debug)]
pub struct VerifiedToken {
    pub kid: Cow<'static, str>,
    /// `exp`, in seconds since the epoch.
    pub exp: u64,
    /// A session whose groups Graph answered: its `groups` are those, for this set and time.
    pub groups_answered: Option<GroupsAnswered>,
    /// The keys of Graph's answer for its group overage and of its tenant's app token, made once
    /// (a token is judged by one provider, whose cache keeps it).
    pub lookup_keys: OnceLock<([u8; 32], [u8; 32])>,
    /// Whether Entra left its groups out, read once.
    overage: OnceLock<bool>,
    /// This worker's copy of that answer (the members' bits) and until when it holds (ms), as
    /// the zone had it: the zone's answer stays as it is until then, so a repeated token needs
    /// no probe of the zone.
    pub answer_seen: Mutex<Option<([u8; 32], u64)>>,
    body: Body,
    /// The object ids among its groups, sorted: each value of a group requirement is looked up
    /// here, made once (a cached token or session keeps it).
    group_ids: OnceLock<Box<[[u8; 16]]>>,
    /// Every claim, parsed from the body the first time a requirement or a variable asks for
    /// one the body does not answer itself: a location that only needs a valid token never
    /// builds it.
    claims: OnceLock<Map<String, Value>>,
}

/// Where an identity's claims come from.
#[derive(Debug)]
enum Body {
    /// A token's decoded payload (JSON, UTF-8).
    Payload(Box<[u8]>),
    /// A browser session: its fields answer for the claims it keeps, its groups stay bytes.
    Session(Arc<Session>),
}

/// The token of an `Authorization: Bearer <token>` header value (scheme case-insensitive).
/// Another scheme (`Basic`, ...) is no token at all: it may be meant for another access module.
pub fn bearer_token(header: &[u8]) -> Result<&[u8], Denial> {
    let scheme_end = header.iter().position(|b| *b == b' ' || *b == b'\t').unwrap_or(header.len());
    if !header[..scheme_end].eq_ignore_ascii_case(b"bearer") {
        return Err(Denial::NoToken);
    }
    // Anything that is not one compact JWT (spaces, a second token) fails its parse.
    let token = header[scheme_end..].trim_ascii();
    if token.is_empty() {
        return Err(Denial::Malformed);
    }
    Ok(token)
}

impl VerifiedToken {
    fn with_body(kid: Cow<'static, str>, exp: u64, body: Body) -> VerifiedToken {
        VerifiedToken {
            kid,
            exp,
            groups_answered: None,
            lookup_keys: OnceLock::new(),
            answer_seen: Mutex::new(None),
            overage: OnceLock::new(),
            body,
            group_ids: OnceLock::new(),
            claims: OnceLock::new(),
        }
    }

    /// `payload`: the token's, UTF-8.
    pub(crate) fn new(kid: &str, exp: u64, payload: Vec<u8>) -> VerifiedToken {
        VerifiedToken::with_body(Cow::Owned(kid.to_owned()), exp, Body::Payload(payload.into()))
    }

    /// An identity with these claims (tests, and identities made elsewhere than a token).
    pub fn from_claims(kid: &str, exp: u64, claims: Map<String, Value>) -> VerifiedToken {
        let token = VerifiedToken::new(kid, exp, Vec::new());
        let _ = token.claims.set(claims);
        token
    }

    /// The identity of a browser session: no allocation per group or claim until a claim the
    /// session's fields do not answer is asked for.
    pub fn of_session(session: Arc<Session>) -> VerifiedToken {
        let (exp, answered) = (session.expires, session.groups_answered);
        let mut identity = VerifiedToken::with_body(Cow::Borrowed(SESSION_KID), exp, Body::Session(session));
        identity.groups_answered = answered;
        identity
    }

    /// The session this verified ID token signs in, at `now_ms` for `lifetime` seconds, keeping
    /// the top-level `claims` named (as JSON text).
    pub fn to_session(&self, now_ms: u64, lifetime: u64, claims: &[String]) -> Session {
        let (token, now) = (self, now_ms / 1000);
        let text = |name: &str| token.str(name).unwrap_or_default().to_owned();
        Session {
            token_version: if token.str("ver") == Some("1.0") { 1 } else { 2 },
            group_overage: token.has_group_overage(),
            unrecorded: false,
            signed_in: now_ms,
            expires: now.saturating_add(lifetime),
            revalidated: now,
            last_used: now,
            oid: text("oid"),
            tid: text("tid"),
            sub: text("sub"),
            sid: text("sid"),
            login_hint: text("login_hint"),
            name: text("name"),
            username: token.upn().unwrap_or_default().to_owned(),
            email: text("email"),
            groups: token.groups().collect(),
            roles: token.roles().map(str::to_owned).collect(),
            claims: claims
                .iter()
                .filter_map(|name| Some((name.clone(), token.claim(name)?.to_string())))
                .collect(),
            client_id: text("aud"),
            groups_answered: None,
            auth_contexts: auth_context_ids(token.auth_contexts()),
            auth_time: token.signin_time(),
        }
    }

    /// Every claim of the token.
    pub fn claims(&self) -> &Map<String, Value> {
        self.claims.get_or_init(|| match &self.body {
            // The payload parsed as a JSON object during verification, so this cannot fail.
            Body::Payload(payload) => serde_json::from_slice(payload).unwrap_or_default(),
            Body::Session(session) => session.claims(),
        })
    }

    /// The session whose own field answers for claim `name` (none when `session_claims` kept
    /// a claim of that name: it is read as it came).
    fn session_answering(&self, name: &str) -> Option<&Session> {
        match &self.body {
            Body::Session(session) if !session.claims.iter().any(|(kept, _)| kept == name) => Some(session),
            _ => None,
        }
    }

    pub fn claim(&self, name: &str) -> Option<&Value> {
        self.claims().get(name)
    }

    pub fn str(&self, name: &str) -> Option<&str> {
        match self.session_answering(name) {
            Some(session) => session.field(name),
            None => self.claim(name).and_then(Value::as_str),
        }
    }

    /// The strings of list claim `name`: the session's own (`kept`), or the JSON array's.
    fn list<'a, T>(
        &'a self,
        name: &str,
        kept: impl FnOnce(&'a Session) -> &'a [T],
    ) -> (&'a [T], impl Iterator<Item = &'a str>) {
        let (kept, json): (&[T], &[Value]) = match self.session_answering(name) {
            Some(session) => (kept(session), &[]),
            None => (&[], self.claim(name).and_then(Value::as_array).map_or(&[][..], Vec::as_slice)),
        };
        (kept, json.iter().filter_map(Value::as_str))
    }

    pub fn oid(&self) -> Option<&str> {
        self.str("oid")
    }

    pub fn tid(&self) -> Option<&str> {
        self.str("tid")
    }

    /// `preferred_username` (v2), else `upn` or `unique_name` (v1). For display only (rule 13).
    pub fn upn(&self) -> Option<&str> {
        self.str("preferred_username").or_else(|| self.str("upn")).or_else(|| self.str("unique_name"))
    }

    /// The calling client: `azp` (v2) or `appid` (v1).
    pub fn app_id(&self) -> Option<&str> {
        self.str("azp").or_else(|| self.str("appid"))
    }

    pub fn groups(&self) -> impl Iterator<Item = Group<'_>> {
        let (kept, json) = self.list("groups", |s| std::slice::from_ref(&s.groups));
        kept.iter().flat_map(Groups::iter).chain(json.map(Group::Name))
    }

    /// Whether it is in group `wanted` (compared without regard to case; `wanted_id` is its
    /// bytes when it is an object id): an object id by a binary search of the ids it holds, any
    /// other form by its text.
    pub fn has_group(&self, wanted: &str, wanted_id: Option<&[u8; 16]>) -> bool {
        match wanted_id {
            Some(id) => self.group_ids().binary_search(id).is_ok(),
            None => {
                self.groups().any(|g| matches!(g, Group::Name(name) if name.eq_ignore_ascii_case(wanted)))
            }
        }
    }

    fn group_ids(&self) -> &[[u8; 16]] {
        self.group_ids.get_or_init(|| {
            let mut ids: Vec<[u8; 16]> = self
                .groups()
                .filter_map(|g| match g {
                    Group::Id(bytes) => Some(bytes),
                    Group::Name(name) => guid_bytes(name),
                })
                .collect();
            ids.sort_unstable();
            ids.into()
        })
    }

    pub fn roles(&self) -> impl Iterator<Item = &str> {
        let (kept, json) = self.list("roles", |s| &s.roles);
        kept.iter().map(String::as_str).chain(json)
    }

    /// `acrs`: the authentication contexts the sign-in satisfied.
    pub fn auth_contexts(&self) -> impl Iterator<Item = &str> {
        let (kept, json) = self.list("acrs", |s| &s.auth_contexts);
        kept.iter().map(String::as_str).chain(json)
    }

    /// `auth_time`: when the user last authenticated (seconds), if a whole JSON number.
    pub fn signin_time(&self) -> Option<u64> {
        match self.session_answering("auth_time") {
            Some(session) => session.auth_time,
            None => self.claim("auth_time").and_then(Value::as_u64),
        }
    }

    /// A token an app got for itself (client credentials): no user, so no `scp`; Entra's
    /// optional claim `idtyp` says `app` too. A session's identity is always a user's.
    pub fn is_app_only(&self) -> bool {
        self.kid != SESSION_KID && (self.str("idtyp") == Some("app") || self.claim("scp").is_none())
    }

    /// Delegated scopes: `scp` is one space-separated string.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.str("scp").unwrap_or("").split_ascii_whitespace()
    }

    /// Entra left the groups out (rule 16): `_claim_names.groups`, or `hasgroups` in implicit flow.
    pub fn has_group_overage(&self) -> bool {
        *self.overage.get_or_init(|| {
            if let (Some(session), Some(_)) =
                (self.session_answering("_claim_names"), self.session_answering("hasgroups"))
            {
                return session.group_overage;
            }
            let named_elsewhere = self
                .claim("_claim_names")
                .and_then(Value::as_object)
                .is_some_and(|names| names.contains_key("groups"));
            named_elsewhere || self.claim("hasgroups") == Some(&Value::Bool(true))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sessions_identity_reads_its_fields_and_kept_claims_like_a_tokens() {
        let session = Session {
            token_version: 1,
            oid: "o".into(),
            username: "alice@contoso.example".into(),
            groups: ["0b9f3f6e-4a4c-4c1e-9a63-2f1d8f1b57e1", "Domain Users"].into_iter().collect(),
            roles: vec!["Orders.Read".into()],
            auth_contexts: vec!["c1".into(), "c25".into()],
            auth_time: Some(1_790_000_000),
            claims: vec![("department".into(), "\"Finance\"".into()), ("name".into(), "\"Kept\"".into())],
            name: "Field".into(),
            ..Session::default()
        };
        let identity = VerifiedToken::of_session(Arc::new(session));
        assert_eq!(identity.auth_contexts().collect::<Vec<_>>(), ["c1", "c25"]);
        assert_eq!(identity.signin_time(), Some(1_790_000_000));
        assert!(!identity.is_app_only(), "a session is a user's");
        assert_eq!(
            (identity.oid(), identity.upn(), identity.str("ver")),
            (Some("o"), Some("alice@contoso.example"), Some("1.0"))
        );
        assert_eq!(identity.str("tid"), None, "an empty field is no claim");
        assert_eq!(identity.str("name"), Some("Kept"), "a claim kept by session_claims is read as it came");
        assert_eq!(identity.str("department"), Some("Finance"));
        let groups: Vec<String> = identity.groups().map(|g| g.to_string()).collect();
        assert_eq!(groups, ["0b9f3f6e-4a4c-4c1e-9a63-2f1d8f1b57e1", "Domain Users"]);
        assert_eq!(
            identity.claim("groups").and_then(Value::as_array).map(Vec::len),
            Some(2),
            "the map, built when asked"
        );
        assert!(identity.roles().eq(["Orders.Read"]));
        assert_eq!(identity.scopes().count(), 0, "no scp");
    }
}
