//! A Microsoft Graph stand-in, for group overage: the client-credentials grant at the token
//! endpoint (an app-only token for Graph, with the permissions granted in `roles`, refused without
//! a valid client credential or in a tenant that never consented), and
//! `POST /graph/v1.0/directoryObjects/{oid}/checkMemberGroups`, which checks that token and
//! answers from the directory: the demo users, a user in 250 groups, and members set by tests.
//!
//! Tests steer it through `/_admin/graph`: `mode=normal|down|slow&ms=N|throttle&retry=N|
//! forbidden|not_found|garbage`, `user=NAME&groups=A,B` (that user's groups), `permissions=A,B`
//! (the app's granted permissions), `unconsented=TENANT`, `revoke` (the app tokens given so far
//! are refused); `/_admin/stats` counts Graph calls (and
//! the most answered at once), app token requests per tenant and requests to `/_claim_source/`
//! (where tests point `_claim_sources`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::directory::{big_user_groups, BIG_USER, USERS};
use crate::http::{Reply, Request};
use crate::keystore::KeyStore;
use crate::mint::{guid_for, mint, MintOptions};

/// The application permissions `checkMemberGroups` on other users needs.
pub const PERMISSIONS: [&str; 2] = ["GroupMember.Read.All", "User.Read.All"];
/// Where Graph is served on the IdP.
pub const GRAPH_PATH: &str = "/graph";
/// How long an app token holds (seconds).
const APP_TOKEN_LIFETIME: u64 = 3600;

/// How Graph answers, for tests of the module's failure handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GraphMode {
    #[default]
    Normal,
    /// Close the connection without an answer.
    Down,
    /// Answer after this many milliseconds.
    Slow(u64),
    /// 429 with `Retry-After` of this many seconds.
    Throttle(u64),
    /// 403: the app lacks the permission.
    Forbidden,
    /// 404: the object is not there.
    NotFound,
    /// A 200 answer that is none.
    Garbage,
}

struct Issued {
    roles: Vec<String>,
    expires: u64,
}

/// The Graph stand-in's state.
#[derive(Default)]
pub struct Graph {
    mode: Mutex<GraphMode>,
    issued: Mutex<HashMap<String, Issued>>,
    /// Groups by object id, set by tests (beside the demo users').
    members: Mutex<HashMap<String, Vec<String>>>,
    /// The app's granted permissions (`None`: [`PERMISSIONS`]).
    granted: Mutex<Option<Vec<String>>>,
    unconsented: Mutex<Vec<String>>,
    calls: AtomicU64,
    /// Calls being answered now, and the most at once since the last reset.
    in_flight: AtomicU64,
    most_in_flight: AtomicU64,
    app_tokens: Mutex<HashMap<String, u64>>,
    claim_source: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn graph_error(status: u16, code: &str, message: &str) -> Reply {
    Reply::json(status, json!({ "error": { "code": code, "message": message } }))
}

impl Graph {
    /// `/_admin/graph`.
    pub fn admin(&self, query: &HashMap<String, String>) -> Value {
        let number =
            |name: &str, default: u64| query.get(name).and_then(|v| v.parse().ok()).unwrap_or(default);
        if let Some(mode) = query.get("mode") {
            *lock(&self.mode) = match mode.as_str() {
                "down" => GraphMode::Down,
                "slow" => GraphMode::Slow(number("ms", 3000)),
                "throttle" => GraphMode::Throttle(number("retry", 30)),
                "forbidden" => GraphMode::Forbidden,
                "not_found" => GraphMode::NotFound,
                "garbage" => GraphMode::Garbage,
                _ => GraphMode::Normal,
            };
        }
        let list = |v: &String| v.split(',').filter(|g| !g.is_empty()).map(str::to_owned).collect::<Vec<_>>();
        if let Some(user) = query.get("user") {
            let groups = query.get("groups").map(list).unwrap_or_default();
            lock(&self.members).insert(guid_for(user), groups);
        }
        if let Some(permissions) = query.get("permissions") {
            *lock(&self.granted) = Some(list(permissions));
        }
        if let Some(tenant) = query.get("unconsented") {
            lock(&self.unconsented).push(tenant.clone());
        }
        if query.contains_key("revoke") {
            // Every app token given so far: Graph refuses them (401) from now on.
            lock(&self.issued).clear();
        }
        self.stats()
    }

    pub fn stats(&self) -> Value {
        json!({
            "calls": self.calls.load(Ordering::SeqCst),
            "app_tokens": *lock(&self.app_tokens),
            "claim_source": self.claim_source.load(Ordering::SeqCst),
            "most_in_flight": self.most_in_flight.load(Ordering::SeqCst),
            "mode": format!("{:?}", *lock(&self.mode)),
        })
    }

    pub fn reset(&self) {
        *lock(&self.mode) = GraphMode::Normal;
        lock(&self.issued).clear();
        lock(&self.members).clear();
        *lock(&self.granted) = None;
        lock(&self.unconsented).clear();
        self.calls.store(0, Ordering::SeqCst);
        self.most_in_flight.store(0, Ordering::SeqCst);
        lock(&self.app_tokens).clear();
        self.claim_source.store(0, Ordering::SeqCst);
    }

    /// A request to `/_claim_source/...`: counted (the module must never make one).
    pub fn claim_source(&self) -> Reply {
        self.claim_source.fetch_add(1, Ordering::SeqCst);
        graph_error(404, "Request_ResourceNotFound", "the retired Azure AD Graph")
    }

    /// The client-credentials grant at tenant `tenant`'s token endpoint, its client already
    /// authenticated; `form` is the request's form. `graph_url` is where this IdP serves Graph.
    pub fn client_credentials(
        &self,
        store: &KeyStore,
        tenant: &str,
        form: &HashMap<String, String>,
        graph_url: &str,
    ) -> Reply {
        let refuse = |status: u16, error: &str, code: u32, why: &str| {
            Reply::json(
                status,
                json!({ "error": error, "error_description": format!("AADSTS{code}: {why}"), "error_codes": [code] }),
            )
        };
        if matches!(tenant, "common" | "organizations" | "consumers") {
            return refuse(400, "invalid_request", 90009, "the client-credentials grant needs a tenant");
        }
        let scope = form.get("scope").map(String::as_str).unwrap_or("");
        if scope != format!("{graph_url}/.default") && scope != "https://graph.microsoft.com/.default" {
            return refuse(400, "invalid_scope", 70011, "the scope must be Graph's /.default");
        }
        *lock(&self.app_tokens).entry(tenant.to_owned()).or_insert(0) += 1;
        if lock(&self.unconsented).iter().any(|t| t == tenant) {
            return refuse(
                400,
                "unauthorized_client",
                700016,
                "the application was not found in the directory",
            );
        }
        let roles = lock(&self.granted).clone().unwrap_or_else(|| PERMISSIONS.map(str::to_owned).to_vec());
        let options = MintOptions {
            app: Some("graph-reader".into()),
            tenant: Some(tenant.to_owned()),
            audience: Some(graph_url.to_owned()),
            roles: Some(roles.clone()),
            expires_in: Some(APP_TOKEN_LIFETIME as i64),
            ..MintOptions::default()
        };
        match mint(store, &options) {
            Ok(token) => {
                lock(&self.issued)
                    .insert(token.clone(), Issued { roles, expires: now() + APP_TOKEN_LIFETIME });
                Reply::json(
                    200,
                    json!({ "token_type": "Bearer", "expires_in": APP_TOKEN_LIFETIME, "access_token": token }),
                )
            }
            Err(e) => {
                Reply::json(500, json!({ "error": "server_error", "error_description": e.to_string() }))
            }
        }
    }

    /// `POST {GRAPH_PATH}/v1.0/directoryObjects/{oid}/checkMemberGroups`; `None` drops the
    /// connection (Graph is "down"), and any other path is 404.
    pub fn route(&self, req: &Request) -> Option<Reply> {
        let rest = req.path.strip_prefix(GRAPH_PATH).unwrap_or("");
        let oid =
            rest.strip_prefix("/v1.0/directoryObjects/").and_then(|r| r.strip_suffix("/checkMemberGroups"));
        let (Some(oid), "POST") = (oid, req.method) else {
            return Some(graph_error(404, "Request_ResourceNotFound", "no such Graph resource here"));
        };
        self.calls.fetch_add(1, Ordering::SeqCst);
        let now_in_flight = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_flight.fetch_max(now_in_flight, Ordering::SeqCst);
        let reply = self.answer(req, oid);
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        reply
    }

    /// A `checkMemberGroups` call's answer, as the mode says.
    fn answer(&self, req: &Request, oid: &str) -> Option<Reply> {
        // Copied out: the lock is not held while a slow answer sleeps.
        let mode = *lock(&self.mode);
        match mode {
            GraphMode::Down => return None,
            GraphMode::Slow(ms) => thread::sleep(Duration::from_millis(ms)),
            GraphMode::Throttle(seconds) => {
                let mut reply = graph_error(429, "TooManyRequests", "throttled");
                reply.headers.push(("Retry-After", seconds.to_string()));
                return Some(reply);
            }
            GraphMode::Forbidden => {
                return Some(graph_error(403, "Authorization_RequestDenied", "Insufficient privileges"))
            }
            GraphMode::NotFound => {
                return Some(graph_error(404, "Request_ResourceNotFound", "no such object"))
            }
            GraphMode::Garbage => return Some(Reply::json(200, json!({ "value": "not a list of groups" }))),
            GraphMode::Normal => {}
        }
        let token = req.authorization.and_then(|h| h.strip_prefix("Bearer ")).unwrap_or("");
        let roles = match lock(&self.issued).get(token) {
            Some(issued) if issued.expires > now() => issued.roles.clone(),
            _ => return Some(graph_error(401, "InvalidAuthenticationToken", "no valid app token")),
        };
        if !PERMISSIONS.iter().all(|p| roles.iter().any(|r| r == p)) {
            return Some(graph_error(403, "Authorization_RequestDenied", "Insufficient privileges"));
        }
        let asked: Vec<String> = match serde_json::from_str::<Value>(req.body) {
            Ok(body) => match body["groupIds"].as_array() {
                Some(ids) if ids.len() <= 20 => {
                    ids.iter().filter_map(Value::as_str).map(str::to_owned).collect()
                }
                _ => return Some(graph_error(400, "Request_BadRequest", "groupIds: 1 to 20 ids")),
            },
            Err(_) => return Some(graph_error(400, "Request_BadRequest", "not JSON")),
        };
        let Some(groups) = self.groups_of(oid) else {
            return Some(graph_error(404, "Request_ResourceNotFound", "no such object"));
        };
        let member: Vec<&String> =
            asked.iter().filter(|a| groups.iter().any(|g| g.eq_ignore_ascii_case(a))).collect();
        Some(Reply::json(
            200,
            json!({ "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(Edm.String)", "value": member }),
        ))
    }

    /// The groups of object `oid`: set by a test, a demo user's, or the big user's.
    fn groups_of(&self, oid: &str) -> Option<Vec<String>> {
        if let Some(groups) = lock(&self.members).get(oid) {
            return Some(groups.clone());
        }
        if oid == guid_for(BIG_USER) {
            return Some(big_user_groups());
        }
        USERS
            .iter()
            .find(|(name, _, _)| guid_for(name) == oid)
            .map(|(_, _, groups)| groups.iter().map(|g| g.to_string()).collect())
    }
}
