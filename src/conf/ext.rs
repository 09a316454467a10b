//! Helpers for directive handlers: the arguments of the line being parsed, the typed errors of
//! the configuration and the one way to refuse or warn about a line (nginx adds the file and
//! line), times, sizes and paths.

use core::ffi::c_char;
use core::ptr;
use std::time::Duration;

use entra_core::ConfigError;
use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::ffi::{
    ngx_conf_full_name, ngx_conf_t, ngx_int_t, ngx_parse_size, ngx_parse_time, ngx_str_t, NGX_ERROR,
    NGX_LOG_EMERG, NGX_LOG_WARN,
};
use ngx::ngx_conf_log_error;
use thiserror::Error;

/// Why a configuration line is refused.
#[derive(Debug, Error)]
pub enum ConfError {
    #[error("\"{0}\" directive is duplicate")]
    Duplicate(String),
    #[error("invalid number of arguments in \"{0}\" directive")]
    Arguments(String),
    #[error("unknown directive \"{0}\" in entra_provider")]
    UnknownInProvider(String),
    #[error("\"{0}\" has an argument that is not UTF-8")]
    NotUtf8(String),
    #[error("\"{directive}\" value \"{value}\" is not a time")]
    NotATime { directive: String, value: String },
    #[error("invalid \"{directive}\" \"{value}\": {expected}")]
    Invalid { directive: &'static str, value: String, expected: &'static str },
    #[error("\"{0}\": cannot resolve the path")]
    Path(String),
    #[error("{0}")]
    Provider(#[from] ConfigError),
    #[error("{0}")]
    Rule(String),
    #[error("out of memory")]
    NoMemory,
}

/// Where a directive was written, for errors found after its line was read (merge).
#[derive(Clone, Debug)]
pub struct Origin {
    pub file: String,
    pub line: usize,
}

impl core::fmt::Display for Origin {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// The configuration being parsed, as directive handlers see it.
pub struct Conf(*mut ngx_conf_t);

impl Conf {
    /// # Safety
    /// `cf` is a configuration being parsed, valid for the life of this value.
    pub unsafe fn new(cf: *mut ngx_conf_t) -> Conf {
        Conf(cf)
    }

    pub fn as_ptr(&self) -> *mut ngx_conf_t {
        self.0
    }

    /// The words of the line being parsed (the directive first), as UTF-8.
    pub fn args(&self) -> Result<Vec<&str>, ConfError> {
        // SAFETY: while a line is parsed, `cf->args` holds its words.
        let raw: &[ngx_str_t] = unsafe { (*(*self.0).args).as_slice() };
        raw.iter().map(|a| a.to_str().map_err(|_| ConfError::NotUtf8(raw[0].to_string()))).collect()
    }

    pub fn origin(&self) -> Origin {
        // SAFETY: a configuration being parsed has a current file.
        let file = unsafe { &*(*self.0).conf_file };
        Origin { file: file.file.name.to_string(), line: file.line }
    }

    /// Logs a refusal at `emerg` (nginx appends the file and line) and refuses the line.
    pub fn refuse(&self, error: &dyn core::fmt::Display) -> *mut c_char {
        ngx_conf_log_error!(NGX_LOG_EMERG, self.0, "{}", error);
        NGX_CONF_ERROR
    }

    /// Logs a refusal that points at `line` of the current file rather than the current line.
    pub fn refuse_at(&self, line: usize, error: &dyn core::fmt::Display) -> *mut c_char {
        // SAFETY: as in `origin`; the line is put back at once.
        unsafe {
            let file = (*self.0).conf_file;
            let current = (*file).line;
            (*file).line = line;
            let rv = self.refuse(error);
            (*file).line = current;
            rv
        }
    }

    pub fn warn(&self, message: &dyn core::fmt::Display) {
        ngx_conf_log_error!(NGX_LOG_WARN, self.0, "{}", message);
    }

    /// Logs a warning about a line read earlier (merge), whose place the message names itself.
    pub fn warn_about(&self, message: &dyn core::fmt::Display) {
        // SAFETY: a configuration being parsed has a log.
        ngx::ngx_log_error!(NGX_LOG_WARN, unsafe { (*self.0).log }, "{}", message);
    }

    /// A path relative to the configuration prefix (as `ssl_certificate` takes it).
    pub fn full_path(&self, path: &str) -> Result<String, ConfError> {
        let mut name = ngx_str_t { len: path.len(), data: path.as_ptr() as *mut u8 };
        // SAFETY: the cycle of a configuration being parsed is valid; nginx allocates the result
        // from the cycle pool and leaves `path` unchanged.
        if unsafe { ngx_conf_full_name((*self.0).cycle, &mut name, 1) } != 0 {
            return Err(ConfError::Path(path.to_owned()));
        }
        Ok(name.to_string())
    }

    /// A copy of `s` in the configuration's pool, for nginx structures that outlive the line.
    pub fn pool_str(&self, s: &str) -> Result<ngx_str_t, ConfError> {
        // SAFETY: the pool of a configuration being parsed is valid.
        let data = unsafe { ngx::ffi::ngx_pnalloc((*self.0).pool, s.len()) } as *mut u8;
        if data.is_null() {
            return Err(ConfError::NoMemory);
        }
        // SAFETY: `data` has room for `s.len()` bytes.
        unsafe { ptr::copy_nonoverlapping(s.as_ptr(), data, s.len()) };
        Ok(ngx_str_t { len: s.len(), data })
    }
}

/// The result of a handler, as nginx wants it.
pub fn answer(conf: &Conf, result: Result<(), ConfError>) -> *mut c_char {
    match result {
        Ok(()) => NGX_CONF_OK,
        Err(e) => conf.refuse(&e),
    }
}

/// A time argument (`60s`, `5m`, `1h`; milliseconds allowed unless `whole_seconds`).
pub fn time_value(directive: &str, value: &str, whole_seconds: bool) -> Result<Duration, ConfError> {
    let mut text = ngx_str_t { len: value.len(), data: value.as_ptr() as *mut u8 };
    // SAFETY: ngx_parse_time only reads the string.
    let parsed = unsafe { ngx_parse_time(&mut text, if whole_seconds { 1 } else { 0 }) };
    if parsed == NGX_ERROR as ngx_int_t {
        return Err(ConfError::NotATime { directive: directive.to_owned(), value: value.to_owned() });
    }
    let parsed = parsed as u64;
    Ok(if whole_seconds { Duration::from_secs(parsed) } else { Duration::from_millis(parsed) })
}

/// A size argument (`64k`, `1m`), or `None`.
pub fn size_value(value: &str) -> Option<usize> {
    let mut text = ngx_str_t { len: value.len(), data: value.as_ptr() as *mut u8 };
    // SAFETY: ngx_parse_size only reads the string.
    let bytes = unsafe { ngx_parse_size(&mut text) };
    usize::try_from(bytes).ok()
}

/// Reads a file of secrets at configuration time; warns when other users may read it.
pub fn read_secret_file(cf: &Conf, directive: &'static str, path: &str) -> Result<Vec<u8>, ConfError> {
    use std::os::unix::fs::PermissionsExt;
    let full = cf.full_path(path)?;
    let unreadable = |e: std::io::Error| ConfError::Rule(format!("\"{directive}\" \"{full}\": {e}"));
    let meta = std::fs::metadata(&full).map_err(unreadable)?;
    let text = std::fs::read(&full).map_err(unreadable)?;
    if text.iter().all(u8::is_ascii_whitespace) {
        return Err(ConfError::Rule(format!("\"{directive}\" \"{full}\": the file is empty")));
    }
    if meta.permissions().mode() & 0o044 != 0 {
        cf.warn(&format_args!("\"{directive}\" \"{full}\" is readable by other users (chmod 600 it)"));
    }
    Ok(text)
}
