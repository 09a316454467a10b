//! Group overage answered by Microsoft Graph (rule 16): which of the groups a configuration asks
//! about a user (or a service principal) is in, asked with the app's own credential.
//!
//! The parts without I/O (the Graph URL of a cloud, the set of groups asked, the forms and the
//! strict reading of both answers) and the blocking calls themselves, meant for a thread that is
//! not an nginx event loop: an app-only token from `{authority}/{tid}/oauth2/v2.0/token` with the
//! client-credentials grant, then `POST {graph}/v1.0/directoryObjects/{oid}/checkMemberGroups`
//! with at most 20 group ids per call. Never `getMemberGroups` of everything, and never the URL
//! of a token's `_claim_sources`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use crate::discovery::{agent, read_at_most};
use crate::group::Group;
use crate::oidc::ClientCredential;
use crate::token::{json_object, JsonStr};
use crate::values::is_guid;

/// Graph of the global cloud.
pub const GLOBAL_GRAPH: &str = "https://graph.microsoft.com";
/// Graph of the China cloud (21Vianet).
pub const CHINA_GRAPH: &str = "https://microsoftgraph.chinacloudapi.cn";
/// Groups one provider may ask Graph about: an answer is a bit per group.
pub const MAX_ASKED_GROUPS: usize = 256;
/// Group ids `checkMemberGroups` takes per call.
pub const GROUPS_PER_CALL: usize = 20;
/// The largest answer read from Graph or from the token endpoint.
pub const MAX_ANSWER_BYTES: u64 = 64 * 1024;
/// `groups_cache`'s default, in seconds.
pub const DEFAULT_GROUPS_CACHE: u64 = 600;
/// How long a "not found" (replication lag after the user was made) is remembered at most.
pub const NOT_FOUND_MEMORY: u64 = 60;
/// An app token is used until this long before it expires (seconds).
pub const TOKEN_MARGIN: u64 = 300;

/// Graph's base URL for the cloud of `authority`, when it has one answer: the global and the
/// China clouds. `None` for the US government clouds (GCC High and DoD use different Graph
/// hosts) and for any other authority: `graph_url` must say.
pub fn default_graph_url(authority: &str) -> Option<&'static str> {
    let host = authority.split("://").nth(1).unwrap_or("").split(['/', ':']).next().unwrap_or("");
    match host.to_ascii_lowercase().as_str() {
        "login.microsoftonline.com" => Some(GLOBAL_GRAPH),
        "login.partner.microsoftonline.cn" | "login.chinacloudapi.cn" => Some(CHINA_GRAPH),
        _ => None,
    }
}

/// The token endpoint of one tenant, for the client-credentials grant (a multi-tenant
/// provider's metadata names `organizations` or `common`, which that grant cannot use).
pub fn token_url(authority: &str, tid: &str) -> String {
    format!("{}/{tid}/oauth2/v2.0/token", authority.trim_end_matches('/'))
}

/// The groups a provider asks about: every `entra_require_group` value of the locations that use
/// it, lower-case, sorted, each once. An answer is a bit per group, in this order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Asked {
    groups: Vec<String>,
}

impl Asked {
    /// The set of `groups` (object ids; any other form can never be a Graph answer and is left
    /// out). `None` when there are more than [`MAX_ASKED_GROUPS`].
    pub fn new<'a>(groups: impl IntoIterator<Item = &'a str>) -> Option<Asked> {
        let mut groups: Vec<String> =
            groups.into_iter().filter(|g| is_guid(g)).map(str::to_ascii_lowercase).collect();
        groups.sort_unstable();
        groups.dedup();
        (groups.len() <= MAX_ASKED_GROUPS).then_some(Asked { groups })
    }

    pub fn groups(&self) -> &[String] {
        &self.groups
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// The position of `group` (any case), if it is asked: the ids as written in lower case (as
    /// Entra writes them) are found without folding.
    pub fn index_of(&self, group: &str) -> Option<usize> {
        match self.groups.binary_search_by(|g| g.as_str().cmp(group)) {
            Ok(index) => Some(index),
            Err(_) => self.groups.binary_search_by(|g| cmp_ignore_case(g, group)).ok(),
        }
    }

    /// What identifies the set in an answer's key and in a session: SHA-256 of the ids.
    pub fn digest(&self) -> [u8; 32] {
        let mut d = ring::digest::Context::new(&ring::digest::SHA256);
        for group in &self.groups {
            d.update(group.as_bytes());
            d.update(b"\n");
        }
        d.finish().as_ref().try_into().expect("SHA-256 is 32 bytes")
    }
}

fn cmp_ignore_case(lower: &str, other: &str) -> std::cmp::Ordering {
    lower.bytes().cmp(other.bytes().map(|b| b.to_ascii_lowercase()))
}

/// Which of the asked groups a user is in: a bit per group of an [`Asked`] set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Membership(pub [u8; MAX_ASKED_GROUPS / 8]);

impl Membership {
    pub fn contains(&self, index: usize) -> bool {
        index < MAX_ASKED_GROUPS && self.0[index / 8] & (1 << (index % 8)) != 0
    }

    fn insert(&mut self, index: usize) {
        self.0[index / 8] |= 1 << (index % 8);
    }

    /// The membership `groups` (object ids, any case) say, over `asked`; groups not asked are left out.
    pub fn of<'a>(asked: &Asked, groups: impl Iterator<Item = Group<'a>>) -> Membership {
        let mut membership = Membership::default();
        for index in groups.filter_map(|g| asked.index_of(&g.text())) {
            membership.insert(index);
        }
        membership
    }

    /// The asked groups the user is in, in the set's order.
    pub fn groups<'a>(&'a self, asked: &'a Asked) -> impl Iterator<Item = &'a str> {
        asked.groups.iter().enumerate().filter(|(i, _)| self.contains(*i)).map(|(_, g)| g.as_str())
    }

    /// Whether the user is in any of `wanted` (object ids, any case); groups not asked are not.
    pub fn has_any(&self, asked: &Asked, wanted: &[String]) -> bool {
        wanted.iter().filter_map(|w| asked.index_of(w)).any(|i| self.contains(i))
    }
}

/// Why Graph gave no membership. Never holds a token or a secret.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GraphError {
    /// The token endpoint refused the app (not consented in the tenant, a wrong credential):
    /// its HTTP status and, when it gave one, its AADSTS code.
    #[error("the token endpoint refused the app's credential (HTTP {status}{})", code.as_ref().map(|c| format!(", AADSTS{c}")).unwrap_or_default())]
    TokenRefused { status: u16, code: Option<u32> },
    /// Graph answered 403: the app lacks the permission (or its consent) for `checkMemberGroups`.
    #[error("Graph refused checkMemberGroups (HTTP 403): the app lacks GroupMember.Read.All and User.Read.All (application permissions, admin-consented)")]
    Forbidden,
    /// Graph answered 404: the object is not there (yet).
    #[error("Graph does not know the user (HTTP 404)")]
    NotFound,
    /// Graph refused the app token (401: expired early, revoked): the next lookup gets another.
    #[error("Graph refused the app token (HTTP 401)")]
    TokenNotAccepted,
    /// 429: asked to wait this many seconds.
    #[error("{at} answered 429 (retry after {retry_after} s)")]
    Throttled { at: &'static str, retry_after: u64 },
    /// Unreachable, too slow, or a 5xx.
    #[error("{0}")]
    Unavailable(String),
    /// An answer of the wrong shape or size.
    #[error("{at} gave an answer that is not one: {why}")]
    BadAnswer { at: &'static str, why: String },
}

/// An app-only token for Graph, and how long it holds (seconds).
#[derive(Clone, PartialEq, Eq)]
pub struct AppToken {
    pub token: String,
    pub expires_in: u64,
}

impl std::fmt::Debug for AppToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        write!(f, "AppToken(.., expires_in: {})", self.expires_in)
    }
}

/// The client-credentials form for an app-only token for `graph_url`.
pub fn app_token_form(client_id: &str, graph_url: &str, credential: ClientCredential) -> String {
    let scope = format!("{}/.default", graph_url.trim_end_matches('/'));
    let mut pairs = vec![("grant_type", "client_credentials"), ("client_id", client_id), ("scope", &scope)];
    crate::oidc::add_credential(&mut pairs, &credential);
    crate::oidc::form(&pairs)
}

/// Seconds of a `Retry-After` header (a number of seconds; a date, or nothing, counts as 60),
/// kept between 1 s and an hour.
pub fn retry_after(header: Option<&str>) -> u64 {
    header.and_then(|h| h.trim().parse::<u64>().ok()).unwrap_or(60).clamp(1, 3600)
}

#[derive(Deserialize)]
struct TokenAnswer<'a> {
    #[serde(borrow)]
    access_token: Option<JsonStr<'a>>,
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    error_codes: Option<Vec<serde_json::Value>>,
}

/// Reads the token endpoint's answer (`status`, `Retry-After`, body).
pub fn read_app_token(status: u16, retry: Option<&str>, body: &[u8]) -> Result<AppToken, GraphError> {
    const AT: &str = "the token endpoint";
    let bad = |why: &str| GraphError::BadAnswer { at: AT, why: why.to_owned() };
    let answer = json_object::<TokenAnswer>(body).ok();
    match status {
        200 => {
            let answer = answer.ok_or_else(|| bad("not a JSON object"))?;
            let token = answer.access_token.ok_or_else(|| bad("no access_token"))?;
            // Entra writes a number; older endpoints a string of one.
            let expires_in = match answer.expires_in {
                Some(serde_json::Value::Number(n)) => n.as_u64(),
                Some(serde_json::Value::String(s)) => s.parse().ok(),
                _ => None,
            }
            .ok_or_else(|| bad("no expires_in"))?;
            let printable =
                !token.is_empty() && token.len() <= 16 * 1024 && token.bytes().all(|b| b.is_ascii_graphic());
            if !printable {
                return Err(bad("the access_token is not a token"));
            }
            Ok(AppToken { token: token.to_string(), expires_in })
        }
        429 => Err(GraphError::Throttled { at: AT, retry_after: retry_after(retry) }),
        400..=499 => {
            let code = answer
                .and_then(|a| a.error_codes)
                .and_then(|codes| codes.first().and_then(serde_json::Value::as_u64))
                .and_then(|c| u32::try_from(c).ok());
            Err(GraphError::TokenRefused { status, code })
        }
        other => Err(GraphError::Unavailable(format!("{AT} answered HTTP {other}"))),
    }
}

/// The URL of `checkMemberGroups` for object `oid`.
pub fn member_groups_url(graph_url: &str, oid: &str) -> String {
    format!("{}/v1.0/directoryObjects/{oid}/checkMemberGroups", graph_url.trim_end_matches('/'))
}

/// The body of one `checkMemberGroups` call.
pub fn member_groups_body(groups: &[String]) -> String {
    serde_json::json!({ "groupIds": groups }).to_string()
}

#[derive(Deserialize)]
struct MemberGroups<'a> {
    #[serde(borrow)]
    value: Vec<JsonStr<'a>>,
}

/// Reads a `checkMemberGroups` answer to a call that asked `chunk` (part of `asked`, from
/// position `first`) into `into`. Anything else than a JSON object whose `value` is an array of
/// GUID strings, each among those asked and each once, is an error, never a membership.
pub fn read_member_groups(
    body: &[u8],
    asked: &Asked,
    chunk: std::ops::Range<usize>,
    into: &mut Membership,
) -> Result<(), GraphError> {
    const AT: &str = "Graph";
    let bad = |why: String| GraphError::BadAnswer { at: AT, why };
    if body.len() as u64 > MAX_ANSWER_BYTES {
        return Err(bad(format!("larger than {MAX_ANSWER_BYTES} bytes")));
    }
    let answer: MemberGroups = json_object(body).map_err(|e| bad(e.to_string()))?;
    if answer.value.len() > chunk.len() {
        return Err(bad("more groups than were asked".into()));
    }
    let mut found = Membership::default();
    for group in &answer.value {
        if !is_guid(group) {
            return Err(bad("a value that is not an object id".into()));
        }
        let index = asked.index_of(group).filter(|i| chunk.contains(i));
        let Some(index) = index else { return Err(bad("a group that was not asked".into())) };
        if found.contains(index) {
            return Err(bad("a group named twice".into()));
        }
        found.insert(index);
    }
    for index in chunk.filter(|i| found.contains(*i)) {
        into.insert(index);
    }
    Ok(())
}

/// Where and how to ask, for one provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphSettings {
    pub graph_url: String,
    /// `groups_cache`, in seconds: how long an answer (and a refused consent) holds.
    pub cache: u64,
    /// Trust store (the provider's `ca_file`); `None` is the system's.
    pub ca_file: Option<PathBuf>,
    /// Per phase of each request (`fetch_timeout`).
    pub timeout: Duration,
}

/// What the block's Graph lines said, before the defaults.
#[derive(Debug, Default)]
pub struct GraphConfig {
    /// `groups_from_graph`.
    pub enabled: Option<bool>,
    pub graph_url: Option<String>,
    /// `groups_cache`, in seconds.
    pub cache: Option<u64>,
    /// `groups_cache_entries`.
    pub entries: Option<u64>,
}

/// A provider's Graph lookups, when `groups_from_graph on`.
#[derive(Debug)]
pub struct Graph {
    pub settings: GraphSettings,
    /// `groups_cache_entries` as written (`None`: a share of the zone).
    pub entries: Option<u64>,
    /// The provider's app and authority: with `graph_url`, whose answers these are.
    pub client_id: String,
    pub authority: String,
    /// The groups asked and their digest, known once every location is merged.
    asked: std::sync::OnceLock<(Asked, [u8; 32])>,
}

/// What identifies an answer or a tenant's token in the shared zone.
pub type LookupKey = [u8; 32];

impl Graph {
    /// The groups asked (empty until the configuration's locations are all read).
    pub fn asked(&self) -> &Asked {
        static NONE: Asked = Asked { groups: Vec::new() };
        self.asked.get().map_or(&NONE, |(asked, _)| asked)
    }

    /// What a session keeps of the set asked: its digest's first 8 bytes.
    pub fn asked_prefix(&self) -> [u8; 8] {
        let digest = self.asked.get().map_or([0; 32], |(_, d)| *d);
        digest[..8].try_into().expect("8 bytes")
    }

    /// Sets the groups asked, once.
    pub fn set_asked(&self, asked: Asked) {
        let digest = asked.digest();
        let _ = self.asked.set((asked, digest));
    }

    fn key(&self, kind: &str, parts: &[&[u8]]) -> LookupKey {
        let mut d = ring::digest::Context::new(&ring::digest::SHA256);
        for part in [kind.as_bytes(), self.settings.graph_url.as_bytes(), self.client_id.as_bytes()]
            .into_iter()
            .chain([self.authority.as_bytes()])
            .chain(parts.iter().copied())
        {
            d.update(&(part.len() as u64).to_be_bytes());
            d.update(part);
        }
        d.finish().as_ref().try_into().expect("SHA-256 is 32 bytes")
    }

    /// The key of tenant `tid`'s app token (and of what its token endpoint said).
    pub fn tenant_key(&self, tid: &str) -> LookupKey {
        self.key("tenant", &[tid.as_bytes()])
    }

    /// The key of the answer for object `oid` of tenant `tid` about the groups asked.
    pub fn answer_key(&self, tid: &str, oid: &str) -> LookupKey {
        let digest = self.asked.get().map_or([0; 32], |(_, d)| *d);
        self.key("answer", &[tid.as_bytes(), oid.as_bytes(), &digest])
    }
}

impl GraphConfig {
    /// The provider's Graph lookups, or `None` when off. `authority` picks the default Graph
    /// URL; `credential` says whether the app has a credential to ask with.
    pub fn build(
        self,
        client_id: &str,
        authority: &str,
        credential: bool,
        ca_file: Option<PathBuf>,
        timeout: Duration,
    ) -> Result<Option<Graph>, crate::ConfigError> {
        use crate::ConfigError;
        if self.enabled != Some(true) {
            let set = [(self.graph_url.is_some(), "graph_url"), (self.cache.is_some(), "groups_cache")];
            let set = set.into_iter().chain([(self.entries.is_some(), "groups_cache_entries")]);
            return match set.into_iter().find(|(set, _)| *set) {
                Some((_, directive)) => Err(ConfigError::GraphOff(directive)),
                None => Ok(None),
            };
        }
        if !credential {
            return Err(ConfigError::GraphNeedsCredential);
        }
        let graph_url = match self.graph_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => default_graph_url(authority)
                .ok_or_else(|| ConfigError::GraphUrlRequired(authority.to_owned()))?
                .to_owned(),
        };
        Ok(Some(Graph {
            settings: GraphSettings {
                graph_url,
                cache: self.cache.unwrap_or(DEFAULT_GROUPS_CACHE),
                ca_file,
                timeout,
            },
            entries: self.entries,
            client_id: client_id.to_owned(),
            authority: authority.to_owned(),
            asked: std::sync::OnceLock::new(),
        }))
    }
}

/// POSTs `body` (of `content_type`) to `url`, with `bearer` if given: the status, the
/// `Retry-After` header and the body (at most [`MAX_ANSWER_BYTES`] + 1 bytes read).
fn post(
    settings: &GraphSettings,
    url: &str,
    content_type: &str,
    bearer: Option<&str>,
    body: &str,
) -> Result<(u16, Option<String>, Vec<u8>), GraphError> {
    let unavailable = |what: &dyn std::fmt::Display| GraphError::Unavailable(format!("{url}: {what}"));
    let agent = agent(&settings.ca_file, settings.timeout, 0, Some(settings.timeout * 2))
        .map_err(|e| unavailable(&e))?;
    let mut request =
        agent.post(url).header("Content-Type", content_type).header("Accept", "application/json");
    if let Some(token) = bearer {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    let mut response = request.send(body).map_err(|e| unavailable(&e))?;
    let status = response.status().as_u16();
    let retry = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let text = match read_at_most(&mut response, MAX_ANSWER_BYTES) {
        Ok(text) => text,
        Err(ureq::Error::BodyExceedsLimit(_)) => {
            return Err(GraphError::BadAnswer {
                at: "Graph",
                why: format!("larger than {MAX_ANSWER_BYTES} bytes"),
            })
        }
        Err(e) => return Err(unavailable(&e)),
    };
    Ok((status, retry, text))
}

/// Gets an app-only token for Graph at `token_url` with the client-credentials `form`.
pub fn fetch_app_token(
    settings: &GraphSettings,
    token_url: &str,
    form: &str,
) -> Result<AppToken, GraphError> {
    let (status, retry, body) = post(settings, token_url, "application/x-www-form-urlencoded", None, form)?;
    read_app_token(status, retry.as_deref(), &body)
}

/// Asks Graph which groups of `asked` object `oid` is in, [`GROUPS_PER_CALL`] at a time.
pub fn check_member_groups(
    settings: &GraphSettings,
    token: &str,
    oid: &str,
    asked: &Asked,
) -> Result<Membership, GraphError> {
    let url = member_groups_url(&settings.graph_url, oid);
    let mut membership = Membership::default();
    let total = asked.groups.len();
    for first in (0..total).step_by(GROUPS_PER_CALL) {
        let chunk = first..(first + GROUPS_PER_CALL).min(total);
        let body = member_groups_body(&asked.groups[chunk.clone()]);
        let (status, retry, answer) = post(settings, &url, "application/json", Some(token), &body)?;
        match status {
            200 => read_member_groups(&answer, asked, chunk, &mut membership)?,
            403 => return Err(GraphError::Forbidden),
            404 => return Err(GraphError::NotFound),
            401 => return Err(GraphError::TokenNotAccepted),
            429 => {
                return Err(GraphError::Throttled { at: "Graph", retry_after: retry_after(retry.as_deref()) })
            }
            other => return Err(GraphError::Unavailable(format!("Graph answered HTTP {other}"))),
        }
    }
    Ok(membership)
}

#[cfg(test)]
mod tests {
    use super::*;

    const G1: &str = "0b9f3f6e-4a4c-4c1e-9a63-2f1d8f1b57e1";
    const G2: &str = "5a1e0f3c-7b2d-4e6a-8c9f-1d3b5e7a9c20";

    #[test]
    fn the_cloud_decides_the_graph_url() {
        assert_eq!(default_graph_url("https://login.microsoftonline.com"), Some(GLOBAL_GRAPH));
        assert_eq!(default_graph_url("https://login.partner.microsoftonline.cn"), Some(CHINA_GRAPH));
        assert_eq!(default_graph_url("https://login.chinacloudapi.cn/"), Some(CHINA_GRAPH));
        assert_eq!(default_graph_url("https://login.microsoftonline.us"), None);
        assert_eq!(default_graph_url("http://127.0.0.1:1990"), None);
        assert_eq!(
            token_url("https://login.microsoftonline.com/", "t1"),
            "https://login.microsoftonline.com/t1/oauth2/v2.0/token"
        );
    }

    #[test]
    fn the_asked_set_is_object_ids_once_in_order() {
        let asked = Asked::new([G2, &G1.to_uppercase(), G1, "Dashboard-Users"]).unwrap();
        assert_eq!(asked.groups(), [G1, G2]);
        assert_eq!(asked.index_of(&G2.to_uppercase()), Some(1));
        assert_eq!(asked.index_of("Dashboard-Users"), None);
        assert_ne!(asked.digest(), Asked::new([G1]).unwrap().digest());
        let many: Vec<String> =
            (0..=MAX_ASKED_GROUPS).map(|i| format!("00000000-0000-0000-0000-{i:012}")).collect();
        assert!(Asked::new(many.iter().map(String::as_str)).is_none());
        assert!(Asked::new(many[..MAX_ASKED_GROUPS].iter().map(String::as_str)).is_some());
    }

    #[test]
    fn an_answer_names_only_groups_asked_once() {
        let asked = Asked::new([G1, G2]).unwrap();
        let mut m = Membership::default();
        read_member_groups(
            format!(r#"{{"value":["{}"]}}"#, G2.to_uppercase()).as_bytes(),
            &asked,
            0..2,
            &mut m,
        )
        .unwrap();
        assert_eq!(m.groups(&asked).collect::<Vec<_>>(), [G2]);
        assert!(m.has_any(&asked, &[G1.into(), G2.into()]) && !m.has_any(&asked, &[G1.into()]));
        for bad in [
            "[]".to_owned(),
            "not json".into(),
            r#"{"value":"x"}"#.into(),
            r#"{"value":[1]}"#.into(),
            r#"{"value":["not-a-guid"]}"#.into(),
            r#"{"value":["11111111-1111-1111-1111-111111111111"]}"#.into(),
            format!(r#"{{"value":["{G1}","{G1}"]}}"#),
            format!(r#"{{"value":["{G1}","{G2}","{G1}"]}}"#),
            format!(r#"{{"value":["{G1}"],"padding":"{}"}}"#, " ".repeat(MAX_ANSWER_BYTES as usize)),
        ] {
            let mut m = Membership::default();
            assert!(read_member_groups(bad.as_bytes(), &asked, 0..2, &mut m).is_err(), "{bad}");
            assert_eq!(m, Membership::default(), "{bad}");
        }
        // A group of another chunk is not among those this call asked.
        let mut m = Membership::default();
        assert!(
            read_member_groups(format!(r#"{{"value":["{G2}"]}}"#).as_bytes(), &asked, 0..1, &mut m).is_err()
        );
    }

    #[test]
    fn the_token_endpoint_answer_is_read_strictly() {
        let ok =
            read_app_token(200, None, br#"{"token_type":"Bearer","expires_in":3599,"access_token":"a.b.c"}"#);
        assert_eq!(ok.unwrap(), AppToken { token: "a.b.c".into(), expires_in: 3599 });
        assert_eq!(
            read_app_token(200, None, br#"{"expires_in":"60","access_token":"x"}"#).unwrap().expires_in,
            60
        );
        assert!(matches!(
            read_app_token(200, None, br#"{"access_token":"x"}"#),
            Err(GraphError::BadAnswer { .. })
        ));
        assert!(matches!(
            read_app_token(200, None, br#"{"expires_in":1,"access_token":"a b"}"#),
            Err(GraphError::BadAnswer { .. })
        ));
        let refused = read_app_token(400, None, br#"{"error":"invalid_client","error_codes":[7000229]}"#);
        assert_eq!(refused.unwrap_err(), GraphError::TokenRefused { status: 400, code: Some(7000229) });
        assert_eq!(
            read_app_token(401, None, b"<html>").unwrap_err(),
            GraphError::TokenRefused { status: 401, code: None }
        );
        assert_eq!(
            read_app_token(429, Some("7"), b"").unwrap_err(),
            GraphError::Throttled { at: "the token endpoint", retry_after: 7 }
        );
        assert!(matches!(read_app_token(503, None, b""), Err(GraphError::Unavailable(_))));
        assert_eq!(retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")), 60);
        assert_eq!(retry_after(Some("0")), 1);
    }

    #[test]
    fn the_forms_carry_the_scope_and_one_credential() {
        let form = app_token_form("cid", "https://graph.microsoft.com/", ClientCredential::Secret("s&t"));
        assert_eq!(form, "grant_type=client_credentials&client_id=cid&scope=https%3A%2F%2Fgraph.microsoft.com%2F.default&client_secret=s%26t");
        assert_eq!(member_groups_body(&[G1.to_owned()]), format!(r#"{{"groupIds":["{G1}"]}}"#));
        assert_eq!(
            member_groups_url("https://g/", "o"),
            "https://g/v1.0/directoryObjects/o/checkMemberGroups"
        );
    }
}
