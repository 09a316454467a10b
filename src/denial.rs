//! Where a refusal becomes an answer: the one mapping from a denial to its status, the challenge
//! an API client gets, and the page a failed sign-in shows.

use entra_core::error::AuthContext;
use entra_core::signin::SetCookie;
use entra_core::stepup::{claims_challenge, recent_signin_challenge};
use entra_core::{Denial, DenialClass, Policy, Provider, VerifiedToken};
use ngx::ffi::{ngx_http_request_t, ngx_int_t};

use crate::log::{info, request_log};
use crate::outcome::{self, Outcome};
use crate::response::{escape, page, send, set_cookies, set_header, Header, Known, INTERNAL_ERROR};
use crate::worker::ProviderState;

/// The status a denial is answered with.
pub fn status(denial: Denial) -> u16 {
    match (denial, denial.class()) {
        // The user refused the sign-in at Entra: another attempt would not help.
        (Denial::IdpError(true), _) | (_, DenialClass::InsufficientScope | DenialClass::Forbidden) => 403,
        // Another sign-in would not help: an app-only token never carries a context, a sign-in
        // without auth_time never has a known age.
        (Denial::AuthContextMissing(AuthContext::NONE_POSSIBLE) | Denial::SigninTooOld(true), _) => 403,
        (_, DenialClass::Unavailable) => 503,
        _ => 401,
    }
}

/// The status of a denial with its header: `WWW-Authenticate` (bare for a missing credential,
/// `invalid_token` or `insufficient_scope`, a step-up's challenge), `Retry-After` for a 503;
/// never cached. `who` is the caller, when known; `policy` the location's requirements.
///
/// # Safety
/// `r` is a valid request.
pub unsafe fn challenge(
    r: *mut ngx_http_request_t,
    provider: &Provider,
    denial: Denial,
    who: Option<&VerifiedToken>,
    policy: &Policy,
) -> ngx_int_t {
    let realm = &provider.name;
    let with_error = |error: &str| {
        format!("Bearer realm=\"{realm}\", error=\"{error}\", error_description=\"{}\"", denial.reason())
    };
    let header = match denial.class() {
        // A session's absence or end, for a request that is not a navigation: the page's
        // script can react to a bare challenge.
        DenialClass::Challenge | DenialClass::SignIn | DenialClass::Callback => {
            Some((WWW_AUTHENTICATE, format!("Bearer realm=\"{realm}\"")))
        }
        DenialClass::InvalidToken => Some((WWW_AUTHENTICATE, with_error("invalid_token"))),
        DenialClass::InsufficientScope => Some((WWW_AUTHENTICATE, with_error("insufficient_scope"))),
        DenialClass::Unavailable => Some((RETRY_AFTER, retry_after(denial))),
        DenialClass::Forbidden => None,
        DenialClass::StepUp => match denial {
            Denial::AuthContextMissing(id) if id != AuthContext::NONE_POSSIBLE => {
                // The caller's own tenant: a guest or another organisation signs in at its home.
                let tenant = who.and_then(VerifiedToken::tid).unwrap_or(provider.tenant.as_str());
                let authorize = format!("{}/{tenant}/oauth2/v2.0/authorize", provider.authority);
                Some((WWW_AUTHENTICATE, claims_challenge(realm, &authorize, id)))
            }
            Denial::SigninTooOld(false) => {
                Some((WWW_AUTHENTICATE, recent_signin_challenge(realm, policy.recent_signin.unwrap_or(0))))
            }
            _ => None,
        },
    };
    let known = |name: &[u8]| if name == WWW_AUTHENTICATE { Known::WwwAuthenticate } else { Known::None };
    // SAFETY: per the contract.
    let set = header.map_or(Some(()), |(name, value)| unsafe { set_header(r, name, &value, known(name)) });
    // A denial is never cached (a shared cache must not serve it to a request that would pass).
    // SAFETY: per the contract.
    match set.and_then(|()| unsafe { set_header(r, b"Cache-Control", "no-store", Known::None) }) {
        Some(()) => status(denial) as ngx_int_t,
        None => INTERNAL_ERROR,
    }
}

/// A failed sign-in callback (or logout): one `info` line with the reason, and a page that
/// offers to start again (never a redirect, which could loop), clearing `clear`.
///
/// # Safety
/// `r` is a valid request.
pub unsafe fn sign_in_failed(
    r: *mut ngx_http_request_t,
    state: &ProviderState,
    denial: Denial,
    detail: &str,
    clear: Vec<SetCookie>,
) -> ngx_int_t {
    // SAFETY: per the contract.
    let log = unsafe { request_log(r) };
    let provider = &state.provider;
    info!(log, "sign-in failed: {} (provider \"{}\"): {}", denial.reason(), provider.name, detail);
    if let Some(counters) = state.counters() {
        counters.decided(Err(denial), false);
    }
    // SAFETY: per the contract.
    if let Some(o) = unsafe { outcome::store(r, Outcome::denied(state.index, denial)) } {
        o.denial = Some(denial);
    }
    // A step-up Entra did not grant: asking again would only ask the same.
    let status = if denial.class() == DenialClass::StepUp { 403 } else { status(denial) };
    let mut headers: Vec<Header> = set_cookies(clear).collect();
    if status == 503 {
        headers.push((RETRY_AFTER, retry_after(denial)));
    }
    let what = match denial {
        Denial::IdpError(_) => {
            format!("Entra answered the sign-in with the error <code>{}</code>.", escape(detail))
        }
        Denial::AuthContextMissing(id) => format!(
            "this page requires the authentication context <code>{id}</code> (a Conditional Access policy of \
             your organisation, such as multi-factor authentication), and the sign-in did not satisfy it \
             (<code>{}</code>).",
            escape(detail)
        ),
        Denial::SigninTooOld(true) => {
            "this page requires a recent sign-in, and Entra's ID token does not say \
                                       when the user authenticated (the app registration lacks the optional \
                                       claim <code>auth_time</code>)."
                .to_owned()
        }
        Denial::SigninTooOld(false) => {
            "this page requires a recent sign-in, and Entra's answer was older.".to_owned()
        }
        other => escape(&other.to_string()),
    };
    let body = page(
        "Sign-in failed",
        &[
            format!("The sign-in could not be completed: {what}"),
            format!("Reason: <code>{}</code>", denial.reason()),
            "<a href=\"/\">Sign in again</a>".into(),
        ],
    );
    // SAFETY: per the contract.
    unsafe { send(r, status, &headers, "text/html; charset=utf-8", &body) }
}

const WWW_AUTHENTICATE: &[u8] = b"WWW-Authenticate";
pub const RETRY_AFTER: &[u8] = b"Retry-After";
/// When a client should try again after a 503, unless the denial says.
pub const RETRY_SECONDS: u32 = 5;

/// The `Retry-After` of a 503: what Graph asked for, else [`RETRY_SECONDS`].
fn retry_after(denial: Denial) -> String {
    match denial {
        Denial::GroupsUnavailable(seconds) => seconds.max(1).to_string(),
        _ => RETRY_SECONDS.to_string(),
    }
}
