//! Fetching a provider's signing keys and issuers from its OpenID metadata: a blocking job,
//! meant for a thread that is not an nginx event loop.
//!
//! The v2 metadata document gives `jwks_uri` and the v2 issuer; the v1 document, next to it,
//! gives the v1 issuer. The key set must parse and hold at least one usable key, or the whole
//! fetch fails and whoever called keeps the keys it had.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;
use ureq::tls::{Certificate, RootCerts, TlsConfig};

use crate::keys::KeySet;
use crate::values::parse_url;

/// The largest document accepted (Entra's key sets are a few KiB).
pub const MAX_DOCUMENT_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FetchError {
    #[error("{url}: {reason}")]
    Transport { url: String, reason: String },
    #[error("{url}: HTTP status {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: larger than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge { url: String },
    #[error("{url}: not a metadata document: {reason}")]
    BadMetadata { url: String, reason: String },
    #[error("{url}: not a usable key set: {reason}")]
    BadKeySet { url: String, reason: String },
    #[error("ca_file {path}: {reason}")]
    BadCaFile { path: String, reason: String },
}

/// Where and how to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    /// The v2 metadata document.
    pub metadata_url: String,
    /// The v1 metadata document, when there is one.
    pub v1_metadata_url: Option<String>,
    /// Trust store for the endpoints (PEM); `None` is the operating system's.
    pub ca_file: Option<PathBuf>,
    /// For each phase of each request (connect, send, receive).
    pub timeout: Duration,
}

impl Discovery {
    /// Entra's documents for a tenant: `{authority}/{tenant}/v2.0/.well-known/openid-configuration`
    /// and the v1 one beside it. A configured `metadata_url` replaces the first; the v1 document
    /// is then looked for only when that URL has Entra's shape.
    pub fn new(
        authority: &str,
        tenant: &str,
        metadata_url: Option<&str>,
        ca_file: Option<PathBuf>,
        timeout: Duration,
    ) -> Discovery {
        const V2_SUFFIX: &str = "/v2.0/.well-known/openid-configuration";
        let v2 = metadata_url.map_or_else(|| format!("{authority}/{tenant}{V2_SUFFIX}"), str::to_owned);
        let query = v2.find('?').map_or("", |at| &v2[at..]);
        let path = &v2[..v2.len() - query.len()];
        let v1 = path
            .strip_suffix(V2_SUFFIX)
            .map(|base| format!("{base}/.well-known/openid-configuration{query}"));
        Discovery { metadata_url: v2, v1_metadata_url: v1, ca_file, timeout }
    }
}

/// The browser sign-in endpoints the v2 metadata names (empty when it names none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Endpoints {
    pub authorize: Option<String>,
    pub token: Option<String>,
    pub end_session: Option<String>,
}

impl Endpoints {
    /// One line each, an empty line for an absent one: how the shared zone keeps them.
    pub fn to_lines(&self) -> String {
        [&self.authorize, &self.token, &self.end_session].map(|e| e.as_deref().unwrap_or("")).join("\n")
    }

    pub fn from_lines(text: &str) -> Endpoints {
        let mut lines = text.split('\n').map(|l| Some(l.to_owned()).filter(|l| !l.is_empty()));
        Endpoints {
            authorize: lines.next().flatten(),
            token: lines.next().flatten(),
            end_session: lines.next().flatten(),
        }
    }
}

/// What a successful fetch brought.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The key set as received (it parsed, with at least one usable key).
    pub jwks: Vec<u8>,
    pub keys: KeySet,
    /// The issuers the metadata documents name: v2 first, then v1 when there was one.
    pub issuers: Vec<String>,
    pub endpoints: Endpoints,
    /// Metadata documents requested (1 or 2); the key set is always one request.
    pub metadata_requests: u32,
    /// What went wrong without failing the fetch (an unreachable v1 document, skipped keys).
    pub warnings: Vec<String>,
}

#[derive(Deserialize)]
struct Metadata {
    issuer: String,
    jwks_uri: Option<String>,
    authorization_endpoint: Option<String>,
    token_endpoint: Option<String>,
    end_session_endpoint: Option<String>,
}

/// An agent that trusts `ca_file` (else the system's store), with `timeout` for each phase;
/// `redirects` 0 follows none; `deadline` bounds the whole request.
pub(crate) fn agent(
    ca_file: &Option<PathBuf>,
    timeout: Duration,
    redirects: u32,
    deadline: Option<Duration>,
) -> Result<ureq::Agent, FetchError> {
    let roots = match ca_file {
        None => RootCerts::PlatformVerifier,
        Some(path) => {
            let bad = |reason: String| FetchError::BadCaFile { path: path.display().to_string(), reason };
            let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
            let certs = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(cert)) => Some(Ok(cert)),
                    Ok(_) => None,
                    Err(e) => Some(Err(bad(e.to_string()))),
                })
                .collect::<Result<Vec<Certificate<'static>>, _>>()?;
            if certs.is_empty() {
                return Err(bad("no certificate in it".into()));
            }
            RootCerts::new_with_certs(&certs)
        }
    };
    // One timeout per phase: a single global one makes ureq resolve names on an extra thread.
    let t = Some(timeout);
    Ok(ureq::Agent::config_builder()
        .tls_config(TlsConfig::builder().root_certs(roots).build())
        .http_status_as_error(false)
        .max_redirects(redirects)
        .timeout_global(deadline)
        .timeout_resolve(t)
        .timeout_connect(t)
        .timeout_send_request(t)
        .timeout_recv_response(t)
        .timeout_recv_body(t)
        // Smaller than ureq's 128 KiB buffers: the pool thread's malloc arena keeps what a fetch
        // used, in every thread that ever ran one.
        .max_response_header_size(16 * 1024)
        .input_buffer_size(32 * 1024)
        .output_buffer_size(16 * 1024)
        .build()
        .into())
}

fn get(agent: &ureq::Agent, url: &str) -> Result<Vec<u8>, FetchError> {
    let transport = |e: ureq::Error| FetchError::Transport { url: url.to_owned(), reason: e.to_string() };
    let mut response = agent.get(url).call().map_err(transport)?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(FetchError::Status { url: url.to_owned(), status });
    }
    read_at_most(&mut response, MAX_DOCUMENT_BYTES).map_err(|e| match e {
        ureq::Error::BodyExceedsLimit(_) => FetchError::TooLarge { url: url.to_owned() },
        other => transport(other),
    })
}

/// A response body of at most `max` bytes; `BodyExceedsLimit` past it. (ureq's own limit refuses
/// a body of exactly its size: it asks for one more byte to see the end.)
pub(crate) fn read_at_most(
    response: &mut ureq::http::Response<ureq::Body>,
    max: u64,
) -> Result<Vec<u8>, ureq::Error> {
    response.body_mut().with_config().limit(max + 1).read_to_vec()
}

fn metadata(agent: &ureq::Agent, url: &str) -> Result<Metadata, FetchError> {
    let bad = |reason: String| FetchError::BadMetadata { url: url.to_owned(), reason };
    crate::token::json_object(&get(agent, url)?).map_err(|e| bad(e.to_string()))
}

/// What a v2 metadata document says, checked.
#[derive(Debug)]
pub struct MetadataDocument {
    pub issuer: String,
    /// Where the key set is, as the HTTP client will read it.
    pub jwks_uri: String,
    pub endpoints: Endpoints,
    /// Endpoints left out for failing the URL check.
    pub warnings: Vec<String>,
}

/// Reads the v2 metadata document fetched from `url`: a JSON object with an issuer and a
/// `jwks_uri` that passes the URL check; a sign-in endpoint that fails it is left out, with a
/// warning.
pub fn read_metadata(url: &str, document: &[u8]) -> Result<MetadataDocument, FetchError> {
    let bad = |reason: String| FetchError::BadMetadata { url: url.to_owned(), reason };
    let v2: Metadata = crate::token::json_object(document).map_err(|e| bad(e.to_string()))?;
    let jwks_uri = v2.jwks_uri.ok_or_else(|| bad("no jwks_uri".into()))?;
    let jwks_uri = parse_url("jwks_uri", &jwks_uri).map_err(|e| bad(e.to_string()))?;
    let mut warnings = Vec::new();
    let mut endpoint = |name: &'static str, value: Option<String>| {
        let value = value?;
        match parse_url(name, &value) {
            Ok(value) => Some(value),
            Err(e) => {
                warnings.push(format!("{url}: {e} (left out)"));
                None
            }
        }
    };
    let endpoints = Endpoints {
        authorize: endpoint("authorization_endpoint", v2.authorization_endpoint),
        token: endpoint("token_endpoint", v2.token_endpoint),
        end_session: endpoint("end_session_endpoint", v2.end_session_endpoint),
    };
    Ok(MetadataDocument { issuer: v2.issuer, jwks_uri, endpoints, warnings })
}

/// Fetches the metadata and the key set. Blocking: never call it on an event loop. No redirect
/// is followed (the metadata names every URL, and Entra does not redirect): a 3xx is a failure.
pub fn fetch(d: &Discovery) -> Result<Fetched, FetchError> {
    let agent = agent(&d.ca_file, d.timeout, 0, None)?;
    let v2 = read_metadata(&d.metadata_url, &get(&agent, &d.metadata_url)?)?;
    let (jwks_uri, endpoints, mut warnings) = (v2.jwks_uri, v2.endpoints, v2.warnings);
    let mut issuers = vec![v2.issuer];
    let mut metadata_requests = 1;
    if let Some(v1_url) = &d.v1_metadata_url {
        metadata_requests += 1;
        match metadata(&agent, v1_url) {
            Ok(v1) if !issuers.contains(&v1.issuer) => issuers.push(v1.issuer),
            Ok(_) => {}
            Err(e) => warnings.push(format!("no v1 issuer: {e}")),
        }
    }
    let jwks = get(&agent, &jwks_uri)?;
    let (keys, skipped) = KeySet::from_jwks(&jwks)
        .map_err(|e| FetchError::BadKeySet { url: jwks_uri.clone(), reason: e.to_string() })?;
    warnings.extend(skipped);
    Ok(Fetched { jwks, keys, issuers, endpoints, metadata_requests, warnings })
}
