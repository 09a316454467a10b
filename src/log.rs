//! What the module writes to the error log: macros by level, each line starting with `entra: `,
//! the one panic guard of every entry point from nginx, and the denial line of a request.
//!
//! Nothing here ever writes a token, a key, a secret or a cookie value.

use std::fmt::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};

use entra_core::token::SESSION_KID;
use entra_core::{Denial, DenialClass, Provider, VerifiedToken};
use ngx::ffi::{
    ngx_conf_t, ngx_http_get_indexed_variable, ngx_http_request_t, ngx_http_variable_t, ngx_log_t,
    NGX_LOG_ERR, NGX_LOG_INFO,
};
use ngx::http::{HttpModuleMainConf, NgxHttpCoreModule};

/// Writes at a level to a log (`*mut ngx_log_t`), prefixed with `entra: `.
macro_rules! log_at {
    ($level:expr, $log:expr, $($arg:tt)+) => {{
        ngx::ngx_log_error!($level, $log, "entra: {}", format_args!($($arg)+));
    }};
}

/// Writes at `debug` (only in an nginx built `--with-debug`, at `error_log ... debug`).
macro_rules! debug {
    ($log:expr, $($arg:tt)+) => {{
        ngx::ngx_log_debug!($log, "entra: {}", format_args!($($arg)+));
    }};
}

macro_rules! info {
    ($log:expr, $($arg:tt)+) => { $crate::log::log_at!(ngx::ffi::NGX_LOG_INFO, $log, $($arg)+) };
}

macro_rules! notice {
    ($log:expr, $($arg:tt)+) => { $crate::log::log_at!(ngx::ffi::NGX_LOG_NOTICE, $log, $($arg)+) };
}

macro_rules! warning {
    ($log:expr, $($arg:tt)+) => { $crate::log::log_at!(ngx::ffi::NGX_LOG_WARN, $log, $($arg)+) };
}

macro_rules! error {
    ($log:expr, $($arg:tt)+) => { $crate::log::log_at!(ngx::ffi::NGX_LOG_ERR, $log, $($arg)+) };
}

pub(crate) use {debug, error, info, log_at, notice, warning};

/// The request's connection log.
///
/// # Safety
/// `r` is a valid request.
pub unsafe fn request_log(r: *mut ngx_http_request_t) -> *mut ngx_log_t {
    // SAFETY: per the contract.
    unsafe { (*(*r).connection).log }
}

/// Runs the body of an entry point that nginx calls (`extern "C"`). A panic must never unwind
/// into nginx: since Rust 1.81 that aborts the worker. It is logged at `alert` as an internal
/// error in `entry`, and nginx gets `on_panic` (a 500, an error status, `NGX_CONF_ERROR`).
pub fn guard<R>(log: *mut ngx_log_t, entry: &str, on_panic: R, body: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(result) => result,
        Err(_) => {
            if !log.is_null() {
                log_at!(ngx::ffi::NGX_LOG_ALERT, log, "internal error in {}", entry);
            }
            on_panic
        }
    }
}

/// While it lives, lines logged to `log` go without nginx's request context (the request line,
/// with its query): the sign-in callback's query holds the authorization code, which no line of
/// the module's may show. On the event loop only, where nothing else logs meanwhile.
pub struct WithoutRequestLine {
    log: *mut ngx_log_t,
    handler: ngx::ffi::ngx_log_handler_pt,
}

impl WithoutRequestLine {
    /// # Safety
    /// `log` is a valid log that outlives the value.
    pub unsafe fn new(log: *mut ngx_log_t) -> WithoutRequestLine {
        // SAFETY: per the contract.
        let handler = unsafe { (*log).handler.take() };
        WithoutRequestLine { log, handler }
    }
}

impl Drop for WithoutRequestLine {
    fn drop(&mut self) {
        // SAFETY: the log is valid (see `new`); its handler is put back.
        unsafe { (*self.log).handler = self.handler };
    }
}

/// A panic on purpose, for the test that proves [`guard`]: debug builds only, where the
/// environment variable `NGX_ENTRA_TEST_PANIC` names the entry point (`access`, `variable`,
/// `status`), passed to workers with nginx's `env` directive.
#[cfg(debug_assertions)]
pub fn test_panic(entry: &str) {
    if std::env::var("NGX_ENTRA_TEST_PANIC").is_ok_and(|v| v == entry) {
        panic!("NGX_ENTRA_TEST_PANIC={entry}");
    }
}

#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn test_panic(_entry: &str) {}

/// The index of nginx's `$request_id` when the configuration uses it elsewhere (an access
/// log's format, a header to the upstream; postconfiguration, once every directive has indexed
/// what it uses): an indexed variable is computed once per request and cached, so the denial
/// line and that log agree. Otherwise the line goes without it: it would join nothing, and its
/// 16 random bytes cost a denial about 7,000 instructions (docs/BENCHMARK.md).
pub fn request_id_in_use(cf: &ngx_conf_t) -> Option<usize> {
    let cmcf = NgxHttpCoreModule::main_conf(cf)?;
    let variables = &cmcf.variables;
    if variables.elts.is_null() {
        return None;
    }
    // SAFETY: the core module's indexed variables: `nelts` elements of this type.
    let variables =
        unsafe { std::slice::from_raw_parts(variables.elts as *const ngx_http_variable_t, variables.nelts) };
    variables.iter().position(|v| {
        // SAFETY: each name is `len` bytes at `data`, lower-case as nginx stored it.
        !v.name.data.is_null()
            && unsafe { std::slice::from_raw_parts(v.name.data, v.name.len) } == b"request_id"
    })
}

/// The request's `$request_id` (32 hex digits) when the configuration uses it, "-" when nginx
/// has none to give.
///
/// # Safety
/// `r` is a valid request of the configuration `index` was taken from.
unsafe fn request_id<'r>(r: *mut ngx_http_request_t, index: Option<usize>) -> Option<&'r str> {
    let index = index?;
    // SAFETY: per the contract; the value lives in the request's pool, as long as the request.
    let Some(value) = (unsafe { ngx_http_get_indexed_variable(r, index as _).as_ref() }) else {
        return Some("-");
    };
    if value.not_found() != 0 || value.data.is_null() {
        return Some("-");
    }
    // SAFETY: nginx's value is `len` bytes at `data`; the line is written before the request ends.
    let bytes = unsafe { std::slice::from_raw_parts(value.data, value.len() as usize) };
    Some(std::str::from_utf8(bytes).unwrap_or("-"))
}

/// One line per denial at `info` (at `error` when the provider has no keys: that is the
/// operator's trouble, not the client's): the reason, the provider, nginx's `$request_id` when
/// the configuration uses it (to join it with the access log), for a verified token who it names and which key signed it
/// (a session has no key of its own), then `detail`'s answer: what was required and what was had
/// (`entra_core::explain`), else the reason's sentence. Never the token itself; nothing at all
/// when the log's level drops the line.
///
/// # Safety
/// `r` is a valid request; `request_id_index` is its configuration's (`Worker::request_id_index`).
pub unsafe fn denial(
    r: *mut ngx_http_request_t,
    request_id_index: Option<usize>,
    provider: &Provider,
    denial: Denial,
    token: Option<&VerifiedToken>,
    detail: impl FnOnce() -> Option<String>,
) {
    // SAFETY: per the contract.
    let log = unsafe { request_log(r) };
    let level = if denial.class() == DenialClass::Unavailable { NGX_LOG_ERR } else { NGX_LOG_INFO };
    // Nothing is worked out for a line the log would drop.
    // SAFETY: a request's log is valid.
    if unsafe { (*log).log_level } < level as ngx::ffi::ngx_uint_t {
        return;
    }
    let mut who = String::new();
    // SAFETY: per the contract.
    if let Some(id) = unsafe { request_id(r, request_id_index) } {
        let _ = write!(who, ", request_id {id}");
    }
    if let Some(t) = token {
        let _ = write!(who, ", oid {}, tid {}", t.oid().unwrap_or("-"), t.tid().unwrap_or("-"));
        if t.kid != SESSION_KID {
            let _ = write!(who, ", kid {}", t.kid);
        }
    }
    if let Denial::InvalidClaim(name) = denial {
        let _ = write!(who, ", claim \"{name}\"");
    }
    let detail = match (detail(), token) {
        (Some(detail), _) => format!(": {detail}"),
        (None, None) => format!(": {denial}"),
        (None, Some(_)) => String::new(),
    };
    log_at!(
        level,
        log,
        "access denied: {} (provider \"{}\"{}){}",
        denial.reason(),
        provider.name,
        who,
        detail
    );
}
