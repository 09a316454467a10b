//! Location requirements (`entra_require_*`): each requirement is satisfied by ANY of its values,
//! and every requirement of a location must be satisfied (ALL).

use serde_json::Value;

use crate::error::{AuthContext, Denial};
use crate::graph::{Asked, Membership};
use crate::group::guid_bytes;
use crate::token::VerifiedToken;

/// Group memberships Microsoft Graph answered for a token with group overage: the set asked and
/// which of it the user is in.
pub type Answered<'a> = Option<(&'a Asked, &'a Membership)>;

/// What a requirement looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// `groups` (object ids, compared without regard to case).
    Group,
    /// `roles`.
    Role,
    /// `scp`.
    Scope,
    /// `scp` or `roles`: delegated or application permission.
    Permission,
    /// Any top-level claim.
    Claim(String),
    /// `acrs`: the Conditional Access authentication contexts the sign-in satisfied (values
    /// `c1` to `c99`, lower-case).
    AuthContext,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub subject: Subject,
    pub any_of: Vec<String>,
    /// For a group requirement, each of `any_of`'s bytes when it is an object id (empty for
    /// other subjects).
    ids: Vec<Option<[u8; 16]>>,
}

/// Claims that users or admins can change, and that must never authorize (rule 13).
pub const MUTABLE_CLAIMS: [&str; 4] = ["email", "preferred_username", "upn", "unique_name"];

/// Compares a claim value with a configured one: strings exactly, numbers and booleans by their
/// JSON text, arrays by any element.
fn claim_matches(value: &Value, wanted: &str) -> bool {
    match value {
        Value::String(s) => s == wanted,
        Value::Number(n) => n.to_string() == wanted,
        Value::Bool(b) => wanted == if *b { "true" } else { "false" },
        Value::Array(items) => items.iter().any(|item| !item.is_array() && claim_matches(item, wanted)),
        Value::Null | Value::Object(_) => false,
    }
}

impl Requirement {
    pub fn new(subject: Subject, any_of: Vec<String>) -> Requirement {
        // Only group requirements look values up as object ids.
        let ids = match subject {
            Subject::Group => any_of.iter().map(|value| guid_bytes(value)).collect(),
            _ => Vec::new(),
        };
        Requirement { subject, any_of, ids }
    }

    /// Checks `token`; a group requirement on a token with group overage is decided by
    /// `answered`, or refused without it.
    pub fn check(&self, token: &VerifiedToken, answered: Answered) -> Result<(), Denial> {
        let wants = |have: &str| self.any_of.iter().any(|w| w == have);
        let satisfied = match &self.subject {
            Subject::Group if token.has_group_overage() => match answered {
                Some((asked, membership)) if membership.has_any(asked, &self.any_of) => true,
                // A required value Graph was not asked about (not an object id): undecided.
                Some((asked, _)) if self.any_of.iter().all(|w| asked.index_of(w).is_some()) => false,
                _ => return Err(Denial::GroupOverage),
            },
            Subject::Group => {
                self.any_of.iter().zip(&self.ids).any(|(wanted, id)| token.has_group(wanted, id.as_ref()))
            }
            Subject::Role => token.roles().any(wants),
            Subject::Scope => token.scopes().any(wants),
            Subject::Permission => token.scopes().chain(token.roles()).any(wants),
            Subject::Claim(name) => {
                token.claim(name).is_some_and(|v| self.any_of.iter().any(|w| claim_matches(v, w)))
            }
            Subject::AuthContext => {
                token.auth_contexts().any(|c| self.any_of.iter().any(|w| w.eq_ignore_ascii_case(c)))
            }
        };
        if satisfied {
            return Ok(());
        }
        Err(match self.subject {
            Subject::Group => Denial::MissingGroup,
            Subject::Role => Denial::MissingRole,
            Subject::Scope => Denial::MissingScope,
            Subject::Permission => Denial::MissingPermission,
            Subject::Claim(_) => Denial::MissingClaim,
            // The first id of the line is what a step-up asks for; an app-only token can never
            // carry one.
            Subject::AuthContext if token.is_app_only() => {
                Denial::AuthContextMissing(AuthContext::NONE_POSSIBLE)
            }
            Subject::AuthContext => Denial::AuthContextMissing(
                self.any_of
                    .first()
                    .and_then(|id| AuthContext::parse(id))
                    .unwrap_or(AuthContext::NONE_POSSIBLE),
            ),
        })
    }
}

/// All requirements of one location.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Checked in order; authentication contexts come last, so that a step-up is only asked
    /// of a caller that passes everything else.
    pub requirements: Vec<Requirement>,
    /// `entra_require_recent_signin`, in seconds: sessions only.
    pub recent_signin: Option<u64>,
}

impl Policy {
    pub fn check(&self, token: &VerifiedToken, answered: Answered) -> Result<(), Denial> {
        self.requirements.iter().try_for_each(|r| r.check(token, answered))
    }

    /// A session's sign-in against `entra_require_recent_signin` at `now`, allowing `leeway`:
    /// only the ID token's `auth_time` counts (a silent revalidation renews nothing of it).
    /// `SigninTooOld(true)` when the sign-in time is unknown, which no new sign-in changes.
    pub fn check_signin(&self, session: &VerifiedToken, now: u64, leeway: u64) -> Result<(), Denial> {
        let Some(within) = self.recent_signin else { return Ok(()) };
        match session.signin_time() {
            None => Err(Denial::SigninTooOld(true)),
            Some(at) if now > at.saturating_add(within).saturating_add(leeway) => {
                Err(Denial::SigninTooOld(false))
            }
            Some(_) => Ok(()),
        }
    }

    /// The authentication context a step-up asks for: the first id of the first line `token`
    /// does not satisfy.
    pub fn missing_context(&self, token: &VerifiedToken) -> Option<AuthContext> {
        self.requirements.iter().filter(|r| r.subject == Subject::AuthContext).find_map(|r| {
            match r.check(token, None) {
                Err(Denial::AuthContextMissing(id)) if id != AuthContext::NONE_POSSIBLE => Some(id),
                _ => None,
            }
        })
    }

    /// Whether a token with group overage needs Graph's answer here.
    pub fn has_group_requirement(&self) -> bool {
        self.requirements.iter().any(|r| r.subject == Subject::Group)
    }

    /// The group ids this location requires, any of them.
    pub fn groups(&self) -> impl Iterator<Item = &str> {
        let groups = self.requirements.iter().filter(|r| r.subject == Subject::Group);
        groups.flat_map(|r| r.any_of.iter().map(String::as_str))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Session;

    const G1: &str = "0b9f3f6e-4a4c-4c1e-9a63-2f1d8f1b57e1";
    const G2: &str = "5a1e0f3c-7b2d-4e6a-8c9f-1d3b5e7a9c20";

    fn groups(values: &[&str]) -> Requirement {
        Requirement::new(Subject::Group, values.iter().map(|v| v.to_string()).collect())
    }

    #[test]
    fn a_group_requirement_finds_ids_in_any_case_and_names_by_text_in_tokens_and_sessions() {
        let token = VerifiedToken::from_claims(
            "k",
            u64::MAX,
            serde_json::json!({"groups": [G1.to_uppercase(), "Domain Users"]})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        );
        let session = Session { groups: [G2, "Domain Users"].into_iter().collect(), ..Session::default() };
        let session = VerifiedToken::of_session(std::sync::Arc::new(session));
        let many: Vec<String> = (0..50).map(|i| format!("00000000-0000-0000-0000-{i:012x}")).collect();
        for (identity, has) in [(&token, G1), (&session, G2)] {
            assert_eq!(groups(&[has]).check(identity, None), Ok(()), "{has}");
            assert_eq!(groups(&[&has.to_uppercase()]).check(identity, None), Ok(()), "any case");
            assert_eq!(groups(&["domain users"]).check(identity, None), Ok(()), "a name, by its text");
            let mut values: Vec<&str> = many.iter().map(String::as_str).collect();
            assert_eq!(groups(&values).check(identity, None), Err(Denial::MissingGroup));
            values.push(has);
            assert_eq!(groups(&values).check(identity, None), Ok(()), "the last of 51 values");
        }
        assert_eq!(groups(&[G2]).check(&token, None), Err(Denial::MissingGroup));
    }
}
