//! What Entra's browser endpoints do, for the module's sign-in: the authorize endpoint (a page to
//! pick a demo user, or an auto-approve mode for tests, `prompt=none` answered from the IdP's own
//! sign-in cookie or with `login_required`), the token endpoint (the code once and within 10
//! minutes, the PKCE verifier, the redirect URI and the client secret or the signed assertion
//! checked; an ID token with `sid` and `login_hint`), and the end-session endpoint.
//!
//! Tests steer it through `/_admin/`: `approve?user=NAME[&groups=N]` (sign in at once as that
//! user, with N extra groups), `approve` alone (show the page again), `disable?user=NAME`,
//! `break?id_token=nonce|no_nonce|audience|issuer|expired|unsigned|unknown_key|overage` and
//! `break?authorize=ERROR` (the next answer only), `register?frontchannel_logout_uri=URL`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use ring::digest::{digest, SHA256};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{json, Value};

use crate::client_cert::SeenAssertions;
use crate::directory::{BIG_USER, USERS};
use crate::graph::{Graph, GRAPH_PATH};
use crate::http::{Reply, Request};
use crate::keystore::{KeyStore, DEV_CLIENT_SECRET};
use crate::mint::{guid_for, mint, MintOptions, Signing};
use crate::stepup::{asked_contexts, Issued, StepUp};

/// The IdP's sign-in cookie (its own session, for `prompt=none`).
const SIGNIN_COOKIE: &str = "idp_signin";
/// How long a code may be redeemed (seconds).
const CODE_LIFETIME: u64 = 600;

/// A code handed out, waiting for its exchange.
struct Grant {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    nonce: Option<String>,
    user: String,
    extra_groups: usize,
    sid: String,
    created: u64,
    redeemed: bool,
    /// How the user signed in: the contexts passed, and when.
    issued: Issued,
}

/// The browser side's state.
#[derive(Default)]
pub struct Browser {
    grants: Mutex<HashMap<String, Grant>>,
    /// Sign in at once as this user (with this many extra groups) instead of showing the page.
    approve: Mutex<Option<(String, usize)>>,
    disabled: Mutex<Vec<String>>,
    /// The next ID token is broken this way.
    break_id_token: Mutex<Option<String>>,
    /// The next authorize request is answered with this error.
    break_authorize: Mutex<Option<String>>,
    /// The app's front-channel logout URL.
    frontchannel: Mutex<Option<String>>,
    assertions: SeenAssertions,
    /// The Microsoft Graph stand-in (its client-credentials grant is the token endpoint's).
    pub graph: Graph,
    /// Authentication contexts and recent authentication.
    pub step_up: StepUp,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn random_text(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    let _ = SystemRandom::new().fill(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// What a query string leaves as it is, as browsers and Entra write it.
const QUERY: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

fn encode(s: &str) -> String {
    utf8_percent_encode(s, QUERY).to_string()
}

/// The values of a query string or form body, decoded; a name given twice keeps the first.
pub fn form(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
        out.entry(decode(name)).or_insert_with(|| decode(value));
    }
    out
}

fn cookie_value<'a>(header: Option<&'a str>, name: &str) -> Option<&'a str> {
    header?.split(';').find_map(|pair| pair.trim().strip_prefix(name)?.strip_prefix('='))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Browser {
    /// `/_admin/approve`, `disable`, `break`: `None` when the action is not the browser side's.
    pub fn admin(&self, action: &str, query: &HashMap<String, String>) -> Option<Value> {
        match action {
            "/_admin/approve" => {
                let groups = query.get("groups").and_then(|g| g.parse().ok()).unwrap_or(0);
                *lock(&self.approve) = query.get("user").map(|u| (u.clone(), groups));
            }
            "/_admin/disable" => lock(&self.disabled).extend(query.get("user").cloned()),
            "/_admin/register" => *lock(&self.frontchannel) = query.get("frontchannel_logout_uri").cloned(),
            "/_admin/step_up" => self.step_up.admin(query),
            "/_admin/break" => {
                *lock(&self.break_id_token) = query.get("id_token").cloned();
                *lock(&self.break_authorize) = query.get("authorize").cloned();
            }
            _ => return None,
        }
        Some(json!({ "ok": true }))
    }

    /// Clears the browser side's state (`/_admin/reset`).
    pub fn reset(&self) {
        lock(&self.grants).clear();
        *lock(&self.approve) = None;
        lock(&self.disabled).clear();
        *lock(&self.break_id_token) = None;
        *lock(&self.break_authorize) = None;
        *lock(&self.frontchannel) = None;
        self.graph.reset();
        self.step_up.reset();
    }

    /// The endpoints under `/{tenant}/oauth2/v2.0/`; `None` for another path.
    pub fn route(
        &self,
        store: &KeyStore,
        base_url: &str,
        tenant: &str,
        endpoint: &str,
        req: &Request,
    ) -> Option<Reply> {
        let prefix = format!("{base_url}/{tenant}/oauth2/v2.0");
        Some(match (req.method, endpoint) {
            ("GET", "authorize") => self.authorize(store, &prefix, req),
            ("GET", "authorize/pick") => self.pick(store, prefix.as_str(), req, false),
            ("GET", "authorize/mfa") => self.pick(store, prefix.as_str(), req, true),
            ("POST", "token") => {
                self.token(store, tenant, &format!("{prefix}/token"), &format!("{base_url}{GRAPH_PATH}"), req)
            }
            ("GET", "logout") => self.logout(req),
            _ => return None,
        })
    }

    fn authorize(&self, store: &KeyStore, prefix: &str, req: &Request) -> Reply {
        let q = form(req.query);
        let settings = store.settings();
        let fail =
            |why: &str| Reply::html(400, format!("<h1>Bad sign-in request</h1><p>{}</p>", escape(why)));
        let Some(redirect_uri) = q.get("redirect_uri") else { return fail("no redirect_uri") };
        if q.get("client_id") != Some(&settings.client_id) {
            return fail("unknown client_id");
        }
        if q.get("response_type").map(String::as_str) != Some("code") {
            return fail("response_type must be code");
        }
        if q.get("code_challenge_method").map(String::as_str) != Some("S256")
            || !q.contains_key("code_challenge")
        {
            return fail("PKCE with S256 is required");
        }
        if let Some(error) = lock(&self.break_authorize).take() {
            return self.back_with_error(redirect_uri, &q, &error);
        }
        self.step_up.record(&q);
        let asked = asked_contexts(q.get("claims"));
        let max_age = q.get("max_age").and_then(|a| a.parse().ok());
        let signed_in = cookie_value(req.cookie, SIGNIN_COOKIE).filter(|u| !u.is_empty()).map(str::to_owned);
        let approved = lock(&self.approve).clone();
        let hinted = q
            .get("login_hint")
            .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
            .and_then(|h| String::from_utf8(h).ok()?.strip_prefix("hint:").map(str::to_owned));
        let answer = match (q.get("prompt").map(String::as_str), signed_in, approved) {
            (Some("none"), Some(user), _) => {
                self.step_up.silent(&user, &asked, max_age).map(|issued| ((user, 0), issued))
            }
            (Some("none"), None, _) => Err("login_required".to_owned()),
            (_, _, Some(approved)) => {
                self.step_up.authenticate(&approved.0, &asked).map(|issued| (approved, issued))
            }
            // The user is known (login_hint): no picking; a context asked needs the second click.
            (_, _, None) if hinted.is_some() && !asked.is_empty() => {
                return second_factor_page(prefix, hinted.as_deref().unwrap_or(""), req.query)
            }
            _ => return choose_page(prefix, req.query),
        };
        match answer {
            Ok((user, issued)) => self.grant(redirect_uri, &q, user, issued),
            Err(error) => self.back_with_error(redirect_uri, &q, &error),
        }
    }

    /// The sign-in page's choice, `authorize/pick?user=NAME&<the authorize query>`, or the second
    /// click that stands for MFA (`authorize/mfa`, `second`), asked for when the request asks
    /// for an authentication context.
    fn pick(&self, store: &KeyStore, prefix: &str, req: &Request, second: bool) -> Reply {
        let q = form(req.query);
        let (Some(user), Some(redirect_uri)) = (q.get("user"), q.get("redirect_uri")) else {
            return Reply::html(400, "<h1>Bad choice</h1>".into());
        };
        if q.get("client_id") != Some(&store.settings().client_id) {
            return Reply::html(400, "<h1>Unknown client</h1>".into());
        }
        let asked = asked_contexts(q.get("claims"));
        if !second && !asked.is_empty() {
            let query: String =
                req.query.split('&').filter(|p| !p.starts_with("user=")).collect::<Vec<_>>().join("&");
            return second_factor_page(prefix, user, &query);
        }
        match self.step_up.authenticate(user, &asked) {
            Ok(issued) => self.grant(redirect_uri, &q, (user.clone(), 0), issued),
            Err(error) => self.back_with_error(redirect_uri, &q, &error),
        }
    }

    fn grant(
        &self,
        redirect_uri: &str,
        q: &HashMap<String, String>,
        (user, extra_groups): (String, usize),
        issued: Issued,
    ) -> Reply {
        if lock(&self.disabled).contains(&user) {
            return self.back_with_error(redirect_uri, q, "interaction_required");
        }
        let mut frontchannel = lock(&self.frontchannel);
        if frontchannel.is_none() {
            let origin_end =
                redirect_uri.find("://").and_then(|i| redirect_uri[i + 3..].find('/').map(|j| i + 3 + j));
            *frontchannel = origin_end.map(|end| format!("{}/.entra/logout", &redirect_uri[..end]));
        }
        drop(frontchannel);
        let code = random_text(32);
        let sid = guid_for(&format!("sid:{user}"));
        let grant = Grant {
            client_id: q.get("client_id").cloned().unwrap_or_default(),
            redirect_uri: redirect_uri.to_owned(),
            challenge: q.get("code_challenge").cloned().unwrap_or_default(),
            nonce: q.get("nonce").cloned(),
            user: user.clone(),
            extra_groups,
            sid,
            created: now(),
            redeemed: false,
            issued,
        };
        lock(&self.grants).insert(code.clone(), grant);
        let state = q.get("state").map(|s| format!("&state={}", encode(s))).unwrap_or_default();
        let mut reply = Reply::redirect(format!(
            "{redirect_uri}{}code={}{state}",
            separator(redirect_uri),
            encode(&code)
        ));
        // Lax: the IdP serves plain HTTP on loopback, where browsers drop SameSite=None cookies.
        reply.headers.push(("Set-Cookie", format!("{SIGNIN_COOKIE}={user}; Path=/; HttpOnly; SameSite=Lax")));
        reply
    }

    fn back_with_error(&self, redirect_uri: &str, q: &HashMap<String, String>, error: &str) -> Reply {
        let state = q.get("state").map(|s| format!("&state={}", encode(s))).unwrap_or_default();
        Reply::redirect(format!(
            "{redirect_uri}{}error={}&error_description={}{state}",
            separator(redirect_uri),
            encode(error),
            encode("<b>The development IdP says no</b>")
        ))
    }

    fn token(&self, store: &KeyStore, tenant: &str, endpoint: &str, graph_url: &str, req: &Request) -> Reply {
        let f = form(req.body);
        let refuse =
            |error: &str, why: &str| Reply::json(400, json!({ "error": error, "error_description": why }));
        let settings = store.settings();
        let grant_type = f.get("grant_type").map(String::as_str);
        if !matches!(grant_type, Some("authorization_code" | "client_credentials")) {
            return refuse("unsupported_grant_type", "only authorization_code and client_credentials");
        }
        if f.get("client_id") != Some(&settings.client_id) {
            return refuse("invalid_client", "unknown client_id");
        }
        // A signed assertion (private_key_jwt), or the client secret.
        match (f.get("client_assertion"), f.get("client_secret")) {
            (Some(assertion), None) => {
                let kind = f.get("client_assertion_type").map(String::as_str);
                if let Err(why) =
                    self.assertions.check(store.dir(), kind, assertion, &settings.client_id, endpoint)
                {
                    return refuse("invalid_client", &why);
                }
            }
            (None, Some(secret)) if secret == DEV_CLIENT_SECRET => {}
            _ => return refuse("invalid_client", "the client secret is wrong or missing"),
        }
        if grant_type == Some("client_credentials") {
            return self.graph.client_credentials(store, tenant, &f, graph_url);
        }
        let Some(code) = f.get("code") else { return refuse("invalid_request", "no code") };
        let mut grants = lock(&self.grants);
        let Some(grant) = grants.get_mut(code) else { return refuse("invalid_grant", "unknown code") };
        if grant.redeemed {
            return refuse("invalid_grant", "the code was redeemed already");
        }
        grant.redeemed = true;
        if now() > grant.created + CODE_LIFETIME {
            return refuse("invalid_grant", "the code has expired");
        }
        if grant.client_id != settings.client_id || f.get("redirect_uri") != Some(&grant.redirect_uri) {
            return refuse("invalid_grant", "the redirect_uri differs from the authorize request's");
        }
        let verifier = f.get("code_verifier").map(String::as_str).unwrap_or("");
        if URL_SAFE_NO_PAD.encode(digest(&SHA256, verifier.as_bytes())) != grant.challenge {
            return refuse("invalid_grant", "the code_verifier does not match the code_challenge");
        }
        match self.id_token(store, tenant, grant) {
            Ok(id_token) => Reply::json(
                200,
                json!({ "token_type": "Bearer", "expires_in": 3600, "id_token": id_token, "access_token": "not-kept" }),
            ),
            Err(e) => {
                Reply::json(500, json!({ "error": "server_error", "error_description": e.to_string() }))
            }
        }
    }

    fn id_token(&self, store: &KeyStore, tenant: &str, grant: &Grant) -> Result<String, crate::Error> {
        let (display, groups) = USERS
            .iter()
            .find(|(name, _, _)| *name == grant.user)
            .map(|(_, display, groups)| (display.to_string(), groups.iter().map(|g| g.to_string()).collect()))
            .unwrap_or_else(|| (grant.user.clone(), Vec::<String>::new()));
        let mut groups = groups;
        groups.extend((0..grant.extra_groups).map(|i| guid_for(&format!("group:{i}"))));
        // Past 200 groups Entra names none in the token: the app asks Graph.
        let overage = grant.user == BIG_USER;
        let settings = store.settings();
        let mut o = MintOptions {
            user: Some(grant.user.clone()),
            tenant: (tenant != "common" && tenant != "organizations").then(|| tenant.to_owned()),
            audience: Some(settings.client_id.clone()),
            groups: Some(groups),
            claims: vec![
                ("name".into(), json!(display)),
                ("sid".into(), json!(grant.sid)),
                ("login_hint".into(), json!(URL_SAFE_NO_PAD.encode(format!("hint:{}", grant.user)))),
            ],
            unset_claims: vec!["scp".into(), "azp".into(), "azpacr".into()],
            ..MintOptions::default()
        };
        o.overage = overage;
        if let Some(nonce) = &grant.nonce {
            o.claims.push(("nonce".into(), json!(nonce)));
        }
        if !grant.issued.acrs.is_empty() {
            o.claims.push(("acrs".into(), json!(grant.issued.acrs)));
        }
        if let Some(at) = grant.issued.auth_time {
            o.claims.push(("auth_time".into(), json!(at)));
        }
        match lock(&self.break_id_token).take().as_deref() {
            Some("nonce") => o.claims.push(("nonce".into(), json!("not-the-nonce"))),
            Some("no_nonce") => o.unset_claims.push("nonce".into()),
            Some("audience") => o.audience = Some("00000000-0000-0000-0000-000000000bad".into()),
            Some("issuer") => o.claims.push(("iss".into(), json!("https://evil.example/v2.0"))),
            Some("expired") => o.expires_in = Some(-3600),
            Some("unsigned") => o.signing = Signing::None,
            Some("unknown_key") => o.headers.push(("kid".into(), json!("no-such-key"))),
            Some("overage") => o.overage = true,
            _ => {}
        }
        mint(store, &o)
    }
}

fn separator(url: &str) -> char {
    if url.contains('?') {
        '&'
    } else {
        '?'
    }
}

/// The second step of a sign-in that asks for an authentication context: one more click, which
/// stands for the policy's MFA.
fn second_factor_page(prefix: &str, user: &str, query: &str) -> Reply {
    Reply::html(
        200,
        format!(
            "<!doctype html><title>Development IdP: verify</title><h1>Verify your identity</h1>\
             <p>This application asks for an authentication context (a Conditional Access policy, such as MFA).</p>\
             <p><a id=\"verify\" href=\"{prefix}/authorize/mfa?user={}&amp;{}\">Approve the sign-in as {}</a> \
             (this click stands for the second factor)</p>",
            encode(user),
            escape(query),
            escape(user)
        ),
    )
}

/// The page that lets a person pick a demo user.
fn choose_page(prefix: &str, query: &str) -> Reply {
    let links: String = USERS
        .iter()
        .map(|(name, display, groups)| {
            format!(
                "<li><a href=\"{prefix}/authorize/pick?user={name}&amp;{}\">Sign in as {display}</a> ({} groups)</li>",
                escape(query),
                groups.len()
            )
        })
        .collect();
    Reply::html(
        200,
        format!(
            "<!doctype html><title>Development IdP: sign in</title><h1>Sign in to the development IdP</h1>\
             <p>Pick a demo user:</p><ul>{links}</ul>"
        ),
    )
}

impl Browser {
    /// The end-session endpoint, as Entra's: forgets the IdP's own sign-in, loads the app's
    /// front-channel logout URL with the session's `sid` in a hidden iframe, then goes on to
    /// `post_logout_redirect_uri`. The front-channel URL is the one registered with
    /// `/_admin/register?frontchannel_logout_uri=URL`, else `/.entra/logout` on the origin of the
    /// last redirect URI seen.
    fn logout(&self, req: &Request) -> Reply {
        let q = form(req.query);
        let user = cookie_value(req.cookie, SIGNIN_COOKIE).filter(|u| !u.is_empty());
        let frontchannel = lock(&self.frontchannel).clone();
        let iframe = match (user, frontchannel) {
            (Some(user), Some(url)) => format!(
                "<iframe hidden src=\"{}{}sid={}\"></iframe>",
                escape(&url),
                separator(&url),
                encode(&guid_for(&format!("sid:{user}")))
            ),
            _ => String::new(),
        };
        let next = q.get("post_logout_redirect_uri").map(|uri| {
            format!(
                "<meta http-equiv=\"refresh\" content=\"1;url={}\"><a href=\"{0}\">Continue</a>",
                escape(uri)
            )
        });
        let mut reply = Reply::html(
            200,
            format!(
                "<!doctype html><title>Signed out</title><h1>You are signed out of the development IdP</h1>{iframe}{}",
                next.unwrap_or_default()
            ),
        );
        reply.headers.push(("Set-Cookie", format!("{SIGNIN_COOKIE}=; Path=/; Max-Age=0")));
        reply
    }
}
