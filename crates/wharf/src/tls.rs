//! TLS for the listeners (HTTPS on the gateway, gRPC over TLS on the verifier, optionally
//! requiring client certificates) and for the gateway's channel to the verifier.

use std::path::Path;
use std::sync::Arc;

use axum_server::tls_rustls::RustlsConfig;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use crate::ConfigError;

/// A TLS file that could not be used, with the flag that named it.
fn unusable(flag: &str, path: &Path, error: impl std::fmt::Display) -> ConfigError {
    ConfigError(format!("{flag} {}: {error}", path.display()))
}

fn read(flag: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|error| unusable(flag, path, error))
}

fn certificates(flag: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let pem = read(flag, path)?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| unusable(flag, path, error))?;
    if certificates.is_empty() {
        return Err(unusable(flag, path, "no PEM certificate in the file"));
    }
    Ok(certificates)
}

fn private_key(flag: &str, path: &Path) -> Result<PrivateKeyDer<'static>, ConfigError> {
    // The key's bytes never reach an error message: only the path and what is wrong.
    PrivateKeyDer::from_pem_slice(&read(flag, path)?).map_err(|error| unusable(flag, path, error))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The server side: `cert` and `key` (PEM) served with ALPN h2 and http/1.1; when
/// `client_ca` is given, only clients presenting a certificate it signed get through.
pub(crate) fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<RustlsConfig, ConfigError> {
    let chain = certificates("--tls-cert", cert)?;
    let key = private_key("--tls-key", key)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|error| ConfigError(format!("TLS: {error}")))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for certificate in certificates("--tls-client-ca", path)? {
                roots
                    .add(certificate)
                    .map_err(|error| unusable("--tls-client-ca", path, error))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|error| unusable("--tls-client-ca", path, error))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|error| unusable("--tls-key", cert, error))?;
    // gRPC needs HTTP/2; browsers and Python clients may speak either.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(RustlsConfig::from_config(Arc::new(config)))
}

/// The gateway's TLS towards an `https://` verifier: the system's roots, or only `ca` when
/// given; a client certificate when the verifier requires one.
pub(crate) fn verifier_client_config(
    ca: Option<&Path>,
    client_identity: Option<(&Path, &Path)>,
) -> Result<tonic::transport::ClientTlsConfig, ConfigError> {
    let mut config = tonic::transport::ClientTlsConfig::new();
    config = match ca {
        Some(path) => {
            // Checked here so that a bad file fails at startup, not at the first request.
            certificates("--verifier-ca", path)?;
            config.ca_certificate(tonic::transport::Certificate::from_pem(read(
                "--verifier-ca",
                path,
            )?))
        }
        None => config.with_native_roots(),
    };
    if let Some((cert, key)) = client_identity {
        certificates("--verifier-client-cert", cert)?;
        private_key("--verifier-client-key", key)?;
        config = config.identity(tonic::transport::Identity::from_pem(
            read("--verifier-client-cert", cert)?,
            read("--verifier-client-key", key)?,
        ));
    }
    Ok(config)
}
