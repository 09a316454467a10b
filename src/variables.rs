//! `$entra_*` variables, read from the request's [`Outcome`](crate::outcome::Outcome).
//!
//! They are filled in the access phase, so `set` and `if` (rewrite phase) see them empty.
//! They are not cached: the same request can be judged again after an internal redirect.

use std::borrow::Cow;
use std::fmt::Write;

use entra_core::VerifiedToken;
use ngx::core::Status;
use ngx::ffi::{
    ngx_conf_t, ngx_http_add_variable, ngx_http_request_t, ngx_int_t, ngx_pnalloc, ngx_str_t,
    ngx_variable_value_t, NGX_HTTP_VAR_NOCACHEABLE, NGX_HTTP_VAR_PREFIX,
};
use serde_json::Value;

use crate::log::{guard, request_log, test_panic};
use crate::outcome::{self, Outcome, Source};

/// What a variable shows; the index is the variable's `data`.
#[derive(Clone, Copy)]
enum Field {
    Oid,
    Tid,
    Sub,
    Upn,
    Name,
    Email,
    Groups,
    Roles,
    Scopes,
    AppId,
    TokenVersion,
    Error,
    AuthSource,
    GroupsSource,
    AuthContexts,
    SigninTime,
}

const VARIABLES: [(&str, Field); 16] = [
    ("entra_oid", Field::Oid),
    ("entra_tid", Field::Tid),
    ("entra_sub", Field::Sub),
    ("entra_upn", Field::Upn),
    ("entra_name", Field::Name),
    ("entra_email", Field::Email),
    ("entra_groups", Field::Groups),
    ("entra_roles", Field::Roles),
    ("entra_scopes", Field::Scopes),
    ("entra_app_id", Field::AppId),
    ("entra_token_version", Field::TokenVersion),
    ("entra_error", Field::Error),
    ("entra_auth_source", Field::AuthSource),
    ("entra_groups_source", Field::GroupsSource),
    ("entra_auth_contexts", Field::AuthContexts),
    ("entra_signin_time", Field::SigninTime),
];

const CLAIM_PREFIX: &str = "entra_claim_";

/// Adds the variables (preconfiguration).
pub fn register(cf: *mut ngx_conf_t) -> Result<(), &'static str> {
    let flags = NGX_HTTP_VAR_NOCACHEABLE as usize;
    let add = |name: &'static str, flags: usize, handler: Handler, data: usize| {
        let mut name = ngx_str_t { len: name.len(), data: name.as_ptr() as *mut u8 };
        // SAFETY: nginx calls preconfiguration with a valid cf; it copies the name.
        let var = unsafe { ngx_http_add_variable(cf, &mut name, flags).as_mut() }.ok_or("out of memory")?;
        var.get_handler = Some(handler);
        var.data = data;
        Ok(())
    };
    for (index, (name, _)) in VARIABLES.iter().enumerate() {
        add(name, flags, get_field, index)?;
    }
    add(CLAIM_PREFIX, flags | NGX_HTTP_VAR_PREFIX as usize, get_claim, 0)
}

type Handler = unsafe extern "C" fn(*mut ngx_http_request_t, *mut ngx_variable_value_t, usize) -> ngx_int_t;

fn join<'a, T: std::fmt::Display>(items: impl Iterator<Item = T>, sep: &str) -> Option<Cow<'a, str>> {
    let mut joined = String::new();
    for (i, item) in items.enumerate() {
        if i > 0 {
            joined.push_str(sep);
        }
        let _ = write!(joined, "{item}");
    }
    (!joined.is_empty()).then_some(Cow::Owned(joined))
}

fn field(token: &VerifiedToken, field: Field) -> Option<Cow<'_, str>> {
    let text = match field {
        Field::Oid => token.oid(),
        Field::Tid => token.tid(),
        Field::Sub => token.str("sub"),
        Field::Upn => token.upn(),
        Field::Name => token.str("name"),
        Field::Email => token.str("email"),
        Field::Groups => return join(token.groups(), ","),
        Field::Roles => return join(token.roles(), ","),
        Field::Scopes => return join(token.scopes(), " "),
        Field::AppId => token.app_id(),
        Field::TokenVersion => token.str("ver"),
        Field::AuthContexts => return join(token.auth_contexts(), ","),
        Field::SigninTime => return token.signin_time().map(|at| Cow::Owned(at.to_string())),
        Field::Error | Field::AuthSource | Field::GroupsSource => None,
    };
    text.map(Cow::Borrowed)
}

/// A claim as text: strings as they are, arrays comma-joined, anything else as JSON.
fn claim_text(value: &Value) -> Option<Cow<'_, str>> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Array(items) => Some(Cow::Owned(
            items
                .iter()
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(","),
        )),
        other => Some(Cow::Owned(other.to_string())),
    }
}

/// Copies a value into the request pool. Control characters become spaces, so that a claim
/// can never split a header line when passed on with `proxy_set_header`.
///
/// # Safety
/// `r` and `v` are the valid request and value nginx passed to a variable handler.
unsafe fn set_value(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    text: Option<Cow<str>>,
) -> Status {
    // SAFETY: per the contract.
    let v = unsafe { &mut *v };
    let Some(text) = text else {
        v.set_not_found(1);
        return Status::NGX_OK;
    };
    // SAFETY: per the contract, the request's pool is valid.
    let data = unsafe { ngx_pnalloc((*r).pool, text.len().max(1)) } as *mut u8;
    if data.is_null() {
        return Status::NGX_ERROR;
    }
    // SAFETY: `data` has room for the text.
    let copy = unsafe { core::slice::from_raw_parts_mut(data, text.len()) };
    for (to, from) in copy.iter_mut().zip(text.bytes()) {
        *to = if from < 0x20 || from == 0x7f { b' ' } else { from };
    }
    v.data = data;
    v.set_len(text.len() as u32);
    v.set_valid(1);
    v.set_no_cacheable(1);
    v.set_not_found(0);
    Status::NGX_OK
}

/// Serves one variable from the request's outcome.
///
/// # Safety
/// nginx calls variable handlers with a valid request and value.
unsafe fn serve(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    value: impl FnOnce(&Outcome) -> Option<Cow<'_, str>>,
) -> ngx_int_t {
    // SAFETY: per the contract.
    guard(unsafe { request_log(r) }, "a variable", Status::NGX_ERROR.into(), || {
        test_panic("variable");
        // SAFETY: per the contract.
        let text = unsafe { outcome::get(r) }.and_then(|o| value(o));
        // SAFETY: per the contract.
        unsafe { set_value(r, v, text) }.into()
    })
}

unsafe extern "C" fn get_field(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    data: usize,
) -> ngx_int_t {
    let kind = VARIABLES[data].1;
    // SAFETY: nginx calls variable handlers with a valid request and value.
    unsafe {
        serve(r, v, |o| match (kind, &o.verified) {
            (Field::Error, _) => o.denial.map(|d| Cow::Borrowed(d.reason())),
            (Field::AuthSource, Ok(_)) => Some(Cow::Borrowed(match o.source {
                Source::Bearer => "bearer",
                Source::Session => "session",
            })),
            // Group overage: the asked groups Graph says the user is in, and where they came from.
            (Field::Groups, Ok(_)) if o.graph.is_some() => graph_groups(o),
            (Field::GroupsSource, Ok(token)) => match (o.graph, token.has_group_overage()) {
                (Some(_), _) => Some(Cow::Borrowed("graph")),
                (None, false) => Some(Cow::Borrowed("token")),
                (None, true) => None,
            },
            (kind, Ok(token)) => field(token, kind),
            (_, Err(_)) => None,
        })
    }
}

/// The asked groups Graph says the user of `o` is in, comma-joined.
fn graph_groups(o: &Outcome) -> Option<Cow<'static, str>> {
    let worker = crate::worker::current()?;
    let graph = worker.providers.get(o.provider)?.provider.graph.as_ref()?;
    let members = o.graph?;
    let joined = members.groups(graph.asked()).collect::<Vec<_>>().join(",");
    (!joined.is_empty()).then_some(Cow::Owned(joined))
}

unsafe extern "C" fn get_claim(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    data: usize,
) -> ngx_int_t {
    // SAFETY: for a prefix variable nginx passes the full variable name as `data`.
    let full = unsafe { &*(data as *const ngx_str_t) };
    let name = full.as_bytes().get(CLAIM_PREFIX.len()..).and_then(|n| core::str::from_utf8(n).ok());
    // SAFETY: nginx calls variable handlers with a valid request and value.
    unsafe { serve(r, v, |o| o.verified.as_ref().ok().and_then(|t| t.claim(name?)).and_then(claim_text)) }
}
