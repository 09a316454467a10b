//! A development identity provider that speaks Entra ID's protocol on loopback.
//!
//! It stands in for Entra where no machine reaches the internet: it keeps signing keys, publishes
//! them as a JWKS with v1 and v2 metadata documents, and mints tokens shaped like Entra's (and
//! broken ones, for tests).

pub mod browser;
pub mod client_cert;
pub mod directory;
pub mod graph;
pub mod http;
pub mod keystore;
pub mod mint;
pub mod nginx;
pub mod server;
pub mod stepup;
pub mod tls;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("state: {0}")]
    State(String),
    #[error("crypto: {0}")]
    Crypto(String),
}
