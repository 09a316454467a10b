//! `ngx_http_entra_module`: Microsoft Entra ID authentication inside nginx.
//!
//! The nginx glue only: directives are parsed in [`conf`], the access-phase check and the
//! responses are in [`access`], the per-request result in [`outcome`], `$entra_*` in
//! [`variables`], the shared zone in [`state`], key fetches in [`fetch`] and `entra_status` in
//! [`status`]. Every rule about tokens lives in the `entra-core` crate.

use core::ptr::addr_of;

use ngx::ffi::{ngx_conf_t, ngx_http_module_t, ngx_int_t, ngx_module_t, NGX_HTTP_MODULE};
use ngx::http::{HttpModule, HttpModuleLocationConf, HttpModuleMainConf};

mod access;
mod conf;
mod fetch;
mod log;
mod outcome;
mod state;
mod status;
mod variables;

pub struct EntraModule;

impl HttpModule for EntraModule {
    fn module() -> &'static ngx_module_t {
        // SAFETY: the module table is a static that nginx only writes while loading the module.
        unsafe { &*addr_of!(ngx_http_entra_module) }
    }

    unsafe extern "C" fn preconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
        variables::register(cf)
    }

    unsafe extern "C" fn postconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
        if let Err(e) = conf::add_zone(cf) {
            ngx::ngx_conf_log_error!(ngx::ffi::NGX_LOG_EMERG, cf, "entra: {}", e);
            return ngx::core::Status::NGX_ERROR.into();
        }
        access::register(cf)
    }
}

// SAFETY: MainConf is what create_main_conf allocates for this module.
unsafe impl HttpModuleMainConf for EntraModule {
    type MainConf = conf::MainConf;
}

// SAFETY: LocationConf is what create_loc_conf allocates for this module.
unsafe impl HttpModuleLocationConf for EntraModule {
    type LocationConf = conf::LocationConf;
}

static NGX_HTTP_ENTRA_MODULE_CTX: ngx_http_module_t = ngx_http_module_t {
    preconfiguration: Some(EntraModule::preconfiguration),
    postconfiguration: Some(EntraModule::postconfiguration),
    create_main_conf: Some(EntraModule::create_main_conf),
    init_main_conf: None,
    create_srv_conf: None,
    merge_srv_conf: None,
    create_loc_conf: Some(EntraModule::create_loc_conf),
    // Our own merge: it needs `cf` to resolve provider names and to report errors.
    merge_loc_conf: Some(conf::merge_loc_conf),
};

ngx::ngx_modules!(ngx_http_entra_module);

#[used]
#[allow(non_upper_case_globals)]
pub static mut ngx_http_entra_module: ngx_module_t = ngx_module_t {
    ctx: addr_of!(NGX_HTTP_ENTRA_MODULE_CTX) as _,
    // SAFETY: the command table is a static array that lives as long as the module.
    commands: unsafe { addr_of!(conf::COMMANDS[0]) as *mut _ },
    type_: NGX_HTTP_MODULE as _,
    init_process: Some(fetch::init_process),
    ..ngx_module_t::default()
};
