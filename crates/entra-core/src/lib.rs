//! Entra ID access-token validation, with no nginx in sight.
//!
//! - [`keys`]: JWKS documents into signing keys.
//! - [`provider`]: one Entra app's settings, checked (`entra_provider`).
//! - [`token`]: judging a bearer token against a provider.
//! - [`policy`]: location requirements (`entra_require_*`).
//! - [`cache`]: the verified-token cache.
//! - [`discovery`]: fetching keys and issuers from OpenID metadata (blocking).
//! - [`error`]: the denial vocabulary and configuration errors.

pub mod cache;
mod crypto;
pub mod discovery;
pub mod error;
pub mod keys;
pub mod policy;
pub mod provider;
pub mod token;

pub use error::{ConfigError, Denial, DenialClass, KeySetError};
pub use keys::KeySet;
pub use policy::{Policy, Requirement, Subject};
pub use provider::{Provider, ProviderConfig};
pub use token::{Judged, VerifiedToken};
