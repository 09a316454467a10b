//! `ngx_http_entra_module`: Microsoft Entra ID authentication inside nginx.
//!
//! The nginx glue only; every rule lives in the `entra-core` crate. This file wires the module:
//! its files, its tables, and what pre/postconfiguration and `init_module` register. By nginx
//! phase: directives in [`conf`]; subrequests judged in the rewrite phase ([`subrequest`]); the
//! sign-in callback and front-channel logout in the server-rewrite phase ([`callback`]); the
//! access check in [`access`], with the session in [`session`], parking in [`park`] and the
//! answers to refusals in [`denial`]; `entra_logout` and `entra_status` are content handlers
//! ([`logout`], [`status`]). Beside them: the result kept per request ([`outcome`]), `$entra_*`
//! ([`variables`]), the shared zone ([`zone`]), this worker's view of it ([`worker`]), key
//! fetches ([`fetch`]) and the fleet's round trips with its store ([`fleet`]) on nginx's thread
//! pools ([`threads`]), what is read of a request
//! ([`request`]) and made of a response ([`response`]), the module's identity ([`module`]),
//! clocks ([`clock`]) and log lines ([`log`]). docs/ARCHITECTURE.md draws the whole.

#![deny(unsafe_op_in_unsafe_fn)]

use core::ptr::addr_of;

use ngx::core::Status;
use ngx::ffi::{
    ngx_conf_t, ngx_cycle_t, ngx_http_module_t, ngx_int_t, ngx_module_t, NGX_ERROR, NGX_HTTP_MODULE, NGX_OK,
};
use ngx::http::{HttpModule, HttpModuleLocationConf, HttpModuleMainConf};

mod access;
mod callback;
mod clock;
mod conf;
mod denial;
mod fetch;
mod fleet;
mod log;
mod logout;
mod lookup;
mod module;
mod outcome;
mod park;
mod persist;
mod request;
mod response;
mod session;
mod status;
mod subrequest;
mod threads;
mod variables;
mod whoami;
mod worker;
mod zone;

use conf::ext::{Conf, ConfError};
use log::guard;
use module::{keep_mapped, EntraModule};

impl HttpModule for EntraModule {
    fn module() -> &'static ngx_module_t {
        // SAFETY: the module table is a static that nginx only writes while loading the module.
        unsafe { &*addr_of!(ngx_http_entra_module) }
    }

    unsafe extern "C" fn preconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
        // SAFETY: nginx passes a valid cf.
        guard(unsafe { (*cf).log }, "preconfiguration", Status::NGX_ERROR.into(), || {
            configured(cf, variables::register(cf).map_err(|e| ConfError::Rule(e.into())))
        })
    }

    unsafe extern "C" fn postconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
        // SAFETY: nginx passes a valid cf.
        guard(unsafe { (*cf).log }, "postconfiguration", Status::NGX_ERROR.into(), || {
            // SAFETY: as above.
            let conf_ctx = unsafe { Conf::new(cf) };
            let Some(main) = EntraModule::main_conf_mut(unsafe { &*cf }) else {
                return Status::NGX_ERROR.into();
            };
            configured(cf, wire(&conf_ctx, main))
        })
    }
}

/// What the http block needs once it is parsed: the shared zone when there are providers,
/// nginx's thread pool when one of them fetches its keys, and the access-phase handler.
fn wire(cf: &Conf, main: &mut conf::MainConf) -> Result<(), ConfError> {
    conf::cache::use_default(cf, main);
    main.cached_keys = conf::cache::read_cached(cf, main);
    if !main.providers.is_empty() {
        // SAFETY: `Conf` holds a configuration being parsed.
        main.request_id_index = log::request_id_in_use(unsafe { &*cf.as_ptr() });
        let size = main.zone.name_and_size().1;
        main.ask_graph().map_err(ConfError::Rule)?;
        fleet::configure(cf, main)?;
        main.size_records(size).map_err(ConfError::Rule)?;
        main.kept_records = conf::cache::read_records(cf, main);
        let (name, size) = main.zone.name_and_size();
        let name = cf.pool_str(name)?;
        main.zone.shm =
            zone::add_zone(cf.as_ptr(), name, size, main.providers.len()).map_err(ConfError::Rule)?;
    }
    // Fetches, and the records of sessions kept on disk, are written on the default pool.
    let discovery =
        main.providers.iter().any(|p| matches!(p.source, entra_core::provider::KeySource::Discovery { .. }));
    if discovery || (main.keys_cache.is_some() && !main.records.is_empty()) {
        threads::add_pool(cf.as_ptr(), threads::DEFAULT_POOL).map_err(|e| ConfError::Rule(e.into()))?;
    }
    if main.sign_in_used {
        conf::server::refuse_shared_cookie_per_host(&main.providers, cf)?;
        conf::server::warn_without_host_prefix(cf, &main.providers);
        conf::server::warn_auth_basic(cf, &main.providers);
        threads::add_pool(cf.as_ptr(), threads::SIGNIN_POOL).map_err(|e| ConfError::Rule(e.into()))?;
        callback::register(cf.as_ptr()).map_err(|e| ConfError::Rule(e.into()))?;
    }
    if main.fleet.is_some() {
        threads::add_pool(cf.as_ptr(), threads::DEFAULT_POOL).map_err(|e| ConfError::Rule(e.into()))?;
    }
    if !main.graph_tables.is_empty() {
        threads::add_pool(cf.as_ptr(), threads::GRAPH_POOL).map_err(|e| ConfError::Rule(e.into()))?;
    }
    subrequest::register(cf.as_ptr()).map_err(|e| ConfError::Rule(e.into()))?;
    access::register(cf.as_ptr()).map_err(|e| ConfError::Rule(e.into()))
}

/// A configuration step's result for nginx, the error logged at `emerg`.
fn configured(cf: *mut ngx_conf_t, result: Result<(), ConfError>) -> ngx_int_t {
    match result {
        Ok(()) => Status::NGX_OK.into(),
        Err(e) => {
            ngx::ngx_conf_log_error!(ngx::ffi::NGX_LOG_EMERG, cf, "entra: {}", e);
            Status::NGX_ERROR.into()
        }
    }
}

/// Module `init_module`: nginx runs it in the master once a new configuration is committed
/// (never for a reload that failed), so that is where providers get their slots.
unsafe extern "C" fn init_module(cycle: *mut ngx_cycle_t) -> ngx_int_t {
    // SAFETY: nginx passes the new cycle.
    let cycle = unsafe { &*cycle };
    let Some(main) = EntraModule::main_conf(cycle) else { return NGX_OK as ngx_int_t };
    guard(cycle.log, "the module's init", NGX_ERROR as ngx_int_t, || {
        keep_mapped(cycle.log);
        let fleet = main.fleet_providers();
        match zone::assign_slots(
            cycle.log,
            &main.providers,
            &main.cached_keys,
            (&main.records, &main.kept_records),
            &main.graph_tables,
            fleet.as_ref().map(|(store, names)| (*store, names.as_slice())),
            main.zone.shm,
        ) {
            Ok(()) => NGX_OK as ngx_int_t,
            Err(e) => {
                ngx::ngx_log_error!(ngx::ffi::NGX_LOG_EMERG, cycle.log, "entra: {}", e);
                NGX_ERROR as ngx_int_t
            }
        }
    })
}

/// Module `exit_process`: the records of sessions kept, then the unfinished pool jobs dropped.
unsafe extern "C" fn exit_process(cycle: *mut ngx_cycle_t) {
    log::guard(worker::cycle_log(), "the worker's exit", (), persist::keep_at_exit);
    // SAFETY: nginx passes the exiting cycle.
    unsafe { threads::exit_process(cycle) };
}

// SAFETY: MainConf is what create_main_conf allocates for this module.
unsafe impl HttpModuleMainConf for EntraModule {
    type MainConf = conf::MainConf;
}

// SAFETY: ServerConf is what create_srv_conf allocates for this module.
unsafe impl ngx::http::HttpModuleServerConf for EntraModule {
    type ServerConf = conf::ServerConf;
}

// SAFETY: LocationConf is what create_loc_conf allocates for this module.
unsafe impl HttpModuleLocationConf for EntraModule {
    type LocationConf = conf::LocationConf;
}

static NGX_HTTP_ENTRA_MODULE_CTX: ngx_http_module_t = ngx_http_module_t {
    preconfiguration: Some(EntraModule::preconfiguration),
    postconfiguration: Some(EntraModule::postconfiguration),
    create_main_conf: Some(conf::create_main_conf),
    init_main_conf: None,
    create_srv_conf: Some(conf::create_srv_conf),
    merge_srv_conf: None,
    create_loc_conf: Some(conf::create_loc_conf),
    merge_loc_conf: Some(conf::location::merge_loc_conf),
};

ngx::ngx_modules!(ngx_http_entra_module);

#[used]
#[allow(non_upper_case_globals)]
pub static mut ngx_http_entra_module: ngx_module_t = ngx_module_t {
    ctx: addr_of!(NGX_HTTP_ENTRA_MODULE_CTX) as _,
    // SAFETY: the command table is a static array that lives as long as the module.
    commands: unsafe { addr_of!(conf::COMMANDS[0]) as *mut _ },
    type_: NGX_HTTP_MODULE as _,
    init_module: Some(init_module),
    init_process: Some(fetch::init_process),
    exit_process: Some(exit_process),
    ..ngx_module_t::default()
};
