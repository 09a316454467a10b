//! Serves the IdP's metadata documents and key set over plain HTTP on loopback.
//!
//! Paths follow Entra's: `/{tenant}/v2.0/.well-known/openid-configuration`,
//! `/{tenant}/.well-known/openid-configuration`, `/{tenant}/discovery/v2.0/keys` and
//! `/{tenant}/discovery/keys`. The state directory is read on every request, so a `rotate`
//! from the command line shows at once.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::thread;

use serde_json::{json, Value};

use crate::keystore::KeyStore;
use crate::Error;

/// What a path resolves to: a status and a JSON body.
pub fn route(store: &KeyStore, base_url: &str, path: &str) -> (u16, Value) {
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
                "jwks_uri": format!("{base_url}/{t}/discovery/v2.0/keys"),
                "authorization_endpoint": format!("{base_url}/{t}/oauth2/v2.0/authorize"),
                "token_endpoint": format!("{base_url}/{t}/oauth2/v2.0/token"),
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token"],
                "subject_types_supported": ["pairwise"],
            }),
        ),
        [t, ".well-known", "openid-configuration"] if tenant_ok(t) => (
            200,
            json!({
                "issuer": format!("https://sts.windows.net/{}/", issuer_tid(t)),
                "jwks_uri": format!("{base_url}/{t}/discovery/keys"),
                "authorization_endpoint": format!("{base_url}/{t}/oauth2/authorize"),
                "token_endpoint": format!("{base_url}/{t}/oauth2/token"),
                "id_token_signing_alg_values_supported": ["RS256"],
            }),
        ),
        [t, "discovery", "v2.0", "keys"] | [t, "discovery", "keys"] if tenant_ok(t) => (200, keys()),
        _ => (404, json!({"error": "not_found", "path": path})),
    }
}

fn handle(mut stream: TcpStream, dir: &Path, base_url: &str) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // The rest of the head is not needed; read it so the client sees an orderly close.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let (status, body) = match KeyStore::open(dir) {
        Ok(store) => route(&store, base_url, path),
        Err(e) => (500, json!({"error": e.to_string()})),
    };
    let body = body.to_string();
    let reason = if status == 200 { "OK" } else { "Error" };
    write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
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

/// Serves until the process is stopped.
pub fn serve(dir: PathBuf, listener: TcpListener) -> Result<(), Error> {
    let addr = listener.local_addr().map_err(|e| Error::Io("listener".to_owned(), e))?;
    let base_url = format!("http://{addr}");
    println!("entra-dev-idp: serving {} on {base_url}", dir.display());
    for stream in listener.incoming().flatten() {
        let (dir, base_url) = (dir.clone(), base_url.clone());
        thread::spawn(move || {
            let _ = handle(stream, &dir, &base_url);
        });
    }
    Ok(())
}
