//! Judging one bearer token: structure, header, signature, then Entra's claim rules.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::error::Denial;
use crate::keys::KeyFamily;
use crate::provider::{is_guid, parse_algorithm, Provider, TENANT_PLACEHOLDER};

/// Audiences that mark a Microsoft Graph token (rule 7).
const GRAPH_AUDIENCES: [&str; 2] = ["00000003-0000-0000-c000-000000000000", "https://graph.microsoft.com"];

/// Longest token judged at all; nginx's own header limits normally stop larger ones first.
pub const MAX_TOKEN_LEN: usize = 64 * 1024;

/// The JOSE header fields that decide anything. `jku`, `x5u`, `jwk` and `x5c` are never read:
/// key material comes only from the provider's key set (rule 9).
#[derive(Deserialize)]
struct JoseHeader<'a> {
    #[serde(borrow)]
    alg: Option<JsonStr<'a>>,
    #[serde(borrow)]
    kid: Option<JsonStr<'a>>,
    crit: Option<IgnoredAny>,
    nonce: Option<IgnoredAny>,
}

/// The claims the rules look at, each kept as its raw JSON so that a claim of the wrong type is
/// reported by name. One pass over the payload, borrowing from it; other claims are skipped.
#[derive(Deserialize)]
struct ClaimsView<'a> {
    #[serde(borrow, default)]
    exp: Option<&'a RawValue>,
    #[serde(borrow, default)]
    nbf: Option<&'a RawValue>,
    #[serde(borrow, default)]
    iss: Option<&'a RawValue>,
    #[serde(borrow, default)]
    aud: Option<&'a RawValue>,
    #[serde(borrow, default)]
    tid: Option<&'a RawValue>,
    #[serde(borrow, default)]
    oid: Option<&'a RawValue>,
    #[serde(borrow, default)]
    sub: Option<&'a RawValue>,
    #[serde(borrow, default)]
    scp: Option<&'a RawValue>,
    #[serde(borrow, default)]
    ver: Option<&'a RawValue>,
    #[serde(borrow, default)]
    azp: Option<&'a RawValue>,
    #[serde(borrow, default)]
    appid: Option<&'a RawValue>,
    #[serde(borrow, default)]
    roles: Option<&'a RawValue>,
    #[serde(borrow, default)]
    groups: Option<&'a RawValue>,
}

/// A JSON string, borrowed from the input unless it has escapes. serde's own `Cow<str>` always
/// copies, which cost a first-sight token a dozen allocations.
struct JsonStr<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for JsonStr<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Text<'a> {
            type Value = JsonStr<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<JsonStr<'a>, E> {
                Ok(JsonStr(Cow::Borrowed(text)))
            }
            fn visit_str<E>(self, text: &str) -> Result<JsonStr<'a>, E> {
                Ok(JsonStr(Cow::Owned(text.to_owned())))
            }
        }
        d.deserialize_str(Text(std::marker::PhantomData))
    }
}

impl std::ops::Deref for JsonStr<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// A JSON array whose elements are all strings, checked without keeping them.
struct StringArray;

impl<'de> Deserialize<'de> for StringArray {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Elements;
        impl<'de> serde::de::Visitor<'de> for Elements {
            type Value = StringArray;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array of strings")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<StringArray, A::Error> {
                while seq.next_element::<JsonStr<'de>>()?.is_some() {}
                Ok(StringArray)
            }
        }
        d.deserialize_seq(Elements)
    }
}

/// A claim read as `T`: absent, or present with the wrong JSON type (a refusal naming it).
fn typed<'a, T: Deserialize<'a>>(raw: Option<&'a RawValue>, name: &'static str) -> Result<Option<T>, Denial> {
    raw.map(|r| serde_json::from_str(r.get()).map_err(|_| Denial::InvalidClaim(name))).transpose()
}

/// A token whose signature and claims passed every rule of its provider.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    pub kid: String,
    /// `exp`, in seconds since the epoch.
    pub exp: u64,
    /// The decoded payload (JSON).
    payload: Box<str>,
    /// Every claim, parsed from `payload` the first time a requirement or a variable asks:
    /// a location that only needs a valid token never builds it.
    claims: OnceLock<Map<String, Value>>,
}

/// The outcome of [`Provider::judge`].
#[derive(Debug, Clone)]
pub struct Judged {
    pub token: Arc<VerifiedToken>,
    /// Found in the verified-token cache: no signature was checked.
    pub cached: bool,
}

/// A NumericDate claim: seconds since the epoch, a JSON number (fractions are cut).
fn numeric_date(raw: Option<&RawValue>, name: &'static str) -> Result<Option<u64>, Denial> {
    let Some(number) = typed::<serde_json::Number>(raw, name)? else { return Ok(None) };
    number
        .as_u64()
        .or_else(|| number.as_f64().filter(|f| f.is_finite() && *f >= 0.0).map(|f| f as u64))
        .map(Some)
        .ok_or(Denial::InvalidClaim(name))
}

fn strings<'a>(claims: &'a Map<String, Value>, name: &str) -> impl Iterator<Item = &'a str> {
    claims.get(name).and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str)
}

/// The token of an `Authorization: Bearer <token>` header value (scheme case-insensitive).
/// Another scheme (`Basic`, ...) is no token at all: it may be meant for another access module.
pub fn bearer_token(header: &[u8]) -> Result<&[u8], Denial> {
    let scheme_end = header.iter().position(|b| *b == b' ' || *b == b'\t').unwrap_or(header.len());
    if !header[..scheme_end].eq_ignore_ascii_case(b"bearer") {
        return Err(Denial::NoToken);
    }
    // Anything that is not one compact JWT (spaces, a second token) fails its parse.
    let token = header[scheme_end..].trim_ascii();
    if token.is_empty() {
        return Err(Denial::Malformed);
    }
    Ok(token)
}

impl Provider {
    /// Judges a bearer token at `now` (seconds since the epoch): from the verified-token cache
    /// when this exact token passed before and has not expired, else by [`Provider::verify`].
    pub fn judge(&self, token: &[u8], now: u64) -> Result<Judged, Denial> {
        match self.cached(token, now) {
            Some(hit) => Ok(Judged { token: hit, cached: true }),
            None => self.verify_and_remember(token, now).map(|token| Judged { token, cached: false }),
        }
    }

    /// This exact token, if it passed before and has not expired.
    pub fn cached(&self, token: &[u8], now: u64) -> Option<Arc<VerifiedToken>> {
        self.cache.get(token, now)
    }

    /// Verifies a token the cache did not answer, and remembers it if it passes.
    pub fn verify_and_remember(&self, token: &[u8], now: u64) -> Result<Arc<VerifiedToken>, Denial> {
        let text = core::str::from_utf8(token).map_err(|_| Denial::Malformed)?;
        let verified = Arc::new(self.verify(text, now)?);
        self.cache.insert(token, verified.clone(), verified.exp.saturating_add(self.leeway), now);
        Ok(verified)
    }

    /// Judges a bearer token at `now` (seconds since the epoch). `Ok` means every rule of this
    /// provider holds; location requirements are checked afterwards by [`crate::policy::Policy`].
    pub fn verify(&self, token: &str, now: u64) -> Result<VerifiedToken, Denial> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(Denial::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Denial::Malformed);
        };
        let header_json = URL_SAFE_NO_PAD.decode(header_b64).map_err(|_| Denial::Malformed)?;
        let header: JoseHeader = serde_json::from_slice(&header_json).map_err(|_| Denial::Malformed)?;

        // A Graph token's signature covers a nonce only Graph can rebuild: say so before the
        // signature check would fail with a confusing reason.
        if header.nonce.is_some() {
            return Err(Denial::GraphToken);
        }
        if header.crit.is_some() {
            return Err(Denial::CritHeader);
        }
        let alg = header.alg.as_deref().ok_or(Denial::Malformed)?;
        let alg = parse_algorithm(alg).map_err(|_| Denial::AlgNotAllowed)?;
        if !self.algorithms.contains(&alg) {
            return Err(Denial::AlgNotAllowed);
        }
        let kid = header.kid.as_deref().ok_or(Denial::MissingKid)?;
        let state = self.key_state();
        let key = state.keys.get(kid).ok_or(Denial::UnknownKid)?;
        if KeyFamily::of(alg) != Some(key.family) {
            return Err(Denial::AlgKeyMismatch);
        }

        // The signature covers the encoded header and payload, exactly as received.
        crate::crypto::install();
        let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
        match jsonwebtoken::crypto::verify(signature_b64, signing_input.as_bytes(), &key.decoding, alg) {
            Ok(true) => {}
            Ok(false) => return Err(Denial::BadSignature),
            Err(e) if matches!(e.kind(), ErrorKind::Base64(_)) => return Err(Denial::Malformed),
            Err(_) => return Err(Denial::AlgKeyMismatch),
        }

        // The claims are parsed once, and their times checked here with strict JSON types: a
        // string `exp` or `nbf` is a refusal, never "absent" (CVE-2026-25537).
        let payload = URL_SAFE_NO_PAD.decode(payload_b64).map_err(|_| Denial::Malformed)?;
        let payload = String::from_utf8(payload).map_err(|_| Denial::Malformed)?;
        let view: ClaimsView = serde_json::from_str(&payload).map_err(|_| Denial::Malformed)?;
        let exp = numeric_date(view.exp, "exp")?.ok_or(Denial::MissingExp)?;
        if exp.saturating_add(self.leeway) < now {
            return Err(Denial::Expired);
        }
        if numeric_date(view.nbf, "nbf")?.is_some_and(|nbf| nbf > now.saturating_add(self.leeway)) {
            return Err(Denial::NotYetValid);
        }

        self.check_audience(view.aud)?;
        let tid = typed::<JsonStr>(view.tid, "tid")?;
        if tid.as_deref().is_some_and(|t| !is_guid(t)) {
            return Err(Denial::InvalidClaim("tid"));
        }
        let iss = typed::<JsonStr>(view.iss, "iss")?.ok_or(Denial::WrongIssuer)?;
        self.check_issuer(self.accepted_issuers(&state), &iss, tid.as_deref())?;
        if let Some(key_issuer) = &key.issuer {
            self.check_key_issuer(key_issuer, &iss, tid.as_deref())?;
        }
        for (raw, name) in [
            (view.oid, "oid"),
            (view.sub, "sub"),
            (view.ver, "ver"),
            (view.azp, "azp"),
            (view.appid, "appid"),
        ] {
            typed::<JsonStr>(raw, name)?;
        }
        let scp = typed::<JsonStr>(view.scp, "scp")?;
        let roles = typed::<StringArray>(view.roles, "roles")?;
        typed::<StringArray>(view.groups, "groups")?;
        if self.require_permission && scp.is_none() && roles.is_none() {
            return Err(Denial::NoPermissionClaims);
        }
        Ok(VerifiedToken { kid: kid.to_owned(), exp, payload: payload.into(), claims: OnceLock::new() })
    }

    fn check_audience(&self, aud: Option<&RawValue>) -> Result<(), Denial> {
        let accepted = |aud: &str| self.audiences.iter().any(|a| a == aud);
        let graph = |aud: &str| GRAPH_AUDIENCES.iter().any(|g| g.eq_ignore_ascii_case(aud));
        let raw = aud.ok_or(Denial::WrongAudience)?;
        // A string (Entra's form), or an array of strings.
        let one;
        let many;
        let candidates: &[JsonStr] = match serde_json::from_str::<JsonStr>(raw.get()) {
            Ok(aud) => {
                one = [aud];
                &one
            }
            Err(_) => {
                many = typed::<Vec<JsonStr>>(Some(raw), "aud")?.unwrap_or_default();
                &many
            }
        };
        if candidates.iter().any(|a| accepted(a)) {
            Ok(())
        } else if candidates.iter().any(|a| graph(a)) {
            Err(Denial::GraphToken)
        } else {
            Err(Denial::WrongAudience)
        }
    }

    /// Exact match against the accepted issuers, `{tenantid}` filled from a GUID `tid`; then the
    /// tenant allow-list (rule 4).
    fn check_issuer(&self, accepted: &[String], iss: &str, tid: Option<&str>) -> Result<(), Denial> {
        let matches = |template: &String| match (template.contains(TENANT_PLACEHOLDER), tid) {
            (false, _) => template == iss,
            (true, Some(tid)) => fills_to(template, tid, iss),
            (true, None) => false,
        };
        if !accepted.iter().any(matches) {
            return Err(Denial::WrongIssuer);
        }
        match tid {
            Some(tid) if !self.allowed_tenants.allows(tid) => Err(Denial::TenantNotAllowed),
            _ => Ok(()),
        }
    }

    /// A key that names an issuer signs only for it: compare with the token's issuer and with
    /// its v2 form, which Entra writes into keys that sign v1 tokens too (rule 5).
    fn check_key_issuer(&self, key_issuer: &str, iss: &str, tid: Option<&str>) -> Result<(), Denial> {
        let tid_or_none = tid.unwrap_or_default();
        if key_issuer.contains(TENANT_PLACEHOLDER) && tid.is_none() {
            return Err(Denial::KeyIssuerMismatch);
        }
        // The v2 form is built only when the token's own issuer is not the key's (v1 tokens).
        if fills_to(key_issuer, tid_or_none, iss)
            || tid.is_some_and(|t| fills_to(key_issuer, t, &self.v2_issuer(t)))
        {
            Ok(())
        } else {
            Err(Denial::KeyIssuerMismatch)
        }
    }
}

/// Whether `template`, with each `{tenantid}` read as `tid`, is `text`; compared in place
/// rather than by building the filled-in string.
fn fills_to(template: &str, tid: &str, text: &str) -> bool {
    let mut pieces = template.split(TENANT_PLACEHOLDER);
    let first = pieces.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else { return false };
    for piece in pieces {
        match rest.strip_prefix(tid).and_then(|r| r.strip_prefix(piece)) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    rest.is_empty()
}

impl VerifiedToken {
    /// Every claim of the token.
    pub fn claims(&self) -> &Map<String, Value> {
        // The payload parsed as a JSON object during verification, so this cannot fail.
        self.claims.get_or_init(|| serde_json::from_str(&self.payload).unwrap_or_default())
    }

    pub fn claim(&self, name: &str) -> Option<&Value> {
        self.claims().get(name)
    }

    pub fn str(&self, name: &str) -> Option<&str> {
        self.claim(name).and_then(Value::as_str)
    }

    pub fn oid(&self) -> Option<&str> {
        self.str("oid")
    }

    pub fn tid(&self) -> Option<&str> {
        self.str("tid")
    }

    /// `preferred_username` (v2), else `upn` or `unique_name` (v1). For display only (rule 13).
    pub fn upn(&self) -> Option<&str> {
        self.str("preferred_username").or_else(|| self.str("upn")).or_else(|| self.str("unique_name"))
    }

    /// The calling client: `azp` (v2) or `appid` (v1).
    pub fn app_id(&self) -> Option<&str> {
        self.str("azp").or_else(|| self.str("appid"))
    }

    pub fn groups(&self) -> impl Iterator<Item = &str> {
        strings(self.claims(), "groups")
    }

    pub fn roles(&self) -> impl Iterator<Item = &str> {
        strings(self.claims(), "roles")
    }

    /// Delegated scopes: `scp` is one space-separated string.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.str("scp").unwrap_or("").split_ascii_whitespace()
    }

    /// Entra left the groups out (rule 16): `_claim_names.groups`, or `hasgroups` in implicit flow.
    pub fn has_group_overage(&self) -> bool {
        let named_elsewhere = self
            .claim("_claim_names")
            .and_then(Value::as_object)
            .is_some_and(|names| names.contains_key("groups"));
        named_elsewhere || self.claim("hasgroups") == Some(&Value::Bool(true))
    }
}
