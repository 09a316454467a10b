//! `entra_shared_zone zone=name:size;`: the shared zone's name and size. The zone itself is
//! registered and owned by `crate::zone`.

use core::ffi::{c_char, c_void};
use core::ptr;

use ngx::core::NGX_CONF_ERROR;
use ngx::ffi::{ngx_command_t, ngx_conf_t, ngx_shm_zone_t};

use super::ext::{answer, size_value, Conf, ConfError};
use crate::log::guard;

const DEFAULT_ZONE_NAME: &str = "entra";
/// Room for the key sets of dozens of providers (Entra's are a few KiB).
const DEFAULT_ZONE_SIZE: usize = 1024 * 1024;
const MIN_ZONE_SIZE: usize = 64 * 1024;

/// `entra_shared_zone` as written, and the zone nginx made for it.
pub struct ZoneConf {
    name: Option<String>,
    size: usize,
    /// The zone nginx made for it (set by `zone::add_zone`).
    pub shm: *mut ngx_shm_zone_t,
}

impl Default for ZoneConf {
    fn default() -> Self {
        ZoneConf { name: None, size: 0, shm: ptr::null_mut() }
    }
}

/// `entra_shared_zone zone=name:size;`
pub extern "C" fn set_zone(cf: *mut ngx_conf_t, cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    // SAFETY: nginx calls directive handlers with a valid cf, the command, and this module's
    // main conf, whose `ZoneConf` is at the command's offset.
    let (conf_ctx, zone) =
        unsafe { (Conf::new(cf), &mut *((conf as *mut u8).add((*cmd).offset) as *mut ZoneConf)) };
    // SAFETY: as above.
    guard(unsafe { (*cf).log }, "entra_shared_zone", NGX_CONF_ERROR, || {
        answer(&conf_ctx, conf_ctx.args().and_then(|a| zone.set(a[1])))
    })
}

impl ZoneConf {
    fn set(&mut self, value: &str) -> Result<(), ConfError> {
        if self.name.is_some() {
            return Err(ConfError::Duplicate("entra_shared_zone".into()));
        }
        let bad = || ConfError::Invalid {
            directive: "entra_shared_zone",
            value: value.to_owned(),
            expected: "use zone=name:size",
        };
        let (name, size) = value.strip_prefix("zone=").and_then(|v| v.split_once(':')).ok_or_else(bad)?;
        let bytes = size_value(size).filter(|_| !name.is_empty()).ok_or_else(bad)?;
        if bytes < MIN_ZONE_SIZE {
            return Err(ConfError::Rule(format!(
                "\"entra_shared_zone\" \"{name}\" is too small (64k at least)"
            )));
        }
        self.name = Some(name.to_owned());
        self.size = bytes;
        Ok(())
    }

    /// The name and size to ask nginx for (the defaults unless the directive said otherwise).
    pub fn name_and_size(&self) -> (&str, usize) {
        let name = self.name.as_deref().unwrap_or(DEFAULT_ZONE_NAME);
        (name, if self.size == 0 { DEFAULT_ZONE_SIZE } else { self.size })
    }
}
