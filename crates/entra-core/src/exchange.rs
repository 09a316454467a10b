//! The code exchange at the token endpoint: one blocking POST, meant for a thread that is not an
//! nginx event loop. No redirect is followed, the answer is size-limited, TLS is verified with
//! the provider's `ca_file` or the system's store. Only the ID token is taken from the answer;
//! the access token is dropped with it.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use crate::discovery::{agent, read_at_most};

/// The largest token endpoint answer read (an ID token with 200 groups is under 16 KiB).
pub const MAX_ANSWER_BYTES: u64 = 256 * 1024;

/// Why an exchange brought no ID token. Never holds the code, the secret or a token.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ExchangeError {
    /// A 4xx: the code was replayed, belongs to another attempt or client, or the verifier is
    /// wrong. `error` is the endpoint's error code, if it gave one.
    #[error("the token endpoint refused the code (HTTP {status}{})", error.as_ref().map(|e| format!(", {e}")).unwrap_or_default())]
    Rejected { status: u16, error: Option<String> },
    #[error("the token endpoint cannot be used: {0}")]
    Unavailable(String),
    #[error("the token endpoint's answer has no id_token")]
    NoIdToken,
}

#[derive(Deserialize)]
struct Answer {
    id_token: Option<String>,
    error: Option<String>,
}

/// POSTs the form `body` to `endpoint`, within `timeout` per phase and twice that overall; the
/// ID token of a 200 answer.
pub fn exchange(
    endpoint: &str,
    body: &str,
    ca_file: &Option<PathBuf>,
    timeout: Duration,
) -> Result<String, ExchangeError> {
    let unavailable = |reason: String| ExchangeError::Unavailable(reason);
    let agent = agent(ca_file, timeout, 0, Some(timeout * 2)).map_err(|e| unavailable(e.to_string()))?;
    let mut response = agent
        .post(endpoint)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("Accept", "application/json")
        .send(body)
        .map_err(|e| unavailable(e.to_string()))?;
    let status = response.status().as_u16();
    let text = read_at_most(&mut response, MAX_ANSWER_BYTES).map_err(|e| match e {
        ureq::Error::BodyExceedsLimit(_) => {
            unavailable(format!("an answer larger than {MAX_ANSWER_BYTES} bytes"))
        }
        other => unavailable(other.to_string()),
    })?;
    let answer: Option<Answer> = crate::token::json_object(&text).ok();
    match status {
        200 => answer.and_then(|a| a.id_token).ok_or(ExchangeError::NoIdToken),
        400..=499 => {
            // Only a short, plain error code is kept for the log.
            let error = answer
                .and_then(|a| a.error)
                .filter(|e| e.len() <= 64 && e.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
            Err(ExchangeError::Rejected { status, error })
        }
        other => Err(unavailable(format!("HTTP status {other}"))),
    }
}
