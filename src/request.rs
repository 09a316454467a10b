//! What browser sign-in reads of a request: its `Cookie` lines (kept by nginx as an array until
//! 1.22 and as a linked list from 1.23), the headers that tell a navigation from a script, the
//! scheme and the host.

use entra_core::browser::RequestHeaders;
use entra_core::cookie::Jar;
use ngx::ffi::ngx_http_request_t;

/// A request, read-only, for as long as the handler that got it runs.
#[derive(Clone, Copy)]
pub struct Incoming<'a>(&'a ngx_http_request_t);

fn text(s: &ngx::ffi::ngx_str_t) -> &str {
    core::str::from_utf8(s.as_bytes()).unwrap_or("")
}

impl<'a> Incoming<'a> {
    /// # Safety
    /// `r` is a valid request that outlives `'a`.
    pub unsafe fn new(r: *mut ngx_http_request_t) -> Incoming<'a> {
        // SAFETY: per the contract.
        Incoming(unsafe { &*r })
    }

    /// The request's cookies, read once from its `Cookie` lines.
    pub fn cookies(&self) -> Jar<'a> {
        Jar::parse(self.cookie_lines())
    }

    /// The value of every `Cookie` line, in order.
    fn cookie_lines(&self) -> Vec<&'a [u8]> {
        let mut lines = Vec::new();
        #[cfg(ngx_cookie_list)]
        {
            let mut h = self.0.headers_in.cookie;
            // SAFETY: nginx links the request's `Cookie` header elements through `next`.
            while let Some(elt) = unsafe { h.as_ref() } {
                lines.push(elt.value.as_bytes());
                h = elt.next;
            }
        }
        #[cfg(not(ngx_cookie_list))]
        {
            let cookies = &self.0.headers_in.cookies;
            if !cookies.elts.is_null() {
                // SAFETY: nginx keeps pointers to the `Cookie` header elements in this array.
                let elts = unsafe {
                    core::slice::from_raw_parts(
                        cookies.elts as *const *mut ngx::ffi::ngx_table_elt_t,
                        cookies.nelts,
                    )
                };
                // SAFETY: each points into the request's header list.
                lines.extend(elts.iter().filter_map(|e| unsafe { e.as_ref() }).map(|e| e.value.as_bytes()));
            }
        }
        lines
    }

    /// The first request header named `name` (compared without regard to case).
    pub fn header(&self, name: &str) -> Option<&'a str> {
        // SAFETY: the request's header list is a valid nginx list of table elements.
        let mut headers = unsafe { ngx::http::list_iterator(&self.0.headers_in.headers) };
        headers
            .find(|(k, _)| k.as_bytes().eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v.to_str().unwrap_or(""))
    }

    pub fn method(&self) -> &'a str {
        text(&self.0.method_name)
    }

    /// What decides between a sign-in redirect and a 401, and whether another site may have sent it.
    pub fn browser(&self) -> RequestHeaders<'a> {
        RequestHeaders {
            method: self.method(),
            accept: self.header("Accept"),
            x_requested_with: self.header("X-Requested-With").is_some(),
            sec_fetch_mode: self.header("Sec-Fetch-Mode"),
            sec_fetch_dest: self.header("Sec-Fetch-Dest"),
            sec_fetch_site: self.header("Sec-Fetch-Site"),
            origin: self.header("Origin"),
            prefetch: self.header("Sec-Purpose").is_some()
                || self.header("Purpose").is_some_and(|p| p.eq_ignore_ascii_case("prefetch")),
            upgrade: self.header("Upgrade").is_some(),
        }
    }

    /// The connection is TLS.
    pub fn is_tls(&self) -> bool {
        // SAFETY: a request's connection is valid.
        #[cfg(ngx_feature = "http_ssl")]
        return !unsafe { (*self.0.connection).ssl }.is_null();
        #[cfg(not(ngx_feature = "http_ssl"))]
        false
    }

    /// The `Host` header as sent (port included); empty when there is none.
    pub fn host_header(&self) -> &'a str {
        // SAFETY: nginx sets `host` to the request's `Host` element, or null.
        unsafe { self.0.headers_in.host.as_ref() }.map_or("", |h| text(&h.value))
    }

    /// The host nginx validated (no port, lowercase): `$host`.
    pub fn host(&self) -> &'a str {
        text(&self.0.headers_in.server)
    }

    /// The path the request was routed by (decoded, normalised).
    pub fn uri(&self) -> &'a [u8] {
        self.0.uri.as_bytes()
    }

    /// The query string, without the `?`.
    pub fn args(&self) -> &'a str {
        text(&self.0.args)
    }

    /// The path and query as the client sent them.
    pub fn unparsed_uri(&self) -> &'a str {
        text(&self.0.unparsed_uri)
    }
}
