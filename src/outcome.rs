//! The result of authentication, kept for the whole request.
//!
//! nginx clears every module's request context on an internal redirect (`error_page`,
//! `try_files`, named locations), but the access log and error pages must still show who was
//! refused and why, and a token must not be verified twice. So the result lives in a cleanup
//! entry of the request pool, found again by its handler after a redirect (as nginx's realip
//! module does), and the context only caches the pointer.

use core::ffi::c_void;
use core::mem::{align_of, size_of};
use core::ptr;
use std::sync::Arc;

use entra_core::graph::Membership;
use entra_core::{Denial, VerifiedToken};
use ngx::ffi::{ngx_http_request_t, ngx_pool_cleanup_add, ngx_pool_cleanup_t};
use ngx::http::HttpModule;

use crate::log::guard;
use crate::module::EntraModule;
use crate::park::Pending;

pub struct Outcome {
    /// The index of the provider that judged the token: another provider must judge it again.
    pub provider: usize,
    /// The identity of a bearer token or a session.
    pub verified: Result<Arc<VerifiedToken>, Denial>,
    pub source: Source,
    /// Why the request was refused at the latest access check, if it was.
    pub denial: Option<Denial>,
    /// Parked until this time (ms) for keys being fetched or a Graph lookup; judged again when
    /// resumed.
    pub wait_until: Option<u64>,
    /// Parked for a Graph lookup since this time (ms since the epoch).
    pub groups_since: Option<u64>,
    /// Which of the asked groups Graph says the user is in (group overage).
    pub graph: Option<Membership>,
    /// A sign-in callback waiting for its code exchange.
    pub pending: Option<Pending>,
    /// The request is for a path the module answers itself (the provider's callback or
    /// front-channel logout), after the server's own PREACCESS and ACCESS phases.
    pub answering: Option<OwnPath>,
}

/// A path of the provider's that the module answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnPath {
    /// `redirect_uri`'s path.
    Callback,
    /// `frontchannel_logout_uri`.
    FrontChannelLogout,
}

/// What proved the identity (`$entra_auth_source`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Source {
    #[default]
    Bearer,
    Session,
}

impl Outcome {
    /// A request that has no identity from provider `provider`.
    pub fn denied(provider: usize, denial: Denial) -> Outcome {
        Outcome {
            provider,
            verified: Err(denial),
            source: Source::Bearer,
            denial: None,
            wait_until: None,
            groups_since: None,
            graph: None,
            pending: None,
            answering: None,
        }
    }
}

// nginx pools align allocations to 8 bytes only.
const _: () = assert!(align_of::<Outcome>() <= 8);

unsafe extern "C" fn drop_outcome(data: *mut c_void) {
    // A panic must not unwind into nginx: a drop that panics (a bug) is logged and leaks.
    let log = ngx::log::ngx_cycle_log().as_ptr();
    // SAFETY: nginx calls this once, with the cleanup entry's data, an `Outcome` written by store.
    guard(log, "a request's cleanup", (), || unsafe { ptr::drop_in_place(data as *mut Outcome) });
}

fn ctx_index() -> usize {
    EntraModule::module().ctx_index
}

/// The outcome of this request, if it has one.
///
/// # Safety
/// `r` must be a valid request.
pub unsafe fn get<'a>(r: *mut ngx_http_request_t) -> Option<&'a mut Outcome> {
    // SAFETY: a valid request has a valid main request, with a ctx slot per module and a pool
    // whose cleanup list is well-formed; entries with our handler hold an `Outcome`.
    unsafe {
        let main = (*r).main;
        let cached = *(*main).ctx.add(ctx_index()) as *mut Outcome;
        if !cached.is_null() {
            return Some(&mut *cached);
        }
        if (*main).internal() == 0 {
            return None;
        }
        let mut cln: *mut ngx_pool_cleanup_t = (*(*main).pool).cleanup;
        while !cln.is_null() {
            // Both addresses come from this file, and no other function drops an `Outcome`, so
            // the comparison cannot be fooled by function merging.
            if (*cln)
                .handler
                .is_some_and(|h| ptr::fn_addr_eq(h, drop_outcome as unsafe extern "C" fn(*mut c_void)))
            {
                *(*main).ctx.add(ctx_index()) = (*cln).data;
                return Some(&mut *((*cln).data as *mut Outcome));
            }
            cln = (*cln).next;
        }
        None
    }
}

/// The provider and the path of the module's own that this request is for, if it is one. Not
/// after an internal redirect (an `error_page` of the server's `limit_req` or `auth_basic`): the
/// page it goes to is an ordinary request again.
///
/// # Safety
/// `r` must be a valid request.
pub unsafe fn answering(r: *mut ngx_http_request_t) -> Option<(usize, OwnPath)> {
    // SAFETY: per the contract.
    if unsafe { (*r).internal() } != 0 {
        return None;
    }
    // SAFETY: per the contract.
    unsafe { get(r) }.and_then(|o| Some((o.provider, o.answering?)))
}

/// Stores a new outcome for this request, replacing the one that was there.
///
/// # Safety
/// `r` must be a valid request (the outcome is its main request's).
pub unsafe fn store<'a>(r: *mut ngx_http_request_t, outcome: Outcome) -> Option<&'a mut Outcome> {
    // SAFETY: per the contract.
    if let Some(existing) = unsafe { get(r) } {
        *existing = outcome;
        return Some(existing);
    }
    // SAFETY: a valid request has a valid main request, with a pool and a ctx slot per module;
    // the cleanup entry's data has room for an `Outcome` (8-byte aligned, asserted above).
    unsafe {
        let main = (*r).main;
        let cln = ngx_pool_cleanup_add((*main).pool, size_of::<Outcome>());
        if cln.is_null() {
            return None;
        }
        ptr::write((*cln).data as *mut Outcome, outcome);
        (*cln).handler = Some(drop_outcome);
        *(*main).ctx.add(ctx_index()) = (*cln).data;
        Some(&mut *((*cln).data as *mut Outcome))
    }
}
