//! What `entra_whoami` shows of the identity a request proved: who (the claims kept), what they
//! hold (groups, app roles, scopes, authentication contexts) and how they proved it. Claims only:
//! never the token or the cookie.

use serde_json::{json, Map, Value};

use crate::token::VerifiedToken;

/// Claims shown under their own names rather than among the claims.
const LISTED: [&str; 4] = ["groups", "roles", "scp", "acrs"];

/// The identity `token` names, as `provider` judged it from `source` ("bearer" or "session");
/// `graph_groups`: for a group overage, those of the location's groups Graph said the user is in.
pub fn identity(
    token: &VerifiedToken,
    provider: &str,
    source: &str,
    graph_groups: Option<Vec<&str>>,
) -> Value {
    let claims: Map<String, Value> = token
        .claims()
        .iter()
        .filter(|(name, _)| !LISTED.contains(&name.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut shown = json!({
        "provider": provider,
        "source": source,
        "token_version": token.str("ver"),
        "oid": token.oid(),
        "tid": token.tid(),
        "upn": token.upn(),
        "app_id": token.app_id(),
        "app_only": token.is_app_only(),
        "groups": token.groups().map(|g| g.to_string()).collect::<Vec<_>>(),
        "group_overage": token.has_group_overage(),
        "roles": token.roles().collect::<Vec<_>>(),
        "scopes": token.scopes().collect::<Vec<_>>(),
        "auth_contexts": token.auth_contexts().collect::<Vec<_>>(),
        "signin_time": token.signin_time(),
        "expires": token.exp,
        "claims": claims,
    });
    if let Some(groups) = graph_groups {
        shown["groups_from_graph"] = json!(groups);
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_listed_apart_and_nothing_else_added() {
        let token = VerifiedToken::from_claims(
            "k",
            1_900_000_000,
            json!({"oid": "o", "ver": "2.0", "groups": ["g"], "roles": ["r"], "scp": "a b", "name": "N"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        );
        let shown = identity(&token, "dev", "bearer", None);
        assert_eq!(shown["groups"], json!(["g"]));
        assert_eq!(shown["scopes"], json!(["a", "b"]));
        assert_eq!(shown["token_version"], json!("2.0"));
        assert_eq!(shown["claims"], json!({"oid": "o", "ver": "2.0", "name": "N"}));
        assert!(shown.get("groups_from_graph").is_none());
    }
}
