//! One Entra application as the operator describes it in `entra_provider { ... }`.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::Algorithm;

use crate::cache::TokenCache;
use crate::discovery::Discovery;
use crate::error::ConfigError;
use crate::keys::{KeyFamily, KeySet};

/// The tenant id of personal Microsoft accounts.
pub const CONSUMERS_TENANT_ID: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";
/// Default size of the verified-token cache, in tokens (each takes about 4 KiB).
pub const DEFAULT_TOKEN_CACHE: usize = 4096;
/// The default authority (global Azure cloud).
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
/// Placeholder filled from the token's `tid` in issuer templates.
pub const TENANT_PLACEHOLDER: &str = "{tenantid}";

/// `true` for the canonical 8-4-4-4-12 hexadecimal form.
pub fn is_guid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Parses a GUID-valued directive argument, normalised to lower case as Entra writes them.
pub fn parse_guid(directive: &'static str, value: &str) -> Result<String, ConfigError> {
    if is_guid(value) {
        Ok(value.to_ascii_lowercase())
    } else {
        Err(ConfigError::NotAGuid { directive, value: value.to_owned() })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tenant {
    Id(String),
    Common,
    Organizations,
    Consumers,
    /// A verified domain name (`contoso.onmicrosoft.com`): usable with metadata discovery only.
    Domain(String),
}

fn is_domain(s: &str) -> bool {
    s.contains('.')
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

impl Tenant {
    pub fn parse(value: &str) -> Result<Tenant, ConfigError> {
        match value {
            "common" => Ok(Tenant::Common),
            "organizations" => Ok(Tenant::Organizations),
            "consumers" => Ok(Tenant::Consumers),
            v if is_guid(v) => Ok(Tenant::Id(v.to_ascii_lowercase())),
            v if is_domain(v) => Ok(Tenant::Domain(v.to_ascii_lowercase())),
            v => Err(ConfigError::BadTenant(v.to_owned())),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Tenant::Id(id) | Tenant::Domain(id) => id,
            Tenant::Common => "common",
            Tenant::Organizations => "organizations",
            Tenant::Consumers => "consumers",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedTenants {
    Any,
    Only(Vec<String>),
}

impl AllowedTenants {
    pub fn allows(&self, tid: &str) -> bool {
        match self {
            AllowedTenants::Any => true,
            AllowedTenants::Only(list) => list.iter().any(|t| t.eq_ignore_ascii_case(tid)),
        }
    }
}

pub fn parse_algorithm(value: &str) -> Result<Algorithm, ConfigError> {
    use Algorithm::*;
    Ok(match value {
        "RS256" => RS256,
        "RS384" => RS384,
        "RS512" => RS512,
        "PS256" => PS256,
        "PS384" => PS384,
        "PS512" => PS512,
        "ES256" => ES256,
        "ES384" => ES384,
        "EdDSA" => EdDSA,
        other => return Err(ConfigError::UnknownAlgorithm(other.to_owned())),
    })
}

/// `https://` anywhere, `http://` only towards loopback (tests and the development IdP).
/// Returns the URL without a trailing slash.
pub fn parse_url(directive: &'static str, value: &str) -> Result<String, ConfigError> {
    let bad = || ConfigError::BadUrl { directive, value: value.to_owned() };
    let rest = if let Some(rest) = value.strip_prefix("https://") {
        rest
    } else if let Some(rest) = value.strip_prefix("http://") {
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        let host = match host.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => host.rsplit_once(':').map_or(host, |(h, _)| h),
        };
        let loopback =
            host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        if !loopback {
            return Err(bad());
        }
        rest
    } else {
        return Err(bad());
    };
    if rest.is_empty() || rest.starts_with('/') || value.contains(char::is_whitespace) {
        return Err(bad());
    }
    Ok(value.trim_end_matches('/').to_owned())
}

/// The v1 issuer host follows the cloud, not the authority (rule 17).
fn v1_issuer_template(authority: &str) -> String {
    let host = authority.split("://").nth(1).unwrap_or("").split('/').next().unwrap_or("");
    let china = host.ends_with(".microsoftonline.cn") || host.ends_with(".chinacloudapi.cn");
    let sts = if china { "https://sts.chinacloudapi.cn" } else { "https://sts.windows.net" };
    format!("{sts}/{TENANT_PLACEHOLDER}/")
}

/// What the operator wrote, directive by directive, before it is checked as a whole.
#[derive(Debug, Default)]
pub struct ProviderConfig {
    pub tenant: Option<Tenant>,
    pub client_id: Option<String>,
    pub audiences: Option<Vec<String>>,
    pub authority: Option<String>,
    pub issuers: Vec<String>,
    pub allowed_tenants: Option<AllowedTenants>,
    pub keys: Option<KeySet>,
    pub leeway: Option<u64>,
    pub algorithms: Option<Vec<Algorithm>>,
    pub require_permission: Option<bool>,
    /// Verified tokens kept per worker; 0 turns the cache off.
    pub token_cache: Option<usize>,
    pub metadata_url: Option<String>,
    pub refresh: Option<Duration>,
    pub refresh_on_unknown_kid: Option<Duration>,
    pub ca_file: Option<PathBuf>,
    pub fetch_timeout: Option<Duration>,
}

/// Default interval between key set refreshes (Microsoft's libraries use 12-24 h; an hour
/// follows rotations sooner at no real cost).
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(3600);
/// Default least interval between refreshes forced by an unknown `kid`.
pub const DEFAULT_REFRESH_ON_UNKNOWN_KID: Duration = Duration::from_secs(300);
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a provider's signing keys come from.
#[derive(Debug)]
pub enum KeySource {
    /// `jwks_file`: read with the configuration, fixed until the next reload.
    File,
    /// OpenID metadata, fetched and refreshed while nginx runs.
    Discovery { discovery: Discovery, refresh: Duration, refresh_on_unknown_kid: Duration },
}

/// The keys in force, with the issuers the metadata named; replaced as a whole.
#[derive(Debug, Default)]
pub struct KeyState {
    pub keys: KeySet,
    pub issuers: Vec<String>,
}

/// A checked provider, ready for the request path.
#[derive(Debug)]
pub struct Provider {
    pub name: String,
    pub tenant: Tenant,
    pub client_id: String,
    pub audiences: Vec<String>,
    pub authority: String,
    /// Accepted issuers; `{tenantid}` is filled from the token's `tid`. Empty for a discovery
    /// provider without `issuer` lines: the metadata names them.
    pub issuers: Vec<String>,
    pub allowed_tenants: AllowedTenants,
    pub source: KeySource,
    state: RwLock<Arc<KeyState>>,
    pub leeway: u64,
    pub algorithms: Vec<Algorithm>,
    pub require_permission: bool,
    pub(crate) cache: TokenCache,
}

impl ProviderConfig {
    pub fn build(self, name: &str) -> Result<Provider, ConfigError> {
        let tenant = self.tenant.ok_or(ConfigError::Missing("tenant"))?;
        let client_id = self.client_id.ok_or(ConfigError::Missing("client_id"))?;
        let authority = self.authority.unwrap_or_else(|| DEFAULT_AUTHORITY.to_owned());
        let discovery_options = [
            (self.metadata_url.is_some(), "metadata_url"),
            (self.refresh.is_some(), "refresh"),
            (self.refresh_on_unknown_kid.is_some(), "refresh_on_unknown_kid"),
            (self.ca_file.is_some(), "ca_file"),
            (self.fetch_timeout.is_some(), "fetch_timeout"),
        ];
        let (source, keys) = match self.keys {
            Some(keys) => {
                if let Some((_, option)) = discovery_options.iter().find(|(set, _)| *set) {
                    return Err(ConfigError::KeySourceConflict(option));
                }
                if let Tenant::Domain(domain) = &tenant {
                    return Err(ConfigError::TenantNeedsDiscovery(domain.clone()));
                }
                (KeySource::File, keys)
            }
            None => {
                let discovery = Discovery::new(
                    &authority,
                    tenant.as_str(),
                    self.metadata_url.as_deref(),
                    self.ca_file,
                    self.fetch_timeout.unwrap_or(DEFAULT_FETCH_TIMEOUT),
                );
                let source = KeySource::Discovery {
                    discovery,
                    refresh: self.refresh.unwrap_or(DEFAULT_REFRESH),
                    refresh_on_unknown_kid: self
                        .refresh_on_unknown_kid
                        .unwrap_or(DEFAULT_REFRESH_ON_UNKNOWN_KID),
                };
                (source, KeySet::default())
            }
        };
        let audiences =
            self.audiences.unwrap_or_else(|| vec![client_id.clone(), format!("api://{client_id}")]);
        let issuers = match (&source, self.issuers.is_empty()) {
            (_, false) => self.issuers,
            (KeySource::File, true) => {
                vec![format!("{authority}/{TENANT_PLACEHOLDER}/v2.0"), v1_issuer_template(&authority)]
            }
            (KeySource::Discovery { .. }, true) => Vec::new(),
        };
        let allowed_tenants = match (self.allowed_tenants, &tenant) {
            (Some(allowed), _) => allowed,
            (None, Tenant::Id(id)) => AllowedTenants::Only(vec![id.clone()]),
            (None, Tenant::Consumers) => AllowedTenants::Only(vec![CONSUMERS_TENANT_ID.to_owned()]),
            // The metadata of a named tenant gives its concrete issuer: only its tokens match.
            (None, Tenant::Domain(_)) => AllowedTenants::Any,
            (None, other) => return Err(ConfigError::AllowedTenantsRequired(other.as_str().to_owned())),
        };
        let leeway = self.leeway.unwrap_or(60);
        let algorithms = self.algorithms.unwrap_or_else(|| vec![Algorithm::RS256]);
        Ok(Provider {
            name: name.to_owned(),
            tenant,
            client_id,
            audiences,
            authority,
            issuers,
            allowed_tenants,
            source,
            state: RwLock::new(Arc::new(KeyState { keys, issuers: Vec::new() })),
            leeway,
            algorithms,
            require_permission: self.require_permission.unwrap_or(true),
            cache: TokenCache::new(self.token_cache.unwrap_or(DEFAULT_TOKEN_CACHE)),
        })
    }
}

impl Provider {
    /// The keys in force (a cheap shared copy).
    pub fn key_state(&self) -> Arc<KeyState> {
        self.state.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Puts new keys in force, and forgets cached verifications made with keys that are gone.
    pub fn update_keys(&self, keys: KeySet, issuers: Vec<String>) {
        self.cache.retain_keys(|kid| keys.get(kid).is_some());
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(KeyState { keys, issuers });
    }

    /// The issuers that tokens are checked against, with these keys in force.
    pub(crate) fn accepted_issuers<'a>(&'a self, state: &'a KeyState) -> &'a [String] {
        if self.issuers.is_empty() {
            &state.issuers
        } else {
            &self.issuers
        }
    }

    /// `true` when some allowed algorithm can use a key of this family.
    pub fn uses_family(&self, family: KeyFamily) -> bool {
        self.algorithms.iter().any(|a| KeyFamily::of(*a) == Some(family))
    }

    /// The v2-form issuer of a tenant, which Entra writes into its keys' `issuer` property.
    pub(crate) fn v2_issuer(&self, tid: &str) -> String {
        format!("{}/{tid}/v2.0", self.authority)
    }
}
