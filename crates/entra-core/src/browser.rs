//! How browser sign-in tells requests apart from their headers alone: a top-level navigation may
//! be sent to sign in, anything else gets a 401 its script can handle; a request that another
//! site may have made is not authenticated by the session cookie.

use core::cell::OnceCell;

/// The request headers that decide.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestHeaders<'a> {
    pub method: &'a str,
    pub accept: Option<&'a str>,
    /// `X-Requested-With` is present (XHR from a script library).
    pub x_requested_with: bool,
    pub sec_fetch_mode: Option<&'a str>,
    pub sec_fetch_dest: Option<&'a str>,
    pub sec_fetch_site: Option<&'a str>,
    pub origin: Option<&'a str>,
    /// `Sec-Purpose` is present, or `Purpose: prefetch`.
    pub prefetch: bool,
    /// A WebSocket (or other) upgrade.
    pub upgrade: bool,
}

/// Reads every header that decides: the glue's request, or in tests a closure.
pub trait ReadHeaders<'a> {
    fn read_headers(&self) -> RequestHeaders<'a>;
}

impl<'a, F: Fn() -> RequestHeaders<'a>> ReadHeaders<'a> for F {
    fn read_headers(&self) -> RequestHeaders<'a> {
        self()
    }
}

/// The headers that decide, read through when first asked: a session's `GET` that is not due
/// for revalidation needs only its method and whether it upgrades (nginx keeps both apart), and
/// the rest is a pass over every header of the request.
#[derive(Clone)]
pub struct LazyHeaders<'a> {
    /// The method and `upgrade`; every header when `read` is `None`.
    known: RequestHeaders<'a>,
    read: Option<&'a dyn ReadHeaders<'a>>,
    all: OnceCell<RequestHeaders<'a>>,
}

impl<'a> LazyHeaders<'a> {
    /// `read` answers every header; called at most once.
    pub fn new(method: &'a str, upgrade: bool, read: &'a dyn ReadHeaders<'a>) -> LazyHeaders<'a> {
        let known = RequestHeaders { method, upgrade, ..RequestHeaders::default() };
        LazyHeaders { known, read: Some(read), all: OnceCell::new() }
    }

    /// See [`RequestHeaders::may_change_something`]: no header read.
    pub fn may_change_something(&self) -> bool {
        self.known.may_change_something()
    }

    /// Every header that decides.
    pub fn all(&self) -> &RequestHeaders<'a> {
        match self.read {
            Some(read) => self.all.get_or_init(|| read.read_headers()),
            None => &self.known,
        }
    }
}

impl<'a> From<RequestHeaders<'a>> for LazyHeaders<'a> {
    /// Headers read already.
    fn from(known: RequestHeaders<'a>) -> LazyHeaders<'a> {
        LazyHeaders { known, read: None, all: OnceCell::new() }
    }
}

impl core::fmt::Debug for LazyHeaders<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LazyHeaders").field("known", &self.known).field("all", &self.all.get()).finish()
    }
}

fn accepts_html(accept: &str) -> bool {
    accept.split(',').any(|range| {
        let media = range.split(';').next().unwrap_or("").trim();
        media.eq_ignore_ascii_case("text/html")
    })
}

impl RequestHeaders<'_> {
    /// A top-level navigation: `GET` or `HEAD`, no `X-Requested-With`, an `Accept` naming
    /// `text/html`, `Sec-Fetch-Mode: navigate` and `Sec-Fetch-Dest: document` when sent, and
    /// never a prefetch.
    pub fn is_navigation(&self) -> bool {
        let fits = |header: Option<&str>, wanted: &str| header.is_none_or(|v| v.eq_ignore_ascii_case(wanted));
        matches!(self.method, "GET" | "HEAD")
            && !self.x_requested_with
            && !self.prefetch
            && self.accept.is_some_and(accepts_html)
            && fits(self.sec_fetch_mode, "navigate")
            && fits(self.sec_fetch_dest, "document")
    }

    /// Whether a request that the session cookie would authenticate may come from another
    /// site: a method other than `GET`/`HEAD`/`OPTIONS`, or an upgrade, with `Sec-Fetch-Site`
    /// `cross-site` or `same-site` (a sibling subdomain), or an `Origin` other than `own_origin`
    /// (`scheme://host[:port]`). `SameSite=Lax` alone lets a sibling subdomain post.
    pub fn is_cross_origin(&self, own_origin: &str) -> bool {
        let unsafe_method = self.may_change_something();
        let other_site = self.sec_fetch_site.is_some_and(|site| {
            site.eq_ignore_ascii_case("cross-site") || site.eq_ignore_ascii_case("same-site")
        });
        let other_origin = self.origin.is_some_and(|origin| !origin.eq_ignore_ascii_case(own_origin));
        unsafe_method && (other_site || other_origin)
    }
}

impl RequestHeaders<'_> {
    /// A method other than `GET`/`HEAD`/`OPTIONS`, or an upgrade: what another site may not do
    /// with the session cookie.
    pub fn may_change_something(&self) -> bool {
        !matches!(self.method, "GET" | "HEAD" | "OPTIONS") || self.upgrade
    }
}

/// The longest `sid` a front-channel logout may name.
pub const MAX_SID_LEN: usize = 128;

/// A `sid` from a front-channel logout call: at most [`MAX_SID_LEN`] bytes of `[A-Za-z0-9._-]`.
pub fn is_valid_sid(sid: &str) -> bool {
    !sid.is_empty()
        && sid.len() <= MAX_SID_LEN
        && sid.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Why a front-channel logout call's query names no `sid`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SidRefusal {
    #[error("the sid is not of Entra's form")]
    NotEntraForm,
    #[error("{0} sid parameters")]
    Count(usize),
}

/// The one `sid` of a front-channel logout call's query.
pub fn frontchannel_sid(query: &str) -> Result<&str, SidRefusal> {
    let sids: Vec<&str> = query.split('&').filter_map(|p| p.strip_prefix("sid=")).collect();
    match sids[..] {
        [sid] if is_valid_sid(sid) => Ok(sid),
        [_] => Err(SidRefusal::NotEntraForm),
        _ => Err(SidRefusal::Count(sids.len())),
    }
}

/// How many sign-in attempts a browser may have under way: `<cookie>-t0` to `-t3`.
pub const TRANSACTION_COOKIES: usize = 4;

/// Which transaction cookie a new attempt takes, given when each one the request carries was
/// created (`None`: absent): an absent one, else the oldest. An attempt's cookies never pile up,
/// and several tabs signing in at once each keep theirs.
pub fn transaction_slot(created: [Option<u64>; TRANSACTION_COOKIES]) -> usize {
    created
        .iter()
        .position(Option::is_none)
        .or_else(|| created.iter().enumerate().min_by_key(|(_, c)| **c).map(|(i, _)| i))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lazy_headers_are_read_once_and_only_when_more_than_the_method_is_asked() {
        let reads = core::cell::Cell::new(0);
        let read = || {
            reads.set(reads.get() + 1);
            RequestHeaders { origin: Some("https://evil.example"), ..browser() }
        };
        let get = LazyHeaders::new("GET", false, &read);
        assert!(!get.may_change_something());
        assert_eq!(reads.get(), 0, "the method and upgrade are known without a read");
        assert!(get.all().is_navigation());
        assert_eq!(get.all().origin, Some("https://evil.example"));
        assert_eq!(reads.get(), 1, "read once");
        assert!(LazyHeaders::new("POST", false, &read).may_change_something());
        assert!(LazyHeaders::new("GET", true, &read).may_change_something(), "an upgrade");
        assert_eq!(reads.get(), 1);
        let known = LazyHeaders::from(RequestHeaders { method: "DELETE", ..browser() });
        assert!(known.may_change_something());
        assert_eq!(known.all().sec_fetch_site, Some("none"));
    }

    fn browser() -> RequestHeaders<'static> {
        RequestHeaders {
            method: "GET",
            accept: Some("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
            sec_fetch_mode: Some("navigate"),
            sec_fetch_dest: Some("document"),
            sec_fetch_site: Some("none"),
            ..Default::default()
        }
    }

    #[test]
    fn only_top_level_navigations_are_sent_to_sign_in() {
        assert!(browser().is_navigation());
        assert!(RequestHeaders { method: "HEAD", ..browser() }.is_navigation());
        assert!(
            RequestHeaders { sec_fetch_mode: None, sec_fetch_dest: None, ..browser() }.is_navigation(),
            "older browsers"
        );
        assert!(RequestHeaders { accept: Some("TEXT/HTML; q=1"), ..browser() }.is_navigation());
        for not in [
            RequestHeaders { method: "POST", ..browser() },
            RequestHeaders { accept: Some("application/json"), ..browser() },
            RequestHeaders { accept: Some("*/*"), ..browser() },
            RequestHeaders { accept: None, ..browser() },
            RequestHeaders { x_requested_with: true, ..browser() },
            RequestHeaders { sec_fetch_mode: Some("cors"), ..browser() },
            RequestHeaders { sec_fetch_dest: Some("iframe"), ..browser() },
            RequestHeaders { prefetch: true, ..browser() },
        ] {
            assert!(!not.is_navigation(), "{not:?}");
        }
    }

    #[test]
    fn unsafe_requests_from_other_sites_are_cross_origin() {
        let own = "https://app.example";
        let post = RequestHeaders {
            method: "POST",
            sec_fetch_site: Some("same-origin"),
            origin: Some(own),
            ..browser()
        };
        assert!(!post.is_cross_origin(own));
        assert!(
            RequestHeaders { sec_fetch_site: Some("same-site"), ..post }.is_cross_origin(own),
            "a sibling subdomain"
        );
        assert!(RequestHeaders { sec_fetch_site: Some("cross-site"), ..post }.is_cross_origin(own));
        assert!(RequestHeaders { sec_fetch_site: None, origin: Some("https://evil.example"), ..post }
            .is_cross_origin(own));
        assert!(RequestHeaders { sec_fetch_site: None, origin: Some("null"), ..post }.is_cross_origin(own));
        assert!(
            !RequestHeaders { sec_fetch_site: None, origin: None, ..post }.is_cross_origin(own),
            "nothing says so"
        );
        let get = RequestHeaders { sec_fetch_site: Some("cross-site"), ..browser() };
        assert!(!get.is_cross_origin(own), "a link from another site is a navigation");
        assert!(
            RequestHeaders { upgrade: true, ..get }.is_cross_origin(own),
            "a WebSocket from another site"
        );
    }

    #[test]
    fn sids_are_short_and_plain() {
        assert!(is_valid_sid("0027c5e2-4c19-5a5f-6e19-1f1e7a1b8c2d"));
        assert!(is_valid_sid(&"a".repeat(128)));
        for bad in ["", &"a".repeat(129), "a b", "a/b", "a%20b", "é"] {
            assert!(!is_valid_sid(bad), "{bad}");
        }
    }

    #[test]
    fn a_new_attempt_takes_a_free_cookie_else_the_oldest() {
        assert_eq!(transaction_slot([None; 4]), 0);
        assert_eq!(transaction_slot([Some(5), None, Some(3), None]), 1);
        assert_eq!(transaction_slot([Some(5), Some(2), Some(9), Some(4)]), 1);
    }
}
