//! An `auth_request` validation service: the sidecar architecture at its best, for the benchmark.
//!
//! It validates with the very rules and code the module uses (entra-core: jsonwebtoken on ring)
//! and keeps its own verified-token cache, behind a single-threaded hyper server with keep-alive.
//! What separates it from the module is only the extra HTTP hop per request.
//!
//!   bench-sidecar --listen 127.0.0.1:9500 --jwks keys.json --tenant GUID --client-id GUID [--no-cache]

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use entra_core::values::{parse_guid, Tenant};
use entra_core::{KeySet, Provider, ProviderConfig};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn provider(args: &[String]) -> Result<Provider, String> {
    let need = |name: &str| arg(args, name).ok_or(format!("{name} is required"));
    let jwks = std::fs::read(need("--jwks")?).map_err(|e| e.to_string())?;
    let config = ProviderConfig {
        tenant: Some(Tenant::parse(&need("--tenant")?).map_err(|e| e.to_string())?),
        client_id: Some(parse_guid("client_id", &need("--client-id")?).map_err(|e| e.to_string())?),
        keys: Some(KeySet::from_jwks(&jwks).map_err(|e| e.to_string())?.0),
        token_cache: args.iter().any(|a| a == "--no-cache").then_some(0),
        ..Default::default()
    };
    config.build("sidecar").map_err(|e| e.to_string())
}

fn check(provider: &Provider, req: &Request<Incoming>) -> StatusCode {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let header = req.headers().get(hyper::header::AUTHORIZATION).map(|v| v.as_bytes());
    if provider.judge(header, now).verdict.is_ok() {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::UNAUTHORIZED
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let provider = Arc::new(provider(&args)?);
    let listen = arg(&args, "--listen").unwrap_or_else(|| "127.0.0.1:9500".into());
    let listener = TcpListener::bind(&listen).await.map_err(|e| format!("{listen}: {e}"))?;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let provider = provider.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let status = check(&provider, &req);
                async move {
                    let mut response = Response::new(Empty::<Bytes>::new());
                    *response.status_mut() = status;
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
