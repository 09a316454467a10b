//! Directives: the one command table, and the configurations' creation.
//!
//! The http block's configuration is [`main`]; `entra_provider { ... }` is parsed in
//! [`provider`], `entra_auth` and `entra_require_*` with their inheritance in [`location`],
//! `entra_shared_zone` in [`zone`] (the zone itself belongs to `crate::zone`),
//! `entra_keys_cache_path` in [`cache`], `entra_shared_store` in [`store`]; `entra_status`, `entra_logout` and `entra_whoami` beside the
//! content handlers they install, in `crate::status`, `crate::logout` and `crate::whoami`. Helpers are in [`ext`].

use core::ffi::{c_char, c_void};
use core::ptr;
use ngx::core::Pool;
use ngx::ffi::{
    ngx_command_t, ngx_conf_t, ngx_uint_t, NGX_CONF_1MORE, NGX_CONF_BLOCK, NGX_CONF_NOARGS, NGX_CONF_TAKE1,
    NGX_CONF_TAKE12, NGX_HTTP_LMT_CONF, NGX_HTTP_LOC_CONF, NGX_HTTP_LOC_CONF_OFFSET, NGX_HTTP_MAIN_CONF,
    NGX_HTTP_MAIN_CONF_OFFSET, NGX_HTTP_SRV_CONF,
};
use ngx::ngx_string;

pub mod cache;
pub mod ext;
pub mod location;
pub mod main;
pub mod provider;
pub mod server;
pub mod store;
pub mod zone;

pub use location::LocationConf;
pub use main::MainConf;
pub use server::ServerConf;

use crate::log::guard;

type Handler = extern "C" fn(*mut ngx_conf_t, *mut ngx_command_t, *mut c_void) -> *mut c_char;

const fn command(name: ngx::ffi::ngx_str_t, type_: u32, conf: usize, set: Handler) -> ngx_command_t {
    command_at(name, type_, conf, 0, set)
}

/// A directive whose handler sets the field at `offset` of the configuration, as nginx's own
/// `ngx_conf_set_*` handlers do: its file needs no knowledge of the whole configuration.
const fn command_at(
    name: ngx::ffi::ngx_str_t,
    type_: u32,
    conf: usize,
    offset: usize,
    set: Handler,
) -> ngx_command_t {
    ngx_command_t { name, type_: type_ as ngx_uint_t, set: Some(set), conf, offset, post: ptr::null_mut() }
}

/// `entra_auth` and `entra_require_*`: http, server, location, and `limit_except` (whose block
/// applies to the methods it does not list, as for nginx's own access directives).
const LOCATION_LEVELS: u32 = NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_HTTP_LMT_CONF;
const MAIN: usize = NGX_HTTP_MAIN_CONF_OFFSET;
const LOC: usize = NGX_HTTP_LOC_CONF_OFFSET;

/// Every directive of the module.
pub static mut COMMANDS: [ngx_command_t; 16] = [
    command(
        ngx_string!("entra_provider"),
        NGX_HTTP_MAIN_CONF | NGX_CONF_BLOCK | NGX_CONF_TAKE1,
        MAIN,
        provider::set_provider,
    ),
    command_at(
        ngx_string!("entra_shared_zone"),
        NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1,
        MAIN,
        core::mem::offset_of!(MainConf, zone),
        zone::set_zone,
    ),
    command(
        ngx_string!("entra_keys_cache_path"),
        NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE12,
        MAIN,
        cache::set_cache_path,
    ),
    command(ngx_string!("entra_shared_store"), NGX_HTTP_MAIN_CONF | NGX_CONF_1MORE, MAIN, store::set_store),
    command(ngx_string!("entra_auth"), LOCATION_LEVELS | NGX_CONF_TAKE12, LOC, location::set_auth),
    command(
        ngx_string!("entra_require_group"),
        LOCATION_LEVELS | NGX_CONF_1MORE,
        LOC,
        location::set_requirement,
    ),
    command(
        ngx_string!("entra_require_role"),
        LOCATION_LEVELS | NGX_CONF_1MORE,
        LOC,
        location::set_requirement,
    ),
    command(
        ngx_string!("entra_require_scope"),
        LOCATION_LEVELS | NGX_CONF_1MORE,
        LOC,
        location::set_requirement,
    ),
    command(
        ngx_string!("entra_require_permission"),
        LOCATION_LEVELS | NGX_CONF_1MORE,
        LOC,
        location::set_requirement,
    ),
    command(ngx_string!("entra_require_claim"), LOCATION_LEVELS | NGX_CONF_1MORE, LOC, location::set_claim),
    command(
        ngx_string!("entra_require_auth_context"),
        LOCATION_LEVELS | NGX_CONF_1MORE,
        LOC,
        location::set_auth_context,
    ),
    command(
        ngx_string!("entra_require_recent_signin"),
        LOCATION_LEVELS | NGX_CONF_TAKE1,
        LOC,
        location::set_recent_signin,
    ),
    command(ngx_string!("entra_status"), NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS, LOC, crate::status::set_status),
    command(ngx_string!("entra_logout"), NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS, LOC, crate::logout::set_logout),
    command(ngx_string!("entra_whoami"), NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS, LOC, crate::whoami::set_whoami),
    ngx_command_t::empty(),
];

/// Allocates a configuration of type `T` in the configuration's pool, which drops it with the
/// cycle.
///
/// # Safety
/// `cf` is a configuration being parsed.
unsafe fn create<T: Default>(cf: *mut ngx_conf_t) -> *mut c_void {
    // SAFETY: the caller passes a configuration being parsed, whose pool is valid.
    let log = unsafe { (*cf).log };
    guard(log, "creating a configuration", ptr::null_mut(), || {
        // SAFETY: as above.
        let pool = unsafe { Pool::from_ngx_pool((*cf).pool) };
        pool.allocate::<T>(T::default()) as *mut c_void
    })
}

// nginx pools align allocations to 8 bytes only.
const _: () = assert!(
    core::mem::align_of::<MainConf>() <= 8
        && core::mem::align_of::<LocationConf>() <= 8
        && core::mem::align_of::<ServerConf>() <= 8
);

pub unsafe extern "C" fn create_main_conf(cf: *mut ngx_conf_t) -> *mut c_void {
    // SAFETY: nginx calls this with a configuration being parsed.
    unsafe { create::<MainConf>(cf) }
}

pub unsafe extern "C" fn create_srv_conf(cf: *mut ngx_conf_t) -> *mut c_void {
    // SAFETY: as above.
    unsafe { create::<ServerConf>(cf) }
}

pub unsafe extern "C" fn create_loc_conf(cf: *mut ngx_conf_t) -> *mut c_void {
    // SAFETY: as above.
    unsafe { create::<LocationConf>(cf) }
}
