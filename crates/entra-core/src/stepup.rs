//! Step-up (`entra_require_auth_context`, `entra_require_recent_signin`): what a sign-in attempt
//! asks of Entra beyond a sign-in, the `claims` request parameter that asks for authentication
//! contexts, the claims challenge a bearer client gets (the form Microsoft's client libraries act
//! on), and whether what came back satisfies what was asked.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::json;

use crate::error::{AuthContext, Denial};
use crate::session::Session;

/// What an attempt asked beyond a sign-in: an authentication context, a recent authentication,
/// or (a silent revalidation) the contexts the session holds. Kept in the transaction cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StepUp {
    pub context: Option<AuthContext>,
    /// `max_age` (seconds), sent with `prompt=login`.
    pub max_age: Option<u64>,
    /// A silent revalidation asked again for the session's contexts.
    pub kept_contexts: bool,
}

/// Which token a `claims` request is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimsFor {
    /// The ID token of a browser's sign-in.
    IdToken,
    /// The access token a bearer client gets next.
    AccessToken,
}

/// The `claims` request parameter (OpenID Connect Core 5.5) asking for `ids` in `acrs`:
/// `{"id_token":{"acrs":{"essential":true,"value":"c1"}}}`, or `values` for several.
pub fn claims_request(token: ClaimsFor, ids: &[&str]) -> String {
    let name = match token {
        ClaimsFor::IdToken => "id_token",
        ClaimsFor::AccessToken => "access_token",
    };
    let acrs = match ids {
        [one] => json!({ "essential": true, "value": one }),
        many => json!({ "essential": true, "values": many }),
    };
    json!({ name: { "acrs": acrs } }).to_string()
}

/// The `WWW-Authenticate` value of a bearer token without the authentication context `id`:
/// Entra's claims challenge, which MSAL passes on to its next token request (`WithClaims`).
pub fn claims_challenge(realm: &str, authorization_uri: &str, id: AuthContext) -> String {
    let claims = STANDARD.encode(claims_request(ClaimsFor::AccessToken, &[&id.to_string()]));
    format!(
        "Bearer realm=\"{realm}\", authorization_uri=\"{authorization_uri}\", error=\"insufficient_claims\", \
         claims=\"{claims}\""
    )
}

/// The `WWW-Authenticate` value of a request whose session's sign-in is too old (RFC 9470's
/// step-up challenge: authenticate again, at most `max_age` seconds ago).
pub fn recent_signin_challenge(realm: &str, max_age: u64) -> String {
    format!(
        "Bearer realm=\"{realm}\", error=\"insufficient_user_authentication\", \
         error_description=\"signin_too_old\", max_age=\"{max_age}\""
    )
}

impl StepUp {
    pub fn asks(&self) -> bool {
        *self != StepUp::default()
    }

    /// Whether the attempt steps a session up (a context or a recent authentication), as
    /// opposed to a silent revalidation that only asked again for what the session held.
    pub fn steps_up(&self) -> bool {
        self.context.is_some() || self.max_age.is_some()
    }

    /// The refusal of a step-up Entra answered with an error: what was asked, not given.
    pub fn refused(&self) -> Option<Denial> {
        match (self.context, self.max_age) {
            (Some(id), _) => Some(Denial::AuthContextMissing(id)),
            (None, Some(_)) => Some(Denial::SigninTooOld(false)),
            (None, None) => None,
        }
    }

    /// The sign-in attempt's parameters beyond a sign-in, for a user whose `login_hint` is
    /// known: the `claims` request, and `prompt=login` with `max_age`.
    pub fn parameters(&self, login_hint: &str) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(id) = self.context {
            out.push(("claims", claims_request(ClaimsFor::IdToken, &[&id.to_string()])));
        }
        if let Some(max_age) = self.max_age {
            out.extend([("prompt", "login".to_owned()), ("max_age", max_age.to_string())]);
        }
        if !login_hint.is_empty() {
            out.push(("login_hint", login_hint.to_owned()));
        }
        out
    }

    /// Whether the session a step-up's callback sealed (at `now`, with `leeway` for clocks)
    /// has what was asked; the refusal otherwise, which ends on a page (never another attempt).
    pub fn unmet(&self, session: &Session, now: u64, leeway: u64) -> Option<Denial> {
        if let Some(id) = self.context {
            let wanted = id.to_string();
            if !session.auth_contexts.contains(&wanted) {
                return Some(Denial::AuthContextMissing(id));
            }
        }
        let max_age = self.max_age?;
        match session.auth_time {
            None => Some(Denial::SigninTooOld(true)),
            Some(at) if now > at.saturating_add(max_age).saturating_add(leeway) => {
                Some(Denial::SigninTooOld(false))
            }
            Some(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_claims_request_names_one_value_or_several() {
        assert_eq!(
            claims_request(ClaimsFor::IdToken, &["c1"]),
            r#"{"id_token":{"acrs":{"essential":true,"value":"c1"}}}"#
        );
        assert_eq!(
            claims_request(ClaimsFor::IdToken, &["c1", "c7"]),
            r#"{"id_token":{"acrs":{"essential":true,"values":["c1","c7"]}}}"#
        );
    }

    #[test]
    fn the_claims_challenge_is_entras_with_standard_padded_base64() {
        let header = claims_challenge("api", "https://login.example/t/oauth2/v2.0/authorize", AuthContext(3));
        let claims = header.split("claims=\"").nth(1).unwrap().trim_end_matches('"');
        let decoded = STANDARD.decode(claims).unwrap();
        assert_eq!(decoded, br#"{"access_token":{"acrs":{"essential":true,"value":"c3"}}}"#);
        assert!(header.starts_with(
            "Bearer realm=\"api\", authorization_uri=\"https://login.example/t/oauth2/v2.0/authorize\", \
             error=\"insufficient_claims\", claims=\""
        ));
    }

    #[test]
    fn a_step_up_is_met_by_the_context_asked_and_a_recent_enough_authentication() {
        let session =
            Session { auth_contexts: vec!["c2".into()], auth_time: Some(1000), ..Session::default() };
        let asked = |context, max_age| StepUp { context, max_age, kept_contexts: false };
        assert_eq!(asked(Some(AuthContext(2)), None).unmet(&session, 5000, 60), None);
        assert_eq!(
            asked(Some(AuthContext(1)), None).unmet(&session, 5000, 60),
            Some(Denial::AuthContextMissing(AuthContext(1)))
        );
        assert_eq!(asked(None, Some(300)).unmet(&session, 1360, 60), None, "within max_age and leeway");
        assert_eq!(asked(None, Some(300)).unmet(&session, 1361, 60), Some(Denial::SigninTooOld(false)));
        let unknown = Session { auth_time: None, ..session };
        assert_eq!(asked(None, Some(300)).unmet(&unknown, 1000, 60), Some(Denial::SigninTooOld(true)));
    }
}
