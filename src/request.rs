//! What browser sign-in reads of a request: its `Cookie` lines (kept by nginx as an array until
//! 1.22 and as a linked list from 1.23), the headers that tell a navigation from a script, the
//! scheme and the host.

use core::marker::PhantomData;

use entra_core::browser::{LazyHeaders, ReadHeaders, RequestHeaders};
use entra_core::cookie::{CookieLines, Jar};
use entra_core::signin::{SessionRequest, SignIn};
use ngx::ffi::{ngx_http_request_t, ngx_str_t};

/// A request, read-only, for as long as the handler that got it runs. It keeps a pointer, not a
/// reference: the handler also changes the request (headers out, its context), and no reference
/// to the request itself may live across that. What it hands out (header values, the URI) lies
/// in the request's pool, which nothing changes.
#[derive(Clone, Copy)]
pub struct Incoming<'a>(*const ngx_http_request_t, PhantomData<&'a [u8]>);

/// Bytes of the request's pool (header values, the URI), for the request's life rather than for
/// the borrow they were read through.
fn pooled<'a>(b: &[u8]) -> &'a [u8] {
    // SAFETY: a request's strings point into its pool (or nginx's static strings), which lives
    // as long as the request; nothing writes them while a handler runs.
    unsafe { core::slice::from_raw_parts(b.as_ptr(), b.len()) }
}

fn bytes<'a>(s: &ngx_str_t) -> &'a [u8] {
    pooled(s.as_bytes())
}

fn text<'a>(s: &ngx_str_t) -> &'a str {
    core::str::from_utf8(bytes(s)).unwrap_or("")
}

impl<'a> Incoming<'a> {
    /// # Safety
    /// `r` is a valid request that outlives `'a`.
    pub unsafe fn new(r: *mut ngx_http_request_t) -> Incoming<'a> {
        Incoming(r, PhantomData)
    }

    /// The request, borrowed for one read.
    fn r(&self) -> &ngx_http_request_t {
        // SAFETY: per `new`'s contract; the borrow ends with the read that takes it.
        unsafe { &*self.0 }
    }

    /// The request's cookies, read once from its `Cookie` lines.
    pub fn cookies(&self) -> Jar<'a> {
        Jar::parse(self.cookie_lines())
    }

    /// The value of every `Cookie` line, in order.
    fn cookie_lines(&self) -> CookieLines<'a> {
        let mut lines = CookieLines::new();
        #[cfg(ngx_cookie_list)]
        {
            let mut h = self.r().headers_in.cookie;
            // SAFETY: nginx links the request's `Cookie` header elements through `next`.
            while let Some(elt) = unsafe { h.as_ref() } {
                lines.push(bytes(&elt.value));
                h = elt.next;
            }
        }
        #[cfg(not(ngx_cookie_list))]
        {
            let cookies = &self.r().headers_in.cookies;
            if !cookies.elts.is_null() {
                // SAFETY: nginx keeps pointers to the `Cookie` header elements in this array.
                let elts = unsafe {
                    core::slice::from_raw_parts(
                        cookies.elts as *const *mut ngx::ffi::ngx_table_elt_t,
                        cookies.nelts,
                    )
                };
                // SAFETY: each points into the request's header list.
                lines.extend(elts.iter().filter_map(|e| unsafe { e.as_ref() }).map(|e| bytes(&e.value)));
            }
        }
        lines
    }

    pub fn method(&self) -> &'a str {
        text(&self.r().method_name)
    }

    /// What decides between a sign-in redirect and a 401, and whether another site may have sent
    /// it: one pass over the request's headers.
    /// The method is the main request's: nginx gives an `auth_request` subrequest the method
    /// GET, and a POST judged through one must still count as one that may change something.
    pub fn browser(&self) -> RequestHeaders<'a> {
        // SAFETY: a valid request's main request is valid for at least as long.
        let main = unsafe { &*self.r().main };
        let mut h = RequestHeaders { method: text(&main.method_name), ..RequestHeaders::default() };
        // SAFETY: the request's header list is a valid nginx list of table elements.
        for (name, value) in unsafe { ngx::http::list_iterator(&self.r().headers_in.headers) } {
            let is = |wanted: &str| name.as_bytes().eq_ignore_ascii_case(wanted.as_bytes());
            let value: &'a [u8] = pooled(value.as_bytes());
            // Only the values used are read as text (not the Cookie line, say).
            let first =
                |slot: &mut Option<&'a str>| *slot = slot.or(Some(core::str::from_utf8(value).unwrap_or("")));
            match name.as_bytes().len() {
                6 if is("Accept") => first(&mut h.accept),
                6 if is("Origin") => first(&mut h.origin),
                7 if is("Upgrade") => h.upgrade = true,
                7 if is("Purpose") => h.prefetch |= value.eq_ignore_ascii_case(b"prefetch"),
                11 if is("Sec-Purpose") => h.prefetch = true,
                14 if is("Sec-Fetch-Mode") => first(&mut h.sec_fetch_mode),
                14 if is("Sec-Fetch-Dest") => first(&mut h.sec_fetch_dest),
                14 if is("Sec-Fetch-Site") => first(&mut h.sec_fetch_site),
                16 if is("X-Requested-With") => h.x_requested_with = true,
                _ => {}
            }
        }
        h
    }

    /// The connection is TLS.
    pub fn is_tls(&self) -> bool {
        // SAFETY: a request's connection is valid.
        #[cfg(ngx_feature = "http_ssl")]
        return !unsafe { (*self.r().connection).ssl }.is_null();
        #[cfg(not(ngx_feature = "http_ssl"))]
        false
    }

    /// Whether the module's cookies are `Secure` for this request ([`SignIn::is_secure`]).
    pub fn is_secure_for(&self, sign_in: &SignIn) -> bool {
        sign_in.is_secure(self.is_tls())
    }

    /// `scheme://host[:port]` of this request, as the browser sees it.
    pub fn origin_for(&self, sign_in: &SignIn) -> String {
        sign_in.own_origin(self.is_tls(), self.host_header())
    }

    /// What browser sign-in reads of this request, at `now`: its headers ([`Incoming::browser`])
    /// only when something asks for more than the method and `Upgrade`.
    pub fn session_request<'s>(&'s self, now: u64) -> SessionRequest<'s> {
        let this: &'s Incoming<'s> = self;
        // SAFETY: a valid request's main request is valid for at least as long.
        let main = unsafe { &*self.r().main };
        SessionRequest {
            cookie_lines: self.cookie_lines(),
            headers: LazyHeaders::new(text(&main.method_name), !self.r().headers_in.upgrade.is_null(), this),
            tls: self.is_tls(),
            // SAFETY: nginx sets `host` to the request's `Host` element, or null.
            host_header: unsafe { self.r().headers_in.host.as_ref() }.map_or(&[][..], |h| bytes(&h.value)),
            host: bytes(&self.r().headers_in.server),
            unparsed_uri: bytes(&self.r().unparsed_uri),
            now,
        }
    }

    /// The `Host` header as sent (port included); empty when there is none.
    pub fn host_header(&self) -> &'a str {
        // SAFETY: nginx sets `host` to the request's `Host` element, or null.
        unsafe { self.r().headers_in.host.as_ref() }.map_or("", |h| text(&h.value))
    }

    /// The path the request was routed by (decoded, normalised).
    pub fn uri(&self) -> &'a [u8] {
        bytes(&self.r().uri)
    }

    /// The path and query as the client sent them: where a sign-in returns to.
    pub fn unparsed_uri(&self) -> &'a str {
        text(&self.r().unparsed_uri)
    }

    /// The query string, without the `?`.
    pub fn args(&self) -> &'a str {
        text(&self.r().args)
    }

    /// The client's address as `$binary_remote_addr` has it (after `realip`): 4 or 16 bytes;
    /// empty for a UNIX socket.
    pub fn client_address(&self) -> Vec<u8> {
        // SAFETY: a request's connection is valid, with nginx's sockaddr of the client.
        let sockaddr = unsafe { (*self.r().connection).sockaddr };
        // SAFETY: nginx's sockaddr is null or valid, of the length its family says.
        match unsafe { sockaddr.as_ref() }.map(|sa| u32::from(sa.sa_family)) {
            Some(ngx::ffi::AF_INET) => {
                // SAFETY: an AF_INET address is a sockaddr_in.
                let sin = unsafe { &*(sockaddr as *const ngx::ffi::sockaddr_in) };
                sin.sin_addr.s_addr.to_ne_bytes().to_vec()
            }
            Some(ngx::ffi::AF_INET6) => {
                // SAFETY: an AF_INET6 address is a sockaddr_in6; every view of the union is bytes.
                let sin6 = unsafe { &*(sockaddr as *const ngx::ffi::sockaddr_in6) };
                // SAFETY: as above.
                unsafe { sin6.sin6_addr.__in6_u.__u6_addr8 }.to_vec()
            }
            _ => Vec::new(),
        }
    }
}

impl<'a> ReadHeaders<'a> for Incoming<'a> {
    fn read_headers(&self) -> RequestHeaders<'a> {
        self.browser()
    }
}
