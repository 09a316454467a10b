//! Cookies of browser sign-in: reading them from `Cookie` header lines, splitting a sealed session
//! into at most two cookies that fit nginx's header buffers, and writing `Set-Cookie` values.
//!
//! Limits: each cookie's `name=value` at most [`MAX_COOKIE_BYTES`], the session's cookies
//! together (names, values and `; ` separators) at most [`MAX_SESSION_BYTES`], so that they fit
//! one 8k `Cookie` line (nginx's default `large_client_header_buffers`) beside the application's
//! own cookies.

use thiserror::Error;

pub const MAX_COOKIE_BYTES: usize = 4096;
pub const MAX_SESSION_BYTES: usize = 6144;
/// The session cookie and one more chunk: `<name>` and `<name>-1`.
pub const MAX_CHUNKS: usize = 2;

/// What the request says of one cookie name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found<'a> {
    Absent,
    One(&'a str),
    /// Sent twice (a sibling subdomain may plant a cookie of the same name): neither is used.
    Twice,
}

/// One `name=value` pair, trimmed (RFC 6265 section 5.4: `; ` between pairs); `None` without
/// `=`.
fn pair(text: &str) -> Option<(&str, &str)> {
    let (name, value) = text.trim_matches(|c| c == ' ' || c == '\t').split_once('=')?;
    Some((name.trim_end_matches([' ', '\t']), value.trim_start_matches([' ', '\t'])))
}

/// The cookies of a request, read once from its `Cookie` header lines, in order. A pair without
/// `=` or that is not UTF-8 is skipped.
#[derive(Debug, Default)]
pub struct Jar<'a> {
    pairs: Vec<(&'a str, &'a str)>,
}

impl<'a> Jar<'a> {
    pub fn parse(lines: impl IntoIterator<Item = &'a [u8]>) -> Jar<'a> {
        let mut pairs = Vec::new();
        for line in lines {
            match core::str::from_utf8(line) {
                // The common case: one pass with a fast search for each `;`.
                Ok(text) => pairs.extend(text.split(';').filter_map(pair)),
                Err(_) => pairs.extend(
                    line.split(|b| *b == b';').filter_map(|p| core::str::from_utf8(p).ok()).filter_map(pair),
                ),
            }
        }
        Jar { pairs }
    }

    /// Every pair, in order.
    pub fn pairs(&self) -> &[(&'a str, &'a str)] {
        &self.pairs
    }

    /// The cookie named `name`.
    pub fn find(&self, name: &str) -> Found<'a> {
        let mut found = Found::Absent;
        for (n, value) in &self.pairs {
            if *n == name {
                found = match found {
                    Found::Absent => Found::One(value),
                    _ => return Found::Twice,
                };
            }
        }
        found
    }

    pub fn has(&self, name: &str) -> bool {
        self.find(name) != Found::Absent
    }

    /// The session cookie `name` put together again from its chunks; `None` when it is absent
    /// or a chunk is sent twice. Whoever sets a session of fewer chunks clears the others, so a
    /// stale chunk of an earlier, larger session is not joined to it.
    pub fn join(&self, name: &str) -> Option<String> {
        let mut value = String::new();
        for index in 0..MAX_CHUNKS {
            match self.find(&chunk_name(name, index)) {
                Found::One(chunk) => value.push_str(chunk),
                Found::Twice => return None,
                Found::Absent if index == 0 => return None,
                Found::Absent => break,
            }
        }
        Some(value)
    }
}

/// The name of chunk `index` of the session cookie `name` (0 is the cookie itself).
pub fn chunk_name(name: &str, index: usize) -> String {
    if index == 0 {
        name.to_owned()
    } else {
        format!("{name}-{index}")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("a session of {0} bytes does not fit its cookies")]
pub struct TooLarge(pub usize);

/// Splits a sealed session into chunks, in order, each `(name, value)` within the limits.
pub fn split<'a>(name: &str, value: &'a str) -> Result<Vec<(String, &'a str)>, TooLarge> {
    let mut chunks = Vec::new();
    let mut rest = value;
    let mut total = 0;
    while chunks.is_empty() || !rest.is_empty() {
        let index = chunks.len();
        let chunk_name = chunk_name(name, index);
        let room = MAX_COOKIE_BYTES.saturating_sub(chunk_name.len() + 1);
        if index == MAX_CHUNKS || room == 0 {
            return Err(TooLarge(value.len()));
        }
        // A sealed value is base64url: any byte offset is a character boundary.
        let (head, tail) = rest.split_at(rest.len().min(room));
        total += chunk_name.len() + 1 + head.len() + if index > 0 { 2 } else { 0 };
        chunks.push((chunk_name, head));
        rest = tail;
    }
    if total > MAX_SESSION_BYTES {
        return Err(TooLarge(value.len()));
    }
    Ok(chunks)
}

/// One `Set-Cookie` header value: `HttpOnly`, `Path=/`, `SameSite=Lax`, and `Secure` on HTTPS;
/// `max_age` 0 deletes the cookie, `None` makes it last as long as the browser session.
pub fn set_cookie(name: &str, value: &str, secure: bool, max_age: Option<u64>) -> String {
    let mut out = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
    if secure {
        out.push_str("; Secure");
    }
    if let Some(seconds) = max_age {
        out.push_str(&format!("; Max-Age={seconds}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_from_every_line_and_a_twice_sent_name_is_neither() {
        let lines: [&[u8]; 2] = [b"a=1; entra=xyz;b=2", b" other = 3 ;entra-t0=t"];
        let jar = Jar::parse(lines);
        assert_eq!(jar.find("entra"), Found::One("xyz"));
        assert_eq!(jar.find("other"), Found::One("3"));
        assert_eq!(jar.find("entra-t0"), Found::One("t"));
        assert_eq!(jar.find("missing"), Found::Absent);
        let planted: [&[u8]; 2] = [b"entra=mine", b"entra=planted"];
        assert_eq!(Jar::parse(planted).find("entra"), Found::Twice);
        let odd: [&[u8]; 2] = [b"novalue; \xff=1; =empty-name", b"x=1"];
        assert_eq!(Jar::parse(odd).pairs(), [("", "empty-name"), ("x", "1")]);
    }

    #[test]
    fn a_large_session_is_split_in_two_and_joined_back() {
        let value = "A".repeat(5000);
        let chunks = split("__Host-entra", &value).unwrap();
        assert_eq!(chunks.len(), 2);
        assert_eq!((chunks[0].0.as_str(), chunks[1].0.as_str()), ("__Host-entra", "__Host-entra-1"));
        assert!(chunks.iter().all(|(n, v)| n.len() + 1 + v.len() <= MAX_COOKIE_BYTES));
        let line = chunks.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("; ");
        assert!(line.len() <= MAX_SESSION_BYTES);
        assert_eq!(Jar::parse([line.as_bytes()]).join("__Host-entra").as_deref(), Some(value.as_str()));
        assert_eq!(split("entra", "small").unwrap(), [("entra".to_owned(), "small")]);
    }

    #[test]
    fn a_session_over_the_limits_is_refused() {
        assert_eq!(split("entra", &"A".repeat(6200)), Err(TooLarge(6200)));
        assert!(split("entra", &"A".repeat(6100)).is_ok());
    }

    #[test]
    fn joining_refuses_doubles_and_needs_the_first_chunk() {
        let doubled: [&[u8]; 1] = [b"s=a; s-1=b; s-1=c"];
        assert_eq!(Jar::parse(doubled).join("s"), None);
        let no_first: [&[u8]; 1] = [b"s-1=b"];
        assert_eq!(Jar::parse(no_first).join("s"), None);
        let one: [&[u8]; 1] = [b"s=a"];
        assert_eq!(Jar::parse(one).join("s").as_deref(), Some("a"));
    }

    #[test]
    fn set_cookie_values_carry_the_attributes() {
        assert_eq!(set_cookie("entra", "v", false, None), "entra=v; Path=/; HttpOnly; SameSite=Lax");
        assert_eq!(
            set_cookie("__Host-entra-1", "", true, Some(0)),
            "__Host-entra-1=; Path=/; HttpOnly; SameSite=Lax; Secure; Max-Age=0"
        );
    }
}
