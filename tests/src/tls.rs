//! A throwaway certificate authority and a server certificate for `127.0.0.1`/`localhost`
//! signed by it, written to a temporary directory: `wharf serve --tls-cert/--tls-key` serves
//! the leaf, and the clients trust the CA (`SSL_CERT_FILE` for uv, `REQUESTS_CA_BUNDLE` or
//! `--cert` for twine/requests/pip). A client certificate signed by the same CA serves mutual
//! TLS between a gateway and its verifier.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::Command;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// The CA and the server's certificate and key, as PEM files.
#[derive(Debug)]
pub struct TestCa {
    dir: tempfile::TempDir,
}

impl TestCa {
    /// Generates a CA (ECDSA P-256) and a leaf for `localhost` and `127.0.0.1` signed by it.
    pub fn generate() -> TestCa {
        let dir = tempfile::tempdir().expect("temp dir");

        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        let mut ca_name = DistinguishedName::new();
        ca_name.push(DnType::CommonName, "Wharf end-to-end test CA");
        ca_name.push(DnType::OrganizationName, "Wharf tests");
        ca_params.distinguished_name = ca_name;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-signed CA");
        let ca = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate().expect("server key");
        let mut server_params =
            CertificateParams::new(vec!["localhost".to_owned()]).expect("server params");
        server_params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        let mut server_name = DistinguishedName::new();
        server_name.push(DnType::CommonName, "localhost");
        server_params.distinguished_name = server_name;
        server_params.is_ca = IsCa::ExplicitNoCa;
        server_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        // OpenSSL's strict verification (Python 3.13+) wants the authority key identifier.
        server_params.use_authority_key_identifier_extension = true;
        let server_cert = server_params
            .signed_by(&server_key, &ca)
            .expect("server certificate");

        let client_key = KeyPair::generate().expect("client key");
        let mut client_params =
            CertificateParams::new(vec!["wharf-gateway".to_owned()]).expect("client params");
        let mut client_name = DistinguishedName::new();
        client_name.push(DnType::CommonName, "wharf-gateway");
        client_params.distinguished_name = client_name;
        client_params.is_ca = IsCa::ExplicitNoCa;
        client_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        client_params.use_authority_key_identifier_extension = true;
        let client_cert = client_params
            .signed_by(&client_key, &ca)
            .expect("client certificate");

        let ca_test = TestCa { dir };
        std::fs::write(ca_test.ca_cert(), ca_cert.pem()).expect("write CA");
        std::fs::write(ca_test.server_cert(), server_cert.pem()).expect("write server cert");
        std::fs::write(ca_test.server_key(), server_key.serialize_pem()).expect("write key");
        std::fs::write(ca_test.client_cert(), client_cert.pem()).expect("write client cert");
        std::fs::write(ca_test.client_key(), client_key.serialize_pem()).expect("write key");
        ca_test
    }

    /// The CA certificate (PEM): what clients must trust.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The server certificate (PEM), for `--tls-cert`.
    pub fn server_cert(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }

    /// The server's private key (PEM, PKCS#8), for `--tls-key`.
    pub fn server_key(&self) -> PathBuf {
        self.dir.path().join("server-key.pem")
    }

    /// A client certificate (PEM) signed by the CA, for mutual TLS.
    pub fn client_cert(&self) -> PathBuf {
        self.dir.path().join("client.pem")
    }

    /// The client certificate's private key (PEM, PKCS#8).
    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("client-key.pem")
    }

    /// Makes `command` (uv, pip, twine, requests) trust this CA and nothing else: uv reads
    /// `SSL_CERT_FILE`; requests (twine, pip) reads `REQUESTS_CA_BUNDLE`, which, when set
    /// in the environment, even overrides their `--cert` options — so it is always set here.
    pub fn trust<'c>(&self, command: &'c mut Command) -> &'c mut Command {
        command
            .env("SSL_CERT_FILE", self.ca_cert())
            .env("REQUESTS_CA_BUNDLE", self.ca_cert())
            .env_remove("CURL_CA_BUNDLE")
            .env_remove("SSL_CERT_DIR")
            .env_remove("PIP_CERT")
    }

    /// `--tls-cert <cert> --tls-key <key>`.
    pub fn serve_args(&self) -> Vec<String> {
        vec![
            "--tls-cert".to_owned(),
            self.server_cert().display().to_string(),
            "--tls-key".to_owned(),
            self.server_key().display().to_string(),
        ]
    }
}
