//! What a `server { }` needs of the module: the providers that sign browsers in on it, whose
//! callback and front-channel logout paths it answers in its server-rewrite phase.

use std::sync::Arc;

use entra_core::Provider;

use ngx::ffi::{ngx_array_t, ngx_http_core_srv_conf_t, ngx_http_server_name_t};
use ngx::http::{HttpModuleMainConf, HttpModuleServerConf, NgxHttpCoreModule};

use super::ext::{Conf, ConfError, Origin};
use crate::module::EntraModule;

/// One provider used in a session mode by some location of the server.
pub struct SignInUse {
    pub provider: usize,
    /// The first `entra_auth` line that uses it here.
    pub origin: Origin,
}

#[derive(Default)]
pub struct ServerConf {
    pub sign_in: Vec<SignInUse>,
}

impl ServerConf {
    /// Records that a location of this server signs in with `providers[index]`; two providers
    /// cannot share a callback path, a front-channel logout path or a cookie name on one server.
    pub fn add(
        &mut self,
        providers: &[Arc<Provider>],
        index: usize,
        origin: &Origin,
    ) -> Result<(), ConfError> {
        if self.sign_in.iter().any(|u| u.provider == index) {
            return Ok(());
        }
        let new = &providers[index].sign_in;
        for other in &self.sign_in {
            let them = &providers[other.provider].sign_in;
            let clash = [
                ("redirect_uri", new.redirect_uri.path() == them.redirect_uri.path()),
                ("frontchannel_logout_uri", new.frontchannel_logout_uri == them.frontchannel_logout_uri),
                ("session_cookie", new.cookie_name(true) == them.cookie_name(true)),
            ]
            .into_iter()
            .find(|(_, same)| *same);
            if let Some((directive, _)) = clash {
                return Err(ConfError::Rule(format!(
                    "entra_providers \"{}\" ({}) and \"{}\" ({}) sign in on one server with the same {directive}",
                    providers[other.provider].name, other.origin, providers[index].name, origin
                )));
            }
        }
        self.sign_in.push(SignInUse { provider: index, origin: origin.clone() });
        Ok(())
    }
}

/// The elements of an nginx array.
///
/// # Safety
/// `a` holds `nelts` elements of type `T` (or none, with null `elts`).
unsafe fn items<T>(a: &ngx_array_t) -> &[T] {
    if a.elts.is_null() {
        return &[];
    }
    // SAFETY: per the function's contract.
    unsafe { core::slice::from_raw_parts(a.elts as *const T, a.nelts) }
}

/// Refuses, once the http block is parsed, two providers that sign in with one cookie name on
/// servers sharing a host name: browsers keep cookies per host name, not per port, so each
/// would overwrite the other's session.
pub fn refuse_shared_cookie_per_host(providers: &[Arc<Provider>], cf: &Conf) -> Result<(), ConfError> {
    // SAFETY: postconfiguration: the http block's core main conf is complete.
    let Some(cmcf) = (unsafe { NgxHttpCoreModule::main_conf(&*cf.as_ptr()) }) else { return Ok(()) };
    // (host name, provider, where it is used)
    let mut seen: Vec<(String, &SignInUse)> = Vec::new();
    // SAFETY: `servers` is an array of pointers to every server's core conf.
    for &cscf in unsafe { items::<*mut ngx_http_core_srv_conf_t>(&cmcf.servers) } {
        // SAFETY: a server's core conf points at its context, with this module's conf.
        let Some(cscf) = (unsafe { cscf.as_ref() }) else { continue };
        let Some(server) = EntraModule::server_conf(cscf) else { continue };
        // SAFETY: a server's names are ngx_http_server_name_t.
        for name in unsafe { items::<ngx_http_server_name_t>(&cscf.server_names) } {
            let host = name.name.to_string().to_ascii_lowercase();
            for used in &server.sign_in {
                let cookie = providers[used.provider].sign_in.cookie_name(true);
                let clash = seen.iter().find(|(h, other)| {
                    *h == host
                        && other.provider != used.provider
                        && providers[other.provider].sign_in.cookie_name(true) == cookie
                });
                if let Some((_, other)) = clash {
                    return Err(ConfError::Rule(format!(
                        "entra_providers \"{}\" ({}) and \"{}\" ({}) sign in on host name \"{host}\" with the same \
                         session_cookie \"{cookie}\": give one of them its own",
                        providers[other.provider].name, other.origin, providers[used.provider].name, used.origin
                    )));
                }
                seen.push((host.clone(), used));
            }
        }
    }
    Ok(())
}

/// Warns, once the http block is parsed, about a `session_cookie` without the `__Host-` prefix
/// used on a server that has an `ssl` listener: browsers then let a sibling subdomain overwrite
/// it. Walks nginx's table of listening addresses, which knows which servers each one serves.
pub fn warn_without_host_prefix(cf: &Conf, providers: &[Arc<Provider>]) {
    #[cfg(ngx_feature = "http_ssl")]
    {
        use ngx::ffi::{ngx_http_conf_addr_t, ngx_http_conf_port_t};

        // SAFETY: postconfiguration: the http block's core main conf is complete.
        let Some(cmcf) = (unsafe { NgxHttpCoreModule::main_conf(&*cf.as_ptr()) }) else { return };
        // SAFETY: `ports` is null or an array of ngx_http_conf_port_t made by `listen` lines.
        let Some(ports) = (unsafe { cmcf.ports.as_ref() }) else { return };
        // SAFETY: as above.
        for port in unsafe { items::<ngx_http_conf_port_t>(ports) } {
            // SAFETY: a port's addresses are ngx_http_conf_addr_t.
            for addr in unsafe { items::<ngx_http_conf_addr_t>(&port.addrs) } {
                if addr.opt.ssl() == 0 {
                    continue;
                }
                // SAFETY: an address's servers are pointers to their core server confs.
                for &cscf in unsafe { items::<*mut ngx_http_core_srv_conf_t>(&addr.servers) } {
                    // SAFETY: a server's core conf points at its context, with this module's conf.
                    let Some(server) = (unsafe { cscf.as_ref() }).and_then(EntraModule::server_conf) else {
                        continue;
                    };
                    for used in &server.sign_in {
                        let sign_in = &providers[used.provider].sign_in;
                        let name = sign_in.cookie_name(true);
                        if sign_in.has_cookie_name() && !name.starts_with("__Host-") {
                            cf.warn(&format_args!(
                                "session_cookie \"{name}\" of entra_provider \"{}\" (used in {}) lacks the __Host- \
                                 prefix on a server with an ssl listener: a sibling subdomain could set it",
                                providers[used.provider].name, used.origin
                            ));
                        }
                    }
                }
            }
        }
    }
    #[cfg(not(ngx_feature = "http_ssl"))]
    let _ = (cf, providers);
}

/// Warns, once the http block is parsed, about `auth_basic` in force at the level of a server
/// where a provider signs browsers in: its front-channel logout URL is answered with the
/// server's own access checks, and Entra's iframe sends no credentials.
pub fn warn_auth_basic(cf: &Conf, providers: &[Arc<Provider>]) {
    // SAFETY: postconfiguration: the cycle's module list and the http block's confs are complete.
    let Some(index) = (unsafe { module_ctx_index(cf, "ngx_http_auth_basic_module") }) else { return };
    // SAFETY: as above.
    let Some(cmcf) = (unsafe { NgxHttpCoreModule::main_conf(&*cf.as_ptr()) }) else { return };
    // SAFETY: `servers` is an array of pointers to every server's core conf.
    for &cscf in unsafe { items::<*mut ngx_http_core_srv_conf_t>(&cmcf.servers) } {
        // SAFETY: a server's core conf points at its context, with this module's conf.
        let Some(cscf) = (unsafe { cscf.as_ref() }) else { continue };
        let Some(server) = EntraModule::server_conf(cscf) else { continue };
        let Some(used) = server.sign_in.first() else { continue };
        // SAFETY: the server's context holds a location-level conf per module; auth_basic's
        // begins with its realm, a complex value or null (nginx's ngx_http_auth_basic_loc_conf_t).
        let realm = unsafe {
            let conf = *(*cscf.ctx).loc_conf.add(index) as *const *const ngx::ffi::ngx_http_complex_value_t;
            conf.as_ref().and_then(|realm| realm.as_ref())
        };
        if realm.is_some_and(|realm| realm.value.as_bytes() != b"off") {
            cf.warn_about(&format_args!(
                "entra: auth_basic is in force in the server of entra_provider \"{}\" (used in {}): its \
                 front-channel logout URI \"{}\" passes the server's access checks, and Entra's iframe sends no \
                 credentials, so single sign-out will be refused",
                providers[used.provider].name,
                used.origin,
                providers[used.provider].sign_in.frontchannel_logout_uri
            ));
        }
    }
}

/// The context index of the module named `name`, if nginx has it.
///
/// # Safety
/// `cf`'s cycle has its module list.
unsafe fn module_ctx_index(cf: &Conf, name: &str) -> Option<usize> {
    // SAFETY: per the contract: `modules` holds `modules_n` module pointers.
    let modules = unsafe {
        let cycle = (*cf.as_ptr()).cycle;
        core::slice::from_raw_parts((*cycle).modules, (*cycle).modules_n)
    };
    modules.iter().find_map(|&m| {
        // SAFETY: each module pointer is valid.
        let module = unsafe { m.as_ref()? };
        // SAFETY: a module's name is a C string.
        let module_name = unsafe { core::ffi::CStr::from_ptr(module.name.as_ref()?) };
        (module_name.to_bytes() == name.as_bytes()).then_some(module.ctx_index)
    })
}
