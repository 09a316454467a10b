//! `entra_logout`: the directive, and the content handler it installs, which ends the browser's
//! session (its cookies, and in the record of sessions) and sends it to Entra's end-session
//! endpoint.

use core::ffi::{c_char, c_void};

use entra_core::Denial;
use ngx::core::Status;
use ngx::ffi::{ngx_command_t, ngx_conf_t, ngx_http_request_t, ngx_int_t};
use ngx::http::HttpModuleLocationConf;

use crate::clock::{epoch_ms, now};
use crate::conf::location::install_handler;
use crate::denial::sign_in_failed;
use crate::log::{guard, info, request_log};
use crate::module::EntraModule;
use crate::outcome;
use crate::request::Incoming;
use crate::response::{escape, page, send, set_cookies, Header, INTERNAL_ERROR};
use crate::worker;
use crate::zone::SignInEvent;

/// `entra_logout;`
pub extern "C" fn set_logout(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    install_handler(cf, conf, "entra_logout", logout_handler, |lcf| lcf.logout = true)
}

extern "C" fn logout_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx calls content handlers with a valid request.
    guard(unsafe { request_log(r) }, "entra_logout", INTERNAL_ERROR, || unsafe { logout(r) })
}

/// Ends the session: a `POST` (or a `GET` shown to come from this origin) clears every session
/// and transaction cookie and goes to the end-session endpoint; any other `GET` gets a page with
/// a button that posts the logout, and logs nobody out.
///
/// # Safety
/// `r` is a valid request.
unsafe fn logout(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: per the contract.
    let (req, request, log) =
        unsafe { (Incoming::new(r), ngx::http::Request::from_ngx_http_request(r), request_log(r)) };
    let Some(lcf) = EntraModule::location_conf(request) else { return INTERNAL_ERROR };
    let (Some(index), Some(worker)) = (lcf.provider, worker::current()) else {
        return Status::NGX_DECLINED.into();
    };
    let state = &worker.providers[index];
    state.sync_keys(log);
    let provider = &state.provider;
    let sign_in = &provider.sign_in;
    let headers = req.browser();
    let origin = req.origin_for(sign_in);
    let same_origin = headers.sec_fetch_site.is_some_and(|s| s.eq_ignore_ascii_case("same-origin"))
        || headers.origin.is_some_and(|o| o.eq_ignore_ascii_case(&origin));
    let post = req.method() == "POST";
    if post && headers.is_cross_origin(&origin) {
        let why = "a logout posted from another site";
        // SAFETY: per the contract.
        return unsafe { sign_in_failed(r, state, Denial::CrossOrigin, why, Vec::new()) };
    }
    if !post && !same_origin {
        let form = format!(
            "<form method=\"post\" action=\"{}\"><button type=\"submit\">Sign out</button></form>",
            escape(form_action(req.uri()))
        );
        let body = page("Sign out", &["Sign out of this application?".into(), form]);
        // SAFETY: per the contract.
        return unsafe { send(r, 200, &[], "text/html; charset=utf-8", &body) };
    }
    // SAFETY: per the contract.
    let hint = unsafe { outcome::get(r) }
        .and_then(|o| o.verified.as_ref().ok().and_then(|t| t.str("login_hint").map(str::to_owned)));
    let (jar, secure) = (req.cookies(), req.is_secure_for(sign_in));
    // The session ends in the record too: a copy of its cookie no longer opens.
    if let Some(Ok(sealed)) = sign_in.session_cookie(&jar, secure) {
        if let (Ok(opened), _) = sign_in.open_cached(&sealed, secure, now()) {
            let ended =
                state.record.as_ref().is_some_and(|record| record.end_session(&opened.session, epoch_ms()));
            crate::fleet::signed_out(&worker, state, &opened.keys.fleet, epoch_ms());
            if !ended {
                crate::log::error!(
                    log,
                    "provider \"{}\": no record of sessions to end this one in",
                    provider.name
                );
            }
        }
    }
    let mut out: Vec<Header> = set_cookies(sign_in.clear_all(&jar, secure)).collect();
    let after = sign_in.post_logout_redirect.clone().unwrap_or_else(|| format!("{origin}/"));
    let location = match provider.key_state().endpoints.end_session.as_deref() {
        Some(end_session) => {
            let mut pairs = vec![("post_logout_redirect_uri", after.as_str())];
            if let Some(hint) = hint.as_deref() {
                pairs.push(("logout_hint", hint));
            }
            entra_core::oidc::with_query(end_session, &pairs)
        }
        None => after,
    };
    info!(log, "signed out: provider \"{}\"", provider.name);
    if let Some(counters) = state.counters() {
        counters.sign_in(SignInEvent::Logout);
    }
    out.push((b"Location", location));
    // SAFETY: per the contract.
    unsafe { send(r, 302, &out, "", "") }
}

/// Where the confirmation page's button posts: the normalised path nginx matched, when it is a
/// path of this site; else the empty action (the page's own URL). Never the raw request line,
/// which for a prefix location may read `//other.example`, a URL of another site.
fn form_action(path: &[u8]) -> &str {
    match core::str::from_utf8(path) {
        Ok(p) if entra_core::oidc::is_local_path(p) => p,
        _ => "",
    }
}
