//! Responses the module makes itself: headers added to a response, and whole answers (a body, or
//! a redirect) for `entra_status`, the sign-in callback and `entra_logout`. Each carries
//! `Cache-Control: no-store`.

use core::ptr;

use ngx::core::{Buffer, Status};
use ngx::ffi::{
    ngx_chain_t, ngx_http_request_t, ngx_http_send_special, ngx_int_t, ngx_list_push, ngx_pnalloc,
    ngx_table_elt_t, ngx_uint_t, NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_HTTP_LAST,
};
use ngx::http::{HTTPStatus, Request};

pub const INTERNAL_ERROR: ngx_int_t = NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;

/// A response header the module adds: its name and value.
pub type Header = (&'static [u8], String);

/// A `Set-Cookie` header for each of `cookies`.
pub fn set_cookies(cookies: impl IntoIterator<Item = String>) -> impl Iterator<Item = Header> {
    cookies.into_iter().map(|c| (&b"Set-Cookie"[..], c))
}

/// How a header added by [`set_header`] is also known to nginx.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Known {
    None,
    /// `WWW-Authenticate`, which nginx's `satisfy any` hides when another module lets the
    /// request in.
    WwwAuthenticate,
}

/// Adds a response header.
///
/// # Safety
/// `r` is a valid request.
pub unsafe fn set_header(
    r: *mut ngx_http_request_t,
    name: &'static [u8],
    value: &str,
    known: Known,
) -> Option<()> {
    // SAFETY: per the contract: the request's header list and pool are valid.
    unsafe {
        let h = ngx_list_push(&mut (*r).headers_out.headers) as *mut ngx_table_elt_t;
        let data = ngx_pnalloc((*r).pool, value.len().max(1)) as *mut u8;
        if h.is_null() || data.is_null() {
            return None;
        }
        ptr::copy_nonoverlapping(value.as_ptr(), data, value.len());
        // Zeroed first: the element's fields differ between nginx versions (`next` since 1.23).
        ptr::write_bytes(h, 0, 1);
        (*h).hash = 1;
        (*h).key.len = name.len();
        (*h).key.data = name.as_ptr() as *mut u8;
        (*h).value.len = value.len();
        (*h).value.data = data;
        if known == Known::WwwAuthenticate {
            (*r).headers_out.www_authenticate = h;
        }
    }
    Some(())
}

/// Adds every header of `headers`, then `Cache-Control: no-store`.
///
/// # Safety
/// `r` is a valid request.
pub unsafe fn set_headers(r: *mut ngx_http_request_t, headers: &[Header]) -> Option<()> {
    for (name, value) in headers {
        // SAFETY: per the contract.
        unsafe { set_header(r, name, value, Known::None) }?;
    }
    // SAFETY: per the contract.
    unsafe { set_header(r, b"Cache-Control", "no-store", Known::None) }
}

/// Whether a page the module sends may be shown inside another site's frame.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Security-Policy: frame-ancestors 'none'`: every page but one.
    Refused,
    /// The front-channel logout answer, which Entra loads in an iframe.
    Allowed,
}

/// Sends a whole answer: status, headers, and `body` of `content_type` (none when empty), with
/// `Referrer-Policy: no-referrer` (the callback's URL holds the code) and, unless `framing`
/// allows it, a policy that refuses frames.
///
/// # Safety
/// `r` is a valid request, in a content handler or a phase handler that finishes it.
pub unsafe fn send(
    r: *mut ngx_http_request_t,
    status: u16,
    headers: &[Header],
    content_type: &str,
    body: &str,
) -> ngx_int_t {
    // SAFETY: per the contract.
    unsafe { send_framed(r, Framing::Refused, status, headers, content_type, body) }
}

/// [`send`], with the framing said.
///
/// # Safety
/// As [`send`].
pub unsafe fn send_framed(
    r: *mut ngx_http_request_t,
    framing: Framing,
    status: u16,
    headers: &[Header],
    content_type: &str,
    body: &str,
) -> ngx_int_t {
    // SAFETY: per the contract.
    let request = unsafe { Request::from_ngx_http_request(r) };
    request.discard_request_body();
    request.set_status(HTTPStatus(status.into()));
    let mut protective: Vec<Header> = vec![(b"Referrer-Policy", "no-referrer".into())];
    if framing == Framing::Refused {
        protective.push((b"Content-Security-Policy", "frame-ancestors 'none'".into()));
    }
    // SAFETY: per the contract.
    if unsafe { set_headers(r, &[headers, &protective].concat()) }.is_none() {
        return INTERNAL_ERROR;
    }
    if !body.is_empty() && request.add_header_out("Content-Type", content_type).is_none() {
        return INTERNAL_ERROR;
    }
    request.set_content_length_n(body.len());
    let sent = request.send_header();
    if sent == Status::NGX_ERROR || sent.0 > Status::NGX_OK.0 || request.header_only() {
        return sent.into();
    }
    if body.is_empty() {
        // The header alone waits in the write filter for a last buffer.
        // SAFETY: per the contract.
        return unsafe { ngx_http_send_special(r, NGX_HTTP_LAST as ngx_uint_t) };
    }
    let Some(mut buf) = request.pool().create_buffer_from_str(body) else { return INTERNAL_ERROR };
    buf.set_last_buf(request.is_main());
    buf.set_last_in_chain(true);
    let mut out = ngx_chain_t { buf: buf.as_ngx_buf_mut(), next: ptr::null_mut() };
    request.output_filter(&mut out).into()
}

/// Text for an HTML page, escaped.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The module's small default page.
pub fn page(title: &str, paragraphs: &[String]) -> String {
    let body: String = paragraphs.iter().filter(|p| !p.is_empty()).map(|p| format!("<p>{p}</p>")).collect();
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title></head>\
         <body><h1>{t}</h1>{body}</body></html>\n",
        t = escape(title)
    )
}
