//! Browser sign-in with one provider: its settings (`client_secret_file`, `redirect_uri`,
//! `session_*`, ...), and the steps of the code flow that need no I/O: the redirect to the
//! authorize endpoint with its sealed transaction cookie, the callback matched to its
//! transaction, and the session sealed into its cookies and opened again.
//!
//! The module calls these from the access phase and the callback handler; the code exchange
//! itself is [`crate::exchange`], on a thread of its own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ring::rand::SystemRandom;
use thiserror::Error;

use crate::assertion::ClientCertificate;
use crate::browser::{transaction_slot, LazyHeaders, TRANSACTION_COOKIES};
use crate::cache::TokenCache;
use crate::cookie::{self, Chunks, CookieLines, Found, Jar};
use crate::error::Denial;
use crate::oidc::{
    Attempt, Callback, ClientCredential, Transaction, INTERACTION_NEEDED, TRANSACTION_LIFETIME,
};
use crate::revocation::SessionKeys;
use crate::seal::{OpenError, Purpose, SealKeys};
use crate::session::{self, Freshness, GroupsAnswered, Session, Standing};
use crate::stepup::{claims_request, ClaimsFor, StepUp};
use crate::token::VerifiedToken;

pub const DEFAULT_REDIRECT_URI: &str = "/.entra/callback";
pub const DEFAULT_FRONTCHANNEL_LOGOUT_URI: &str = "/.entra/logout";
pub const DEFAULT_SCOPES: &str = "openid profile email";
/// The session cookie's default name on HTTPS; plain `entra` without TLS, where browsers refuse
/// the `__Host-` prefix.
pub const DEFAULT_COOKIE: &str = "__Host-entra";
const PLAIN_COOKIE: &str = "entra";
/// `session_lifetime`'s default: a working day.
pub const DEFAULT_LIFETIME: u64 = 8 * 3600;
/// `callbacks_per_minute`'s default: a browser makes one per sign-in.
pub const DEFAULT_CALLBACKS_PER_MINUTE: u64 = 60;

/// How the module proves it is the app at the token endpoint.
pub enum Credential {
    /// `client_secret_file`'s content.
    Secret(String),
    /// `client_certificate`: a signed assertion per exchange.
    Certificate(Box<ClientCertificate>),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        match self {
            Credential::Secret(_) => f.write_str("Secret(..)"),
            Credential::Certificate(c) => c.fmt(f),
        }
    }
}

/// What the block's sign-in lines said, before the defaults.
#[derive(Debug, Default)]
pub struct SignInConfig {
    pub credential: Option<Credential>,
    pub redirect_uri: Option<String>,
    pub scopes: Option<String>,
    pub keys: Option<SealKeys>,
    pub cookie: Option<String>,
    pub lifetime: Option<u64>,
    pub idle_timeout: Option<u64>,
    pub revalidate: Option<u64>,
    pub claims: Vec<String>,
    pub post_logout_redirect: Option<String>,
    pub frontchannel_logout_uri: Option<String>,
    pub session_record: Option<u64>,
    /// `callbacks_per_minute`: `Some(None)` is `off`.
    pub callbacks_per_minute: Option<Option<u64>>,
}

/// Where Entra sends the browser back: a path on the server that was asked, or an absolute URL
/// that may name `$host`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectUri {
    template: String,
    /// The path the module answers on (compared with every request's).
    path: String,
}

impl RedirectUri {
    pub fn new(value: &str) -> RedirectUri {
        let path = match value.split_once("://") {
            Some((_, rest)) => rest.find('/').map_or("/", |at| &rest[at..]),
            None => value,
        };
        RedirectUri { template: value.to_owned(), path: path.to_owned() }
    }

    /// The path the module answers on.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// `true` when the URI itself says HTTPS (a TLS-terminating load balancer in front).
    pub fn is_https(&self) -> bool {
        self.template.starts_with("https://")
    }

    /// The exact URI for a request: a path completed with the connection's scheme and the `Host`
    /// header as sent (port included); `$host` in an absolute one replaced by the request's host.
    pub fn resolve(&self, scheme: &str, host_header: &str, host: &str) -> String {
        if self.template.contains("://") {
            self.template.replace("$host", host)
        } else {
            format!("{scheme}://{host_header}{}", self.template)
        }
    }
}

/// A provider's sign-in settings, with their defaults.
#[derive(Debug)]
pub struct SignIn {
    /// The provider's name (`entra_provider NAME`): sealed values open only for it.
    pub provider: String,
    pub credential: Option<Credential>,
    pub redirect_uri: RedirectUri,
    pub scopes: String,
    /// `session_key_file`: the first key seals, all open.
    pub keys: Option<SealKeys>,
    /// `session_cookie` as written, if it was.
    cookie: Option<String>,
    /// `session_lifetime`, in seconds.
    pub session_lifetime: u64,
    /// What else decides whether a session still holds.
    pub freshness: Freshness,
    /// `session_claims`: extra top-level claims kept in the session.
    pub claims: Vec<String>,
    pub post_logout_redirect: Option<String>,
    pub frontchannel_logout_uri: String,
    /// `session_record`: sessions recorded for single sign-out (`None`: a share of the zone).
    pub session_record: Option<u64>,
    /// `callbacks_per_minute`: callbacks one client address may make (`None`: off).
    pub callbacks_per_minute: Option<u64>,
    /// Sessions opened in this worker, by their cookie (`token_cache` sizes it; off turns it off).
    cache: TokenCache<OpenedSession>,
    /// Sessions are named in the fleet's store too (set once the http block is parsed).
    fleet: core::sync::atomic::AtomicBool,
}

/// A session cookie opened once: the session, and the identity requirements and variables read.
#[derive(Debug)]
pub struct OpenedSession {
    pub session: Arc<Session>,
    /// Its keys in the records of sessions (made once when it opened).
    pub keys: SessionKeys,
    pub identity: Arc<VerifiedToken>,
    /// Opened under the HTTPS cookie name (a value is only valid under the name it was sealed
    /// for: the cache, keyed by the value alone, checks this on a hit).
    secure: bool,
}

impl SignInConfig {
    /// The settings of provider `provider` with their defaults; `cache` opened sessions kept
    /// per worker.
    pub fn build(self, provider: &str, cache: usize) -> SignIn {
        SignIn {
            provider: provider.to_owned(),
            credential: self.credential,
            redirect_uri: RedirectUri::new(self.redirect_uri.as_deref().unwrap_or(DEFAULT_REDIRECT_URI)),
            scopes: self.scopes.unwrap_or_else(|| DEFAULT_SCOPES.to_owned()),
            keys: self.keys,
            cookie: self.cookie,
            session_lifetime: self.lifetime.unwrap_or(DEFAULT_LIFETIME),
            freshness: Freshness { idle_timeout: self.idle_timeout, revalidate: self.revalidate },
            claims: self.claims,
            post_logout_redirect: self.post_logout_redirect,
            frontchannel_logout_uri: self
                .frontchannel_logout_uri
                .unwrap_or_else(|| DEFAULT_FRONTCHANNEL_LOGOUT_URI.to_owned()),
            session_record: self.session_record,
            callbacks_per_minute: self.callbacks_per_minute.unwrap_or(Some(DEFAULT_CALLBACKS_PER_MINUTE)),
            cache: TokenCache::new(cache),
            fleet: core::sync::atomic::AtomicBool::new(false),
        }
    }
}

/// Bytes (`name=value` each) and number of the request's cookies named `name`.
fn carried_bytes(cookies: &Jar, name: &str) -> (usize, usize) {
    cookies
        .pairs()
        .iter()
        .filter(|(n, _)| *n == name.as_bytes())
        .fold((0, 0), |(bytes, count), (n, v)| (bytes + n.len() + 1 + v.len(), count + 1))
}

/// A transaction cookie a request carries.
struct Carried {
    index: usize,
    /// When its attempt began (0: it does not open).
    created: u64,
    /// Its `name=value` bytes.
    bytes: usize,
}

/// Why a session cookie counts as no session; the log says which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SessionFault {
    #[error("{0}")]
    Open(#[from] OpenError),
    #[error("its content is not a session of this version")]
    Undecodable,
    #[error("a cookie of the session is sent twice")]
    Duplicated,
}

/// One `Set-Cookie` value the module adds.
pub type SetCookie = String;

/// The redirect that starts a sign-in.
#[derive(Debug)]
pub struct Start {
    pub location: String,
    pub cookie: SetCookie,
    /// Deletions of older transaction cookies that would pass the cookie budget.
    pub clear: Vec<SetCookie>,
}

/// Why no sign-in attempt could start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum StartError {
    #[error("{0}")]
    Keys(#[from] OpenError),
    /// Even returning to `/`, the transaction would pass its size (a `Host` header that long).
    #[error("the sign-in attempt would not fit its cookie (the Host header is too long)")]
    TooLarge,
}

/// A callback matched to its transaction: what the code exchange needs.
#[derive(Debug)]
pub struct Matched {
    pub code: String,
    pub transaction: Transaction,
    /// The slot of the transaction cookie the callback used, and its deletion.
    pub slot: usize,
    pub clear: SetCookie,
}

/// A callback that cannot go on, with the cookies to clear.
#[derive(Debug)]
pub struct Refused {
    pub denial: Denial,
    /// Entra's error code (`idp_error`), or what was wrong with the callback, for the log.
    pub detail: String,
    pub clear: Vec<SetCookie>,
    /// What the browser is answered with.
    pub next: Next,
}

/// How a refused callback is answered.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// A page that says why.
    Page,
    /// A silent revalidation that needs the user: one interactive attempt for this return URL.
    AskUser(String),
    /// A silent revalidation that asked for the session's authentication contexts and needs the
    /// user: the session drops its contexts and goes back to this location (whose navigation
    /// revalidates again, asking for none).
    DropContexts(String),
}

/// What a new sign-in attempt is.
#[derive(Debug, Clone, Default)]
pub struct AttemptKind<'a> {
    /// Extra authorize parameters (`prompt`, `login_hint`).
    pub extra: Vec<(&'a str, &'a str)>,
    /// A silent revalidation of the session of this `oid` and `tid`.
    pub revalidating: Option<(String, String)>,
    /// What the attempt asks beyond a sign-in, checked at its callback.
    pub step_up: StepUp,
}

impl SignIn {
    /// The session cookie's name: as configured, else `__Host-entra` on HTTPS and `entra`
    /// without it.
    pub fn cookie_name(&self, secure: bool) -> &str {
        match &self.cookie {
            Some(name) => name,
            None if secure => DEFAULT_COOKIE,
            None => PLAIN_COOKIE,
        }
    }

    /// Whether a session keeps the top-level claim `name` (for `entra_require_claim`).
    pub fn keeps_claim(&self, name: &str) -> bool {
        crate::session::KEPT_CLAIMS.contains(&name) || self.claims.iter().any(|c| c == name)
    }

    /// `true` when `session_cookie` was written.
    pub fn has_cookie_name(&self) -> bool {
        self.cookie.is_some()
    }

    fn transaction_name(&self, secure: bool, index: usize) -> String {
        format!("{}-t{index}", self.cookie_name(secure))
    }

    /// Associated data of a sealed value: the cookie's name, the provider and the format version,
    /// so a value opens neither under another name nor for another provider.
    fn aad(&self, name: &str, version: u8) -> Vec<u8> {
        [name.as_bytes(), b"\0", self.provider.as_bytes(), b"\0", &[version]].concat()
    }

    fn keys(&self) -> Result<&SealKeys, OpenError> {
        self.keys.as_ref().ok_or(OpenError::UnknownKey)
    }

    /// A new sign-in attempt: the authorize URL and its sealed transaction cookie, which takes a
    /// name absent from the request's cookies, else the oldest one's. The return URL is kept as
    /// long as the cookie stays within [`cookie::MAX_TRANSACTION_BYTES`], else its path, else
    /// `/`; older transactions are cleared, oldest first, while the session and transaction
    /// cookies would pass [`cookie::COOKIE_BUDGET`].
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        &self,
        client_id: &str,
        authorize_endpoint: &str,
        redirect_uri: String,
        return_url: String,
        cookies: &Jar,
        secure: bool,
        kind: AttemptKind,
        now: u64,
        random: &SystemRandom,
    ) -> Result<Start, StartError> {
        let keys = self.keys()?;
        let transactions = self.transactions(cookies, secure);
        let created: [Option<u64>; TRANSACTION_COOKIES] =
            core::array::from_fn(|i| transactions.iter().find(|t| t.index == i).map(|t| t.created));
        let index = transaction_slot(created);
        let attempt = Attempt::new(random);
        let location = crate::oidc::authorize_url(
            authorize_endpoint,
            client_id,
            &redirect_uri,
            &self.scopes,
            &attempt,
            &kind.extra,
        );
        let name = self.transaction_name(secure, index);
        let path = return_url.split('?').next().unwrap_or("/").to_owned();
        let mut transaction = Transaction {
            attempt,
            redirect_uri,
            return_url,
            created: now,
            revalidating: kind.revalidating,
            step_up: kind.step_up,
        };
        let aad = self.aad(&name, crate::oidc::TRANSACTION_VERSION);
        // The return URL as it is, then its path, then `/`, until the cookie fits its size.
        let mut shorter = [path, "/".to_owned()].into_iter();
        let sealed = loop {
            let plain = transaction.encode().map_err(|_| StartError::TooLarge)?;
            let sealed = keys.seal(Purpose::Transaction, &aad, &plain);
            if name.len() + 1 + sealed.len() <= cookie::MAX_TRANSACTION_BYTES {
                break sealed;
            }
            transaction.return_url = shorter.next().ok_or(StartError::TooLarge)?;
        };
        let incoming = name.len() + 1 + sealed.len();
        let clear = self.over_budget(
            transactions,
            secure,
            self.session_bytes(cookies, secure),
            Some(index),
            incoming,
        );
        Ok(Start {
            location,
            cookie: cookie::set_cookie(&name, &sealed, secure, Some(TRANSACTION_LIFETIME)),
            clear,
        })
    }

    /// The transaction cookies a request carries: slot, creation time (0 when it does not open
    /// or its name is sent twice) and bytes (`name=value`, with the `; ` between doubles).
    fn transactions(&self, cookies: &Jar, secure: bool) -> Vec<Carried> {
        (0..TRANSACTION_COOKIES)
            .filter_map(|index| {
                let name = self.transaction_name(secure, index);
                let created = match cookies.find(&name) {
                    Found::One(value) => self.open_transaction(secure, index, value).map_or(0, |t| t.created),
                    Found::Twice => 0,
                    Found::Absent => return None,
                };
                let (bytes, count) = carried_bytes(cookies, &name);
                Some(Carried { index, created, bytes: bytes + 2 * count.saturating_sub(1) })
            })
            .collect()
    }

    /// Bytes of the session cookies a request carries (`name=value`, with the `; ` between).
    fn session_bytes(&self, cookies: &Jar, secure: bool) -> usize {
        let name = self.cookie_name(secure);
        let (bytes, count) = (0..cookie::MAX_CHUNKS)
            .map(|i| carried_bytes(cookies, &cookie::chunk_name(name, i)))
            .fold((0, 0), |(b, c), (bytes, count)| (b + bytes, c + count));
        bytes + 2 * count.saturating_sub(1)
    }

    /// Deletions of the `carried` transaction cookies, oldest first, that keep the session's
    /// cookies (`session_bytes`), the other transactions and an `incoming` cookie (`name=value`;
    /// 0 for none) within [`cookie::COOKIE_BUDGET`]. `replaced`: the slot the incoming one takes
    /// over, or the one a callback used up (gone either way).
    fn over_budget(
        &self,
        carried: Vec<Carried>,
        secure: bool,
        session_bytes: usize,
        replaced: Option<usize>,
        incoming: usize,
    ) -> Vec<SetCookie> {
        let mut kept: Vec<Carried> = carried.into_iter().filter(|t| Some(t.index) != replaced).collect();
        kept.sort_by_key(|t| std::cmp::Reverse(t.created));
        let total = |kept: &[Carried]| {
            let parts =
                [session_bytes, incoming].into_iter().filter(|b| *b > 0).chain(kept.iter().map(|t| t.bytes));
            let (sum, count) = parts.fold((0, 0), |(sum, count), b| (sum + b, count + 1));
            sum + 2 * (count as usize).saturating_sub(1)
        };
        let mut clear = Vec::new();
        while total(&kept) > cookie::COOKIE_BUDGET {
            let Some(oldest) = kept.pop() else { break };
            clear.push(cookie::set_cookie(&self.transaction_name(secure, oldest.index), "", secure, Some(0)));
        }
        clear
    }

    fn open_transaction(&self, secure: bool, index: usize, value: &[u8]) -> Option<Transaction> {
        let name = self.transaction_name(secure, index);
        let aad = self.aad(&name, crate::oidc::TRANSACTION_VERSION);
        let plain = self.keys().ok()?.open(Purpose::Transaction, &aad, value).ok()?;
        Transaction::decode(&plain).ok()
    }

    /// Matches a callback's query to the transaction cookie whose state it names. A cookie
    /// name sent twice (planted by a sibling subdomain) is used by nobody and cleared.
    pub fn callback(&self, query: &str, cookies: &Jar, secure: bool, now: u64) -> Result<Matched, Refused> {
        let mut clear = Vec::new();
        let mut transactions = Vec::new();
        for index in 0..TRANSACTION_COOKIES {
            let name = self.transaction_name(secure, index);
            match cookies.find(&name) {
                Found::One(value) => transactions.push((index, value)),
                Found::Twice => clear.push(cookie::set_cookie(&name, "", secure, Some(0))),
                Found::Absent => {}
            }
        }
        let refuse = |denial: Denial, detail: String, clear: Vec<SetCookie>| Refused {
            denial,
            detail,
            clear,
            next: Next::Page,
        };
        let (code, state) = match Callback::parse(query) {
            Ok(Callback::Code { code, state }) => (code, state),
            Ok(Callback::Error { error, state }) => {
                // The attempt is over either way: its cookie goes.
                let (mut next, mut denial) = (Next::Page, Denial::IdpError(error == "access_denied"));
                for (index, value) in &transactions {
                    let Some(t) = self.open_transaction(secure, *index, value) else { continue };
                    if Some(&t.attempt.state) == state.as_ref() {
                        let name = self.transaction_name(secure, *index);
                        clear.push(cookie::set_cookie(&name, "", secure, Some(0)));
                        let needs_user = INTERACTION_NEEDED.contains(&error.as_str());
                        if t.revalidating.is_some() && needs_user && t.step_up.kept_contexts {
                            next = Next::DropContexts(t.return_location());
                        } else if t.revalidating.is_some() && needs_user {
                            next = Next::AskUser(t.return_url);
                        } else if let Some(unmet) =
                            t.step_up.refused().filter(|_| needs_user || error == "access_denied")
                        {
                            // Entra would not step up (the user could not pass the policy):
                            // a page that says what was asked, never another attempt.
                            denial = unmet;
                        }
                    }
                }
                let shown: String =
                    error.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(64).collect();
                return Err(Refused { next, ..refuse(denial, shown, clear) });
            }
            Err(e) => return Err(refuse(Denial::StateMismatch, e.to_string(), clear)),
        };
        for (index, value) in transactions {
            let Some(transaction) = self.open_transaction(secure, index, value) else { continue };
            if transaction.attempt.state != state {
                continue;
            }
            let name = self.transaction_name(secure, index);
            let clear_used = cookie::set_cookie(&name, "", secure, Some(0));
            if !transaction.is_fresh(now) {
                clear.push(clear_used);
                return Err(refuse(
                    Denial::StateMismatch,
                    "the sign-in attempt is over 10 minutes old".into(),
                    clear,
                ));
            }
            if !crate::oidc::is_local_path(&transaction.return_url) {
                clear.push(clear_used);
                return Err(refuse(
                    Denial::StateMismatch,
                    "the return URL is not a local path".into(),
                    clear,
                ));
            }
            return Ok(Matched { code, transaction, slot: index, clear: clear_used });
        }
        Err(refuse(
            Denial::StateMismatch,
            "no transaction cookie of this browser has that state".into(),
            clear,
        ))
    }

    /// The client credential's form for one code exchange at `token_endpoint`.
    pub fn client_credential<'a>(
        &'a self,
        client_id: &str,
        token_endpoint: &str,
        now: u64,
        random: &SystemRandom,
        assertion: &'a mut String,
    ) -> Option<ClientCredential<'a>> {
        match self.credential.as_ref()? {
            Credential::Secret(secret) => Some(ClientCredential::Secret(secret)),
            Credential::Certificate(certificate) => {
                *assertion = certificate.assertion(client_id, token_endpoint, now, random);
                Some(ClientCredential::Assertion(assertion))
            }
        }
    }

    /// The `Set-Cookie` values that store `session`: its chunks, and deletions of the chunks a
    /// larger session had. `Err` when it does not fit.
    pub fn session_cookies(
        &self,
        session: &Session,
        cookies: &Jar,
        secure: bool,
    ) -> Result<Vec<SetCookie>, Denial> {
        let keys = self.keys().map_err(|_| Denial::SessionTooLarge)?;
        let name = self.cookie_name(secure);
        let plain = session.encode().map_err(|_| Denial::SessionTooLarge)?;
        let sealed = keys.seal(Purpose::Session, &self.aad(name, session::FORMAT_VERSION), &plain);
        let chunks = cookie::split(name, &sealed).map_err(|_| Denial::SessionTooLarge)?;
        let mut out: Vec<SetCookie> =
            chunks.iter().map(|(chunk, value)| cookie::set_cookie(chunk, value, secure, None)).collect();
        for index in chunks.len()..cookie::MAX_CHUNKS {
            let stale = cookie::chunk_name(name, index);
            if cookies.has(&stale) {
                out.push(cookie::set_cookie(&stale, "", secure, Some(0)));
            }
        }
        Ok(out)
    }

    /// Deletions of the transaction cookies left (the callback's own, `used`, goes anyway) that
    /// would make a new session's cookies (`session`, as set) pass the cookie budget.
    pub fn fit_with_session(
        &self,
        cookies: &Jar,
        secure: bool,
        session: &[SetCookie],
        used: usize,
    ) -> Vec<SetCookie> {
        let chunks: Vec<usize> = session
            .iter()
            .filter(|c| !c.ends_with("Max-Age=0"))
            .map(|c| c.split(';').next().unwrap_or("").len())
            .collect();
        let bytes = chunks.iter().sum::<usize>() + 2 * chunks.len().saturating_sub(1);
        self.over_budget(self.transactions(cookies, secure), secure, bytes, Some(used), 0)
    }

    /// Deletions of every session and transaction cookie the request carries.
    pub fn clear_all(&self, cookies: &Jar, secure: bool) -> Vec<SetCookie> {
        self.clear(cookies, secure, true)
    }

    /// Deletions of the session's cookies (its chunks, not the transactions) the request carries.
    pub fn clear_session(&self, cookies: &Jar, secure: bool) -> Vec<SetCookie> {
        self.clear(cookies, secure, false)
    }

    fn clear(&self, cookies: &Jar, secure: bool, transactions: bool) -> Vec<SetCookie> {
        let name = self.cookie_name(secure);
        let attempts = if transactions { TRANSACTION_COOKIES } else { 0 };
        (0..cookie::MAX_CHUNKS)
            .map(|i| cookie::chunk_name(name, i))
            .chain((0..attempts).map(|i| self.transaction_name(secure, i)))
            .filter(|n| cookies.has(n))
            .map(|n| cookie::set_cookie(&n, "", secure, Some(0)))
            .collect()
    }

    /// The request's session cookie, as its chunks: `None` when it has none.
    pub fn session_cookie<'j>(
        &self,
        cookies: &Jar<'j>,
        secure: bool,
    ) -> Option<Result<Chunks<'j>, SessionFault>> {
        let name = self.cookie_name(secure);
        match cookies.find(name) {
            Found::Absent => None,
            Found::Twice => Some(Err(SessionFault::Duplicated)),
            Found::One(_) => Some(cookies.chunks(name).ok_or(SessionFault::Duplicated)),
        }
    }

    /// Names the sessions of this provider in the fleet's store too (`entra_shared_store`).
    pub fn name_in_fleet(&self) {
        self.fleet.store(true, core::sync::atomic::Ordering::Relaxed);
    }

    /// What names `session` in the records: its local key, and with a fleet its names there.
    pub fn keys_of(&self, session: &Session) -> SessionKeys {
        let fleet = match (&self.keys, self.fleet.load(core::sync::atomic::Ordering::Relaxed)) {
            (Some(keys), true) => keys.fleet_keys(&self.provider, &session.identity_bytes()),
            _ => Vec::new(),
        };
        SessionKeys { record: session.record_key(), fleet }
    }

    /// Opens a reassembled session cookie.
    pub fn open_session(&self, sealed: &[u8], secure: bool) -> Result<Session, SessionFault> {
        let aad = self.aad(self.cookie_name(secure), session::FORMAT_VERSION);
        let plain = self.keys()?.open(Purpose::Session, &aad, sealed)?;
        Session::decode(plain).map_err(|_| SessionFault::Undecodable)
    }

    /// Opens a session cookie, or finds it opened before in this worker (the whole cookie
    /// compared, chunk by chunk, never past the session's expiry: a hit allocates nothing).
    /// `None` in the answer's second place: a cache hit; else how long opening took.
    pub fn open_cached(
        &self,
        sealed: &Chunks,
        secure: bool,
        now: u64,
    ) -> (Result<Arc<OpenedSession>, SessionFault>, Option<Duration>) {
        if let Some(hit) = self.cache.get(sealed.parts(), now).filter(|hit| hit.secure == secure) {
            return (Ok(hit), None);
        }
        let started = Instant::now();
        let opened = self.open_session(&sealed.joined(), secure).map(|session| {
            let session = Arc::new(session);
            let identity = Arc::new(VerifiedToken::of_session(session.clone()));
            let expires = session.expires;
            let keys = self.keys_of(&session);
            let opened = Arc::new(OpenedSession { session, keys, identity, secure });
            self.cache.insert(sealed.parts(), opened.clone(), expires, now);
            opened
        });
        (opened, Some(started.elapsed()))
    }
}

impl SignIn {
    /// The request's session re-sealed with Graph's answer to its group overage: `groups` (the
    /// asked groups the user is in), for the set and as of the time `answered` says.
    pub fn reseal_groups<'g>(
        &self,
        request: &SessionRequest,
        answered: GroupsAnswered,
        groups: impl Iterator<Item = &'g str>,
    ) -> Vec<SetCookie> {
        self.reseal(request, |session| {
            session.groups = groups.collect();
            session.groups_answered = Some(answered);
        })
    }

    /// The request's session re-sealed without its authentication contexts (Entra would not
    /// grant them again silently): the next navigation that needs one steps up.
    pub fn drop_auth_contexts(&self, request: &SessionRequest) -> Vec<SetCookie> {
        self.reseal(request, |session| session.auth_contexts.clear())
    }

    /// The request's session re-sealed as `change` makes it. Empty when the session does not
    /// open or no longer fits its cookies (the change then holds for this request only).
    fn reseal(&self, request: &SessionRequest, change: impl FnOnce(&mut Session)) -> Vec<SetCookie> {
        let Some(opened) = self.session_of(request) else { return Vec::new() };
        let mut session = Session::clone(&opened.session);
        change(&mut session);
        let secure = self.is_secure(request.tls);
        self.session_cookies(&session, &request.jar(), secure).unwrap_or_default()
    }

    /// The request's session cookie, opened (or found opened in this worker), if it opens.
    pub fn session_of(&self, request: &SessionRequest) -> Option<Arc<OpenedSession>> {
        let secure = self.is_secure(request.tls);
        let sealed = self.session_cookie(&request.jar(), secure)?.ok()?;
        self.open_cached(&sealed, secure, request.now).0.ok()
    }
}

/// What browser sign-in reads of a request: the glue's view of it.
#[derive(Debug, Clone)]
pub struct SessionRequest<'a> {
    /// The value of each `Cookie` line, in order.
    pub cookie_lines: CookieLines<'a>,
    pub headers: LazyHeaders<'a>,
    /// The connection is TLS.
    pub tls: bool,
    // The three below are read as text only when needed (a redirect, a cross-origin check).
    /// The `Host` header as sent (port included).
    pub host_header: &'a [u8],
    /// The host nginx validated (no port, lowercase): `$host`.
    pub host: &'a [u8],
    /// The path and query as the client sent them: where a sign-in returns to.
    pub unparsed_uri: &'a [u8],
    /// Now, in seconds.
    pub now: u64,
}

impl<'a> SessionRequest<'a> {
    /// The request's cookies.
    pub fn jar(&self) -> Jar<'a> {
        Jar::parse(self.cookie_lines.iter().copied())
    }
}

/// Bytes of a request as text; empty when they are not UTF-8.
fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or("")
}

/// Where a sign-in starts: the app's client id and the provider's authorize endpoint.
#[derive(Debug, Clone)]
pub struct Authorize<'a> {
    pub client_id: &'a str,
    pub endpoint: String,
}

/// What a sign-in redirect does with the session cookies the request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leftover {
    Keep,
    /// Clears them (a session that did not open, or that another user's sign-in ends).
    Clear,
}

/// A redirect that starts a sign-in: where to, and the cookies it sets (its transaction cookie,
/// and the session cookies it clears).
#[derive(Debug)]
pub struct Redirect {
    pub location: String,
    pub set_cookies: Vec<SetCookie>,
}

/// What [`SignIn::hold`] found of an opened session.
struct Held {
    verdict: Result<Arc<VerifiedToken>, Denial>,
    /// The session re-sealed with this request as its last use.
    touched: Vec<SetCookie>,
    /// A navigation due for revalidation.
    revalidate: bool,
}

/// How a session cookie was opened, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opening {
    /// `None`: found opened in this worker's cache; else how long opening took.
    pub took: Option<Duration>,
    pub accepted: bool,
}

/// The verdict on a request's session, with what the answer must carry.
#[derive(Debug)]
pub struct SessionJudgment {
    pub verdict: Result<Arc<VerifiedToken>, Denial>,
    /// Cookies to set with the answer (a session in use re-sealed).
    pub set_cookies: Vec<SetCookie>,
    /// A navigation whose session is due for revalidation: the silent sign-in to answer with
    /// (`prompt=none`, with the session's `login_hint`).
    pub revalidation: Option<Result<Redirect, StartError>>,
    /// The request carried a session cookie: how it opened.
    pub opening: Option<Opening>,
    /// Why the cookie did not open, for the log.
    pub fault: Option<SessionFault>,
}

impl SignIn {
    /// Cookies are `Secure` (and `__Host-` by default) when the connection is TLS or the
    /// redirect URI says `https://` (TLS ends at a load balancer in front).
    pub fn is_secure(&self, tls: bool) -> bool {
        tls || self.redirect_uri.is_https()
    }

    /// `scheme://host[:port]` of a request, as the browser sees it.
    pub fn own_origin(&self, tls: bool, host_header: &str) -> String {
        let scheme = if self.is_secure(tls) { "https" } else { "http" };
        format!("{scheme}://{host_header}")
    }

    /// Judges a request's session cookie, opened or found opened in this worker's cache. A
    /// cookie that does not open is no session (the fault says why); `admits` says whether an
    /// opened session still holds (the provider's rules now, the record of sessions ended),
    /// asked on every request like the session's times; a
    /// session in use with an idle timeout is re-sealed at most once a minute; a session from
    /// another site that would change something is refused. A navigation due for revalidation
    /// gets its silent sign-in, once `authorize` (asked only then) knows where; when it cannot
    /// say, the session is stale.
    pub fn judge_session<'p>(
        &self,
        request: &SessionRequest,
        authorize: impl FnOnce() -> Option<Authorize<'p>>,
        admits: impl FnOnce(&Session, &SessionKeys) -> Result<(), Denial>,
    ) -> SessionJudgment {
        let mut judgment = SessionJudgment {
            verdict: Err(Denial::NoSession),
            set_cookies: Vec::new(),
            revalidation: None,
            opening: None,
            fault: None,
        };
        let jar = request.jar();
        let secure = self.is_secure(request.tls);
        let Some(sealed) = self.session_cookie(&jar, secure) else { return judgment };
        let (opened, took) = match sealed {
            Ok(sealed) => self.open_cached(&sealed, secure, request.now),
            Err(fault) => (Err(fault), Some(Duration::ZERO)),
        };
        judgment.opening = Some(Opening { took, accepted: opened.is_ok() });
        let opened = match opened {
            Ok(opened) => opened,
            Err(fault) => {
                judgment.fault = Some(fault);
                judgment.verdict = Err(Denial::SessionInvalid);
                return judgment;
            }
        };
        let held = self.hold(&opened, request, &jar, admits);
        (judgment.verdict, judgment.set_cookies) = (held.verdict, held.touched);
        if !held.revalidate {
            return judgment;
        }
        // The endpoint is looked up only for the rare session due for revalidation. Without
        // one (a subrequest, which cannot redirect, or no metadata yet) the session is stale:
        // it is never let in unrevalidated.
        let Some(authorize) = authorize() else {
            judgment.verdict = Err(Denial::SessionStale);
            judgment.set_cookies.clear();
            return judgment;
        };
        let session = &opened.session;
        // The contexts it holds are asked again: Entra answers interaction_required when its
        // policy wants the user once more.
        let contexts: Vec<&str> = session.auth_contexts.iter().map(String::as_str).collect();
        let claims = (!contexts.is_empty()).then(|| claims_request(ClaimsFor::IdToken, &contexts));
        let mut kind = AttemptKind {
            extra: vec![("prompt", "none"), ("login_hint", &session.login_hint)],
            revalidating: Some((session.oid.clone(), session.tid.clone())),
            step_up: StepUp { kept_contexts: claims.is_some(), ..StepUp::default() },
        };
        kind.extra.extend(claims.as_deref().map(|claims| ("claims", claims)));
        let random = SystemRandom::new();
        judgment.revalidation = Some(self.redirect(request, authorize, kind, None, Leftover::Keep, &random));
        judgment
    }

    /// Whether an opened session holds for this request.
    fn hold(
        &self,
        opened: &OpenedSession,
        request: &SessionRequest,
        jar: &Jar,
        admits: impl FnOnce(&Session, &SessionKeys) -> Result<(), Denial>,
    ) -> Held {
        let session = &opened.session;
        let mut held = Held { verdict: Err(Denial::NoSession), touched: Vec::new(), revalidate: false };
        if let Err(denial) = admits(session, &opened.keys) {
            held.verdict = Err(denial);
            return held;
        }
        let headers = &request.headers;
        match session.standing(request.now, self.freshness, || headers.all().is_navigation()) {
            Err(denial) => {
                held.verdict = Err(denial);
                return held;
            }
            Ok(Standing::Valid { touch: true }) => {
                let touched = Session { last_used: request.now, ..Session::clone(session) };
                if let Ok(cookies) = self.session_cookies(&touched, jar, opened.secure) {
                    held.touched = cookies;
                }
            }
            Ok(Standing::Revalidate) => held.revalidate = true,
            Ok(Standing::Valid { touch: false }) => {}
        }
        let own_origin = || self.own_origin(request.tls, text(request.host_header));
        held.verdict = if headers.may_change_something() && headers.all().is_cross_origin(&own_origin()) {
            // Refused: its use is no use, and nothing is re-sealed for another site's request.
            held.touched.clear();
            Err(Denial::CrossOrigin)
        } else {
            Ok(opened.identity.clone())
        };
        held
    }

    /// The redirect that starts a sign-in for `request`, returning to `return_url` (the
    /// request's own by default).
    pub fn redirect(
        &self,
        request: &SessionRequest,
        authorize: Authorize,
        kind: AttemptKind,
        return_url: Option<String>,
        leftover: Leftover,
        random: &SystemRandom,
    ) -> Result<Redirect, StartError> {
        let jar = request.jar();
        let secure = self.is_secure(request.tls);
        let scheme = if secure { "https" } else { "http" };
        let started = self.start(
            authorize.client_id,
            &authorize.endpoint,
            self.redirect_uri.resolve(scheme, text(request.host_header), text(request.host)),
            return_url.unwrap_or_else(|| crate::oidc::return_url(text(request.unparsed_uri))),
            &jar,
            secure,
            kind,
            request.now,
            random,
        )?;
        let mut set_cookies = vec![started.cookie];
        set_cookies.extend(started.clear);
        if leftover == Leftover::Clear {
            set_cookies.extend(self.clear_session(&jar, secure));
        }
        Ok(Redirect { location: started.location, set_cookies })
    }
}
