//! Cookies of browser sign-in: reading them from `Cookie` header lines, splitting a sealed session
//! into at most two cookies that fit nginx's header buffers, and writing `Set-Cookie` values.
//!
//! Limits: each cookie's `name=value` at most [`MAX_COOKIE_BYTES`], the session's cookies
//! together (names, values and `; ` separators) at most [`MAX_SESSION_BYTES`], so that they fit
//! one 8k `Cookie` line (nginx's default `large_client_header_buffers`) beside the application's
//! own cookies.

use smallvec::SmallVec;
use thiserror::Error;

pub const MAX_COOKIE_BYTES: usize = 4096;
pub const MAX_SESSION_BYTES: usize = 6144;
/// The most of a request's `Cookie` value the session and transaction cookies take together,
/// `; ` separators included: nginx reads a header line into 8k by default
/// (`large_client_header_buffers`), which leaves 1024 bytes to the application's own cookies.
pub const COOKIE_BUDGET: usize = 7168;
/// Bytes of each transaction cookie kept free for the fields later sign-in work adds (step-up's
/// requested context): a session at its largest and one transaction then still fit the budget.
pub const RESERVED_TRANSACTION_BYTES: usize = 96;
/// Bytes of the session cookies kept free likewise (step-up's `acr`, `amr`, `auth_time`; the
/// Graph work's markers): a session's content today fits `MAX_SESSION_BYTES` less these, so the
/// sessions that fit now still fit once those fields come.
pub const RESERVED_SESSION_BYTES: usize = 96;
/// The largest transaction cookie (`name=value`): one fits beside a session at its largest.
pub const MAX_TRANSACTION_BYTES: usize = COOKIE_BUDGET - MAX_SESSION_BYTES - 2 - RESERVED_TRANSACTION_BYTES;
/// The session cookie and one more chunk: `<name>` and `<name>-1`.
pub const MAX_CHUNKS: usize = 2;
// A chunk's number is one digit (`Jar::chunks`).
const _: () = assert!(MAX_CHUNKS <= 10);

/// What the request says of one cookie name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found<'a> {
    Absent,
    One(&'a [u8]),
    /// Sent twice (a sibling subdomain may plant a cookie of the same name): neither is used.
    Twice,
}

/// One `name=value` pair, trimmed (RFC 6265 section 5.4: `; ` between pairs); `None` without
/// `=`.
fn pair(text: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = text.iter().position(|b| *b == b'=')?;
    Some((text[..at].trim_ascii(), text[at + 1..].trim_ascii()))
}

/// The cookies of a request, read once from its `Cookie` header lines, in order, as bytes:
/// names are compared with the module's own (ASCII), and a value is only ever base64url, which
/// its decoding checks, so the lines need no UTF-8 check. A pair without `=` is skipped.
#[derive(Debug, Default)]
pub struct Jar<'a> {
    /// On the stack for up to 16 cookies: a request's session is read without an allocation.
    pairs: SmallVec<[(&'a [u8], &'a [u8]); 16]>,
}

/// A request's `Cookie` header lines (HTTP/2's cookie fields nginx joins into one).
pub type CookieLines<'a> = SmallVec<[&'a [u8]; 2]>;

/// A session cookie as the request carries it: its chunks, in order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Chunks<'a> {
    parts: [&'a [u8]; MAX_CHUNKS],
    count: usize,
}

impl<'a> Chunks<'a> {
    pub fn parts(&self) -> &[&'a [u8]] {
        &self.parts[..self.count]
    }

    /// The sealed value, put together again.
    pub fn joined(&self) -> Vec<u8> {
        self.parts().concat()
    }
}

impl<'a> From<&'a [u8]> for Chunks<'a> {
    /// A value in one cookie.
    fn from(value: &'a [u8]) -> Chunks<'a> {
        let mut parts = [&[][..]; MAX_CHUNKS];
        parts[0] = value;
        Chunks { parts, count: 1 }
    }
}

impl<'a> Jar<'a> {
    pub fn parse(lines: impl IntoIterator<Item = &'a [u8]>) -> Jar<'a> {
        let mut pairs = SmallVec::new();
        for line in lines {
            // One pass over the line with a vectorised search for each `;`.
            let mut start = 0;
            for end in memchr::memchr_iter(b';', line).chain([line.len()]) {
                pairs.extend(pair(&line[start..end]));
                start = end + 1;
            }
        }
        Jar { pairs }
    }

    /// Every pair, in order.
    pub fn pairs(&self) -> &[(&'a [u8], &'a [u8])] {
        &self.pairs
    }

    /// The cookie named `name`.
    pub fn find(&self, name: &str) -> Found<'a> {
        self.find_by(|n| n == name.as_bytes())
    }

    /// The cookie whose name `is_it` says.
    fn find_by(&self, is_it: impl Fn(&[u8]) -> bool) -> Found<'a> {
        let mut found = Found::Absent;
        for (n, value) in &self.pairs {
            if is_it(n) {
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

    /// The chunks of session cookie `name`; `None` when it is absent or a chunk is sent twice.
    /// Whoever sets a session of fewer chunks clears the others, so a stale chunk of an
    /// earlier, larger session is not taken with it.
    pub fn chunks(&self, name: &str) -> Option<Chunks<'a>> {
        let mut chunks = Chunks::default();
        for index in 0..MAX_CHUNKS {
            // `name`, then `name-1`: compared in place, no name written out.
            let suffix = [b'-', b'0' + index as u8];
            let found = self.find_by(|n| match index {
                0 => n == name.as_bytes(),
                _ => n.strip_prefix(name.as_bytes()) == Some(&suffix[..]),
            });
            match found {
                Found::One(chunk) => {
                    chunks.parts[index] = chunk;
                    chunks.count += 1;
                }
                Found::Twice => return None,
                Found::Absent if index == 0 => return None,
                Found::Absent => break,
            }
        }
        Some(chunks)
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
    if total > MAX_SESSION_BYTES - RESERVED_SESSION_BYTES {
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
        assert_eq!(jar.find("entra"), Found::One(b"xyz"));
        assert_eq!(jar.find("other"), Found::One(b"3"));
        assert_eq!(jar.find("entra-t0"), Found::One(b"t"));
        assert_eq!(jar.find("missing"), Found::Absent);
        let planted: [&[u8]; 2] = [b"entra=mine", b"entra=planted"];
        assert_eq!(Jar::parse(planted).find("entra"), Found::Twice);
        let odd: [&[u8]; 2] = [b"novalue; \xff=1; =empty-name;", b"x=1"];
        let pairs: [(&[u8], &[u8]); 3] = [(b"\xff", b"1"), (b"", b"empty-name"), (b"x", b"1")];
        assert_eq!(Jar::parse(odd).pairs(), pairs, "bytes kept as they are; no name of ours is not ASCII");
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
        assert_eq!(
            Jar::parse([line.as_bytes()]).chunks("__Host-entra").map(|c| c.joined()).as_deref(),
            Some(value.as_bytes())
        );
        assert_eq!(split("entra", "small").unwrap(), [("entra".to_owned(), "small")]);
    }

    #[test]
    fn a_session_over_the_limits_is_refused() {
        // One cookie holds `entra=` and 4090 bytes; one more byte takes a second chunk.
        let one = MAX_COOKIE_BYTES - "entra=".len();
        assert_eq!(split("entra", &"A".repeat(one)).unwrap().len(), 1);
        assert_eq!(split("entra", &"A".repeat(one + 1)).unwrap().len(), 2);
        // Two chunks and the `; ` between them within 6144 bytes, less the room kept.
        let most = MAX_SESSION_BYTES - RESERVED_SESSION_BYTES - "entra=".len() - "; entra-1=".len();
        assert_eq!(split("entra", &"A".repeat(most)).unwrap().len(), 2);
        assert_eq!(split("entra", &"A".repeat(most + 1)), Err(TooLarge(most + 1)));
    }

    #[test]
    fn joining_refuses_doubles_and_needs_the_first_chunk() {
        let doubled: [&[u8]; 1] = [b"s=a; s-1=b; s-1=c"];
        assert_eq!(Jar::parse(doubled).chunks("s"), None);
        let no_first: [&[u8]; 1] = [b"s-1=b"];
        assert_eq!(Jar::parse(no_first).chunks("s"), None);
        let one: [&[u8]; 1] = [b"s=a"];
        assert_eq!(Jar::parse(one).chunks("s").map(|c| c.joined()).as_deref(), Some(&b"a"[..]));
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
