//! What Entra does with a step-up: the authorize request's `claims` parameter asking for
//! authentication contexts in the ID token's `acrs`, and `max_age` asking for a recent
//! authentication. Each demo user's last authentication (when, and which contexts it passed) is
//! kept, so that a silent sign-in (`prompt=none`) grants only what the user did before.
//!
//! Tests steer it through `/_admin/step_up`: `answer=pass` (the default: a context asked is
//! passed), `answer=ignore` (signed in without it), `answer=ERROR` (the authorize request answers
//! that error, e.g. `interaction_required` or `access_denied`); `auth_age=SECONDS` (the ID token's
//! `auth_time` is that much older than the authentication), `auth_time=omit` (none, as when the
//! optional claim is not configured). `/_admin/stats` shows the step-up parameters of the last
//! authorize requests under `authorize`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

/// Authorize requests whose parameters are kept for `/_admin/stats`.
const SEEN: usize = 32;

/// A demo user's last interactive authentication.
#[derive(Clone, Default)]
struct Authenticated {
    at: u64,
    contexts: Vec<String>,
}

/// What an ID token carries of how the user signed in.
#[derive(Clone, Debug, Default)]
pub struct Issued {
    pub acrs: Vec<String>,
    pub auth_time: Option<u64>,
}

#[derive(Default)]
struct Settings {
    /// `pass`, `ignore`, or the error to answer.
    answer: Option<String>,
    auth_age: u64,
    omit_auth_time: bool,
}

#[derive(Default)]
pub struct StepUp {
    settings: Mutex<Settings>,
    users: Mutex<HashMap<String, Authenticated>>,
    seen: Mutex<Vec<Value>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The authentication contexts a `claims` request parameter asks for in the ID token.
pub fn asked_contexts(claims: Option<&String>) -> Vec<String> {
    let Some(acrs) =
        claims.and_then(|c| serde_json::from_str::<Value>(c).ok()).map(|c| c["id_token"]["acrs"].clone())
    else {
        return Vec::new();
    };
    let values = acrs["values"].as_array().cloned().unwrap_or_default();
    let one = acrs["value"].as_str().map(|v| json!(v));
    values.into_iter().chain(one).filter_map(|v| v.as_str().map(str::to_owned)).collect()
}

impl StepUp {
    /// `/_admin/step_up`.
    pub fn admin(&self, query: &HashMap<String, String>) {
        let mut settings = lock(&self.settings);
        if let Some(answer) = query.get("answer") {
            settings.answer = (answer != "pass").then(|| answer.clone());
        }
        if let Some(age) = query.get("auth_age").and_then(|a| a.parse().ok()) {
            settings.auth_age = age;
        }
        if let Some(auth_time) = query.get("auth_time") {
            settings.omit_auth_time = auth_time == "omit";
        }
    }

    pub fn reset(&self) {
        *lock(&self.settings) = Settings::default();
        lock(&self.users).clear();
        lock(&self.seen).clear();
    }

    /// The step-up parameters of the last authorize requests, oldest first.
    pub fn stats(&self) -> Value {
        json!(*lock(&self.seen))
    }

    /// Keeps an authorize request's step-up parameters for the tests.
    pub fn record(&self, query: &HashMap<String, String>) {
        let field = |name: &str| query.get(name).map_or(Value::Null, |v| json!(v));
        let mut seen = lock(&self.seen);
        if seen.len() == SEEN {
            seen.remove(0);
        }
        seen.push(json!({
            "prompt": field("prompt"),
            "max_age": field("max_age"),
            "login_hint": field("login_hint"),
            "claims": field("claims"),
        }));
    }

    fn issued(&self, at: u64, acrs: Vec<String>) -> Issued {
        let settings = lock(&self.settings);
        Issued { acrs, auth_time: (!settings.omit_auth_time).then(|| at.saturating_sub(settings.auth_age)) }
    }

    /// An interactive authentication of `user` (a pick, an approval, the second click that
    /// stands for MFA), asked for `asked` contexts; `Err` is the error to answer.
    pub fn authenticate(&self, user: &str, asked: &[String]) -> Result<Issued, String> {
        let answer = lock(&self.settings).answer.clone();
        let granted = match answer.as_deref() {
            Some("ignore") => Vec::new(),
            Some(error) if !asked.is_empty() => return Err(error.to_owned()),
            _ => asked.to_vec(),
        };
        let at = now();
        let mut users = lock(&self.users);
        let known = users.entry(user.to_owned()).or_default();
        known.at = at;
        known
            .contexts
            .extend(granted.iter().filter(|c| !known.contexts.contains(c)).cloned().collect::<Vec<_>>());
        drop(users);
        Ok(self.issued(at, granted))
    }

    /// A silent sign-in (`prompt=none`) of `user`: only the contexts the user passed before (and
    /// none when told to answer an error), and only within `max_age` of the last authentication.
    pub fn silent(&self, user: &str, asked: &[String], max_age: Option<u64>) -> Result<Issued, String> {
        let known = lock(&self.users)
            .entry(user.to_owned())
            .or_insert_with(|| Authenticated { at: now(), contexts: vec![] })
            .clone();
        if max_age.is_some_and(|age| now() > known.at + age) {
            return Err("login_required".into());
        }
        let answer = lock(&self.settings).answer.clone().filter(|a| a != "ignore" && !asked.is_empty());
        if let Some(error) = answer {
            // The policy wants the user again (its sign-in frequency passed).
            return Err(error);
        }
        if !asked.iter().all(|c| known.contexts.contains(c)) {
            return Err("interaction_required".into());
        }
        Ok(self.issued(known.at, asked.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_claims_parameter_asks_for_one_context_or_several() {
        let one = r#"{"id_token":{"acrs":{"essential":true,"value":"c1"}}}"#.to_owned();
        assert_eq!(asked_contexts(Some(&one)), ["c1"]);
        let many = r#"{"id_token":{"acrs":{"essential":true,"values":["c1","c2"]}}}"#.to_owned();
        assert_eq!(asked_contexts(Some(&many)), ["c1", "c2"]);
        assert!(asked_contexts(Some(&"garbage".to_owned())).is_empty());
        assert!(asked_contexts(None).is_empty());
    }

    #[test]
    fn a_silent_sign_in_grants_only_what_the_user_passed() {
        let s = StepUp::default();
        let c1 = vec!["c1".to_owned()];
        assert_eq!(s.authenticate("alice", &c1).unwrap().acrs, c1);
        assert_eq!(s.silent("alice", &c1, None).unwrap().acrs, c1);
        assert_eq!(s.silent("alice", &["c2".to_owned()], None).unwrap_err(), "interaction_required");
        s.admin(&HashMap::from([("answer".to_owned(), "access_denied".to_owned())]));
        assert_eq!(s.authenticate("bob", &c1).unwrap_err(), "access_denied");
        assert!(s.authenticate("bob", &[]).is_ok(), "a plain sign-in still works");
    }
}
