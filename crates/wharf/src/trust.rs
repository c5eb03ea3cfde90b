//! The flags that make the scaled mode's trust boundary explicit (issue #12, finding 5):
//! credentials and TLS towards NATS, the upload grant keys (the verifier signs, workers
//! verify), and the rule that a verifier reachable from other hosts verifies its callers.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Args;
use wharf_bus_nats::NatsSecurity;
use wharf_proto::grant::{UploadGrantKey, UploadGrantKeys, UploadGrantSigner};

use crate::ConfigError;

/// How a process authenticates to NATS and checks its server.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct NatsSecurityArgs {
    /// NATS user name (with --nats-password).
    #[arg(long, env = "WHARF_NATS_USER", requires = "nats_password")]
    nats_user: Option<String>,
    /// Password of --nats-user; prefer the variable or the configuration file to the flag,
    /// which other local users can read in the process list. Never logged.
    #[arg(
        long,
        env = "WHARF_NATS_PASSWORD",
        hide_env_values = true,
        requires = "nats_user"
    )]
    nats_password: Option<String>,
    /// NATS authentication token (instead of a user). Never logged.
    #[arg(
        long,
        env = "WHARF_NATS_TOKEN",
        hide_env_values = true,
        conflicts_with = "nats_user"
    )]
    nats_token: Option<String>,
    /// Refuse a NATS server that does not speak TLS (implied by --nats-ca and
    /// --nats-client-cert).
    #[arg(long, env = "WHARF_NATS_REQUIRE_TLS")]
    nats_require_tls: bool,
    /// PEM CA bundle the NATS server's certificate must chain to (default: the system's roots).
    #[arg(long, env = "WHARF_NATS_CA")]
    nats_ca: Option<PathBuf>,
    /// PEM client certificate for a NATS server that verifies clients (with --nats-client-key).
    #[arg(long, env = "WHARF_NATS_CLIENT_CERT", requires = "nats_client_key")]
    nats_client_cert: Option<PathBuf>,
    /// PEM private key of --nats-client-cert.
    #[arg(long, env = "WHARF_NATS_CLIENT_KEY", requires = "nats_client_cert")]
    nats_client_key: Option<PathBuf>,
}

impl NatsSecurityArgs {
    /// The NATS connection's credentials and TLS.
    pub(crate) fn settings(&self) -> NatsSecurity {
        NatsSecurity {
            user: self.nats_user.clone(),
            password: self.nats_password.clone(),
            token: self.nats_token.clone(),
            require_tls: self.nats_require_tls,
            ca_file: self.nats_ca.clone(),
            client_cert: self
                .nats_client_cert
                .clone()
                .zip(self.nats_client_key.clone()),
        }
    }
}

/// The verifier's upload grant signing key.
#[derive(Debug, Clone, Args)]
pub(crate) struct UploadGrantKeyArgs {
    /// PEM Ed25519 private key that signs upload grants (`wharf admin upload-grant-key`, or
    /// `openssl genpkey -algorithm ed25519`); workers verify with its public key. Required.
    #[arg(long, env = "WHARF_UPLOAD_GRANT_KEY_FILE")]
    upload_grant_key_file: Option<PathBuf>,
}

impl UploadGrantKeyArgs {
    /// The signing key, read from its file.
    pub(crate) fn signer(&self) -> Result<UploadGrantSigner, ConfigError> {
        let path = self.upload_grant_key_file.as_deref().ok_or_else(|| {
            ConfigError(
                "wharf verifier needs --upload-grant-key-file (WHARF_UPLOAD_GRANT_KEY_FILE): \
                 workers commit only uploads whose grant it signed; create a key pair with \
                 `wharf admin upload-grant-key --out DIR`"
                    .to_owned(),
            )
        })?;
        UploadGrantSigner::from_pem(&read_key(path)?).map_err(|error| {
            ConfigError(format!(
                "--upload-grant-key-file {}: {error}",
                path.display()
            ))
        })
    }
}

/// The public keys whose upload grants a worker accepts.
#[derive(Debug, Clone, Args)]
pub(crate) struct UploadGrantTrustArgs {
    /// PEM Ed25519 public key(s) of the verifiers' upload grant keys, comma-separated or
    /// repeated; during a key rotation, both the old and the new. Required.
    #[arg(
        long,
        env = "WHARF_UPLOAD_GRANT_PUBLIC_KEY_FILES",
        value_delimiter = ','
    )]
    upload_grant_public_key_file: Vec<PathBuf>,
}

impl UploadGrantTrustArgs {
    /// The trusted keys, read from their files.
    pub(crate) fn keys(&self) -> Result<UploadGrantKeys, ConfigError> {
        if self.upload_grant_public_key_file.is_empty() {
            return Err(ConfigError(
                "wharf worker needs --upload-grant-public-key-file \
                 (WHARF_UPLOAD_GRANT_PUBLIC_KEY_FILES): the public key of the verifier's \
                 --upload-grant-key-file, so that it commits only uploads a verifier granted"
                    .to_owned(),
            ));
        }
        let keys = self
            .upload_grant_public_key_file
            .iter()
            .map(|path| {
                UploadGrantKey::from_pem(&read_key(path)?).map_err(|error| {
                    ConfigError(format!(
                        "--upload-grant-public-key-file {}: {error}",
                        path.display()
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(UploadGrantKeys::new(keys))
    }
}

/// Writes a new key pair for `wharf admin upload-grant-key`: `upload-grant.key` (created
/// with mode 0600, never overwritten) and `upload-grant.pub` in `dir`; returns the key id.
pub(crate) fn write_upload_grant_key_pair(dir: &Path) -> anyhow::Result<String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    let signer = UploadGrantSigner::generate()?;
    std::fs::create_dir_all(dir)
        .map_err(|error| ConfigError(format!("cannot create {}: {error}", dir.display())))?;
    let write = |name: &str, mode: u32, text: &str| -> Result<(), ConfigError> {
        let path = dir.join(name);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .and_then(|mut file| file.write_all(text.as_bytes()))
            .map_err(|error| ConfigError(format!("cannot write {}: {error}", path.display())))
    };
    write("upload-grant.key", 0o600, &signer.to_pem()?)?;
    write("upload-grant.pub", 0o644, &signer.public_key().to_pem())?;
    Ok(signer.key_id().to_owned())
}

fn read_key(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map_err(|error| ConfigError(format!("cannot read {}: {error}", path.display())))
}

/// Refuses a verifier that anyone on the network could call: listening beyond loopback, it
/// must verify its callers' certificates (--tls-client-ca), unless the operator waives it
/// because something else (a NetworkPolicy, a private network) keeps all but the gateways out.
pub(crate) fn check_verifier_exposure(
    listen: SocketAddr,
    verifies_clients: bool,
    waived: bool,
) -> Result<(), ConfigError> {
    if listen.ip().is_loopback() || verifies_clients || waived {
        return Ok(());
    }
    Err(ConfigError(format!(
        "wharf verifier would listen on {listen} without verifying its callers: anyone who \
         reaches that address could ask it credential questions and get upload grants. Use \
         mutual TLS (--tls-cert, --tls-key and --tls-client-ca, with --verifier-client-cert \
         on the gateways), listen on a loopback address, or, if the network already admits \
         only the gateways (a NetworkPolicy, a private network), say so with \
         --insecure-no-client-auth"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verifier_beyond_loopback_must_verify_its_callers_unless_waived() {
        let any: SocketAddr = "0.0.0.0:8081".parse().expect("address");
        let error = check_verifier_exposure(any, false, false).expect_err("exposed");
        assert!(error.0.contains("--insecure-no-client-auth"), "{error}");
        assert!(error.0.contains("0.0.0.0:8081"), "{error}");
        assert!(check_verifier_exposure(any, true, false).is_ok());
        assert!(check_verifier_exposure(any, false, true).is_ok());
        for loopback in ["127.0.0.1:8081", "[::1]:8081"] {
            let loopback: SocketAddr = loopback.parse().expect("address");
            assert!(check_verifier_exposure(loopback, false, false).is_ok());
        }
        let public: SocketAddr = "10.1.2.3:8081".parse().expect("address");
        assert!(check_verifier_exposure(public, false, false).is_err());
    }

    #[test]
    fn grant_keys_are_required_and_read_from_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = UploadGrantKeyArgs {
            upload_grant_key_file: None,
        };
        assert!(
            missing
                .signer()
                .expect_err("required")
                .0
                .contains("wharf admin upload-grant-key")
        );
        assert!(
            UploadGrantTrustArgs {
                upload_grant_public_key_file: Vec::new()
            }
            .keys()
            .is_err()
        );
        let signer = UploadGrantSigner::generate().expect("key");
        let private = dir.path().join("grant.key");
        let public = dir.path().join("grant.pub");
        std::fs::write(&private, signer.to_pem().expect("pem")).expect("write");
        std::fs::write(&public, signer.public_key().to_pem()).expect("write");
        let read = UploadGrantKeyArgs {
            upload_grant_key_file: Some(private.clone()),
        }
        .signer()
        .expect("signer");
        assert_eq!(read.key_id(), signer.key_id());
        let keys = UploadGrantTrustArgs {
            upload_grant_public_key_file: vec![public],
        }
        .keys()
        .expect("keys");
        assert_eq!(keys.key_ids(), vec![signer.key_id()]);
        let swapped = UploadGrantTrustArgs {
            upload_grant_public_key_file: vec![private],
        };
        assert!(swapped.keys().is_err(), "a private key is not a public key");
    }
}
