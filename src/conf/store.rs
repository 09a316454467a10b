//! `entra_shared_store redis://[user@]host[:port][/db] [password_file=path] [tls] [ca_file=path]
//! [prefix=name];`: the store a fleet of instances shares sign-ins and sign-outs through (the
//! URL and parameters are checked by entra-core's `store`; the files are read here, once).

use core::ffi::{c_char, c_void};

use entra_core::store::StoreConfig;
use ngx::core::NGX_CONF_ERROR;
use ngx::ffi::{ngx_command_t, ngx_conf_t};

use super::ext::{answer, read_secret_file, Conf, ConfError};
use super::main::MainConf;
use crate::log::guard;

const DIRECTIVE: &str = "entra_shared_store";

/// `entra_shared_store`
pub extern "C" fn set_store(cf: *mut ngx_conf_t, _cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    // SAFETY: nginx calls directive handlers with a valid cf and this module's main conf.
    let (conf_ctx, main) = unsafe { (Conf::new(cf), &mut *(conf as *mut MainConf)) };
    // SAFETY: as above.
    guard(unsafe { (*cf).log }, DIRECTIVE, NGX_CONF_ERROR, || {
        answer(&conf_ctx, conf_ctx.args().and_then(|a| set(&conf_ctx, main, &a)))
    })
}

fn set(cf: &Conf, main: &mut MainConf, a: &[&str]) -> Result<(), ConfError> {
    if main.store.is_some() {
        return Err(ConfError::Duplicate(DIRECTIVE.into()));
    }
    let refused = |e: entra_core::store::StoreConfigError| ConfError::Rule(format!("\"{DIRECTIVE}\": {e}"));
    let mut store = StoreConfig::from_url(a[1]).map_err(refused)?;
    for parameter in &a[2..] {
        match parameter.split_once('=') {
            Some(("password_file", path)) => {
                let text = read_secret_file(cf, "entra_shared_store password_file", path)?;
                let text = String::from_utf8(text).map_err(|_| {
                    ConfError::Rule(format!("\"{DIRECTIVE}\" password_file \"{path}\" is not UTF-8 text"))
                })?;
                store.set_password(&text).map_err(refused)?;
            }
            Some(("ca_file", path)) => {
                let full = cf.full_path(path)?;
                let pem = std::fs::read(&full)
                    .map_err(|e| ConfError::Rule(format!("\"{DIRECTIVE}\" ca_file \"{full}\": {e}")))?;
                store.set_ca(pem).map_err(refused)?;
            }
            Some(("prefix", prefix)) => store.set_prefix(prefix).map_err(refused)?,
            None if *parameter == "tls" => store.set_tls(),
            _ => {
                return Err(ConfError::Invalid {
                    directive: DIRECTIVE,
                    value: (*parameter).to_owned(),
                    expected: "the parameters are password_file=path, tls, ca_file=path and prefix=name",
                })
            }
        }
    }
    store.check().map_err(refused)?;
    main.store = Some(store);
    Ok(())
}
