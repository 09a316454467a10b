//! Typed errors: why a request is denied, and why a configuration is refused.
//!
//! Every denial has one fixed reason word. The same word goes into `error_description`,
//! `$entra_error` and the log line, so dashboards and tests can rely on it.

use thiserror::Error;

/// How a denial is answered. The module maps each class to a status and header exactly once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenialClass {
    /// 401 with a bare `Bearer realm=...` challenge (RFC 6750 section 3: no error attribute).
    Challenge,
    /// 401 with `error="invalid_token"`.
    InvalidToken,
    /// 403 with `error="insufficient_scope"`.
    InsufficientScope,
    /// 503 with `Retry-After`: the provider has no keys yet (logged at `error`).
    Unavailable,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Denial {
    #[error("no bearer token in the Authorization header")]
    NoToken,
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token's algorithm is not allowed")]
    AlgNotAllowed,
    #[error("the token's algorithm does not fit the key type")]
    AlgKeyMismatch,
    #[error("the token header has a crit parameter")]
    CritHeader,
    #[error("the token header has no kid")]
    MissingKid,
    #[error("no signing key with the token's kid")]
    UnknownKid,
    #[error("the signature does not verify")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token has no exp claim")]
    MissingExp,
    #[error("claim {0} has the wrong JSON type or form")]
    InvalidClaim(&'static str),
    #[error("the token is not for this API's audience")]
    WrongAudience,
    #[error("the token's issuer is not accepted")]
    WrongIssuer,
    #[error("the token's tenant is not allowed")]
    TenantNotAllowed,
    #[error("the signing key may not sign for this issuer")]
    KeyIssuerMismatch,
    #[error("the token is for Microsoft Graph, not for this API")]
    GraphToken,
    #[error("the token carries neither scp nor roles")]
    NoPermissionClaims,
    #[error("the caller is in none of the required groups")]
    MissingGroup,
    #[error("the token's groups were left out (group overage); membership cannot be decided")]
    GroupOverage,
    #[error("the caller has none of the required app roles")]
    MissingRole,
    #[error("the token has none of the required scopes")]
    MissingScope,
    #[error("the token has none of the required scopes or app permissions")]
    MissingPermission,
    #[error("a required claim does not have an accepted value")]
    MissingClaim,
    #[error("the provider's signing keys could not be fetched yet")]
    KeysUnavailable,
}

/// Every reason word, in a fixed order (for counters).
pub const REASONS: [&str; 25] = [
    "no_token",
    "malformed",
    "alg_not_allowed",
    "alg_key_mismatch",
    "crit_header",
    "missing_kid",
    "unknown_kid",
    "bad_signature",
    "expired",
    "not_yet_valid",
    "missing_exp",
    "invalid_claim",
    "wrong_audience",
    "wrong_issuer",
    "tenant_not_allowed",
    "key_issuer_mismatch",
    "graph_token",
    "no_permission_claims",
    "missing_group",
    "group_overage",
    "missing_role",
    "missing_scope",
    "missing_permission",
    "missing_claim",
    "keys_unavailable",
];

impl Denial {
    /// The position of the reason in [`REASONS`].
    pub fn index(&self) -> usize {
        let reason = self.reason();
        REASONS.iter().position(|r| *r == reason).unwrap_or(0)
    }

    /// The fixed reason word (documented in the README).
    pub fn reason(&self) -> &'static str {
        match self {
            Denial::NoToken => "no_token",
            Denial::Malformed => "malformed",
            Denial::AlgNotAllowed => "alg_not_allowed",
            Denial::AlgKeyMismatch => "alg_key_mismatch",
            Denial::CritHeader => "crit_header",
            Denial::MissingKid => "missing_kid",
            Denial::UnknownKid => "unknown_kid",
            Denial::BadSignature => "bad_signature",
            Denial::Expired => "expired",
            Denial::NotYetValid => "not_yet_valid",
            Denial::MissingExp => "missing_exp",
            Denial::InvalidClaim(_) => "invalid_claim",
            Denial::WrongAudience => "wrong_audience",
            Denial::WrongIssuer => "wrong_issuer",
            Denial::TenantNotAllowed => "tenant_not_allowed",
            Denial::KeyIssuerMismatch => "key_issuer_mismatch",
            Denial::GraphToken => "graph_token",
            Denial::NoPermissionClaims => "no_permission_claims",
            Denial::MissingGroup => "missing_group",
            Denial::GroupOverage => "group_overage",
            Denial::MissingRole => "missing_role",
            Denial::MissingScope => "missing_scope",
            Denial::MissingPermission => "missing_permission",
            Denial::MissingClaim => "missing_claim",
            Denial::KeysUnavailable => "keys_unavailable",
        }
    }

    pub fn class(&self) -> DenialClass {
        match self {
            Denial::NoToken => DenialClass::Challenge,
            Denial::MissingGroup
            | Denial::GroupOverage
            | Denial::MissingRole
            | Denial::MissingScope
            | Denial::MissingPermission
            | Denial::MissingClaim => DenialClass::InsufficientScope,
            Denial::KeysUnavailable => DenialClass::Unavailable,
            _ => DenialClass::InvalidToken,
        }
    }
}

/// Why a provider's configuration is refused. The message names the directive; nginx adds the
/// file and line.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    #[error("\"{directive}\" value \"{value}\" is not a GUID")]
    NotAGuid { directive: &'static str, value: String },
    #[error("\"tenant\" value \"{0}\" is neither a GUID nor common, organizations or consumers")]
    BadTenant(String),
    #[error("\"{0}\" is required")]
    Missing(&'static str),
    #[error("\"{0}\" is duplicate")]
    Duplicate(&'static str),
    #[error("\"allowed_tenants\" is required with tenant \"{0}\" (list tenant GUIDs, or say \"any\")")]
    AllowedTenantsRequired(String),
    #[error("\"algorithms\" value \"{0}\" is not supported (RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 EdDSA)")]
    UnknownAlgorithm(String),
    #[error("\"{directive}\" value \"{value}\" must be an https:// URL, or http:// on a loopback address")]
    BadUrl { directive: &'static str, value: String },
    #[error("\"issuer\" value \"{0}\" is not a URL")]
    BadIssuer(String),
    #[error("\"{directive}\" value \"{value}\" must be \"on\" or \"off\"")]
    NotAFlag { directive: &'static str, value: String },
    #[error("\"jwks_file\" and \"{0}\" exclude each other: keys come from a file or from metadata")]
    KeySourceConflict(&'static str),
    #[error("\"tenant\" \"{0}\" is a domain name, which needs metadata discovery (no \"jwks_file\")")]
    TenantNeedsDiscovery(String),
    #[error("\"jwks_file\" \"{path}\": {reason}")]
    BadKeyFile { path: String, reason: String },
}

/// Why a JWKS document is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeySetError {
    #[error("not a JSON object: {0}")]
    NotJson(String),
    #[error("no \"keys\" array")]
    NoKeysArray,
    #[error("no usable signing key ({0})")]
    NoUsableKeys(String),
}
