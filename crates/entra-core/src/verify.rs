//! The rules a provider judges a bearer token by: structure and header (rule 9), the signature,
//! then Entra's claim rules (rules 2-7, 12-15); and [`Provider::judge`], the one entry point of
//! the module and the benchmark, with the verified-token cache in front.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::base64url;
use crate::claims::{claim, Audience, ClaimsView, NumericDate, Typed};
use crate::error::Denial;
use crate::keys::KeyFamily;
use crate::provider::{KeyState, Provider};
use crate::token::{bearer_token, json_object, JoseHeader, JsonStr, VerifiedToken};
use crate::values::{is_guid, parse_algorithm, TENANT_PLACEHOLDER};

/// Audiences that mark a Microsoft Graph token (rule 7).
const GRAPH_AUDIENCES: [&str; 2] = ["00000003-0000-0000-c000-000000000000", "https://graph.microsoft.com"];

/// Longest token judged at all; nginx's own header limits normally stop larger ones first.
pub const MAX_TOKEN_LEN: usize = 64 * 1024;

/// Stack space for a decoded JOSE header or signature: Entra's headers are about a hundred bytes
/// and RSA-4096's signature is 512 (RSA-8192's, the largest accepted, goes to the heap). Small,
/// because the buffers are zeroed first.
const DECODE_ON_STACK: usize = 512;

/// Decodes base64url (no padding) into `buf`, or into `spill` when it would not fit there (a
/// header with a large extra parameter is still a header).
fn decode_into<'b>(text: &[u8], buf: &'b mut [u8], spill: &'b mut Vec<u8>) -> Result<&'b [u8], Denial> {
    let decoded = match buf.len() >= base64url::decoded_len(text) {
        true => base64url::decode_to_slice(text, buf).map(|len| &buf[..len]),
        false => base64url::decode_to_vec(text, spill).map(|_| &spill[..]),
    };
    decoded.map_err(|_| Denial::Malformed)
}

/// What [`Provider::judge`] decided, and how.
#[derive(Debug, Clone)]
pub struct Judgment {
    pub verdict: Result<Arc<VerifiedToken>, Denial>,
    /// `None` when the verified-token cache answered; else how long judging took (signature and
    /// claims, passed or refused): the worker's crypto load.
    pub checked_for: Option<Duration>,
}

impl Provider {
    /// Judges the token of an `Authorization` header value at `now` (seconds since the epoch):
    /// from the verified-token cache when this exact token passed before and has not expired
    /// (no clock read), else by [`Provider::verify`], timed, and remembered if it passes.
    pub fn judge(&self, authorization: Option<&[u8]>, now: u64) -> Judgment {
        let token = match authorization.ok_or(Denial::NoToken).and_then(bearer_token) {
            Ok(token) => token,
            Err(denial) => return Judgment { verdict: Err(denial), checked_for: Some(Duration::ZERO) },
        };
        if let Some(hit) = self.cache.get(&[token], now) {
            return Judgment { verdict: Ok(hit), checked_for: None };
        }
        let started = Instant::now();
        // No UTF-8 pass over the token: its parts are decoded as base64url, which admits ASCII only.
        let verdict = self.verify_as(token, now, TokenUse::Access).map(|verified| {
            let verified = Arc::new(verified);
            self.cache.insert(&[token], verified.clone(), verified.exp.saturating_add(self.leeway), now);
            verified
        });
        Judgment { verdict, checked_for: Some(started.elapsed()) }
    }

    /// Judges a bearer token at `now` (seconds since the epoch). `Ok` means every rule of this
    /// provider holds; location requirements are checked afterwards by [`crate::policy::Policy`].
    pub fn verify(&self, token: &str, now: u64) -> Result<VerifiedToken, Denial> {
        self.verify_as(token.as_bytes(), now, TokenUse::Access)
    }

    /// Judges the ID token of this app's sign-in (rule 20): the rules of a bearer token, but its
    /// audience is the client id, its `nonce` must be the sign-in attempt's, and it needs no
    /// permission claims.
    pub fn verify_id_token(&self, token: &str, now: u64, nonce: &str) -> Result<VerifiedToken, Denial> {
        self.verify_as(token.as_bytes(), now, TokenUse::Id { nonce })
    }

    fn verify_as(&self, token: &[u8], now: u64, usage: TokenUse) -> Result<VerifiedToken, Denial> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(Denial::Malformed);
        }
        // Three parts: a JWE's five, or anything with a dot more or less, is malformed.
        let mut dots = memchr::memchr_iter(b'.', token);
        let (Some(first), Some(second), None) = (dots.next(), dots.next(), dots.next()) else {
            return Err(Denial::Malformed);
        };
        let (header_b64, payload_b64, signature_b64) =
            (&token[..first], &token[first + 1..second], &token[second + 1..]);
        // The header and the signature are decoded on the stack: a first sight allocates only
        // what the verified token keeps.
        let (mut header_buf, mut header_spill) = ([0u8; DECODE_ON_STACK], Vec::new());
        let header_json = decode_into(header_b64, &mut header_buf, &mut header_spill)?;
        let header: JoseHeader = json_object(header_json).map_err(|_| Denial::Malformed)?;

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
        let signing_input = &token[..second];
        let (mut signature_buf, mut signature_spill) = ([0u8; DECODE_ON_STACK], Vec::new());
        let signature = decode_into(signature_b64, &mut signature_buf, &mut signature_spill)?;
        if !key.public.verifies(alg, signing_input, signature) {
            return Err(Denial::BadSignature);
        }

        // The claims are parsed once, and their times checked here with strict JSON types: a
        // string `exp` or `nbf` is a refusal, never "absent" (CVE-2026-25537).
        // Sized exactly, so that the verified token keeps this buffer without a reallocation.
        let mut payload = Vec::new();
        base64url::decode_to_vec(payload_b64, &mut payload).map_err(|_| Denial::Malformed)?;
        let view: ClaimsView = json_object(&payload).map_err(|_| Denial::Malformed)?;
        let NumericDate(exp) = claim(view.exp, "exp")?.ok_or(Denial::MissingExp)?;
        if exp.saturating_add(self.leeway) < now {
            return Err(Denial::Expired);
        }
        if claim(view.nbf, "nbf")?.is_some_and(|NumericDate(nbf)| nbf > now.saturating_add(self.leeway)) {
            return Err(Denial::NotYetValid);
        }

        let audiences = match usage {
            TokenUse::Access => &self.audiences[..],
            TokenUse::Id { .. } => core::slice::from_ref(&self.client_id),
        };
        check_audience(audiences, view.aud)?;
        let tid = claim(view.tid, "tid")?;
        if tid.as_deref().is_some_and(|t| !is_guid(t)) {
            return Err(Denial::InvalidClaim("tid"));
        }
        let iss = claim(view.iss, "iss")?.ok_or(Denial::WrongIssuer)?;
        self.check_issuer(&state, &iss, tid.as_deref())?;
        if let Some(key_issuer) = &key.issuer {
            self.check_key_issuer(key_issuer, &iss, tid.as_deref())?;
        }
        for (read, name) in [(view.oid, "oid"), (view.sub, "sub"), (view.ver, "ver")] {
            claim(read, name)?;
        }
        let client = [claim(view.azp, "azp")?, claim(view.appid, "appid")?];
        let scp = claim(view.scp, "scp")?;
        let roles = claim(view.roles, "roles")?;
        claim(view.groups, "groups")?;
        claim(view.acrs, "acrs")?;
        claim(view.auth_time, "auth_time")?;
        // An ID token of this app has `aud` = the client id, a default audience: only its form
        // tells it apart. Every Entra access token names its client (`azp` in v2, `appid` in v1),
        // and only ID tokens carry a `nonce` (those from refresh or device-code flows may not).
        if matches!(usage, TokenUse::Access) && (view.nonce.is_some() || client.iter().all(Option::is_none)) {
            return Err(Denial::NotAnAccessToken);
        }
        match usage {
            TokenUse::Access if self.require_permission && scp.is_none() && roles.is_none() => {
                return Err(Denial::NoPermissionClaims)
            }
            TokenUse::Id { nonce } if claim(view.nonce, "nonce")?.as_deref() != Some(nonce) => {
                return Err(Denial::NonceMismatch)
            }
            _ => {}
        }
        Ok(VerifiedToken::new(kid, exp, payload))
    }
}

/// What a token is presented as.
#[derive(Debug, Clone, Copy)]
enum TokenUse<'a> {
    /// A bearer access token for this API.
    Access,
    /// The ID token of a sign-in attempt with this nonce.
    Id { nonce: &'a str },
}

/// `aud` must name an accepted audience; a Graph audience is named as such (rule 7).
fn check_audience(audiences: &[String], aud: Option<Typed<Audience>>) -> Result<(), Denial> {
    let accepted = |aud: &str| audiences.iter().any(|a| a == aud);
    let graph = |aud: &str| GRAPH_AUDIENCES.iter().any(|g| g.eq_ignore_ascii_case(aud));
    let aud = claim(aud, "aud")?.ok_or(Denial::WrongAudience)?;
    let candidates: &[JsonStr] = match &aud {
        Audience::One(one) => std::slice::from_ref(one),
        Audience::Many(many) => many,
    };
    if candidates.iter().any(|a| accepted(a)) {
        Ok(())
    } else if candidates.iter().any(|a| graph(a)) {
        Err(Denial::GraphToken)
    } else {
        Err(Denial::WrongAudience)
    }
}

impl Provider {
    /// Exact match against the accepted issuers, `{tenantid}` filled from a GUID `tid`; then the
    /// tenant allow-list (rule 4).
    fn check_issuer(&self, state: &KeyState, iss: &str, tid: Option<&str>) -> Result<(), Denial> {
        let accepted = self.accepted_issuers(state);
        let matches = |template: &String| match (template.contains(TENANT_PLACEHOLDER), tid) {
            (false, _) => template == iss,
            (true, Some(tid)) => fills_to(template, tid, iss),
            (true, None) => false,
        };
        if !accepted.iter().any(matches) {
            return Err(Denial::WrongIssuer);
        }
        match tid {
            Some(tid) if !self.allowed_tenants.allows(tid, &state.issuers) => Err(Denial::TenantNotAllowed),
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
    let (mut template, mut rest) = (template, text);
    // Each `{` found by a byte search (a substring search's set-up costs more than this whole
    // comparison): a placeholder, or a brace of the text.
    while let Some(at) = template.find('{') {
        let (literal, placeholder) = template.split_at(at);
        let (expected, after) = match placeholder.strip_prefix(TENANT_PLACEHOLDER) {
            Some(after) => ((literal, tid), after),
            None => ((&template[..=at], ""), &template[at + 1..]),
        };
        match rest.strip_prefix(expected.0).and_then(|r| r.strip_prefix(expected.1)) {
            Some(r) => rest = r,
            None => return false,
        }
        template = after;
    }
    rest == template
}

#[cfg(test)]
mod tests {
    use super::fills_to;

    #[test]
    fn a_template_fills_to_the_text_with_its_tenant_and_nothing_else() {
        const TID: &str = "9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93";
        let template = "https://login.microsoftonline.com/{tenantid}/v2.0";
        assert!(fills_to(template, TID, &format!("https://login.microsoftonline.com/{TID}/v2.0")));
        for other in
            ["https://login.microsoftonline.com/{tenantid}/v2.0", "https://login.microsoftonline.com//v2.0"]
        {
            assert!(!fills_to(template, TID, other), "{other}");
        }
        assert!(
            !fills_to(template, TID, &format!("https://login.microsoftonline.com/{TID}/v2.0/")),
            "all of it"
        );
        assert!(fills_to("a{tenantid}b{tenantid}", "t", "atbt"), "every placeholder");
        assert!(fills_to("{x}/{tenantid}", "t", "{x}/t"), "a brace that starts none is text");
        assert!(!fills_to("{x}/{tenantid}", "t", "{y}/t"));
        assert!(fills_to("https://sts.windows.net/x/", "t", "https://sts.windows.net/x/"), "no placeholder");
    }
}
