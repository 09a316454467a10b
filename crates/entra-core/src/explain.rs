//! What a denial line (and the 403 page) says beyond the reason word: which values a location
//! required and which the caller had, or which audience, issuer or tenant a token named and
//! which are accepted. Claim values only, never a token; each value bounded in length and its
//! control characters escaped, so that a token's text cannot forge a log line.

use std::fmt::Write;

use serde_json::Value;

use crate::base64url;
use crate::error::Denial;
use crate::group::Group;
use crate::policy::{Policy, Requirement, Subject};
use crate::provider::Provider;
use crate::token::{bearer_token, VerifiedToken};
use crate::values::AllowedTenants;

/// Longest value written; longer ones end in "...".
const MAX_VALUE: usize = 96;
/// Most values written of one list; the rest are counted.
const MAX_VALUES: usize = 10;

/// `value` quoted, cut at [`MAX_VALUE`] characters, with `"`, `\` and control characters
/// escaped.
fn quoted(out: &mut String, value: &str) {
    out.push('"');
    for (i, c) in value.chars().enumerate() {
        if i == MAX_VALUE {
            out.push_str("...");
            break;
        }
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Values quoted and separated by spaces, at most [`MAX_VALUES`] of them; "none" for none.
fn list<T: AsRef<str>>(values: impl IntoIterator<Item = T>) -> String {
    let mut out = String::new();
    let mut count = 0;
    for value in values {
        count += 1;
        if count <= MAX_VALUES {
            if count > 1 {
                out.push(' ');
            }
            quoted(&mut out, value.as_ref());
        }
    }
    match count {
        0 => "none".to_owned(),
        n if n > MAX_VALUES => format!("{out} and {} more", n - MAX_VALUES),
        _ => out,
    }
}

/// A JSON claim's values as text: a string itself, an array's items, anything else its JSON.
fn claim_values(value: Option<&Value>) -> Vec<String> {
    let text = |v: &Value| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string());
    match value {
        None => Vec::new(),
        Some(Value::Array(items)) => items.iter().map(text).collect(),
        Some(v) => vec![text(v)],
    }
}

impl Subject {
    /// What the requirement is called in a sentence, in the plural.
    pub fn described(&self) -> String {
        match self {
            Subject::Group => "groups (object ids)".to_owned(),
            Subject::Role => "app roles".to_owned(),
            Subject::Scope => "scopes".to_owned(),
            Subject::Permission => "scopes or app roles".to_owned(),
            Subject::Claim(name) => {
                let mut out = "values of the claim ".to_owned();
                quoted(&mut out, name);
                out
            }
            Subject::AuthContext => "authentication contexts".to_owned(),
        }
    }
}

impl Requirement {
    /// `groups (object ids) required, any of: "a" "b"`.
    pub fn described(&self) -> String {
        format!(
            "{} required, any of: {}",
            self.subject.described(),
            list(self.any_of.iter().map(String::as_str))
        )
    }

    /// What `token` holds of this requirement's subject.
    fn held(&self, token: &VerifiedToken) -> String {
        if self.subject == Subject::Group && token.has_group_overage() {
            return "none in the token (group overage)".to_owned();
        }
        match &self.subject {
            Subject::Group => list(token.groups().map(Group::text)),
            Subject::Role => list(token.roles()),
            Subject::Scope => list(token.scopes()),
            Subject::Permission => list(token.scopes().chain(token.roles())),
            Subject::Claim(name) => list(claim_values(token.claim(name)).iter().map(String::as_str)),
            Subject::AuthContext => list(token.auth_contexts()),
        }
    }
}

impl Policy {
    /// The requirement that refused `token` with `denial`: the first one of the denial's kind
    /// that `token` does not satisfy (a group overage's answer from Graph is not consulted).
    pub fn refusing(&self, token: &VerifiedToken, denial: Denial) -> Option<&Requirement> {
        self.requirements
            .iter()
            .find(|r| r.check(token, None).err().is_some_and(|d| d.kind() == denial.kind()))
    }

    /// For the denial line: what the location required and what `token` had, as `what` calls
    /// the token ("the token", "the session").
    pub fn explain(&self, token: &VerifiedToken, denial: Denial, what: &str) -> Option<String> {
        let requirement = self.refusing(token, denial)?;
        Some(format!("{}; {what} has: {}", requirement.described(), requirement.held(token)))
    }
}

impl Provider {
    /// For the denial line of a token refused for its audience, issuer or tenant: what it named
    /// and what this provider accepts. These checks come after the signature's, so the claims
    /// read here are the issuer's.
    pub fn explain(&self, denial: Denial, authorization: Option<&[u8]>) -> Option<String> {
        if !matches!(denial, Denial::WrongAudience | Denial::WrongIssuer | Denial::TenantNotAllowed) {
            return None;
        }
        let token = authorization.and_then(|h| bearer_token(h).ok())?;
        let payload = token.split(|&b| b == b'.').nth(1)?;
        let claims: Value = serde_json::from_slice(&base64url::decode(payload).ok()?).ok()?;
        let named = |claim: &str| claim_values(claims.get(claim));
        let named_list = |claim: &str| list(named(claim).iter().map(String::as_str));
        Some(match denial {
            Denial::WrongAudience => format!(
                "aud {}, accepted: {}",
                named_list("aud"),
                list(self.audiences.iter().map(String::as_str))
            ),
            Denial::WrongIssuer => {
                let state = self.key_state();
                let accepted = self.accepted_issuers(&state);
                format!("iss {}, accepted: {}", named_list("iss"), list(accepted.iter().map(String::as_str)))
            }
            _ => {
                let allowed = match &self.allowed_tenants {
                    AllowedTenants::Any => "any".to_owned(),
                    AllowedTenants::Only(tenants) => list(tenants.iter().map(String::as_str)),
                    AllowedTenants::Metadata => "the tenant of the metadata's issuer".to_owned(),
                };
                format!("tid {}, allowed: {allowed}", named_list("tid"))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_bounded_and_escaped() {
        let long = "x".repeat(500);
        let listed = list(["a\"b", "line\nbreak", "tab\\", &long]);
        assert!(listed.starts_with(r#""a\"b" "line\u{a}break" "tab\\" "xxx"#), "{listed}");
        assert!(listed.ends_with(&format!("{}...\"", "x".repeat(10))));
        assert!(listed.len() < 96 + 40, "{}", listed.len());
        assert!(!listed.contains('\n'));
    }

    #[test]
    fn long_lists_are_counted() {
        let values: Vec<String> = (0..25).map(|i| i.to_string()).collect();
        let listed = list(values.iter().map(String::as_str));
        assert!(listed.ends_with("\"9\" and 15 more"), "{listed}");
        assert_eq!(list([""; 0]), "none");
    }

    #[test]
    fn the_refusing_requirement_and_what_the_token_had() {
        let token = VerifiedToken::from_claims(
            "k",
            u64::MAX,
            serde_json::json!({"roles": ["Orders.Read"], "scp": "a b", "dept": 7})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        );
        let requirement = |subject, values: &[&str]| {
            Requirement::new(subject, values.iter().map(|v| v.to_string()).collect())
        };
        let policy = Policy {
            requirements: vec![
                requirement(Subject::Scope, &["a"]),
                requirement(Subject::Role, &["Orders.Write"]),
                requirement(Subject::Claim("dept".into()), &["8"]),
            ],
            recent_signin: None,
        };
        assert_eq!(policy.check(&token, None), Err(Denial::MissingRole));
        assert_eq!(
            policy.explain(&token, Denial::MissingRole, "the token").as_deref(),
            Some(r#"app roles required, any of: "Orders.Write"; the token has: "Orders.Read""#)
        );
        assert_eq!(
            policy.explain(&token, Denial::MissingClaim, "the session").as_deref(),
            Some(r#"values of the claim "dept" required, any of: "8"; the session has: "7""#)
        );
        assert_eq!(policy.explain(&token, Denial::MissingGroup, "the token"), None);
    }
}
