//! `entra_shared_store`: the fleet's Redis (or Valkey), as configured, and its blocking client
//! for pool threads. Nothing here runs on an event loop: requests read only the shared zone.
//!
//! The URL is read as Redis clients read it (`redis://[user@]host[:port][/db]`, `rediss://` for
//! TLS), with two refusals of our own: a password written in the URL (it would sit in every
//! copy of the configuration; `password_file=` reads it from a file), and a query or fragment.

use std::sync::Mutex;
use std::time::Duration;

use redis::{Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo};
use thiserror::Error;

/// Redis's own port, when the URL names none.
pub const DEFAULT_PORT: u16 = 6379;
/// The prefix of every key the module writes, when `prefix=` says none.
pub const DEFAULT_PREFIX: &str = "entra";

/// Why `entra_shared_store` is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StoreConfigError {
    #[error("\"{0}\" is not a URL of the form redis://[user@]host[:port][/db] (or rediss://)")]
    Malformed(String),
    #[error("the URL holds a password: give it with password_file=path")]
    PasswordInUrl,
    #[error("the URL's database \"{0}\" is not a number")]
    Database(String),
    #[error("the URL has a query string or fragment")]
    Query,
    #[error("prefix \"{0}\" must be 1 to 64 letters, digits, '_', '.', ':' or '-'")]
    Prefix(String),
    #[error("ca_file= is for TLS: use rediss:// or add \"tls\"")]
    CaWithoutTls,
    #[error("the password file holds more than one line")]
    PasswordLines,
    #[error("the CA file holds no PEM certificate")]
    NoCertificate,
}

/// The store as configured.
#[derive(Clone)]
pub struct StoreConfig {
    host: String,
    port: u16,
    db: i64,
    username: Option<String>,
    password: Option<String>,
    tls: bool,
    /// PEM certificates to verify the server with, instead of the system's.
    ca: Option<Vec<u8>>,
    pub prefix: String,
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        write!(f, "StoreConfig({})", self.name())
    }
}

impl StoreConfig {
    /// Reads the URL of `entra_shared_store`.
    pub fn from_url(url: &str) -> Result<StoreConfig, StoreConfigError> {
        let malformed = || StoreConfigError::Malformed(url.to_owned());
        let parsed = url::Url::parse(url).map_err(|_| malformed())?;
        let tls = match parsed.scheme() {
            "redis" => false,
            "rediss" => true,
            _ => return Err(malformed()),
        };
        if parsed.password().is_some() {
            return Err(StoreConfigError::PasswordInUrl);
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(StoreConfigError::Query);
        }
        let host = match parsed.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => d.to_owned(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => a.to_string(),
            _ => return Err(malformed()),
        };
        let path = parsed.path().trim_start_matches('/');
        let db = match path {
            "" => 0,
            p => p.parse::<u16>().map(i64::from).map_err(|_| StoreConfigError::Database(p.to_owned()))?,
        };
        let username = Some(parsed.username())
            .filter(|u| !u.is_empty())
            .map(|u| percent_encoding::percent_decode_str(u).decode_utf8_lossy().into_owned());
        Ok(StoreConfig {
            host,
            port: parsed.port().unwrap_or(DEFAULT_PORT),
            db,
            username,
            password: None,
            tls,
            ca: None,
            prefix: DEFAULT_PREFIX.to_owned(),
        })
    }

    /// `password_file=`'s content: one line (a final newline is not part of it).
    pub fn set_password(&mut self, text: &str) -> Result<(), StoreConfigError> {
        let text = text.strip_suffix('\n').unwrap_or(text);
        let text = text.strip_suffix('\r').unwrap_or(text);
        if text.contains(['\n', '\r']) {
            return Err(StoreConfigError::PasswordLines);
        }
        self.password = Some(text.to_owned());
        Ok(())
    }

    /// `tls`: the connection is TLS whatever the scheme says.
    pub fn set_tls(&mut self) {
        self.tls = true;
    }

    /// `ca_file=`'s content (checked once every parameter is read: see [`StoreConfig::check`]).
    pub fn set_ca(&mut self, pem: Vec<u8>) -> Result<(), StoreConfigError> {
        if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
            return Err(StoreConfigError::NoCertificate);
        }
        self.ca = Some(pem);
        Ok(())
    }

    /// `prefix=`.
    pub fn set_prefix(&mut self, prefix: &str) -> Result<(), StoreConfigError> {
        let fits = (1..=64).contains(&prefix.len())
            && prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b));
        if !fits {
            return Err(StoreConfigError::Prefix(prefix.to_owned()));
        }
        self.prefix = prefix.to_owned();
        Ok(())
    }

    /// The parameters together.
    pub fn check(&self) -> Result<(), StoreConfigError> {
        if self.ca.is_some() && !self.tls {
            return Err(StoreConfigError::CaWithoutTls);
        }
        Ok(())
    }

    /// How the log and `entra_status` name the store: its URL without any secret.
    pub fn name(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let user = self.username.as_deref().map(|u| format!("{u}@")).unwrap_or_default();
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        format!("{scheme}://{user}{host}:{}/{}", self.port, self.db)
    }

    /// What tells one store from another across a reload (the password and CA included, so
    /// that a changed credential starts afresh).
    pub fn identity(&self) -> [u8; 32] {
        let mut text = format!("{}\n{}\n", self.name(), self.prefix);
        text.push_str(self.password.as_deref().unwrap_or(""));
        let mut bytes = text.into_bytes();
        bytes.extend_from_slice(self.ca.as_deref().unwrap_or(b""));
        let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
        digest.as_ref().try_into().expect("32 bytes")
    }

    fn client(&self) -> Result<Client, StoreError> {
        let mut redis = RedisConnectionInfo::default().set_db(self.db).set_skip_set_lib_name();
        if let Some(user) = &self.username {
            redis = redis.set_username(user);
        }
        if let Some(password) = &self.password {
            redis = redis.set_password(password);
        }
        let addr = match self.tls {
            false => ConnectionAddr::Tcp(self.host.clone(), self.port),
            true => ConnectionAddr::TcpTls {
                host: self.host.clone(),
                port: self.port,
                insecure: false,
                tls_params: None,
            },
        };
        let info: ConnectionInfo =
            addr.into_connection_info().map_err(StoreError::from)?.set_redis_settings(redis);
        match (&self.ca, self.tls) {
            (Some(ca), true) => {
                let certificates = redis::TlsCertificates { client_tls: None, root_cert: Some(ca.clone()) };
                Client::build_with_tls(info, certificates).map_err(StoreError::from)
            }
            _ => Client::open(info).map_err(StoreError::from),
        }
    }
}

/// Why the store did not answer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StoreError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("refused the credentials: {0}")]
    Auth(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("no answer in time")]
    Timeout,
    #[error("answered what is not Redis's protocol: {0}")]
    Protocol(String),
    #[error("refused a command: {0}")]
    Refused(String),
}

impl From<redis::RedisError> for StoreError {
    fn from(e: redis::RedisError) -> StoreError {
        use redis::ErrorKind;
        // redis-rs's messages name the command and the server's words, never a password; they
        // may hold line breaks and the server's bytes, kept out of the log's lines.
        let text: String = e
            .to_string()
            .split(|c: char| c.is_control())
            .filter(|part| !part.trim().is_empty())
            .map(str::trim)
            .collect::<Vec<_>>()
            .join(" ");
        if e.is_timeout() {
            return StoreError::Timeout;
        }
        let lower = text.to_ascii_lowercase();
        if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake") {
            return StoreError::Tls(text);
        }
        match e.kind() {
            ErrorKind::AuthenticationFailed => StoreError::Auth(text),
            ErrorKind::Parse | ErrorKind::UnexpectedReturnType => StoreError::Protocol(text),
            _ if lower.contains("noauth") || lower.contains("wrongpass") || lower.contains("auth") => {
                StoreError::Auth(text)
            }
            _ if e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped() => {
                StoreError::Connect(text)
            }
            _ => StoreError::Refused(text),
        }
    }
}

/// The store's client in one process: one connection, kept between jobs (a job takes it, and
/// gives it back only when it is still good).
pub struct Store {
    pub config: StoreConfig,
    client: Result<Client, StoreError>,
    connection: Mutex<Option<redis::Connection>>,
    /// Connect and command timeouts.
    pub timeout: Duration,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.config.name())
    }
}

impl Store {
    pub fn new(config: StoreConfig, timeout: Duration) -> Store {
        let client = config.client();
        Store { config, client, connection: Mutex::new(None), timeout }
    }

    /// Runs `work` with a connection (blocking: pool threads only). A connection that failed
    /// is dropped; the next call connects again.
    pub fn with<R>(
        &self,
        work: impl FnOnce(&mut redis::Connection) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let kept = self.connection.lock().map(|mut c| c.take()).unwrap_or(None);
        let mut connection = match kept {
            Some(c) => c,
            None => self.connect()?,
        };
        let result = work(&mut connection);
        if result.is_ok() {
            if let Ok(mut slot) = self.connection.lock() {
                *slot = Some(connection);
            }
        }
        result
    }

    fn connect(&self) -> Result<redis::Connection, StoreError> {
        let client = self.client.as_ref().map_err(Clone::clone)?;
        let connection = client.get_connection_with_timeout(self.timeout)?;
        connection.set_read_timeout(Some(self.timeout))?;
        connection.set_write_timeout(Some(self.timeout))?;
        Ok(connection)
    }

    /// The server's `run_id`: a Redis restarted (empty) has a new one.
    pub fn run_id(connection: &mut redis::Connection) -> Result<String, StoreError> {
        let info: String = redis::cmd("INFO").arg("server").query(connection)?;
        info.lines()
            .find_map(|l| l.strip_prefix("run_id:"))
            .map(|id| id.trim().to_owned())
            .filter(|id| !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| StoreError::Protocol("INFO server has no run_id".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_read_as_redis_reads_them() {
        let c = StoreConfig::from_url("redis://127.0.0.1:6390/2").unwrap();
        assert_eq!(c.name(), "redis://127.0.0.1:6390/2");
        let c = StoreConfig::from_url("rediss://fleet@cache.example").unwrap();
        assert_eq!(c.name(), "rediss://fleet@cache.example:6379/0");
        let c = StoreConfig::from_url("redis://[::1]:7000").unwrap();
        assert_eq!(c.name(), "redis://[::1]:7000/0");
    }

    #[test]
    fn what_nginx_t_refuses() {
        let refused = |url: &str| StoreConfig::from_url(url).unwrap_err();
        assert_eq!(refused("redis://u:secret@host:6379"), StoreConfigError::PasswordInUrl);
        assert_eq!(refused("redis://:secret@host"), StoreConfigError::PasswordInUrl);
        assert!(matches!(refused("http://host:6379"), StoreConfigError::Malformed(_)));
        assert!(matches!(refused("redis://"), StoreConfigError::Malformed(_)));
        assert!(matches!(refused("host:6379"), StoreConfigError::Malformed(_)));
        assert!(matches!(refused("redis://host:99999"), StoreConfigError::Malformed(_)));
        assert_eq!(refused("redis://host/zero"), StoreConfigError::Database("zero".into()));
        assert_eq!(refused("redis://host/1?x=1"), StoreConfigError::Query);
        let mut c = StoreConfig::from_url("redis://host").unwrap();
        assert!(c.set_prefix("a b").is_err());
        assert!(c.set_prefix(&"p".repeat(65)).is_err());
        c.set_prefix("app:prod").unwrap();
        assert_eq!(c.set_ca(b"not pem".to_vec()), Err(StoreConfigError::NoCertificate));
        c.set_ca(b"-----BEGIN CERTIFICATE-----\nMII=\n-----END CERTIFICATE-----\n".to_vec()).unwrap();
        assert_eq!(c.check(), Err(StoreConfigError::CaWithoutTls));
        c.set_tls();
        assert_eq!(c.check(), Ok(()));
        assert_eq!(c.set_password("one\ntwo\n"), Err(StoreConfigError::PasswordLines));
    }

    #[test]
    fn the_password_is_never_shown_but_tells_stores_apart() {
        let mut a = StoreConfig::from_url("redis://host").unwrap();
        let b = a.clone();
        a.set_password("hunter2\n").unwrap();
        assert!(!format!("{a:?} {}", a.name()).contains("hunter2"));
        assert_ne!(a.identity(), b.identity());
    }
}
