//! Serves the IdP's metadata documents and key set over HTTP and HTTPS on loopback, with
//! controls for tests under `/_admin/`: `stats` (requests counted for key sets and metadata),
//! `reset`, `rotate`, `publish` (hidden keys), `open?gate=NAME`, `hold?path=PART` and `release`
//! (see [`Control`]), `graph?...` (the Graph stand-in, [`crate::graph`]), and `mode?set=normal|down|slow&ms=N|garbage&kind=text|empty|huge|gzip|padded&bytes=N`.
//!
//! Paths follow Entra's: `/{tenant}/v2.0/.well-known/openid-configuration`,
//! `/{tenant}/.well-known/openid-configuration`, `/{tenant}/discovery/v2.0/keys` and
//! `/{tenant}/discovery/keys`. The state directory is read on every request, so a `rotate`
//! from the command line shows at once. `/redirect?to=URL` answers with a redirect to URL, for
//! the test that the module follows none.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};

use crate::browser::{self, Browser};
use crate::graph::GRAPH_PATH;
use crate::http::{Reply, Request};
use crate::keystore::{KeyKind, KeyStore};
use crate::tls;
use crate::Error;

/// What a path resolves to: a status and a JSON body.
pub fn route(store: &KeyStore, base_url: &str, path: &str) -> (u16, Value) {
    let path_and_query = path;
    let path = path.split('?').next().unwrap_or("");
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let settings = store.settings();
    let tenant_ok = |t: &str| t == settings.tenant || matches!(t, "common" | "organizations");
    let issuer_tid = |t: &str| {
        if t == settings.tenant {
            t.to_owned()
        } else {
            "{tenantid}".to_owned()
        }
    };
    let keys = || store.jwks().unwrap_or_else(|e| json!({"error": e.to_string()}));
    match segments.as_slice() {
        [t, "v2.0", ".well-known", "openid-configuration"] if tenant_ok(t) => (
            200,
            json!({
                "issuer": format!("{}/{}/v2.0", settings.authority, issuer_tid(t)),
                "jwks_uri": format!("{base_url}/{t}/discovery/v2.0/keys{}", gate_query(path_and_query)),
                "authorization_endpoint": format!("{base_url}/{t}/oauth2/v2.0/authorize"),
                "token_endpoint": format!("{base_url}/{t}/oauth2/v2.0/token"),
                "end_session_endpoint": format!("{base_url}/{t}/oauth2/v2.0/logout"),
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token"],
                "subject_types_supported": ["pairwise"],
            }),
        ),
        [t, ".well-known", "openid-configuration"] if tenant_ok(t) => (
            200,
            json!({
                "issuer": format!("https://sts.windows.net/{}/", issuer_tid(t)),
                "jwks_uri": format!("{base_url}/{t}/discovery/keys{}", gate_query(path_and_query)),
                "authorization_endpoint": format!("{base_url}/{t}/oauth2/authorize"),
                "token_endpoint": format!("{base_url}/{t}/oauth2/token"),
                "id_token_signing_alg_values_supported": ["RS256"],
            }),
        ),
        [t, "discovery", "v2.0", "keys"] | [t, "discovery", "keys"] if tenant_ok(t) => (200, keys()),
        _ => (404, json!({"error": "not_found", "path": path})),
    }
}

/// How the IdP answers, set through `/_admin/mode`, for tests of the module's failure handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// Close every connection without an answer.
    Down,
    /// Answer after this many milliseconds.
    Slow(u64),
    /// Answer key-set requests with something that is not a usable key set.
    Garbage(Garbage),
    /// Pad every JSON document (metadata, key sets, token endpoint answers) with trailing spaces
    /// to this many bytes: still the same document, for tests of the size limits.
    Padded(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Garbage {
    /// Not JSON.
    Text,
    /// A key set with no keys.
    Empty,
    /// A key set of 4 MiB.
    Huge,
    /// Gzip content encoding the client never asked for.
    Gzip,
}

/// The mode and the request counters of a running IdP.
pub struct Control {
    mode: Mutex<Mode>,
    keys: AtomicU64,
    metadata: AtomicU64,
    /// Gates opened since the last reset. A request with `?gate=NAME` gets no answer while its
    /// gate is closed, and gates start closed: an IdP that is down for one test until it says so.
    open_gates: Mutex<Vec<String>>,
    /// Path parts whose requests wait (`/_admin/hold?path=PART`) until `/_admin/release`, or
    /// [`HOLD_LIMIT`]: a fetch that is under way for as long as a test needs it to be.
    holds: Mutex<Vec<String>>,
    released: Condvar,
    browser: Browser,
}

/// The largest request body read (a token request is a few KiB).
const MAX_BODY: usize = 64 * 1024;

/// The longest a held request waits.
const HOLD_LIMIT: Duration = Duration::from_secs(30);

/// The `gate` query of a request, to carry over into the URLs it is answered with.
fn gate_query(path: &str) -> String {
    query(path, "gate").map(|g| format!("?gate={g}")).unwrap_or_default()
}

impl Default for Control {
    fn default() -> Self {
        Control {
            mode: Mutex::new(Mode::Normal),
            keys: AtomicU64::new(0),
            metadata: AtomicU64::new(0),
            open_gates: Mutex::new(Vec::new()),
            holds: Mutex::new(Vec::new()),
            released: Condvar::new(),
            browser: Browser::default(),
        }
    }
}

impl Control {
    /// Waits while a hold names part of `path`.
    fn wait_if_held(&self, path: &str) {
        let holds = self.holds.lock().unwrap_or_else(|p| p.into_inner());
        let _ = self
            .released
            .wait_timeout_while(holds, HOLD_LIMIT, |holds| holds.iter().any(|h| path.contains(h.as_str())));
    }

    fn release(&self) {
        self.holds.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.released.notify_all();
    }

    fn mode(&self) -> Mode {
        *self.mode.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap_or_else(|p| p.into_inner()) = mode;
    }

    fn stats(&self) -> Value {
        json!({
            "keys": self.keys.load(Ordering::SeqCst),
            "metadata": self.metadata.load(Ordering::SeqCst),
            "mode": format!("{:?}", self.mode()),
            "graph": self.browser.graph.stats(),
            "authorize": self.browser.step_up.stats(),
        })
    }
}

fn query<'a>(path: &'a str, name: &str) -> Option<&'a str> {
    path.split_once('?')?.1.split('&').find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

/// `/_admin/...`: mode, counters and key rotation, for tests.
fn admin(control: &Control, dir: &Path, path: &str) -> (u16, Value) {
    let action = path.split('?').next().unwrap_or("");
    let mode = match (action, query(path, "set")) {
        ("/_admin/stats", _) => return (200, control.stats()),
        ("/_admin/reset", _) => {
            control.keys.store(0, Ordering::SeqCst);
            control.metadata.store(0, Ordering::SeqCst);
            control.open_gates.lock().unwrap_or_else(|p| p.into_inner()).clear();
            control.release();
            control.browser.reset();
            Mode::Normal
        }
        ("/_admin/hold", _) => {
            if let Some(part) = query(path, "path") {
                control.holds.lock().unwrap_or_else(|p| p.into_inner()).push(part.to_owned());
            }
            return (200, control.stats());
        }
        ("/_admin/release", _) => {
            control.release();
            return (200, control.stats());
        }
        ("/_admin/open", _) => {
            if let Some(gate) = query(path, "gate") {
                control.open_gates.lock().unwrap_or_else(|p| p.into_inner()).push(gate.to_owned());
            }
            return (200, control.stats());
        }
        ("/_admin/rotate", _) => {
            let rotated = KeyStore::open(dir).and_then(|mut store| store.add_key(KeyKind::Rsa, None, true));
            return match rotated {
                Ok(kid) => (200, json!({ "kid": kid })),
                Err(e) => (500, json!({ "error": e.to_string() })),
            };
        }
        ("/_admin/publish", _) => {
            let published = KeyStore::open(dir).and_then(|mut store| store.publish_all());
            return match published {
                Ok(()) => (200, control.stats()),
                Err(e) => (500, json!({ "error": e.to_string() })),
            };
        }
        ("/_admin/mode", Some("normal")) => Mode::Normal,
        ("/_admin/mode", Some("down")) => Mode::Down,
        ("/_admin/mode", Some("slow")) => {
            Mode::Slow(query(path, "ms").and_then(|v| v.parse().ok()).unwrap_or(3000))
        }
        ("/_admin/mode", Some("padded")) => match query(path, "bytes").and_then(|v| v.parse().ok()) {
            Some(bytes) => Mode::Padded(bytes),
            None => return (400, json!({ "error": "padded needs bytes=N" })),
        },
        ("/_admin/mode", Some("garbage")) => Mode::Garbage(match query(path, "kind") {
            Some("empty") => Garbage::Empty,
            Some("huge") => Garbage::Huge,
            Some("gzip") => Garbage::Gzip,
            _ => Garbage::Text,
        }),
        ("/_admin/graph", _) => {
            let query = browser::form(path.split_once('?').map_or("", |(_, q)| q));
            return (200, control.browser.graph.admin(&query));
        }
        (other, _) => {
            let query = browser::form(path.split_once('?').map_or("", |(_, q)| q));
            return match control.browser.admin(other, &query) {
                Some(answer) => (200, answer),
                None => (404, json!({ "error": "unknown admin request", "path": path })),
            };
        }
    };
    control.set_mode(mode);
    (200, control.stats())
}

fn json_answer((status, body): (u16, Value)) -> Reply {
    Reply {
        status,
        content_type: "application/json",
        headers: Vec::new(),
        body: body.to_string().into_bytes(),
    }
}

/// The browser endpoints, `/{tenant}/oauth2/v2.0/...`, when `req` is for one.
fn browser_answer(control: &Control, dir: &Path, base_url: &str, req: &Request) -> Option<Reply> {
    let rest = req.path.strip_prefix('/')?;
    let (tenant, endpoint) = rest.split_once("/oauth2/v2.0/")?;
    let store = match KeyStore::open(dir) {
        Ok(store) => store,
        Err(e) => return Some(json_answer((500, json!({"error": e.to_string()})))),
    };
    control.browser.route(&store, base_url, tenant, endpoint, req)
}

/// The answer to one request, or `None` to drop the connection (the IdP is "down").
fn answer(control: &Control, dir: &Path, base_url: &str, req: &Request, path: &str) -> Option<Reply> {
    if path.starts_with("/_admin/") {
        return Some(json_answer(admin(control, dir, path)));
    }
    if req.path.contains("/oauth2/") {
        // Browser endpoints: held, down and slow like the others, never counted as fetches.
        control.wait_if_held(path);
        match control.mode() {
            Mode::Down => return None,
            Mode::Slow(ms) => thread::sleep(Duration::from_millis(ms)),
            Mode::Normal | Mode::Garbage(_) | Mode::Padded(_) => {}
        }
        return browser_answer(control, dir, base_url, req)
            .or_else(|| Some(json_answer((404, json!({"error": "not_found", "path": req.path})))));
    }
    if req.path.starts_with(GRAPH_PATH) && req.path[GRAPH_PATH.len()..].starts_with('/') {
        return control.browser.graph.route(req);
    }
    if req.path.starts_with("/_claim_source/") {
        return Some(control.browser.graph.claim_source());
    }
    if req.path == "/redirect" {
        // `/redirect?to=URL`: a 302 elsewhere, which the module must not follow.
        let to = browser::form(req.query).remove("to").unwrap_or_default();
        return Some(Reply {
            status: 302,
            content_type: "text/plain",
            headers: vec![("Location", to)],
            body: Vec::new(),
        });
    }
    let is_keys = path.split('?').next().unwrap_or("").ends_with("/keys");
    let counter = if is_keys { &control.keys } else { &control.metadata };
    counter.fetch_add(1, Ordering::SeqCst);
    control.wait_if_held(path);
    if let Some(gate) = query(path, "gate") {
        if !control.open_gates.lock().unwrap_or_else(|p| p.into_inner()).iter().any(|g| g == gate) {
            return None;
        }
    }
    match control.mode() {
        Mode::Down => return None,
        Mode::Slow(ms) => thread::sleep(Duration::from_millis(ms)),
        Mode::Garbage(kind) if is_keys => {
            let body = match kind {
                Garbage::Text => b"this is not a key set".to_vec(),
                Garbage::Empty => br#"{"keys": []}"#.to_vec(),
                Garbage::Huge => {
                    let padding = "x".repeat(4 * 1024 * 1024);
                    format!(r#"{{"keys": [], "padding": "{padding}"}}"#).into_bytes()
                }
                Garbage::Gzip => b"\x1f\x8b\x08\x00garbage".to_vec(),
            };
            let headers = if kind == Garbage::Gzip {
                vec![("Content-Encoding", "gzip".to_owned())]
            } else {
                Vec::new()
            };
            return Some(Reply { status: 200, content_type: "application/json", headers, body });
        }
        Mode::Normal | Mode::Garbage(_) | Mode::Padded(_) => {}
    }
    Some(json_answer(match KeyStore::open(dir) {
        Ok(store) => route(&store, base_url, path),
        Err(e) => (500, json!({"error": e.to_string()})),
    }))
}

fn handle(
    mut stream: impl Read + Write,
    control: &Control,
    dir: &Path,
    base_url: &str,
) -> std::io::Result<()> {
    let mut request_line = String::new();
    let mut cookie = None;
    let mut authorization = None;
    let mut body = Vec::new();
    {
        let mut reader = BufReader::new(&mut stream);
        reader.read_line(&mut request_line)?;
        let mut length = 0usize;
        let mut line = String::new();
        while reader.read_line(&mut line)? > 2 {
            if let Some((name, value)) = line.split_once(':') {
                let value = value.trim().to_owned();
                match name.to_ascii_lowercase().as_str() {
                    "content-length" => length = value.parse().unwrap_or(0).min(MAX_BODY),
                    "cookie" => cookie = Some(value),
                    "authorization" => authorization = Some(value),
                    _ => {}
                }
            }
            line.clear();
        }
        body.resize(length, 0);
        reader.read_exact(&mut body)?;
    }
    let mut words = request_line.split_whitespace();
    let (method, target) = (words.next().unwrap_or("GET"), words.next().unwrap_or("/"));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let body = String::from_utf8_lossy(&body);
    let req = Request {
        method,
        path,
        query,
        cookie: cookie.as_deref(),
        authorization: authorization.as_deref(),
        body: &body,
    };
    let Some(mut answer) = answer(control, dir, base_url, &req, target) else {
        return Ok(());
    };
    if let (Mode::Padded(bytes), false) = (control.mode(), target.starts_with("/_admin/")) {
        if answer.content_type == "application/json" && answer.body.len() < bytes {
            answer.body.resize(bytes, b' ');
        }
    }
    let reason = match answer.status {
        200 => "OK",
        302 => "Found",
        _ => "Error",
    };
    let mut head =
        format!("HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\n", answer.status, answer.content_type);
    for (name, value) in &answer.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    write!(stream, "{head}Content-Length: {}\r\nConnection: close\r\n\r\n", answer.body.len())?;
    stream.write_all(&answer.body)?;
    stream.flush()
}

/// Binds a loopback address (port 0 picks a free one).
pub fn bind(listen: &str) -> Result<TcpListener, Error> {
    let listener = TcpListener::bind(listen).map_err(|e| Error::Io(listen.to_owned(), e))?;
    let addr = listener.local_addr().map_err(|e| Error::Io(listen.to_owned(), e))?;
    if !addr.ip().is_loopback() {
        return Err(Error::Usage(format!("{addr} is not a loopback address")));
    }
    Ok(listener)
}

fn base_url(scheme: &str, listener: &TcpListener) -> Result<String, Error> {
    let addr = listener.local_addr().map_err(|e| Error::Io("listener".to_owned(), e))?;
    Ok(format!("{scheme}://{addr}"))
}

/// Serves over HTTP, and over HTTPS with the state's test CA when `https` is given, until the
/// process is stopped. One thread per connection: the IdP may be told to answer slowly.
pub fn serve(dir: PathBuf, http: TcpListener, https: Option<TcpListener>) -> Result<(), Error> {
    let control = Arc::new(Control::default());
    let mut listeners = vec![(base_url("http", &http)?, http, None)];
    if let Some(https) = https {
        listeners.push((base_url("https", &https)?, https, Some(tls::server_config(&dir)?)));
    }
    for (url, _, _) in &listeners {
        println!("entra-dev-idp: serving {} on {url}", dir.display());
    }
    let loops: Vec<_> = listeners
        .into_iter()
        .map(|(url, listener, tls)| {
            let (dir, control) = (dir.clone(), control.clone());
            thread::spawn(move || {
                for stream in listener.incoming().flatten() {
                    let (dir, control, url, tls) = (dir.clone(), control.clone(), url.clone(), tls.clone());
                    thread::spawn(move || {
                        let _ = match tls.map(rustls::ServerConnection::new) {
                            None => handle(stream, &control, &dir, &url),
                            Some(Ok(conn)) => {
                                handle(rustls::StreamOwned::new(conn, stream), &control, &dir, &url)
                            }
                            Some(Err(_)) => Ok(()),
                        };
                    });
                }
            })
        })
        .collect();
    for handle in loops {
        let _ = handle.join();
    }
    Ok(())
}
