//! What the module writes to the error log about a request.

use entra_core::{Denial, Provider, VerifiedToken};
use ngx::ffi::{ngx_http_request_t, NGX_LOG_INFO};
use ngx::ngx_log_error;

/// One line per denial at `info`: the reason, the provider and, for a verified token, who it
/// names and which key signed it. Never the token itself.
///
/// # Safety
/// `r` must be a valid request.
pub unsafe fn denial(
    r: *mut ngx_http_request_t,
    provider: &Provider,
    denial: Denial,
    token: Option<&VerifiedToken>,
) {
    let log = (*(*r).connection).log;
    let claim = match denial {
        Denial::InvalidClaim(name) => format!(", claim \"{name}\""),
        _ => String::new(),
    };
    match token {
        Some(t) => {
            ngx_log_error!(
                NGX_LOG_INFO,
                log,
                "entra: access denied: {} (provider \"{}\", oid {}, tid {}, kid {})",
                denial.reason(),
                provider.name,
                t.oid().unwrap_or("-"),
                t.tid().unwrap_or("-"),
                t.kid
            );
        }
        None => {
            ngx_log_error!(
                NGX_LOG_INFO,
                log,
                "entra: access denied: {} (provider \"{}\"{}): {}",
                denial.reason(),
                provider.name,
                claim,
                denial
            );
        }
    }
}
