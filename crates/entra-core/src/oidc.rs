//! The OpenID Connect authorization code flow with PKCE (rule 20), with no I/O: the secrets of one
//! sign-in attempt, the authorize URL, the callback's query, the token request's form body, and
//! the path a user returns to.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use ring::digest::{digest, SHA256};
use ring::rand::{SecureRandom, SystemRandom};
use thiserror::Error;

use crate::binary::{put_text, put_u64, DecodeError, Reader, TooLong};
use crate::error::AuthContext;
use crate::stepup::StepUp;

/// What `application/x-www-form-urlencoded` and query strings leave as it is.
const FORM: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// The longest return URL kept in a transaction; longer ones keep their path alone, or `/`.
pub const MAX_RETURN_URL: usize = 512;

fn random_text(random: &SystemRandom, bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // The system's random source does not fail on Linux once the process runs.
    random.fill(&mut buf).expect("random bytes");
    URL_SAFE_NO_PAD.encode(buf)
}

/// The secrets of one sign-in attempt, kept in its sealed transaction cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub state: String,
    pub nonce: String,
    /// The PKCE code verifier: 32 random bytes, base64url (43 characters).
    pub verifier: String,
}

impl Attempt {
    pub fn new(random: &SystemRandom) -> Attempt {
        Attempt {
            state: random_text(random, 24),
            nonce: random_text(random, 24),
            verifier: random_text(random, 32),
        }
    }

    /// The PKCE S256 challenge of the verifier.
    pub fn challenge(&self) -> String {
        URL_SAFE_NO_PAD.encode(digest(&SHA256, self.verifier.as_bytes()))
    }
}

/// The format version of a transaction's payload; part of the sealing's associated data too.
pub const TRANSACTION_VERSION: u8 = 2;
/// How long a sign-in attempt may take, from the redirect to the callback (seconds).
pub const TRANSACTION_LIFETIME: u64 = 600;

/// One sign-in attempt as kept, sealed, in its transaction cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub attempt: Attempt,
    /// The exact redirect URI sent to the authorize endpoint, sent again with the code.
    pub redirect_uri: String,
    /// Where the user goes once signed in (see [`return_url`]).
    pub return_url: String,
    /// When the attempt began (seconds since the epoch).
    pub created: u64,
    /// A silent revalidation (`prompt=none`) of the session of this `oid` and `tid`.
    pub revalidating: Option<(String, String)>,
    /// What a step-up asked of Entra, checked when it answers.
    pub step_up: StepUp,
}

/// The transaction's step-up field's tag.
const STEP_UP_FIELD: u8 = 1;

/// The errors of a silent authorize request that mean "ask the user": one interactive attempt
/// follows, never a second silent one.
pub const INTERACTION_NEEDED: [&str; 4] =
    ["login_required", "interaction_required", "consent_required", "account_selection_required"];

impl Transaction {
    /// The version byte, the creation time, then state, nonce, verifier, redirect URI and return
    /// URL as text fields, a flag, and for a revalidation the session's `oid` and `tid`.
    pub fn encode(&self) -> Result<Vec<u8>, TooLong> {
        let mut out = vec![TRANSACTION_VERSION];
        put_u64(&mut out, self.created);
        let a = &self.attempt;
        for text in [&a.state, &a.nonce, &a.verifier, &self.redirect_uri, &self.return_url] {
            put_text(&mut out, text)?;
        }
        match &self.revalidating {
            None => out.push(0),
            Some((oid, tid)) => {
                out.push(1);
                put_text(&mut out, oid)?;
                put_text(&mut out, tid)?;
            }
        }
        if self.step_up.asks() {
            out.extend_from_slice(&[STEP_UP_FIELD, self.step_up.context.map_or(0, |c| c.0)]);
            put_u64(&mut out, self.step_up.max_age.unwrap_or(0));
            out.push(u8::from(self.step_up.kept_contexts));
        }
        Ok(out)
    }

    pub fn decode(bytes: &[u8]) -> Result<Transaction, DecodeError> {
        let mut r = Reader(bytes);
        r.version(TRANSACTION_VERSION)?;
        let created = r.u64()?;
        let attempt = Attempt { state: r.text()?, nonce: r.text()?, verifier: r.text()? };
        let (redirect_uri, return_url) = (r.text()?, r.text()?);
        let revalidating = match r.byte()? {
            0 => None,
            _ => Some((r.text()?, r.text()?)),
        };
        let mut step_up = StepUp::default();
        if !r.0.is_empty() {
            r.version(STEP_UP_FIELD)?;
            step_up.context = Some(r.byte()?).filter(|c| *c != 0).map(AuthContext);
            step_up.max_age = Some(r.u64()?).filter(|a| *a != 0);
            step_up.kept_contexts = r.byte()? != 0;
        }
        r.finish()?;
        Ok(Transaction { attempt, redirect_uri, return_url, created, revalidating, step_up })
    }

    /// Still within [`TRANSACTION_LIFETIME`] at `now` (and not from the future).
    /// Where the browser goes back to: the return URL on the redirect URI's origin.
    pub fn return_location(&self) -> String {
        let url = &self.redirect_uri;
        let after_scheme = url.find("://").map_or(0, |i| i + 3);
        let origin = url[after_scheme..].find('/').map_or(url.as_str(), |i| &url[..after_scheme + i]);
        format!("{origin}{}", self.return_url)
    }

    pub fn is_fresh(&self, now: u64) -> bool {
        self.created <= now && now - self.created <= TRANSACTION_LIFETIME
    }
}

pub(crate) fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", utf8_percent_encode(k, FORM), utf8_percent_encode(v, FORM)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Where a browser is sent to sign in. `extra` adds parameters (`prompt`, `login_hint`).
pub fn authorize_url(
    endpoint: &str,
    client_id: &str,
    redirect_uri: &str,
    scopes: &str,
    attempt: &Attempt,
    extra: &[(&str, &str)],
) -> String {
    let challenge = attempt.challenge();
    let mut pairs = vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
        ("scope", scopes),
        ("state", &attempt.state),
        ("nonce", &attempt.nonce),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
        ("response_mode", "query"),
    ];
    pairs.extend_from_slice(extra);
    with_query(endpoint, &pairs)
}

/// `url` with `pairs` added to its query, encoded.
pub fn with_query(url: &str, pairs: &[(&str, &str)]) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{}", form(pairs))
}

/// What Entra sent back to the redirect URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Callback {
    Code {
        code: String,
        state: String,
    },
    /// An error from Entra (`access_denied`, `login_required`, ...), with its state if any.
    Error {
        error: String,
        state: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CallbackError {
    #[error("the callback has \"{0}\" twice")]
    Duplicate(&'static str),
    #[error("the callback has no \"{0}\"")]
    Missing(&'static str),
    #[error("the callback's \"{0}\" is not valid percent-encoded UTF-8")]
    BadEncoding(&'static str),
}

impl Callback {
    /// Reads a callback's query string (without the `?`).
    pub fn parse(query: &str) -> Result<Callback, CallbackError> {
        let mut found: [Option<String>; 3] = [None, None, None];
        const NAMES: [&str; 3] = ["code", "state", "error"];
        for pair in query.split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let Some(index) = NAMES.iter().position(|n| *n == name) else { continue };
            if found[index].is_some() {
                return Err(CallbackError::Duplicate(NAMES[index]));
            }
            let plus_as_space = value.replace('+', " ");
            let decoded = percent_decode_str(&plus_as_space)
                .decode_utf8()
                .map_err(|_| CallbackError::BadEncoding(NAMES[index]))?;
            found[index] = Some(decoded.into_owned());
        }
        let [code, state, error] = found;
        match (error, code) {
            (Some(error), _) => Ok(Callback::Error { error, state }),
            (None, Some(code)) => {
                Ok(Callback::Code { code, state: state.ok_or(CallbackError::Missing("state"))? })
            }
            (None, None) => Err(CallbackError::Missing("code")),
        }
    }
}

/// How the module proves it is the app at the token endpoint.
pub enum ClientCredential<'a> {
    Secret(&'a str),
    /// A signed client assertion (`private_key_jwt`).
    Assertion(&'a str),
}

/// The form body of the code exchange.
pub fn token_request(
    code: &str,
    redirect_uri: &str,
    client_id: &str,
    verifier: &str,
    credential: ClientCredential,
) -> String {
    let mut pairs = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("client_id", client_id),
        ("code_verifier", verifier),
    ];
    add_credential(&mut pairs, &credential);
    form(&pairs)
}

/// Adds the client credential's pairs to a token request's form.
pub(crate) fn add_credential<'a>(pairs: &mut Vec<(&str, &'a str)>, credential: &ClientCredential<'a>) {
    match *credential {
        ClientCredential::Secret(secret) => pairs.push(("client_secret", secret)),
        ClientCredential::Assertion(jwt) => pairs.extend_from_slice(&[
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", jwt),
        ]),
    }
}

/// Whether a return URL is a path on this server: it starts with one `/`, no `//` or `/\`
/// (which browsers read as another host), encoded or not, and no control characters.
pub fn is_local_path(url: &str) -> bool {
    let decoded = percent_decode_str(url).decode_utf8_lossy();
    let starts_elsewhere = |s: &str| s.starts_with("//") || s.starts_with("/\\");
    url.starts_with('/')
        && !starts_elsewhere(url)
        && !starts_elsewhere(&decoded)
        && !decoded.chars().any(|c| c.is_control())
}

/// The query parameter, on the redirect URI's path, of the link that starts a sign-in with
/// another account (`prompt=select_account`) on a click, returning to its value.
pub const SELECT_ACCOUNT: &str = "select_account";

/// The return URL of a "sign in as someone else" link's query, if it is one: a local path (else
/// `/`), shortened as [`return_url`] does.
pub fn select_account_return(query: &str) -> Option<String> {
    let value = query.split('&').find_map(|p| p.strip_prefix(SELECT_ACCOUNT)?.strip_prefix('='))?;
    Some(return_url(&percent_decode_str(value).decode_utf8_lossy()))
}

/// The URL to come back to after signing in, from the request's own path and query (never
/// from a parameter): kept whole up to [`MAX_RETURN_URL`] bytes, else its path alone, else `/`.
pub fn return_url(path_and_query: &str) -> String {
    let path = path_and_query.split('?').next().unwrap_or("/");
    [path_and_query, path]
        .into_iter()
        .find(|candidate| candidate.len() <= MAX_RETURN_URL && is_local_path(candidate))
        .unwrap_or("/")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_challenge_is_the_rfc_7636_s256_of_the_verifier() {
        // RFC 7636 appendix B.
        let a = Attempt {
            state: String::new(),
            nonce: String::new(),
            verifier: "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into(),
        };
        assert_eq!(a.challenge(), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        let fresh = Attempt::new(&SystemRandom::new());
        assert_eq!(fresh.verifier.len(), 43);
        assert_ne!(fresh, Attempt::new(&SystemRandom::new()));
    }

    #[test]
    fn the_authorize_url_carries_every_parameter_encoded() {
        let a = Attempt { state: "s".into(), nonce: "n".into(), verifier: "v".repeat(43) };
        let url = authorize_url(
            "https://login.example/t/oauth2/v2.0/authorize",
            "cid",
            "https://app.example/.entra/callback",
            "openid profile email",
            &a,
            &[("prompt", "none")],
        );
        assert_eq!(
            url,
            format!(
                "https://login.example/t/oauth2/v2.0/authorize?response_type=code&client_id=cid\
                 &redirect_uri=https%3A%2F%2Fapp.example%2F.entra%2Fcallback&scope=openid%20profile%20email\
                 &state=s&nonce=n&code_challenge={}&code_challenge_method=S256&response_mode=query&prompt=none",
                a.challenge()
            )
        );
        assert!(authorize_url("https://x/a?p=1", "c", "r", "s", &a, &[])
            .starts_with("https://x/a?p=1&response_type"));
    }

    #[test]
    fn callbacks_are_read_strictly() {
        assert_eq!(
            Callback::parse("code=0.AX%2Bq&state=abc&session_state=x").unwrap(),
            Callback::Code { code: "0.AX+q".into(), state: "abc".into() }
        );
        assert_eq!(
            Callback::parse("error=access_denied&error_description=User+said+no&state=abc").unwrap(),
            Callback::Error { error: "access_denied".into(), state: Some("abc".into()) }
        );
        assert_eq!(Callback::parse("code=a&code=b&state=s"), Err(CallbackError::Duplicate("code")));
        assert_eq!(Callback::parse("code=a&state=s&state=t"), Err(CallbackError::Duplicate("state")));
        assert_eq!(Callback::parse("code=a"), Err(CallbackError::Missing("state")));
        assert_eq!(Callback::parse(""), Err(CallbackError::Missing("code")));
        assert_eq!(Callback::parse("code=%ff&state=s"), Err(CallbackError::BadEncoding("code")));
    }

    #[test]
    fn the_token_request_sends_the_verifier_and_one_credential() {
        let body = token_request("c&d", "https://app/cb", "cid", "ver", ClientCredential::Secret("s3cr=t"));
        assert_eq!(
            body,
            "grant_type=authorization_code&code=c%26d&redirect_uri=https%3A%2F%2Fapp%2Fcb&client_id=cid\
             &code_verifier=ver&client_secret=s3cr%3Dt"
        );
        let body = token_request("c", "r", "cid", "v", ClientCredential::Assertion("a.b.c"));
        assert!(body.ends_with(
            "client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=a.b.c"
        ));
        assert!(!body.contains("client_secret"));
    }

    #[test]
    fn a_transaction_survives_encoding_and_lasts_ten_minutes() {
        let t = Transaction {
            attempt: Attempt::new(&SystemRandom::new()),
            redirect_uri: "https://app.example/.entra/callback".into(),
            return_url: "/reports?q=1".into(),
            created: 1_790_000_000,
            revalidating: None,
            step_up: StepUp::default(),
        };
        let bytes = t.encode().unwrap();
        assert_eq!(Transaction::decode(&bytes).unwrap(), t);
        let silent = Transaction { revalidating: Some(("oid".into(), "tid".into())), ..t.clone() };
        assert_eq!(Transaction::decode(&silent.encode().unwrap()).unwrap(), silent);
        let step_up = StepUp { context: Some(AuthContext(7)), max_age: Some(300), kept_contexts: false };
        let stepping = Transaction { step_up, ..t.clone() };
        let stepping_bytes = stepping.encode().unwrap();
        assert_eq!(Transaction::decode(&stepping_bytes).unwrap(), stepping);
        assert_eq!(stepping_bytes.len(), bytes.len() + 11, "a tag, the context, max_age and a flag");
        let mut other = stepping_bytes.clone();
        other[bytes.len()] = 9;
        assert!(Transaction::decode(&other).is_err(), "an unknown field is no transaction");
        for n in 0..bytes.len() {
            assert!(Transaction::decode(&bytes[..n]).is_err(), "truncated at {n}");
        }
        assert!(t.is_fresh(t.created) && t.is_fresh(t.created + 600));
        assert!(!t.is_fresh(t.created + 601) && !t.is_fresh(t.created - 1));
    }

    #[test]
    fn only_local_paths_are_returned_to() {
        for good in ["/", "/app?x=1", "/a/b%20c"] {
            assert!(is_local_path(good), "{good}");
        }
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "/%2F%2Fevil.example",
            "%2F%2Fevil",
            "https://evil",
            "/a\nb",
            "/%0d%0a",
            "",
        ] {
            assert!(!is_local_path(bad), "{bad}");
        }
        assert_eq!(return_url("/reports?q=1"), "/reports?q=1");
        assert_eq!(return_url(&format!("/reports?q={}", "x".repeat(2000))), "/reports");
        assert_eq!(return_url(&format!("/{}", "x".repeat(2000))), "/");
        assert_eq!(return_url("//evil.example/x"), "/");
    }
}
