//! HTTPS for the TCP listeners: loads `--tls-cert` / `--tls-key` (PEM) into a rustls server
//! configuration (ring provider, TLS 1.2 and 1.3, HTTP/1.1 only).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::error::ServeError;

/// A TLS acceptor for the certificate chain in `cert` and the private key in `key`.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, ServeError> {
    let bad = |path: &Path, what: &str, e: &dyn std::fmt::Display| {
        ServeError::Config(format!("{} ({what}): {e}", path.display()))
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(cert, "--tls-cert", &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(cert, "--tls-cert", &e))?;
    if certs.is_empty() {
        return Err(bad(cert, "--tls-cert", &"no PEM certificate in it"));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, "--tls-key", &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Config(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServeError::Config(format!("--tls-cert / --tls-key: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
