//! What the module writes to the error log about a request.

use entra_core::{Denial, DenialClass, Provider, VerifiedToken};
use ngx::ffi::{ngx_http_request_t, NGX_LOG_ERR, NGX_LOG_INFO};
use ngx::ngx_log_error;

/// One line per denial at `info` (at `error` when the provider has no keys: that is the
/// operator's trouble, not the client's): the reason, the provider and, for a verified token,
/// who it names and which key signed it. Never the token itself.
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
            let level = if denial.class() == DenialClass::Unavailable { NGX_LOG_ERR } else { NGX_LOG_INFO };
            ngx_log_error!(
                level,
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
