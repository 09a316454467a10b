//! `entra_whoami;`: a content handler that shows the identity the access check saw (as JSON,
//! never stored by caches), for debugging a configuration. Its location needs `entra_auth`, so
//! only the signed-in user or the bearer of a valid token sees it.

use core::ffi::{c_char, c_void};

use ngx::ffi::{ngx_command_t, ngx_conf_t, ngx_http_request_t, ngx_int_t};
use ngx::http::HttpModuleLocationConf;
use serde_json::json;

use crate::conf::location::install_handler;
use crate::log::{guard, request_log};
use crate::module::EntraModule;
use crate::outcome::{self, Source};
use crate::response::{send, INTERNAL_ERROR};
use crate::worker;

/// `entra_whoami;`
pub extern "C" fn set_whoami(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    install_handler(cf, conf, "entra_whoami", whoami_handler, |lcf| lcf.whoami = true)
}

extern "C" fn whoami_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx calls content handlers with a valid request.
    guard(unsafe { request_log(r) }, "entra_whoami", INTERNAL_ERROR, || unsafe { whoami(r) })
}

/// # Safety
/// `r` is a valid request.
unsafe fn whoami(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: per the contract.
    let request = unsafe { ngx::http::Request::from_ngx_http_request(r) };
    let (Some(lcf), Some(worker)) = (EntraModule::location_conf(request), worker::current()) else {
        return INTERNAL_ERROR;
    };
    let Some(state) = lcf.provider.and_then(|i| worker.providers.get(i)) else { return INTERNAL_ERROR };
    let provider = &state.provider;
    // SAFETY: per the contract.
    let judged = unsafe { outcome::get(r) }.map(|o| &*o).filter(|o| o.provider == state.index);
    let body = match judged.and_then(|o| Some((o.verified.as_ref().ok()?, o))) {
        Some((token, o)) => {
            let source = if o.source == Source::Session { "session" } else { "bearer" };
            let asked = provider.graph.as_ref().map(|g| g.asked());
            let graph = asked.zip(o.graph.as_ref()).map(|(asked, m)| m.groups(asked).collect());
            entra_core::whoami::identity(token, &provider.name, source, graph)
        }
        // Let in with no identity (`satisfy any` and an address nginx allowed): the access
        // check refuses every other request without one before this handler runs.
        None => json!({ "provider": provider.name, "source": null }),
    };
    // (`send` marks every answer of the module `Cache-Control: no-store`.)
    // SAFETY: per the contract, in a content handler.
    unsafe { send(r, 200, &[], "application/json", &(body.to_string() + "\n")) }
}
