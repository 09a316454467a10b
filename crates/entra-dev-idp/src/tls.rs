//! A test certificate authority and a loopback server certificate, kept in the state directory,
//! so that the module's HTTPS fetches can be tested with `ca_file` against a CA it does not
//! otherwise trust.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

use crate::Error;

pub const CA_FILE: &str = "ca.pem";
const CERT_FILE: &str = "tls-cert.pem";
const KEY_FILE: &str = "tls-key.pem";

/// The CA's certificate (PEM), for `ca_file`.
pub fn ca_path(dir: &Path) -> PathBuf {
    dir.join(CA_FILE)
}

fn tls_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Crypto(format!("{what}: {e}"))
}

/// Creates the CA and a certificate for localhost, 127.0.0.1 and ::1.
pub fn create(dir: &Path) -> Result<(), Error> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(|e| tls_error("CA", e))?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "entra-dev-idp test CA");
    let ca_key = KeyPair::generate().map_err(|e| tls_error("CA key", e))?;
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).map_err(|e| tls_error("CA", e))?;

    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    let params = CertificateParams::new(names).map_err(|e| tls_error("server certificate", e))?;
    let key = KeyPair::generate().map_err(|e| tls_error("server key", e))?;
    let cert = params.signed_by(&key, &ca).map_err(|e| tls_error("server certificate", e))?;

    for (file, text) in [(CA_FILE, ca.pem()), (CERT_FILE, cert.pem()), (KEY_FILE, key.serialize_pem())] {
        let path = dir.join(file);
        fs::write(&path, text).map_err(|e| Error::Io(path.display().to_string(), e))?;
    }
    Ok(())
}

/// The server side of TLS, from the state directory (created there first if missing).
pub fn server_config(dir: &Path) -> Result<Arc<ServerConfig>, Error> {
    if !dir.join(KEY_FILE).exists() {
        create(dir)?;
    }
    let read = |file: &str| {
        let path = dir.join(file);
        fs::read(&path).map_err(|e| Error::Io(path.display().to_string(), e))
    };
    let certs = CertificateDer::pem_slice_iter(&read(CERT_FILE)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error("certificate", e))?;
    let key = PrivateKeyDer::from_pem_slice(&read(KEY_FILE)?).map_err(|e| tls_error("key", e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("TLS", e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| tls_error("TLS", e))?;
    Ok(Arc::new(config))
}
