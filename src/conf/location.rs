//! `entra_auth` and `entra_require_*` at http, server and location level, and their merge with
//! nginx's usual inheritance: a level that sets a directive of one name replaces the inherited
//! directives of that name and keeps the others.

use core::ffi::{c_char, c_void};

use entra_core::error::AuthContext;
use entra_core::policy::{Policy, Requirement, Subject, MUTABLE_CLAIMS};
use entra_core::provider::KeySource;
use entra_core::values::is_guid;
use entra_core::Provider;
use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::ffi::{ngx_command_t, ngx_conf_t};
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf, HttpModuleServerConf};

use super::ext::{answer, time_value, Conf, ConfError, Origin};
use crate::log::guard;
use crate::module::EntraModule;

#[derive(Clone, Debug, Default)]
enum AuthSetting {
    #[default]
    Unset,
    Off,
    Named(String, AuthMode, Origin),
}

/// What `entra_auth` accepts as proof.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AuthMode {
    /// `entra_auth NAME;`: a bearer token.
    #[default]
    Bearer,
    /// `entra_auth NAME session;`: the browser session (signing in when there is none).
    Session,
    /// `entra_auth NAME any;`: a bearer token when `Authorization` is sent, else the session.
    Any,
}

/// One requirement directive's state at one level: unset (inherit), `off`, or the lines written
/// at this level (ANY within a line's values, ALL across lines).
#[derive(Clone, Debug, Default)]
enum Setting {
    #[default]
    Unset,
    Off,
    AllOf(Vec<Written>),
}

/// One requirement line: its values, and where it was written (for the warning when no
/// `entra_auth` is in force where it applies).
#[derive(Clone, Debug)]
struct Written {
    directive: String,
    any_of: Vec<String>,
    origin: Origin,
}

impl Setting {
    fn inherit(&mut self, prev: &Setting) {
        if matches!(self, Setting::Unset) {
            *self = prev.clone();
        }
    }

    fn add(&mut self, directive: &str, values: &[&str], origin: Origin) -> Result<(), ConfError> {
        let owned = || Written {
            directive: directive.to_owned(),
            any_of: values.iter().map(|v| v.to_string()).collect(),
            origin,
        };
        match (values, &mut *self) {
            (["off"], Setting::Unset) => *self = Setting::Off,
            (["off"], _) | (_, Setting::Off) => {
                return Err(ConfError::Rule(format!(
                    "\"{directive}\" cannot be both \"off\" and a requirement at one level"
                )))
            }
            (_, Setting::Unset) => *self = Setting::AllOf(vec![owned()]),
            (_, Setting::AllOf(lists)) => lists.push(owned()),
        }
        Ok(())
    }

    fn requirements(&self, subject: Subject, policy: &mut Policy) {
        if let Setting::AllOf(lines) = self {
            policy
                .requirements
                .extend(lines.iter().map(|w| Requirement::new(subject.clone(), w.any_of.clone())));
        }
    }

    fn lines(&self) -> &[Written] {
        match self {
            Setting::AllOf(lines) => lines,
            Setting::Unset | Setting::Off => &[],
        }
    }
}

#[derive(Default)]
pub struct LocationConf {
    auth: AuthSetting,
    groups: Setting,
    roles: Setting,
    scopes: Setting,
    permissions: Setting,
    auth_contexts: Setting,
    /// `entra_require_recent_signin`: unset (inherit), `off` (`None`), or seconds, and where.
    recent_signin: Option<(Option<u64>, Origin)>,
    /// `entra_require_claim off;` at this level: inherit no claim requirement.
    claims_off: bool,
    claims: Vec<(String, Setting)>,
    /// `entra_logout;` here: the access check lets the request through with or without a
    /// session (the logout handler answers).
    pub logout: bool,
    /// `entra_whoami;` here (its location must have `entra_auth` in force).
    pub whoami: bool,
    /// Set by merge: the index of the provider that guards this location, if any.
    pub provider: Option<usize>,
    /// Set by merge: with what.
    pub mode: AuthMode,
    /// Set by merge: every requirement in force here.
    pub policy: Policy,
}

/// Runs `apply` on the line being parsed and this level's configuration.
fn handle(
    cf: *mut ngx_conf_t,
    conf: *mut c_void,
    apply: fn(&Conf, &mut LocationConf, &[&str]) -> Result<(), ConfError>,
) -> *mut c_char {
    // SAFETY: nginx calls directive handlers with a valid cf.
    let conf_ctx = unsafe { Conf::new(cf) };
    // SAFETY: and with this module's location configuration.
    let lcf = unsafe { &mut *(conf as *mut LocationConf) };
    // SAFETY: as above.
    guard(unsafe { (*cf).log }, "a directive", NGX_CONF_ERROR, || {
        answer(&conf_ctx, conf_ctx.args().and_then(|a| apply(&conf_ctx, lcf, &a)))
    })
}

pub extern "C" fn set_auth(cf: *mut ngx_conf_t, _cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    handle(cf, conf, |cf, lcf, a| {
        if !matches!(lcf.auth, AuthSetting::Unset) {
            return Err(ConfError::Duplicate("entra_auth".into()));
        }
        let mode = match a.get(2).copied() {
            None => AuthMode::Bearer,
            Some("session") => AuthMode::Session,
            Some("any") => AuthMode::Any,
            Some(other) => {
                return Err(ConfError::Invalid {
                    directive: "entra_auth",
                    value: other.to_owned(),
                    expected: "the mode is \"session\" or \"any\" (bearer tokens alone: no mode)",
                })
            }
        };
        lcf.auth = match (a[1], mode) {
            ("off", AuthMode::Bearer) => AuthSetting::Off,
            ("off", _) => return Err(ConfError::Rule("\"entra_auth off\" takes no mode".into())),
            (name, mode) => AuthSetting::Named(name.to_owned(), mode, cf.origin()),
        };
        Ok(())
    })
}

pub extern "C" fn set_requirement(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    handle(cf, conf, |cf, lcf, a| {
        let setting = match a[0] {
            "entra_require_group" => &mut lcf.groups,
            "entra_require_role" => &mut lcf.roles,
            "entra_require_scope" => &mut lcf.scopes,
            _ => &mut lcf.permissions,
        };
        if a[0] == "entra_require_group" {
            for value in a[1..].iter().filter(|v| **v != "off" && !is_guid(v)) {
                cf.warn(&format_args!(
                    "entra_require_group \"{value}\" is not an object id: Entra's groups claim (and Microsoft Graph's \
                     overage answer) names groups by object id, never by display name, so this value matches only \
                     if the app registration emits group names (sAMAccountName of synced groups)"
                ));
            }
        }
        setting.add(a[0], &a[1..], cf.origin())
    })
}

pub extern "C" fn set_auth_context(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    handle(cf, conf, |cf, lcf, a| {
        let ids = match &a[1..] {
            ["off"] => vec!["off".to_owned()],
            values => values
                .iter()
                .map(|v| {
                    AuthContext::parse(v).map(|id| id.to_string()).ok_or_else(|| ConfError::Invalid {
                        directive: "entra_require_auth_context",
                        value: v.to_string(),
                        expected: "an authentication context id is c1 to c99",
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        lcf.auth_contexts.add(a[0], &ids, cf.origin())
    })
}

pub extern "C" fn set_recent_signin(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    handle(cf, conf, |cf, lcf, a| {
        if lcf.recent_signin.is_some() {
            return Err(ConfError::Duplicate(a[0].to_owned()));
        }
        let within = match a[1] {
            "off" => None,
            v => match time_value(a[0], v, true)?.as_secs() {
                0 => return Err(ConfError::Rule(format!("\"{}\" value \"{v}\" must be at least 1s", a[0]))),
                seconds => Some(seconds),
            },
        };
        lcf.recent_signin = Some((within, cf.origin()));
        Ok(())
    })
}

pub extern "C" fn set_claim(cf: *mut ngx_conf_t, _cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    handle(cf, conf, |cf, lcf, a| {
        let off = matches!(a, ["entra_require_claim", "off"]);
        if lcf.claims_off || (off && !lcf.claims.is_empty()) {
            return Err(ConfError::Rule("\"entra_require_claim off\" must stand alone at its level".into()));
        }
        if off {
            lcf.claims_off = true;
            return Ok(());
        }
        if a.len() < 3 {
            return Err(ConfError::Rule(
                "\"entra_require_claim\" needs a claim name and at least one value (or \"off\")".into(),
            ));
        }
        let name = a[1];
        if MUTABLE_CLAIMS.contains(&name) {
            cf.warn(&format_args!(
                "entra_require_claim \"{name}\": this claim can be changed by users or admins; \
                 authorize on oid, tid, groups or roles instead"
            ));
        }
        let index = match lcf.claims.iter().position(|(n, _)| n == name) {
            Some(i) => i,
            None => {
                lcf.claims.push((name.to_owned(), Setting::Unset));
                lcf.claims.len() - 1
            }
        };
        lcf.claims[index].1.add(&format!("entra_require_claim {name}"), &a[2..], cf.origin())
    })
}

impl LocationConf {
    /// Inherits what this level did not set, resolves the provider and builds the policy.
    fn merge(&mut self, prev: &LocationConf, cf: &Conf) -> Result<(), ConfError> {
        let own_scopes = !matches!(self.scopes, Setting::Unset);
        let own_claims: Vec<String> = self.claims.iter().map(|(name, _)| name.clone()).collect();
        if matches!(self.auth, AuthSetting::Unset) {
            self.auth = prev.auth.clone();
        }
        for (setting, parent) in [
            (&mut self.groups, &prev.groups),
            (&mut self.roles, &prev.roles),
            (&mut self.scopes, &prev.scopes),
            (&mut self.permissions, &prev.permissions),
            (&mut self.auth_contexts, &prev.auth_contexts),
        ] {
            setting.inherit(parent);
        }
        let own_recent_signin = self.recent_signin.is_some();
        if !own_recent_signin {
            self.recent_signin = prev.recent_signin.clone();
        }
        if !self.claims_off {
            for (name, setting) in &prev.claims {
                if !self.claims.iter().any(|(n, _)| n == name) {
                    self.claims.push((name.clone(), setting.clone()));
                }
            }
        }
        (self.provider, self.mode) = match &self.auth {
            AuthSetting::Named(name, mode, origin) => {
                // SAFETY: merging happens within the http block, whose main conf exists.
                let main = unsafe { EntraModule::main_conf_mut(&*cf.as_ptr()) }
                    .ok_or_else(|| ConfError::Rule("no http configuration".into()))?;
                let index = main.index_of(name).ok_or_else(|| {
                    ConfError::Rule(format!("entra_auth: unknown entra_provider \"{name}\" in {origin}"))
                })?;
                if *mode != AuthMode::Bearer {
                    let provider = &main.providers[index];
                    check_sign_in(provider, origin)?;
                    if own_scopes && *mode == AuthMode::Session {
                        cf.warn(&format_args!(
                            "entra_require_scope: a session has no scp; it can never pass"
                        ));
                    }
                    let session_only = *mode == AuthMode::Session;
                    for claim in
                        own_claims.iter().filter(|c| session_only && !provider.sign_in.keeps_claim(c))
                    {
                        cf.warn(&format_args!(
                            "entra_require_claim \"{claim}\": a session of entra_provider \"{name}\" does not keep \
                             this claim (add it to session_claims)"
                        ));
                    }
                    main.sign_in_used = true;
                    // SAFETY: during a merge, cf->ctx is the server's context.
                    let server = unsafe { EntraModule::server_conf_mut(&*cf.as_ptr()) }
                        .ok_or_else(|| ConfError::Rule("no server configuration".into()))?;
                    server.add(&main.providers, index, origin)?;
                }
                (Some(index), *mode)
            }
            AuthSetting::Unset => {
                self.warn_unguarded(cf)?;
                (None, AuthMode::Bearer)
            }
            AuthSetting::Off => (None, AuthMode::Bearer),
        };
        if self.whoami && self.provider.is_none() {
            return Err(ConfError::Rule(
                "\"entra_whoami\" needs \"entra_auth\" in force in its location: it shows the identity the access \
                 check saw"
                    .into(),
            ));
        }
        if let (Some((Some(_), origin)), Some(_), AuthMode::Bearer) =
            (&self.recent_signin, self.provider, self.mode)
        {
            // Access tokens carry no dependable sign-in time: nothing could ever pass.
            let why = format!(
                "\"entra_require_recent_signin\" in {origin} applies to browser sessions: a bearer-only location \
                 (entra_auth without session or any) can never satisfy it"
            );
            if own_recent_signin {
                return Err(ConfError::Rule(why));
            }
            // SAFETY: merging happens within the http block, whose main conf exists.
            let main = unsafe { EntraModule::main_conf_mut(&*cf.as_ptr()) }
                .ok_or_else(|| ConfError::Rule("no http configuration".into()))?;
            if main.unguarded_warned.insert((origin.file.clone(), origin.line)) {
                cf.warn_about(&format_args!("{why}; it is inherited by one"));
            }
        }
        let mut policy = Policy::default();
        self.groups.requirements(Subject::Group, &mut policy);
        self.roles.requirements(Subject::Role, &mut policy);
        self.scopes.requirements(Subject::Scope, &mut policy);
        self.permissions.requirements(Subject::Permission, &mut policy);
        for (name, setting) in &self.claims {
            setting.requirements(Subject::Claim(name.clone()), &mut policy);
        }
        self.auth_contexts.requirements(Subject::AuthContext, &mut policy);
        policy.recent_signin = self.recent_signin.as_ref().and_then(|(within, _)| *within);
        if let (Some(index), true) = (self.provider, policy.has_group_requirement()) {
            // SAFETY: merging happens within the http block, whose main conf exists.
            let main = unsafe { EntraModule::main_conf_mut(&*cf.as_ptr()) }
                .ok_or_else(|| ConfError::Rule("no http configuration".into()))?;
            main.require_groups(index, policy.groups());
        }
        self.policy = policy;
        Ok(())
    }
}

impl LocationConf {
    /// Requirements in force where no `entra_auth` is: nothing checks them, so the level is
    /// open. Warns once per line (every location inheriting it would repeat it); an explicit
    /// `entra_auth off;` says the operator meant it.
    fn warn_unguarded(&self, cf: &Conf) -> Result<(), ConfError> {
        // SAFETY: merging happens within the http block, whose main conf exists.
        let main = unsafe { EntraModule::main_conf_mut(&*cf.as_ptr()) }
            .ok_or_else(|| ConfError::Rule("no http configuration".into()))?;
        let settings = [&self.groups, &self.roles, &self.scopes, &self.permissions, &self.auth_contexts];
        let lines = settings.into_iter().chain(self.claims.iter().map(|(_, s)| s)).flat_map(Setting::lines);
        for line in lines {
            if main.unguarded_warned.insert((line.origin.file.clone(), line.origin.line)) {
                cf.warn_about(&format_args!(
                    "\"{}\" in {} has no effect where no entra_auth is in force, which leaves that place open \
                     (write \"entra_auth off;\" there if that is meant)",
                    line.directive, line.origin
                ));
            }
        }
        Ok(())
    }
}

/// A provider used in a session mode must be able to sign browsers in.
fn check_sign_in(provider: &Provider, origin: &Origin) -> Result<(), ConfError> {
    let name = &provider.name;
    let missing = if provider.sign_in.credential.is_none() {
        Some("a client credential (client_secret_file or client_certificate)")
    } else if provider.sign_in.keys.is_none() {
        Some("session_key_file")
    } else if matches!(provider.source, KeySource::File) {
        Some("metadata discovery for its authorize endpoint (it has jwks_file)")
    } else {
        None
    };
    match missing {
        Some(what) => Err(ConfError::Rule(format!(
            "entra_auth in {origin}: entra_provider \"{name}\" is used for browser sign-in and needs {what}"
        ))),
        None => Ok(()),
    }
}

/// nginx's merge entry point for this module's location configurations.
///
/// # Safety
/// Called by nginx with valid configuration pointers of this module.
pub unsafe extern "C" fn merge_loc_conf(
    cf: *mut ngx_conf_t,
    prev: *mut c_void,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx passes a configuration being parsed and two of this module's location confs.
    let (cf, prev, conf) =
        unsafe { (Conf::new(cf), &*(prev as *const LocationConf), &mut *(conf as *mut LocationConf)) };
    // SAFETY: as above.
    guard(unsafe { (*cf.as_ptr()).log }, "merging locations", NGX_CONF_ERROR, || {
        match conf.merge(prev, &cf) {
            Ok(()) => NGX_CONF_OK,
            // The line being parsed is the end of a block: the message names the directive's own.
            Err(e) => {
                // SAFETY: as above.
                ngx::ngx_log_error!(ngx::ffi::NGX_LOG_EMERG, unsafe { (*cf.as_ptr()).log }, "{}", e);
                NGX_CONF_ERROR
            }
        }
    })
}

/// A directive that makes its location answered by `handler` (`entra_logout`, `entra_whoami`),
/// after `mark` notes it in this module's location configuration.
pub fn install_handler(
    cf: *mut ngx_conf_t,
    conf: *mut c_void,
    entry: &str,
    handler: extern "C" fn(*mut ngx::ffi::ngx_http_request_t) -> ngx::ffi::ngx_int_t,
    mark: fn(&mut LocationConf),
) -> *mut c_char {
    // SAFETY: nginx calls directive handlers with a valid cf and this module's location conf.
    guard(unsafe { (*cf).log }, entry, NGX_CONF_ERROR, || {
        // SAFETY: as above.
        mark(unsafe { &mut *(conf as *mut LocationConf) });
        // SAFETY: as above, in a location.
        match unsafe { ngx::http::NgxHttpCoreModule::location_conf_mut(&*cf) } {
            Some(clcf) => {
                clcf.handler = Some(handler);
                NGX_CONF_OK
            }
            None => NGX_CONF_ERROR,
        }
    })
}
