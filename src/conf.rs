//! Directives: `entra_provider { ... }` at http level, and `entra_auth` / `entra_require_*` at
//! http, server and location level, with nginx's usual inheritance.

use core::cell::Cell;
use core::ffi::{c_char, c_void};
use core::ptr::{self, addr_of_mut};
use std::sync::Arc;
use std::time::Duration;

use entra_core::policy::{Policy, Requirement, Subject, MUTABLE_CLAIMS};
use entra_core::provider::{parse_algorithm, parse_guid, parse_url, AllowedTenants, KeySource, Tenant};
use entra_core::{ConfigError, KeySet, Provider, ProviderConfig};
use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::ffi::{
    ngx_command_t, ngx_conf_full_name, ngx_conf_parse, ngx_conf_t, ngx_module_t, ngx_parse_time,
    ngx_shared_memory_add, ngx_slab_pool_t, ngx_str_t, ngx_uint_t, NGX_CONF_1MORE, NGX_CONF_BLOCK,
    NGX_CONF_NOARGS, NGX_CONF_TAKE1, NGX_ERROR, NGX_HTTP_LOC_CONF, NGX_HTTP_LOC_CONF_OFFSET,
    NGX_HTTP_MAIN_CONF, NGX_HTTP_MAIN_CONF_OFFSET, NGX_HTTP_SRV_CONF, NGX_LOG_EMERG, NGX_LOG_WARN,
};
use ngx::http::{HttpModule, HttpModuleMainConf};
use ngx::{ngx_conf_log_error, ngx_string};

use crate::state::{init_zone, Slot};
use crate::EntraModule;

/// http-level state: the providers, by name, and the shared zone.
pub struct MainConf {
    providers: Vec<Arc<Provider>>,
    /// `entra_shared_zone`: name and size; a default zone when absent.
    zone_name: Option<String>,
    zone_size: usize,
    /// The zone and, per provider (null for key files), its slot; set when the zone is ready.
    pool: *mut ngx_slab_pool_t,
    slots: Vec<*mut Slot>,
    /// This worker's view, per provider.
    pub local: Vec<Local>,
}

impl Default for MainConf {
    fn default() -> Self {
        MainConf {
            providers: Vec::new(),
            zone_name: None,
            zone_size: 0,
            pool: ptr::null_mut(),
            slots: Vec::new(),
            local: Vec::new(),
        }
    }
}

/// What one worker knows of a discovery provider besides the zone.
#[derive(Default)]
pub struct Local {
    /// The key set generation this worker judges with.
    pub generation: Cell<u64>,
    /// This worker has a fetch on the thread pool.
    pub in_flight: Cell<bool>,
}

/// The default zone: room for the key sets of many providers (Entra's are a few KiB).
const DEFAULT_ZONE_NAME: &str = "entra";
const DEFAULT_ZONE_SIZE: usize = 1024 * 1024;

impl MainConf {
    pub fn providers(&self) -> &[Arc<Provider>] {
        &self.providers
    }

    pub fn index_of(&self, provider: &Arc<Provider>) -> Option<usize> {
        self.providers.iter().position(|p| Arc::ptr_eq(p, provider))
    }

    /// The zone's pool and a provider's slot, for a discovery provider once the zone is ready.
    pub fn shared(&self, index: usize) -> Option<(*mut ngx_slab_pool_t, &Slot)> {
        let slot = *self.slots.get(index)?;
        // SAFETY: slots point into the live zone, set by its init handler.
        (!slot.is_null() && !self.pool.is_null()).then(|| (self.pool, unsafe { &*slot }))
    }

    pub fn set_slots(&mut self, pool: *mut ngx_slab_pool_t, slots: Vec<*mut Slot>) {
        self.local = slots.iter().map(|_| Local::default()).collect();
        self.pool = pool;
        self.slots = slots;
    }

    fn has_discovery(&self) -> bool {
        self.providers.iter().any(|p| matches!(p.source, KeySource::Discovery { .. }))
    }
}

/// Adds the shared zone when there are providers, and nginx's default thread pool when one of
/// them fetches its keys.
///
/// # Safety
/// Called in postconfiguration with a valid `cf`.
pub unsafe fn add_zone(cf: *mut ngx_conf_t) -> Result<(), String> {
    let main = EntraModule::main_conf_mut(&*cf).ok_or("no http configuration")?;
    if main.providers.is_empty() {
        return Ok(());
    }
    if main.providers.len() > crate::state::MAX_PROVIDERS {
        return Err(format!("more than {} entra_provider blocks", crate::state::MAX_PROVIDERS));
    }
    let name = main.zone_name.clone().unwrap_or_else(|| DEFAULT_ZONE_NAME.to_owned());
    let size = if main.zone_size == 0 { DEFAULT_ZONE_SIZE } else { main.zone_size };
    let mut zone_name = ngx_str_t { len: name.len(), data: ngx_pstrdup_str((*cf).pool, &name)? };
    let module = EntraModule::module() as *const ngx_module_t as *mut c_void;
    let zone = ngx_shared_memory_add(cf, &mut zone_name, size, module);
    if zone.is_null() {
        return Err(format!("cannot add the shared zone \"{name}\""));
    }
    if !(*zone).data.is_null() {
        return Err(format!("entra_shared_zone \"{name}\" is used by another module"));
    }
    (*zone).init = Some(init_zone);
    (*zone).data = main as *mut MainConf as *mut c_void;
    if main.has_discovery() {
        crate::fetch::add_thread_pool(cf)?;
    }
    Ok(())
}

unsafe fn ngx_pstrdup_str(pool: *mut ngx::ffi::ngx_pool_t, s: &str) -> Result<*mut u8, String> {
    let p = ngx::ffi::ngx_pnalloc(pool, s.len()) as *mut u8;
    if p.is_null() {
        return Err("out of memory".into());
    }
    ptr::copy_nonoverlapping(s.as_ptr(), p, s.len());
    Ok(p)
}

/// Where a directive was written, for errors found after the line was read.
#[derive(Clone, Debug)]
struct Origin {
    file: String,
    line: usize,
}

#[derive(Clone, Debug, Default)]
enum AuthSetting {
    #[default]
    Unset,
    Off,
    Named(String, Origin),
}

/// One requirement directive's state at one level: unset (inherit), `off`, or the value lists of
/// each directive written at this level (ANY within a list, ALL across lists).
#[derive(Clone, Debug, Default, PartialEq)]
enum Setting {
    #[default]
    Unset,
    Off,
    AllOf(Vec<Vec<String>>),
}

impl Setting {
    fn inherit(&mut self, prev: &Setting) {
        if *self == Setting::Unset {
            *self = prev.clone();
        }
    }

    fn add(&mut self, directive: &str, values: &[&str]) -> Result<(), String> {
        match (values, &mut *self) {
            (["off"], Setting::Unset) => *self = Setting::Off,
            (["off"], _) | (_, Setting::Off) => {
                return Err(format!("\"{directive}\" cannot be both \"off\" and a requirement at one level"))
            }
            (_, Setting::Unset) => *self = Setting::AllOf(vec![owned(values)]),
            (_, Setting::AllOf(lists)) => lists.push(owned(values)),
        }
        Ok(())
    }

    fn requirements(&self, subject: Subject, policy: &mut Policy) {
        if let Setting::AllOf(lists) = self {
            policy.requirements.extend(
                lists.iter().map(|any_of| Requirement { subject: subject.clone(), any_of: any_of.clone() }),
            );
        }
    }
}

fn owned(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| v.to_string()).collect()
}

#[derive(Default)]
pub struct LocationConf {
    auth: AuthSetting,
    groups: Setting,
    roles: Setting,
    scopes: Setting,
    permissions: Setting,
    /// `entra_require_claim off;` at this level: inherit no claim requirement.
    claims_off: bool,
    claims: Vec<(String, Setting)>,
    /// Set by merge: the provider that guards this location, if any.
    pub provider: Option<Arc<Provider>>,
    /// Set by merge: every requirement in force here.
    pub policy: Policy,
}

/// The directive arguments of the line being parsed, as UTF-8.
///
/// # Safety
/// `cf` must be a valid configuration being parsed.
unsafe fn args<'a>(cf: *mut ngx_conf_t) -> Result<Vec<&'a str>, String> {
    let raw: &[ngx_str_t] = (*(*cf).args).as_slice();
    raw.iter()
        .map(|a| a.to_str().map_err(|_| format!("\"{}\" has an argument that is not UTF-8", raw[0])))
        .collect()
}

/// Logs a refusal at `emerg`; nginx appends the file and line.
unsafe fn refuse(cf: *mut ngx_conf_t, message: &str) -> *mut c_char {
    ngx_conf_log_error!(NGX_LOG_EMERG, cf, "{}", message);
    NGX_CONF_ERROR
}

unsafe fn warn(cf: *mut ngx_conf_t, message: &str) {
    ngx_conf_log_error!(NGX_LOG_WARN, cf, "{}", message);
}

unsafe fn origin(cf: *mut ngx_conf_t) -> Origin {
    let file = &*(*cf).conf_file;
    Origin { file: file.file.name.to_string(), line: file.line }
}

// ---- entra_provider --------------------------------------------------------------------------

struct ProviderBlock {
    config: ProviderConfig,
    seen: Vec<String>,
}

extern "C" fn set_provider(cf: *mut ngx_conf_t, _cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    // SAFETY: nginx calls directive handlers with a valid cf and this module's main conf.
    unsafe {
        let main = &mut *(conf as *mut MainConf);
        let name = match args(cf) {
            Ok(a) => a[1].to_owned(),
            Err(e) => return refuse(cf, &e),
        };
        if main.providers.iter().any(|p| p.name == name) {
            return refuse(cf, &format!("duplicate entra_provider \"{name}\""));
        }
        let opening_line = (*(*cf).conf_file).line;
        let mut block = ProviderBlock { config: ProviderConfig::default(), seen: Vec::new() };
        // Parse the block's lines with our own handler, the way nginx parses `types { }`.
        let saved = *cf;
        (*cf).handler = Some(provider_line);
        (*cf).handler_conf = addr_of_mut!(block) as *mut c_void;
        let rv = ngx_conf_parse(cf, ptr::null_mut());
        *cf = saved;
        if rv != NGX_CONF_OK {
            return rv;
        }
        match block.config.build(&name) {
            Ok(provider) => {
                match &provider.source {
                    KeySource::Discovery { discovery, .. } => {
                        let url = &discovery.metadata_url;
                        if url.starts_with("http://") {
                            let why = "is plain http: for tests and development only";
                            warn(cf, &format!("entra_provider \"{name}\": metadata \"{url}\" {why}"));
                        }
                    }
                    KeySource::File => {
                        if !provider.key_state().keys.iter().any(|k| provider.uses_family(k.family)) {
                            let why = "no key in the key set fits \"algorithms\"";
                            warn(cf, &format!("entra_provider \"{name}\": {why}"));
                        }
                    }
                }
                main.providers.push(Arc::new(provider));
                NGX_CONF_OK
            }
            Err(e) => {
                // Point at the block's first line rather than at its closing brace.
                let closing_line = (*(*cf).conf_file).line;
                (*(*cf).conf_file).line = opening_line;
                let rv = refuse(cf, &format!("entra_provider \"{name}\": {e}"));
                (*(*cf).conf_file).line = closing_line;
                rv
            }
        }
    }
}

extern "C" fn provider_line(
    cf: *mut ngx_conf_t,
    _dummy: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: ngx_conf_parse calls the handler with the cf and handler_conf set in set_provider.
    unsafe { apply_directive(cf, conf, provider_directive) }
}

/// One line inside `entra_provider { }`.
unsafe fn provider_directive(
    cf: *mut ngx_conf_t,
    block: &mut ProviderBlock,
    a: &[&str],
) -> Result<(), String> {
    let (directive, values) = (a[0], &a[1..]);
    let (min, max, repeatable) = match directive {
        "tenant"
        | "client_id"
        | "authority"
        | "jwks_file"
        | "leeway"
        | "require_permission"
        | "token_cache"
        | "metadata_url"
        | "refresh"
        | "refresh_on_unknown_kid"
        | "ca_file"
        | "fetch_timeout" => (1, 1, false),
        "audience" | "allowed_tenants" | "algorithms" => (1, usize::MAX, false),
        "issuer" => (1, usize::MAX, true),
        _ => return Err(format!("unknown directive \"{directive}\" in entra_provider")),
    };
    if values.len() < min || values.len() > max {
        return Err(format!("invalid number of arguments in \"{directive}\" directive"));
    }
    if !repeatable {
        if block.seen.iter().any(|d| d == directive) {
            return Err(format!("\"{directive}\" directive is duplicate"));
        }
        block.seen.push(directive.to_owned());
    }
    let c = &mut block.config;
    let config_error = |e: ConfigError| e.to_string();
    match directive {
        "tenant" => c.tenant = Some(Tenant::parse(values[0]).map_err(config_error)?),
        "client_id" => c.client_id = Some(parse_guid("client_id", values[0]).map_err(config_error)?),
        "audience" => c.audiences = Some(owned(values)),
        "authority" => c.authority = Some(parse_url("authority", values[0]).map_err(config_error)?),
        "issuer" => {
            for v in values {
                if !(v.starts_with("https://") || v.starts_with("http://")) {
                    return Err(ConfigError::BadIssuer(v.to_string()).to_string());
                }
                c.issuers.push(v.to_string());
            }
        }
        "allowed_tenants" => {
            c.allowed_tenants = Some(match values {
                ["any"] => AllowedTenants::Any,
                _ => AllowedTenants::Only(
                    values
                        .iter()
                        .map(|v| parse_guid("allowed_tenants", v))
                        .collect::<Result<_, _>>()
                        .map_err(config_error)?,
                ),
            })
        }
        "jwks_file" => c.keys = Some(load_key_file(cf, values[0])?),
        "metadata_url" => c.metadata_url = Some(parse_url("metadata_url", values[0]).map_err(config_error)?),
        "refresh" => c.refresh = Some(time_value(directive, values[0], true)?),
        "refresh_on_unknown_kid" => c.refresh_on_unknown_kid = Some(time_value(directive, values[0], true)?),
        "fetch_timeout" => c.fetch_timeout = Some(time_value(directive, values[0], false)?),
        "ca_file" => c.ca_file = Some(full_path(cf, values[0])?.into()),
        "token_cache" => {
            c.token_cache = Some(match values[0] {
                "off" => 0,
                v => v.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                    format!("\"token_cache\" value \"{v}\" must be a number of tokens or \"off\"")
                })?,
            })
        }
        "leeway" => c.leeway = Some(time_value(directive, values[0], true)?.as_secs()),
        "algorithms" => {
            c.algorithms = Some(
                values.iter().map(|v| parse_algorithm(v)).collect::<Result<_, _>>().map_err(config_error)?,
            )
        }
        "require_permission" => {
            c.require_permission = Some(match values[0] {
                "on" => true,
                "off" => false,
                v => {
                    return Err(ConfigError::NotAFlag { directive: "require_permission", value: v.into() }
                        .to_string())
                }
            })
        }
        _ => unreachable!("filtered above"),
    }
    Ok(())
}

/// A time argument (`60s`, `5m`, `1h`; milliseconds allowed unless `whole_seconds`).
fn time_value(directive: &str, value: &str, whole_seconds: bool) -> Result<Duration, String> {
    let mut text = ngx_str_t { len: value.len(), data: value.as_ptr() as *mut u8 };
    // SAFETY: ngx_parse_time only reads the string.
    let parsed = unsafe { ngx_parse_time(&mut text, if whole_seconds { 1 } else { 0 }) };
    if parsed == NGX_ERROR as ngx::ffi::ngx_int_t {
        return Err(format!("\"{directive}\" value \"{value}\" is not a time"));
    }
    let parsed = parsed as u64;
    Ok(if whole_seconds { Duration::from_secs(parsed) } else { Duration::from_millis(parsed) })
}

/// A path relative to the configuration prefix (as `ssl_certificate` takes it).
unsafe fn full_path(cf: *mut ngx_conf_t, path: &str) -> Result<String, String> {
    let mut name = ngx_str_t { len: path.len(), data: path.as_ptr() as *mut u8 };
    if ngx_conf_full_name((*cf).cycle, &mut name, 1) != 0 {
        return Err(format!("\"{path}\": cannot resolve the path"));
    }
    Ok(name.to_string())
}

/// Reads a JWKS file.
unsafe fn load_key_file(cf: *mut ngx_conf_t, path: &str) -> Result<KeySet, String> {
    let full = full_path(cf, path)?;
    let bad = |reason: String| ConfigError::BadKeyFile { path: full.clone(), reason }.to_string();
    let text = std::fs::read(&full).map_err(|e| bad(e.to_string()))?;
    let (keys, skipped) = KeySet::from_jwks(&text).map_err(|e| bad(e.to_string()))?;
    for why in skipped {
        warn(cf, &format!("\"jwks_file\" \"{full}\": {why} (skipped)"));
    }
    Ok(keys)
}

extern "C" fn set_zone(cf: *mut ngx_conf_t, _cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    // SAFETY: nginx calls directive handlers with a valid cf and this module's main conf.
    unsafe { apply_directive(cf, conf, apply_zone) }
}

/// `entra_shared_zone zone=name:size;`
unsafe fn apply_zone(_cf: *mut ngx_conf_t, main: &mut MainConf, a: &[&str]) -> Result<(), String> {
    if main.zone_name.is_some() {
        return Err("\"entra_shared_zone\" directive is duplicate".into());
    }
    let bad = || format!("invalid \"entra_shared_zone\" \"{}\": use zone=name:size", a[1]);
    let (name, size) = a[1].strip_prefix("zone=").and_then(|v| v.split_once(':')).ok_or_else(bad)?;
    let mut text = ngx_str_t { len: size.len(), data: size.as_ptr() as *mut u8 };
    let bytes = ngx::ffi::ngx_parse_size(&mut text);
    if name.is_empty() || bytes == NGX_ERROR as isize {
        return Err(bad());
    }
    if (bytes as usize) < 64 * 1024 {
        return Err(format!("\"entra_shared_zone\" \"{name}\" is too small (64k at least)"));
    }
    main.zone_name = Some(name.to_owned());
    main.zone_size = bytes as usize;
    Ok(())
}

// ---- entra_auth and entra_require_* ---------------------------------------------------------

/// Applies the line being parsed to a configuration of type `T`; an error refuses it.
///
/// # Safety
/// `cf` is being parsed and `conf` points to a `T`.
unsafe fn apply_directive<T>(
    cf: *mut ngx_conf_t,
    conf: *mut c_void,
    apply: unsafe fn(*mut ngx_conf_t, &mut T, &[&str]) -> Result<(), String>,
) -> *mut c_char {
    let target = &mut *(conf as *mut T);
    match args(cf).and_then(|a| apply(cf, target, &a)) {
        Ok(()) => NGX_CONF_OK,
        Err(e) => refuse(cf, &e),
    }
}

unsafe fn apply_auth(cf: *mut ngx_conf_t, lcf: &mut LocationConf, a: &[&str]) -> Result<(), String> {
    if !matches!(lcf.auth, AuthSetting::Unset) {
        return Err("\"entra_auth\" directive is duplicate".into());
    }
    lcf.auth = match a[1] {
        "off" => AuthSetting::Off,
        name => AuthSetting::Named(name.to_owned(), origin(cf)),
    };
    Ok(())
}

unsafe fn apply_requirement(_cf: *mut ngx_conf_t, lcf: &mut LocationConf, a: &[&str]) -> Result<(), String> {
    let setting = match a[0] {
        "entra_require_group" => &mut lcf.groups,
        "entra_require_role" => &mut lcf.roles,
        "entra_require_scope" => &mut lcf.scopes,
        _ => &mut lcf.permissions,
    };
    setting.add(a[0], &a[1..])
}

unsafe fn apply_claim(cf: *mut ngx_conf_t, lcf: &mut LocationConf, a: &[&str]) -> Result<(), String> {
    let off = matches!(a, ["entra_require_claim", "off"]);
    if lcf.claims_off || (off && !lcf.claims.is_empty()) {
        return Err("\"entra_require_claim off\" must stand alone at its level".into());
    }
    if off {
        lcf.claims_off = true;
        return Ok(());
    }
    if a.len() < 3 {
        return Err("\"entra_require_claim\" needs a claim name and at least one value (or \"off\")".into());
    }
    let name = a[1];
    if MUTABLE_CLAIMS.contains(&name) {
        warn(
            cf,
            &format!(
                "entra_require_claim \"{name}\": this claim can be changed by users or admins; \
                 authorize on oid, tid, groups or roles instead"
            ),
        );
    }
    let index = match lcf.claims.iter().position(|(n, _)| n == name) {
        Some(i) => i,
        None => {
            lcf.claims.push((name.to_owned(), Setting::Unset));
            lcf.claims.len() - 1
        }
    };
    lcf.claims[index].1.add(&format!("entra_require_claim {name}"), &a[2..])
}

extern "C" fn set_auth(cf: *mut ngx_conf_t, _cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    // SAFETY: nginx calls directive handlers with a valid cf and this module's location conf.
    unsafe { apply_directive(cf, conf, apply_auth) }
}

extern "C" fn set_requirement(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: as above.
    unsafe { apply_directive(cf, conf, apply_requirement) }
}

extern "C" fn set_claim(cf: *mut ngx_conf_t, _cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    // SAFETY: as above.
    unsafe { apply_directive(cf, conf, apply_claim) }
}

/// Inherits what this level did not set, resolves the provider and builds the policy.
///
/// # Safety
/// Called by nginx with valid configuration pointers of this module.
pub unsafe extern "C" fn merge_loc_conf(
    cf: *mut ngx_conf_t,
    prev: *mut c_void,
    conf: *mut c_void,
) -> *mut c_char {
    let prev = &*(prev as *const LocationConf);
    let conf = &mut *(conf as *mut LocationConf);
    if matches!(conf.auth, AuthSetting::Unset) {
        conf.auth = prev.auth.clone();
    }
    for (setting, parent) in [
        (&mut conf.groups, &prev.groups),
        (&mut conf.roles, &prev.roles),
        (&mut conf.scopes, &prev.scopes),
        (&mut conf.permissions, &prev.permissions),
    ] {
        setting.inherit(parent);
    }
    if !conf.claims_off {
        for (name, setting) in &prev.claims {
            if !conf.claims.iter().any(|(n, _)| n == name) {
                conf.claims.push((name.clone(), setting.clone()));
            }
        }
    }

    conf.provider = match &conf.auth {
        AuthSetting::Named(name, origin) => {
            let main = EntraModule::main_conf(&*cf).expect("http main conf");
            match main.providers.iter().find(|p| &p.name == name) {
                Some(provider) => Some(provider.clone()),
                None => {
                    ngx::ngx_log_error!(
                        NGX_LOG_EMERG,
                        (*cf).log,
                        "entra_auth: unknown entra_provider \"{}\" in {}:{}",
                        name,
                        origin.file,
                        origin.line
                    );
                    return NGX_CONF_ERROR;
                }
            }
        }
        AuthSetting::Unset | AuthSetting::Off => None,
    };

    let mut policy = Policy::default();
    conf.groups.requirements(Subject::Group, &mut policy);
    conf.roles.requirements(Subject::Role, &mut policy);
    conf.scopes.requirements(Subject::Scope, &mut policy);
    conf.permissions.requirements(Subject::Permission, &mut policy);
    for (name, setting) in &conf.claims {
        setting.requirements(Subject::Claim(name.clone()), &mut policy);
    }
    conf.policy = policy;
    NGX_CONF_OK
}

const LOCATION_LEVELS: u32 = NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF;

const fn location_command(
    name: ngx_str_t,
    args: u32,
    set: extern "C" fn(*mut ngx_conf_t, *mut ngx_command_t, *mut c_void) -> *mut c_char,
) -> ngx_command_t {
    ngx_command_t {
        name,
        type_: (LOCATION_LEVELS | args) as ngx_uint_t,
        set: Some(set),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    }
}

pub static mut COMMANDS: [ngx_command_t; 10] = [
    ngx_command_t {
        name: ngx_string!("entra_status"),
        type_: (NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS) as ngx_uint_t,
        set: Some(crate::status::set_status),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("entra_shared_zone"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1) as ngx_uint_t,
        set: Some(set_zone),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("entra_provider"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_BLOCK | NGX_CONF_TAKE1) as ngx_uint_t,
        set: Some(set_provider),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    location_command(ngx_string!("entra_auth"), NGX_CONF_TAKE1, set_auth),
    location_command(ngx_string!("entra_require_group"), NGX_CONF_1MORE, set_requirement),
    location_command(ngx_string!("entra_require_role"), NGX_CONF_1MORE, set_requirement),
    location_command(ngx_string!("entra_require_scope"), NGX_CONF_1MORE, set_requirement),
    location_command(ngx_string!("entra_require_permission"), NGX_CONF_1MORE, set_requirement),
    location_command(ngx_string!("entra_require_claim"), NGX_CONF_1MORE, set_claim),
    ngx_command_t::empty(),
];
