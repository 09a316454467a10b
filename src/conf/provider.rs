//! `entra_provider name { ... }`: the block's lines go through an inner command table of their
//! own, with nginx's argument-count flags, and the whole is checked by entra-core when the block
//! closes.

use core::ffi::{c_char, c_void};
use core::ptr::{self, addr_of_mut};
use std::sync::Arc;
use std::time::Duration;

use entra_core::assertion::ClientCertificate;
use entra_core::provider::KeySource;
use entra_core::seal::SealKeys;
use entra_core::signin::{Credential, SignInConfig};
use entra_core::values::{
    parse_algorithm, parse_audience, parse_flag, parse_guid, parse_issuer, parse_token_cache, parse_url,
    AllowedTenants, Tenant,
};
use entra_core::{ConfigError, KeySet, ProviderConfig};
use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::ffi::{ngx_command_t, ngx_conf_parse, ngx_conf_t, NGX_CONF_1MORE, NGX_CONF_TAKE1, NGX_CONF_TAKE2};

use super::ext::{answer, read_secret_file, time_value, Conf, ConfError};
use super::main::MainConf;
use crate::log::guard;

/// What the block's lines have said so far.
struct Block {
    config: ProviderConfig,
    /// Each directive written, with the line it was first written on.
    seen: Vec<(&'static str, usize)>,
}

/// One directive inside `entra_provider { }`.
struct BlockCommand {
    name: &'static str,
    /// `NGX_CONF_TAKE1`, `NGX_CONF_TAKE2` or `NGX_CONF_1MORE`, as in nginx's own command tables.
    args: u32,
    /// May be written more than once (each adds values).
    repeatable: bool,
    set: fn(&Conf, &mut ProviderConfig, &[&str]) -> Result<(), ConfError>,
}

const fn one(
    name: &'static str,
    set: fn(&Conf, &mut ProviderConfig, &[&str]) -> Result<(), ConfError>,
) -> BlockCommand {
    BlockCommand { name, args: NGX_CONF_TAKE1, repeatable: false, set }
}

const fn many(
    name: &'static str,
    set: fn(&Conf, &mut ProviderConfig, &[&str]) -> Result<(), ConfError>,
) -> BlockCommand {
    BlockCommand { name, args: NGX_CONF_1MORE, repeatable: false, set }
}

const fn two(
    name: &'static str,
    set: fn(&Conf, &mut ProviderConfig, &[&str]) -> Result<(), ConfError>,
) -> BlockCommand {
    BlockCommand { name, args: NGX_CONF_TAKE2, repeatable: false, set }
}

/// Every directive of the block (the README documents each).
const PROVIDER_COMMANDS: [BlockCommand; 34] = [
    one("tenant", |_, c, v| {
        c.tenant = Some(Tenant::parse(v[0])?);
        Ok(())
    }),
    one("client_id", |_, c, v| {
        c.client_id = Some(parse_guid("client_id", v[0])?);
        Ok(())
    }),
    many("audience", |_, c, v| {
        c.audiences = Some(v.iter().map(|s| parse_audience(s)).collect::<Result<_, _>>()?);
        Ok(())
    }),
    one("authority", |_, c, v| {
        c.authority = Some(parse_url("authority", v[0])?);
        Ok(())
    }),
    BlockCommand {
        name: "issuer",
        args: NGX_CONF_1MORE,
        repeatable: true,
        set: |_, c, v| {
            for value in v {
                c.issuers.push(parse_issuer(value)?);
            }
            Ok(())
        },
    },
    many("allowed_tenants", |_, c, v| {
        c.allowed_tenants = Some(AllowedTenants::parse(v)?);
        Ok(())
    }),
    one("jwks_file", |cf, c, v| {
        c.keys = Some(load_key_file(cf, v[0])?);
        Ok(())
    }),
    one("metadata_url", |_, c, v| {
        c.metadata_url = Some(parse_url("metadata_url", v[0])?);
        Ok(())
    }),
    one("refresh", |_, c, v| {
        c.refresh = Some(bounded("refresh", v[0], true, Duration::from_secs(1), None)?);
        Ok(())
    }),
    one("refresh_on_unknown_kid", |_, c, v| {
        c.refresh_on_unknown_kid =
            Some(bounded("refresh_on_unknown_kid", v[0], true, Duration::from_secs(1), None)?);
        Ok(())
    }),
    one("fetch_timeout", |_, c, v| {
        c.fetch_timeout = Some(bounded(
            "fetch_timeout",
            v[0],
            false,
            Duration::from_millis(100),
            Some(Duration::from_secs(60)),
        )?);
        Ok(())
    }),
    one("ca_file", |cf, c, v| {
        c.ca_file = Some(cf.full_path(v[0])?.into());
        Ok(())
    }),
    one("token_cache", |_, c, v| {
        c.token_cache = Some(parse_token_cache(v[0])?);
        Ok(())
    }),
    one("leeway", |_, c, v| {
        c.leeway = Some(time_value("leeway", v[0], true)?.as_secs());
        Ok(())
    }),
    many("algorithms", |_, c, v| {
        c.algorithms = Some(v.iter().map(|a| parse_algorithm(a)).collect::<Result<_, _>>()?);
        Ok(())
    }),
    one("require_permission", |_, c, v| {
        c.require_permission = Some(parse_flag("require_permission", v[0])?);
        Ok(())
    }),
    one("client_secret_file", |cf, c, v| {
        let text = read_secret_file(cf, "client_secret_file", v[0])?;
        let text =
            String::from_utf8(text).map_err(|_| invalid("client_secret_file", v[0], "not UTF-8 text"))?;
        let secret = text.strip_suffix('\n').unwrap_or(&text);
        if secret.is_empty() {
            return Err(invalid("client_secret_file", v[0], "the file is empty"));
        }
        set_credential(&mut c.sign_in, Credential::Secret(secret.to_owned()))
    }),
    two("client_certificate", |cf, c, v| {
        let certificate = std::fs::read(cf.full_path(v[0])?)
            .map_err(|e| ConfError::Rule(format!("\"client_certificate\" \"{}\": {e}", v[0])))?;
        let key = read_secret_file(cf, "client_certificate", v[1])?;
        let pair = ClientCertificate::from_pem(&certificate, &key)
            .map_err(|e| ConfError::Rule(format!("\"client_certificate\" \"{}\" \"{}\": {e}", v[0], v[1])))?;
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        match pair.not_after {
            Some(end) if end <= now => cf.warn(&format_args!("\"client_certificate\" \"{}\" has expired", v[0])),
            Some(end) if end <= now + 30 * 86_400 => cf.warn(&format_args!(
                "\"client_certificate\" \"{}\" expires in {} days: upload its successor to the app registration",
                v[0],
                (end - now) / 86_400
            )),
            _ => {}
        }
        set_credential(&mut c.sign_in, Credential::Certificate(Box::new(pair)))
    }),
    one("redirect_uri", |_, c, v| {
        c.sign_in.redirect_uri = Some(uri_or_path("redirect_uri", v[0])?);
        Ok(())
    }),
    many("scopes", |_, c, v| {
        if !v.contains(&"openid") {
            return Err(invalid("scopes", v[0], "the scopes must include openid"));
        }
        c.sign_in.scopes = Some(v.join(" "));
        Ok(())
    }),
    one("session_key_file", |cf, c, v| {
        let text = read_secret_file(cf, "session_key_file", v[0])?;
        let keys = SealKeys::parse(&String::from_utf8_lossy(&text))
            .map_err(|e| ConfError::Rule(format!("\"session_key_file\" \"{}\": {e}", v[0])))?;
        c.sign_in.keys = Some(keys);
        Ok(())
    }),
    one("session_cookie", |_, c, v| {
        let valid =
            !v[0].is_empty() && v[0].bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !valid {
            return Err(invalid(
                "session_cookie",
                v[0],
                "a cookie name of letters, digits, '-', '_' and '.'",
            ));
        }
        c.sign_in.cookie = Some(v[0].to_owned());
        Ok(())
    }),
    one("session_lifetime", |cf, c, v| {
        let lifetime = bounded("session_lifetime", v[0], true, Duration::from_secs(1), None)?.as_secs();
        if lifetime > 86_400 {
            cf.warn(&format_args!(
                "\"session_lifetime\" \"{}\" is over 24 hours: a copied session cookie stays usable that long, and \
                 what changes in Entra (a disabled account, a removed group, a sign-in frequency policy) reaches the \
                 session only when it revalidates; a working day is the usual upper bound",
                v[0]
            ));
        }
        c.sign_in.lifetime = Some(lifetime);
        Ok(())
    }),
    one("session_idle_timeout", |_, c, v| {
        c.sign_in.idle_timeout =
            Some(bounded("session_idle_timeout", v[0], true, Duration::from_secs(1), None)?.as_secs());
        Ok(())
    }),
    one("session_revalidate", |_, c, v| {
        // 0 would answer every navigation with another `prompt=none` round trip, forever.
        c.sign_in.revalidate =
            Some(bounded("session_revalidate", v[0], true, Duration::from_secs(1), None)?.as_secs());
        Ok(())
    }),
    many("session_claims", |_, c, v| {
        c.sign_in.claims = v.iter().map(|s| s.to_string()).collect();
        Ok(())
    }),
    one("post_logout_redirect", |_, c, v| {
        c.sign_in.post_logout_redirect = Some(parse_url("post_logout_redirect", v[0])?);
        Ok(())
    }),
    one("session_record", |_, c, v| {
        let sessions = v[0].parse::<u64>().ok().filter(|n| (16..=4_000_000).contains(n));
        c.sign_in.session_record = Some(
            sessions
                .ok_or_else(|| invalid("session_record", v[0], "a number of sessions from 16 to 4000000"))?,
        );
        Ok(())
    }),
    one("callbacks_per_minute", |_, c, v| {
        let limit = match v[0] {
            "off" => None,
            n => Some(n.parse::<u64>().ok().filter(|n| (1..=1_000_000).contains(n)).ok_or_else(|| {
                invalid("callbacks_per_minute", v[0], "a number of callbacks from 1 to 1000000, or off")
            })?),
        };
        c.sign_in.callbacks_per_minute = Some(limit);
        Ok(())
    }),
    one("groups_from_graph", |_, c, v| {
        c.graph.enabled = Some(parse_flag("groups_from_graph", v[0])?);
        Ok(())
    }),
    one("graph_url", |_, c, v| {
        c.graph.graph_url = Some(parse_url("graph_url", v[0])?);
        Ok(())
    }),
    one("groups_cache", |_, c, v| {
        let max = Some(Duration::from_secs(24 * 3600));
        c.graph.cache = Some(bounded("groups_cache", v[0], true, Duration::from_secs(1), max)?.as_secs());
        Ok(())
    }),
    one("groups_cache_entries", |_, c, v| {
        let entries = v[0].parse::<u64>().ok().filter(|n| (64..=1_000_000).contains(n));
        c.graph.entries = Some(entries.ok_or_else(|| {
            invalid("groups_cache_entries", v[0], "a number of answers from 64 to 1000000")
        })?);
        Ok(())
    }),
    one("frontchannel_logout_uri", |_, c, v| {
        if !v[0].starts_with('/') {
            return Err(invalid("frontchannel_logout_uri", v[0], "a path"));
        }
        without_query("frontchannel_logout_uri", v[0])?;
        c.sign_in.frontchannel_logout_uri = Some(v[0].to_owned());
        Ok(())
    }),
];

/// A time within bounds: `refresh_on_unknown_kid 0` would let any client drive back-to-back
/// fetches with made-up `kid`s.
fn bounded(
    directive: &'static str,
    value: &str,
    whole_seconds: bool,
    min: Duration,
    max: Option<Duration>,
) -> Result<Duration, ConfError> {
    let time = time_value(directive, value, whole_seconds)?;
    if time < min || max.is_some_and(|max| time > max) {
        let range = match max {
            Some(max) => format!("between {min:?} and {max:?}"),
            None => format!("at least {min:?}"),
        };
        return Err(ConfError::Rule(format!("\"{directive}\" value \"{value}\" must be {range}")));
    }
    Ok(time)
}

fn invalid(directive: &'static str, value: &str, expected: &'static str) -> ConfError {
    ConfError::Invalid { directive, value: value.to_owned(), expected }
}

fn set_credential(sign_in: &mut SignInConfig, credential: Credential) -> Result<(), ConfError> {
    if sign_in.credential.is_some() {
        return Err(ConfError::Rule(
            "\"client_secret_file\" and \"client_certificate\" exclude each other: give one client credential".into(),
        ));
    }
    sign_in.credential = Some(credential);
    Ok(())
}

/// A path, or an absolute https URL (http on loopback) that may name `$host`; no query string.
fn uri_or_path(directive: &'static str, value: &str) -> Result<String, ConfError> {
    without_query(directive, value)?;
    if value.starts_with('/') && !value.starts_with("//") {
        return Ok(value.to_owned());
    }
    // `$host` is whatever the client sends: never a loopback address for the plain-http rule.
    parse_url(directive, &value.replace("$host", "host.invalid")).map_err(|_| {
        ConfError::Provider(entra_core::ConfigError::BadUrl { directive, value: value.to_owned() })
    })?;
    Ok(value.to_owned())
}

/// A path the module answers on is compared with the request's path alone: a query string or
/// fragment in it would never match.
fn without_query(directive: &'static str, value: &str) -> Result<(), ConfError> {
    if value.contains(['?', '#']) {
        return Err(ConfError::Rule(format!(
            "\"{directive}\" value \"{value}\" must have no query string or fragment: the callback is matched on its path"
        )));
    }
    Ok(())
}

impl Block {
    /// One line of the block, looked up in [`PROVIDER_COMMANDS`].
    fn line(&mut self, cf: &Conf, a: &[&str]) -> Result<(), ConfError> {
        let (name, values) = (a[0], &a[1..]);
        let command = PROVIDER_COMMANDS
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| ConfError::UnknownInProvider(name.to_owned()))?;
        let arity_ok = match command.args {
            NGX_CONF_TAKE1 => values.len() == 1,
            NGX_CONF_TAKE2 => values.len() == 2,
            _ => !values.is_empty(),
        };
        if !arity_ok {
            return Err(ConfError::Arguments(name.to_owned()));
        }
        match self.seen.iter().any(|(seen, _)| *seen == command.name) {
            true if !command.repeatable => return Err(ConfError::Duplicate(name.to_owned())),
            true => {}
            false => self.seen.push((command.name, cf.origin().line)),
        }
        (command.set)(cf, &mut self.config, values)
    }
}

/// Reads a JWKS file; keys it cannot use are skipped with a warning.
fn load_key_file(cf: &Conf, path: &str) -> Result<KeySet, ConfError> {
    let full = cf.full_path(path)?;
    let bad = |reason: String| ConfigError::BadKeyFile { path: full.clone(), reason };
    let text = std::fs::read(&full).map_err(|e| bad(e.to_string()))?;
    let (keys, skipped) = KeySet::from_jwks(&text).map_err(|e| bad(e.to_string()))?;
    for why in skipped {
        cf.warn(&format_args!("\"jwks_file\" \"{full}\": {why} (skipped)"));
    }
    Ok(keys)
}

/// ngx_conf_parse's handler for each line inside the block.
extern "C" fn block_line(cf: *mut ngx_conf_t, _dummy: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    // SAFETY: ngx_conf_parse calls the handler with the cf and handler_conf set in set_provider.
    let (conf_ctx, block) = unsafe { (Conf::new(cf), &mut *(conf as *mut Block)) };
    // SAFETY: as above.
    guard(unsafe { (*cf).log }, "entra_provider", NGX_CONF_ERROR, || {
        answer(&conf_ctx, conf_ctx.args().and_then(|a| block.line(&conf_ctx, &a)))
    })
}

/// `entra_provider name { ... }`
pub extern "C" fn set_provider(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx calls directive handlers with a valid cf and this module's main conf.
    let (conf_ctx, main) = unsafe { (Conf::new(cf), &mut *(conf as *mut MainConf)) };
    // SAFETY: as above.
    guard(unsafe { (*cf).log }, "entra_provider", NGX_CONF_ERROR, || {
        let name = match conf_ctx.args() {
            Ok(a) => a[1].to_owned(),
            Err(e) => return conf_ctx.refuse(&e),
        };
        // The name goes into `realm="..."`, the cookies' associated data and Prometheus labels.
        let plain = name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !plain || name.is_empty() || name.len() > 64 {
            return conf_ctx.refuse(&format_args!(
                "entra_provider name \"{name}\" must be 1 to 64 letters, digits, '_', '.' or '-'"
            ));
        }
        if main.index_of(&name).is_some() {
            return conf_ctx.refuse(&format_args!("duplicate entra_provider \"{name}\""));
        }
        let opening_line = conf_ctx.origin().line;
        let mut block = Block { config: ProviderConfig::default(), seen: Vec::new() };
        // Parse the block's lines with our own handler, the way nginx parses `types { }`.
        // SAFETY: `cf` is valid; its fields are put back once the block is parsed.
        let rv = unsafe {
            let saved = *cf;
            (*cf).handler = Some(block_line);
            (*cf).handler_conf = addr_of_mut!(block) as *mut c_void;
            let rv = ngx_conf_parse(cf, ptr::null_mut());
            *cf = saved;
            rv
        };
        if rv != NGX_CONF_OK {
            return rv;
        }
        let provider = match block.config.build(&name) {
            Ok(provider) => provider,
            // Point at the directive's line, or the block's first line, rather than at its
            // closing brace.
            Err(e) => {
                let line = e.directive().and_then(|d| block.seen.iter().find(|(seen, _)| *seen == d));
                let line = line.map_or(opening_line, |(_, line)| *line);
                return conf_ctx.refuse_at(line, &format_args!("entra_provider \"{name}\": {e}"));
            }
        };
        match &provider.source {
            KeySource::Discovery { discovery, .. } if discovery.metadata_url.starts_with("http://") => {
                conf_ctx.warn(&format_args!(
                    "entra_provider \"{name}\": metadata \"{}\" is plain http: for tests and development only",
                    discovery.metadata_url
                ));
            }
            KeySource::File if !provider.key_state().keys.iter().any(|k| provider.uses_family(k.family)) => {
                conf_ctx.warn(&format_args!(
                    "entra_provider \"{name}\": no key in the key set fits \"algorithms\""
                ));
            }
            _ => {}
        }
        main.providers.push(Arc::new(provider));
        NGX_CONF_OK
    })
}
