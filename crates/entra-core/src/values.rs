//! Parsers for the values an operator writes in `entra_provider { ... }`: GUIDs, tenants,
//! algorithms and URLs. Each refusal names the directive.

use jsonwebtoken::Algorithm;

use crate::error::ConfigError;

/// The tenant id of personal Microsoft accounts (rule 6).
pub const CONSUMERS_TENANT_ID: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";
/// Placeholder filled from the token's `tid` in issuer templates (rule 4).
pub const TENANT_PLACEHOLDER: &str = "{tenantid}";

/// `true` for the canonical 8-4-4-4-12 hexadecimal form.
pub fn is_guid(s: &str) -> bool {
    let b = s.as_bytes();
    // Run by run: a first sight checks one or two, and a test per character and place cost
    // 400 instructions.
    b.len() == 36
        && [8, 13, 18, 23].iter().all(|&i| b[i] == b'-')
        && [&b[..8], &b[9..13], &b[14..18], &b[19..23], &b[24..]]
            .iter()
            .all(|run| run.iter().all(u8::is_ascii_hexdigit))
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
    /// A domain-name tenant's default: the one tenant whose id its metadata's issuer names.
    Metadata,
}

impl AllowedTenants {
    /// `allowed_tenants GUID ... | any;`
    pub fn parse(values: &[&str]) -> Result<AllowedTenants, ConfigError> {
        match values {
            ["any"] => Ok(AllowedTenants::Any),
            _ => values
                .iter()
                .map(|v| parse_guid("allowed_tenants", v))
                .collect::<Result<_, _>>()
                .map(AllowedTenants::Only),
        }
    }

    /// Whether tokens of `tid` may pass, `metadata_issuers` being the issuers the provider's
    /// metadata named.
    pub fn allows(&self, tid: &str, metadata_issuers: &[String]) -> bool {
        // Entra writes tenant ids in lower case, as the configuration keeps them: an exact
        // comparison answers first, a case-blind one only when that fails.
        let same = |t: &str| t == tid || t.eq_ignore_ascii_case(tid);
        match self {
            AllowedTenants::Any => true,
            AllowedTenants::Only(list) => list.iter().any(|t| same(t)),
            AllowedTenants::Metadata => metadata_issuers.iter().any(|iss| {
                // The comparison first: it refuses a segment of another length at once.
                iss.split('/').any(|segment| same(segment) && is_guid(segment))
            }),
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

/// `https://` anywhere, `http://` only towards loopback (tests and the development IdP): an IP
/// literal in 127.0.0.0/8, `::1`, or the name `localhost`. Parsed by the HTTP client's own URI
/// parser, and returned as it re-serialises it (without a trailing slash), so that what is
/// checked here is what the client connects to. No userinfo (`http://127.0.0.1@evil.example/`
/// would connect to `evil.example`), and a host of plain ASCII letters, digits, `.`, `-`, or an
/// IP literal: no `%`-encoding, no `\\`.
pub fn parse_url(directive: &'static str, value: &str) -> Result<String, ConfigError> {
    let bad = || ConfigError::BadUrl { directive, value: value.to_owned() };
    let uri: ureq::http::Uri = value.parse().map_err(|_| bad())?;
    let (Some(scheme), Some(authority), Some(host)) = (uri.scheme_str(), uri.authority(), uri.host()) else {
        return Err(bad());
    };
    let scheme = scheme.to_ascii_lowercase();
    let ip = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => Some(v6.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?.into()),
        None => host.parse::<std::net::Ipv4Addr>().ok().map(std::net::IpAddr::from),
    };
    let plain_name =
        |h: &str| !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    let host_ok = ip.is_some() || plain_name(host);
    let loopback = ip.is_some_and(|ip| ip.is_loopback()) || host.eq_ignore_ascii_case("localhost");
    let allowed = match scheme.as_str() {
        "https" => true,
        "http" => loopback,
        _ => false,
    };
    if authority.as_str().contains('@') || !host_ok || !allowed {
        return Err(bad());
    }
    Ok(uri.to_string().trim_end_matches('/').to_owned())
}

/// The longest `issuer` or `audience` value (Entra's are under 100 bytes).
pub const MAX_CLAIM_VALUE_LEN: usize = 512;

/// An `issuer` line's value: an http(s) URL, `{tenantid}` allowed.
pub fn parse_issuer(value: &str) -> Result<String, ConfigError> {
    check_length("issuer", value)?;
    if value.starts_with("https://") || value.starts_with("http://") {
        Ok(value.to_owned())
    } else {
        Err(ConfigError::BadIssuer(value.to_owned()))
    }
}

/// An `audience` line's value: any text up to [`MAX_CLAIM_VALUE_LEN`] bytes.
pub fn parse_audience(value: &str) -> Result<String, ConfigError> {
    check_length("audience", value)?;
    Ok(value.to_owned())
}

fn check_length(directive: &'static str, value: &str) -> Result<(), ConfigError> {
    if value.is_empty() || value.len() > MAX_CLAIM_VALUE_LEN {
        return Err(ConfigError::ValueLength { directive, length: value.len() });
    }
    Ok(())
}

/// `on` or `off`.
pub fn parse_flag(directive: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value {
        "on" => Ok(true),
        "off" => Ok(false),
        v => Err(ConfigError::NotAFlag { directive, value: v.into() }),
    }
}

/// `token_cache number | off;`: how many verified tokens a worker keeps (0: none).
pub fn parse_token_cache(value: &str) -> Result<usize, ConfigError> {
    match value {
        "off" => Ok(0),
        v => v.parse().ok().filter(|n| *n > 0).ok_or_else(|| ConfigError::BadTokenCache(v.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::{is_guid, AllowedTenants};

    #[test]
    fn a_tenant_is_allowed_in_any_case_and_no_other_is() {
        const TID: &str = "9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93";
        let other = "00000000-3d4a-4b8e-a6f0-5c2d8e7b1a93";
        let only = AllowedTenants::Only(vec![TID.to_owned()]);
        assert!(only.allows(TID, &[]));
        assert!(only.allows(&TID.to_ascii_uppercase(), &[]));
        assert!(!only.allows(other, &[]));
        let issuers = [format!("https://login.microsoftonline.com/{}/v2.0", TID.to_ascii_uppercase())];
        assert!(AllowedTenants::Metadata.allows(TID, &issuers));
        assert!(!AllowedTenants::Metadata.allows(other, &issuers));
        assert!(!AllowedTenants::Metadata.allows("v2.0", &issuers), "a segment that is no GUID");
        assert!(AllowedTenants::Any.allows(other, &[]));
    }

    #[test]
    fn only_the_canonical_guid_form_is_a_guid() {
        assert!(is_guid("9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93"));
        assert!(is_guid("9F2B7C1E-3D4A-4B8E-A6F0-5C2D8E7B1A93"));
        for text in [
            "",
            "9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a9",
            "9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a934",
            "9f2b7c1e3d4a-4b8e-a6f0-5c2d8e7b1a934",
            "9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e-b1a93",
            "-f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93",
            "9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a9-",
            "9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a9g",
            "9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a9 ",
            "{f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a9}",
            "9f2b7c1e_3d4a_4b8e_a6f0_5c2d8e7b1a93",
        ] {
            assert!(!is_guid(text), "{text:?}");
        }
    }
}
