//! Entra ID access-token validation, with no nginx in sight.
//!
//! - [`values`]: what the operator writes (GUIDs, tenants, algorithms, URLs), checked.
//! - [`provider`]: one Entra app's settings, checked as a whole (`entra_provider`).
//! - [`keys`]: JWKS documents into signing keys.
//! - [`token`]: the bearer token, its header and claims read strictly, the verified token.
//! - `claims`: the claims the rules read, in one typed pass over a token's payload.
//! - [`verify`]: the rules a provider judges a token by, and [`Provider::judge`].
//! - [`policy`]: location requirements (`entra_require_*`).
//! - [`base64url`]: strict base64url, decoded by table (tokens and sealed cookies).
//! - [`assertion`]: the client assertion of `client_certificate` (private_key_jwt).
//! - [`browser`]: navigations and cross-origin requests told apart by their headers.
//! - [`cache`]: the verified-token cache.
//! - [`cookie`]: reading, splitting and writing the cookies of browser sign-in.
//! - [`discovery`]: fetching keys and issuers from OpenID metadata (blocking).
//! - [`oidc`]: the authorization code flow with PKCE, with no I/O.
//! - [`schedule`]: when keys are fetched again.
//! - [`seal`]: sealed cookie values (AES-256-GCM) for browser sign-in.
//! - [`session`]: a browser session in its compact binary form.
//! - [`revocation`]: single sign-out's record of the sessions issued and ended, per provider.
//! - [`signin`]: a provider's sign-in settings and the code flow's steps without I/O.
//! - [`throttle`]: callbacks per client address and minute, counted in shared buckets.
//! - [`exchange`]: the code exchange at the token endpoint (blocking).
//! - [`group`]: a group as an identity holds it (object id bytes, or text).
//! - [`graph`]: group overage answered by Microsoft Graph (forms, answers; blocking calls).
//! - [`answers`]: Graph's answers and the tenants' app tokens as the shared zone keeps them.
//! - [`fleet`]: sign-ins and sign-outs shared by a fleet of instances through the store.
//! - [`store`]: `entra_shared_store`, the fleet's Redis, and its blocking client.
//! - [`whoami`]: what `entra_whoami` shows of an identity.
//! - [`error`]: the denial vocabulary and configuration errors.
//! - [`explain`]: what a denial line says beyond its reason (values required, values held).
//!
//! Rule numbers in comments refer to `docs/ARCHITECTURE.md`, "Entra's rules".

#![forbid(unsafe_code)]

pub mod answers;
pub mod assertion;
pub mod base64url;
mod binary;
pub mod browser;
pub mod cache;
mod claims;
pub mod cookie;
pub mod discovery;
pub mod error;
pub mod exchange;
pub mod explain;
pub mod fleet;
pub mod graph;
pub mod group;
pub mod keycache;
pub mod keys;
pub mod oidc;
pub mod policy;
pub mod provider;
pub mod revocation;
pub mod schedule;
pub mod seal;
pub mod session;
pub mod signature;
pub mod signin;
pub mod stepup;
pub mod store;
pub mod throttle;
pub mod token;
pub mod values;
pub mod verify;
pub mod whoami;

pub use error::{ConfigError, Denial, DenialClass, KeySetError};
pub use keys::KeySet;
pub use policy::{Policy, Requirement, Subject};
pub use provider::{Provider, ProviderConfig};
pub use token::VerifiedToken;
pub use verify::Judgment;
