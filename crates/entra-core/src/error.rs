//! Typed errors: why a request is denied, and why a configuration is refused.
//!
//! Every denial has one fixed reason word. The same word goes into `error_description`,
//! `$entra_error`, the log line and the `entra_status` counters, so dashboards and tests can rely
//! on it. The words, their response classes and their messages come from one table.

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
    /// Browser sign-in: a navigation is sent to sign in (302), anything else gets a bare 401.
    SignIn,
    /// A sign-in that failed at the callback: 401 with a page that offers to start again (never
    /// a redirect, which could loop).
    Callback,
    /// 403 with a page that says why (no challenge: another token would not help).
    Forbidden,
    /// Step-up: how the user signed in does not satisfy the location. A browser's navigation is
    /// sent to sign in again asking for it; anything else gets 401 with a challenge that says
    /// what to ask for, or 403 where asking again cannot help.
    StepUp,
}

/// A Conditional Access authentication context id (`c1` to `c99`) a location requires; 0 stands
/// for none that can be asked (an app-only token, which never carries one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthContext(pub u8);

impl AuthContext {
    /// The id of an app-only token's refusal: no context can be asked for it.
    pub const NONE_POSSIBLE: AuthContext = AuthContext(0);

    /// `c1` to `c99`, case-insensitive.
    pub fn parse(text: &str) -> Option<AuthContext> {
        let digits = text.strip_prefix(['c', 'C'])?;
        let valid = matches!(digits.len(), 1 | 2) && digits.bytes().all(|b| b.is_ascii_digit());
        let n: u8 = digits.parse().ok().filter(|_| valid && !digits.starts_with('0'))?;
        (1..=99).contains(&n).then_some(AuthContext(n))
    }
}

impl std::fmt::Display for AuthContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            0 => f.write_str("none: an app-only token carries no authentication context"),
            n => write!(f, "c{n}"),
        }
    }
}

/// A reason word and how it is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reason {
    pub word: &'static str,
    pub class: DenialClass,
}

/// Declares [`Denial`], its fieldless twin [`DenialKind`] (the index of counters) and
/// [`REASONS`], from one list: variant, reason word, class, message.
macro_rules! denials {
    ($($variant:ident $(($field:ty))? => $word:literal, $class:ident, $message:literal;)*) => {
        /// Why a request was refused.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
        pub enum Denial {
            $(#[error($message)] $variant $(($field))?,)*
        }

        /// A [`Denial`] without its details, in the order of [`REASONS`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum DenialKind {
            $($variant,)*
        }

        /// Every reason, in the order of [`DenialKind`].
        pub const REASONS: &[Reason] = &[$(Reason { word: $word, class: DenialClass::$class },)*];

        impl Denial {
            pub fn kind(&self) -> DenialKind {
                match self {
                    $(Denial::$variant { .. } => DenialKind::$variant,)*
                }
            }
        }
    };
}

denials! {
    NoToken => "no_token", Challenge, "no bearer token in the Authorization header";
    Malformed => "malformed", InvalidToken, "the token is not a well-formed JWT";
    AlgNotAllowed => "alg_not_allowed", InvalidToken, "the token's algorithm is not allowed";
    AlgKeyMismatch => "alg_key_mismatch", InvalidToken, "the token's algorithm does not fit the key type";
    CritHeader => "crit_header", InvalidToken, "the token header has a crit parameter";
    MissingKid => "missing_kid", InvalidToken, "the token header has no kid";
    UnknownKid => "unknown_kid", InvalidToken, "no signing key with the token's kid";
    BadSignature => "bad_signature", InvalidToken, "the signature does not verify";
    Expired => "expired", InvalidToken, "the token has expired";
    NotYetValid => "not_yet_valid", InvalidToken, "the token is not valid yet";
    MissingExp => "missing_exp", InvalidToken, "the token has no exp claim";
    InvalidClaim(&'static str) => "invalid_claim", InvalidToken, "claim {0} has the wrong JSON type or form";
    WrongAudience => "wrong_audience", InvalidToken, "the token is not for this API's audience";
    WrongIssuer => "wrong_issuer", InvalidToken, "the token's issuer is not accepted";
    TenantNotAllowed => "tenant_not_allowed", InvalidToken, "the token's tenant is not allowed";
    KeyIssuerMismatch => "key_issuer_mismatch", InvalidToken, "the signing key may not sign for this issuer";
    GraphToken => "graph_token", InvalidToken, "the token is for Microsoft Graph, not for this API";
    NoPermissionClaims => "no_permission_claims", InvalidToken, "the token carries neither scp nor roles";
    NotAnAccessToken => "not_an_access_token", InvalidToken,
        "the token is an ID token, not an access token (it has a nonce, or neither azp nor appid)";
    NonceMismatch => "nonce_mismatch", InvalidToken, "the ID token's nonce is not the sign-in attempt's";
    NoSession => "no_session", SignIn, "no session cookie";
    SessionInvalid => "session_invalid", SignIn, "the session cookie does not open (tampered, truncated, foreign or sealed with a removed key)";
    SessionRevoked => "session_revoked", SignIn, "the session was ended by a front-channel logout";
    SessionExpired => "session_expired", SignIn, "the session has reached its lifetime";
    SessionIdle => "session_idle", SignIn, "the session was unused for longer than its idle timeout";
    SessionStale => "session_stale", SignIn, "the session is overdue for revalidation with Entra";
    MissingGroup => "missing_group", InsufficientScope, "the caller is in none of the required groups";
    GroupOverage => "group_overage", InsufficientScope,
        "the token's groups were left out (group overage); membership cannot be decided";
    MissingRole => "missing_role", InsufficientScope, "the caller has none of the required app roles";
    MissingScope => "missing_scope", InsufficientScope, "the token has none of the required scopes";
    MissingPermission => "missing_permission", InsufficientScope,
        "the token has none of the required scopes or app permissions";
    MissingClaim => "missing_claim", InsufficientScope, "a required claim does not have an accepted value";
    KeysUnavailable => "keys_unavailable", Unavailable, "the provider's signing keys could not be fetched yet";
    GroupsUnavailable(u32) => "groups_unavailable", Unavailable,
        "Microsoft Graph could not answer the group overage yet (retry after {0} s)";
    StateMismatch => "state_mismatch", Callback, "the callback's state matches no sign-in attempt of this browser";
    IdpError(bool) => "idp_error", Callback, "Entra answered the sign-in with an error";
    CodeRejected => "code_rejected", Callback, "the token endpoint refused the authorization code";
    IdpUnavailable => "idp_unavailable", Unavailable, "the token endpoint could not be reached";
    SessionTooLarge => "session_too_large", Forbidden,
        "the session would not fit its cookies (too many groups: emit only the groups assigned to the application, or use app roles)";
    CrossOrigin => "cross_origin", Forbidden, "a request from another site may not use the session cookie";
    AuthContextMissing(AuthContext) => "auth_context_missing", StepUp,
        "the sign-in lacks the required authentication context ({0})";
    SigninTooOld(bool) => "signin_too_old", StepUp,
        "the sign-in is older than this location allows (or its time is unknown: the ID token has no auth_time)";
}

impl Denial {
    /// The position of the reason in [`REASONS`].
    pub fn index(&self) -> usize {
        self.kind() as usize
    }

    /// The fixed reason word (documented in the README).
    pub fn reason(&self) -> &'static str {
        REASONS[self.index()].word
    }

    pub fn class(&self) -> DenialClass {
        REASONS[self.index()].class
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
    #[error("\"allowed_tenants\" is required with tenant \"{0}\" (list tenant GUIDs, or say \"any\")")]
    AllowedTenantsRequired(String),
    #[error(
        "\"issuer\" with {{tenantid}} accepts every tenant's tokens with tenant \"{0}\", a domain name: \
         name its id in \"allowed_tenants\" (or say \"any\")"
    )]
    DomainTenantTemplate(String),
    #[error("\"algorithms\" value \"{0}\" is not supported (RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 EdDSA)")]
    UnknownAlgorithm(String),
    #[error("\"{directive}\" value \"{value}\" must be an https:// URL, or http:// on a loopback address")]
    BadUrl { directive: &'static str, value: String },
    #[error("\"issuer\" value \"{0}\" is not a URL")]
    BadIssuer(String),
    #[error("\"{directive}\" value of {length} bytes: 1 to 512 bytes")]
    ValueLength { directive: &'static str, length: usize },
    #[error("\"{directive}\" value \"{value}\" must be \"on\" or \"off\"")]
    NotAFlag { directive: &'static str, value: String },
    #[error("\"token_cache\" value \"{0}\" must be a number of tokens or \"off\"")]
    BadTokenCache(String),
    #[error("\"jwks_file\" and \"{0}\" exclude each other: keys come from a file or from metadata")]
    KeySourceConflict(&'static str),
    #[error("\"tenant\" \"{0}\" is a domain name, which needs metadata discovery (no \"jwks_file\")")]
    TenantNeedsDiscovery(String),
    #[error("\"jwks_file\" \"{path}\": {reason}")]
    BadKeyFile { path: String, reason: String },
    #[error(
        "\"groups_from_graph on\" needs a client credential (client_secret_file or client_certificate): \
         Graph is asked with the app's own"
    )]
    GraphNeedsCredential,
    #[error(
        "\"groups_from_graph on\" with authority \"{0}\" needs \"graph_url\": only the global and China \
         clouds have one Graph host (GCC High and DoD differ)"
    )]
    GraphUrlRequired(String),
    #[error("\"{0}\" has no effect without \"groups_from_graph on\"")]
    GraphOff(&'static str),
}

impl ConfigError {
    /// The directive whose line a refusal found once the whole block was read points at.
    pub fn directive(&self) -> Option<&'static str> {
        match self {
            ConfigError::DomainTenantTemplate(_) => Some("issuer"),
            ConfigError::GraphNeedsCredential | ConfigError::GraphUrlRequired(_) => Some("groups_from_graph"),
            ConfigError::GraphOff(directive) => Some(directive),
            _ => None,
        }
    }
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
    #[error("{0} keys: at most 64")]
    TooManyKeys(usize),
}
