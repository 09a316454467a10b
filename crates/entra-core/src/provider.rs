//! One Entra application as the operator describes it in `entra_provider { ... }`.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::Algorithm;
use ring::rand::SystemRandom;

use crate::cache::TokenCache;
use crate::discovery::{Discovery, Endpoints};
use crate::error::{ConfigError, Denial};
use crate::graph::{Graph, GraphConfig};
use crate::keys::{KeyFamily, KeySet};
use crate::revocation::SessionKeys;
use crate::schedule::Schedule;
use crate::session::Session;
use crate::signin::{
    AttemptKind, Authorize, Leftover, Redirect, SessionJudgment, SessionRequest, SignIn, SignInConfig,
    StartError,
};
use crate::values::{AllowedTenants, Tenant, CONSUMERS_TENANT_ID, TENANT_PLACEHOLDER};

/// Default size of the verified-token cache, in tokens (each takes about 4 KiB).
pub const DEFAULT_TOKEN_CACHE: usize = 4096;
/// The default authority (global Azure cloud).
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";

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
    /// The browser sign-in settings (`client_secret_file`, `session_*`, ...).
    pub sign_in: SignInConfig,
    /// `groups_from_graph`, `graph_url`, `groups_cache`, `groups_cache_entries`.
    pub graph: GraphConfig,
}

pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a provider's signing keys come from.
#[derive(Debug)]
pub enum KeySource {
    /// `jwks_file`: read with the configuration, fixed until the next reload.
    File,
    /// OpenID metadata, fetched and refreshed while nginx runs.
    Discovery { discovery: Discovery, schedule: Schedule },
}

/// The keys in force, with the issuers the metadata named; replaced as a whole.
#[derive(Debug, Default)]
pub struct KeyState {
    pub keys: KeySet,
    pub issuers: Vec<String>,
    /// The browser sign-in endpoints from the same metadata.
    pub endpoints: Endpoints,
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
    /// How browsers sign in with this provider (used by `entra_auth ... session|any`).
    pub sign_in: SignIn,
    /// Group overage answered by Graph (`groups_from_graph on`).
    pub graph: Option<Graph>,
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
        let graph = self.graph.build(
            &client_id,
            &authority,
            self.sign_in.credential.is_some(),
            self.ca_file.clone(),
            self.fetch_timeout.unwrap_or(DEFAULT_FETCH_TIMEOUT),
        )?;
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
                let schedule = Schedule::new(self.refresh, self.refresh_on_unknown_kid);
                let source = KeySource::Discovery { discovery, schedule };
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
            // An issuer template would match every tenant's tokens: the tenant's id is known only
            // from its metadata, so the operator must name it.
            (None, Tenant::Domain(domain)) if issuers.iter().any(|i| i.contains(TENANT_PLACEHOLDER)) => {
                return Err(ConfigError::DomainTenantTemplate(domain.clone()))
            }
            (None, Tenant::Domain(_)) => AllowedTenants::Metadata,
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
            state: RwLock::new(Arc::new(KeyState { keys, ..KeyState::default() })),
            leeway,
            algorithms,
            require_permission: self.require_permission.unwrap_or(true),
            // Sessions weigh more than tokens (a 200-group one about 30 KiB opened): a quarter.
            sign_in: self.sign_in.build(name, self.token_cache.unwrap_or(DEFAULT_TOKEN_CACHE).div_ceil(4)),
            graph,
            cache: TokenCache::new(self.token_cache.unwrap_or(DEFAULT_TOKEN_CACHE)),
        })
    }
}

impl Provider {
    /// Judges a request's browser session ([`SignIn::judge_session`]), with this provider's
    /// endpoints for a revalidation due.
    pub fn judge_session(
        &self,
        request: &SessionRequest,
        is_revoked: impl FnOnce(&Session, &SessionKeys) -> bool,
    ) -> SessionJudgment {
        self.sign_in.judge_session(
            request,
            || self.authorize(),
            |session, keys| self.admits(session, keys, is_revoked),
        )
    }

    /// Whether a session that opened still holds under this provider's configuration as it is
    /// now (a reload may have narrowed `allowed_tenants` or changed `client_id`; nothing is bound
    /// into the seal, so a reload that widens them signs nobody out), and no logout ended it.
    pub fn admits(
        &self,
        session: &Session,
        keys: &SessionKeys,
        is_revoked: impl FnOnce(&Session, &SessionKeys) -> bool,
    ) -> Result<(), Denial> {
        let tenant_allowed = match &self.allowed_tenants {
            // Only this rule reads the keys' state (the metadata's issuers).
            AllowedTenants::Metadata => self.allowed_tenants.allows(&session.tid, &self.key_state().issuers),
            rule => rule.allows(&session.tid, &[]),
        };
        if !tenant_allowed {
            return Err(Denial::TenantNotAllowed);
        }
        // Sessions sealed before the client id was kept have none.
        if !session.client_id.is_empty() && !session.client_id.eq_ignore_ascii_case(&self.client_id) {
            return Err(Denial::SessionInvalid);
        }
        if is_revoked(session, keys) {
            return Err(Denial::SessionRevoked);
        }
        Ok(())
    }

    /// The redirect that starts a sign-in for `request` ([`SignIn::redirect`]); `None` before
    /// the authorize endpoint is known.
    pub fn sign_in_redirect(
        &self,
        request: &SessionRequest,
        kind: AttemptKind,
        return_url: Option<String>,
        leftover: Leftover,
    ) -> Option<Result<Redirect, StartError>> {
        let authorize = self.authorize()?;
        Some(self.sign_in.redirect(request, authorize, kind, return_url, leftover, &SystemRandom::new()))
    }

    /// Where its sign-ins start, once the metadata named the authorize endpoint.
    fn authorize(&self) -> Option<Authorize<'_>> {
        let endpoint = self.key_state().endpoints.authorize.clone()?;
        Some(Authorize { client_id: &self.client_id, endpoint })
    }

    /// The keys in force (a cheap shared copy).
    pub fn key_state(&self) -> Arc<KeyState> {
        self.state.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Puts new keys (and issuers and endpoints) in force, and forgets cached verifications
    /// made with keys that are gone.
    pub fn update_keys(&self, state: KeyState) {
        self.cache.retain_keys(|kid| state.keys.get(kid).is_some());
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(state);
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
