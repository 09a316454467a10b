//! The module's identity, through which every file reaches its configuration and request
//! context (as in every ngx-rust module), and its places in nginx's phases and process.
//! `lib.rs` binds the identity to the module table and the configuration types.

use ngx::ffi::{ngx_conf_t, ngx_int_t};
use ngx::http::HttpModuleMainConf;

use crate::log;

/// `ngx_http_entra_module`, as the ngx crate's traits know it.
pub struct EntraModule;

/// Where in a phase a handler goes. nginx runs a phase's handlers from the last added to the
/// first, and a dynamic module adds its own after every built-in module.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Runs before the handlers already there.
    First,
    /// Runs after them: nginx's own `allow`/`deny`, `auth_basic` and `auth_request` decide first.
    Last,
}

/// Adds `handler` to one of nginx's request phases (postconfiguration).
pub fn add_phase_handler(
    cf: *mut ngx_conf_t,
    phase: ngx::ffi::ngx_http_phases,
    order: Order,
    handler: extern "C" fn(*mut ngx::ffi::ngx_http_request_t) -> ngx_int_t,
) -> Result<(), &'static str> {
    // SAFETY: nginx calls postconfiguration with a valid cf of the http block.
    let cmcf =
        unsafe { ngx::http::NgxHttpCoreModule::main_conf_mut(&*cf) }.ok_or("no http core configuration")?;
    let handlers = &mut cmcf.phases[phase as usize].handlers;
    // SAFETY: the phase's handler array is a valid nginx array of handler pointers.
    let slot = unsafe { ngx::ffi::ngx_array_push(handlers) } as *mut ngx::ffi::ngx_http_handler_pt;
    if slot.is_null() {
        return Err("out of memory");
    }
    let elts = handlers.elts as *mut ngx::ffi::ngx_http_handler_pt;
    // SAFETY: the array now holds `nelts` handlers, the fresh one last; moving the others up by
    // one stays within it.
    unsafe {
        if order == Order::Last {
            core::ptr::copy(elts, elts.add(1), handlers.nelts - 1);
            *elts = Some(handler);
        } else {
            *slot = Some(handler);
        }
    }
    Ok(())
}

/// Keeps the module mapped for the life of the process. nginx unloads it when a cycle ends (at a
/// worker's exit, after a reload), but Rust code must outlive its threads and statics: a pool
/// thread's thread-local destructor, or a one-time static of a library, would point into
/// unmapped memory. A new module file still needs a restart, as it always did.
pub fn keep_mapped(log: *mut ngx::ffi::ngx_log_t) {
    let mut info = core::mem::MaybeUninit::<ngx::ffi::Dl_info>::zeroed();
    // SAFETY: dladdr only reads the address, which lies in this module, and fills `info`.
    let found = unsafe { ngx::ffi::dladdr(keep_mapped as *const core::ffi::c_void, info.as_mut_ptr()) };
    // SAFETY: dladdr filled `info` when it found the address.
    let path = if found != 0 { unsafe { info.assume_init() }.dli_fname } else { core::ptr::null() };
    let flags = (ngx::ffi::RTLD_NOW | ngx::ffi::RTLD_NOLOAD | ngx::ffi::RTLD_NODELETE) as core::ffi::c_int;
    // SAFETY: `path` names this module, already loaded: NOLOAD only marks it NODELETE.
    if path.is_null() || unsafe { ngx::ffi::dlopen(path, flags) }.is_null() {
        log::warning!(log, "cannot keep the module mapped for the life of the process");
    }
}

/// Sends a request from the server-rewrite phase straight to the PREACCESS phase with its
/// server block's own configuration: no location is looked up (none can shadow the path, and
/// none's `entra_auth`, `auth_request` or `return` applies), while the server's `limit_req`,
/// `limit_conn`, `allow`/`deny` and `auth_basic` do. `false` when nginx's phase table is not
/// laid out as expected (the caller then answers at once).
///
/// # Safety
/// `r` is a valid main request in the server-rewrite phase; the caller returns `NGX_DECLINED`.
pub unsafe fn skip_to_preaccess(r: *mut ngx::ffi::ngx_http_request_t) -> bool {
    use ngx::ffi::{
        ngx_http_core_post_rewrite_phase, ngx_http_phase_handler_t, ngx_http_update_location_config,
    };
    use ngx::http::{HttpModuleMainConf, HttpModuleServerConf, NgxHttpCoreModule};
    // SAFETY: per the contract.
    let request = unsafe { ngx::http::Request::from_ngx_http_request(r) };
    let (Some(cmcf), Some(cscf)) =
        (NgxHttpCoreModule::main_conf(request), NgxHttpCoreModule::server_conf(request))
    else {
        return false;
    };
    let handlers: *const ngx_http_phase_handler_t = cmcf.phase_engine.handlers;
    // The location-rewrite phase's handlers all point at the post-rewrite step, which
    // precedes PREACCESS (this module adds a rewrite handler, so the phase is never empty).
    // SAFETY: the phase engine's indexes lie within its handler array.
    let post_rewrite = unsafe { (*handlers.add(cmcf.phase_engine.location_rewrite_index)).next };
    // SAFETY: as above.
    let checker = unsafe { (*handlers.add(post_rewrite)).checker };
    let expected = ngx_http_core_post_rewrite_phase
        as unsafe extern "C" fn(
            *mut ngx::ffi::ngx_http_request_t,
            *mut ngx_http_phase_handler_t,
        ) -> ngx::ffi::ngx_int_t;
    if !checker.is_some_and(|c| core::ptr::fn_addr_eq(c, expected)) {
        return false;
    }
    // SAFETY: per the contract; the server's context holds its own location-level
    // configuration, and the rewrite checker moves one past the index set here on DECLINED.
    unsafe {
        (*r).loc_conf = (*cscf.ctx).loc_conf;
        ngx_http_update_location_config(r);
        (*r).phase_handler = post_rewrite as ngx::ffi::ngx_int_t;
    }
    true
}
