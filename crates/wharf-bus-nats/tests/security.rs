//! Credentials and TLS towards NATS (issue #12, finding 5): against a private `nats-server`
//! that requires a user and password, TLS and a client certificate, a connection without
//! any one of them is refused, and with all of them the bus works. No secret appears in an
//! error.

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use wharf_bus::UploadBus;
use wharf_bus_nats::{NatsBus, NatsConfig, NatsSecurity};

const PASSWORD: &str = "correct-horse-battery";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files.
struct Certificates {
    ca: PathBuf,
    server: (PathBuf, PathBuf),
    client: (PathBuf, PathBuf),
}

fn certificates(dir: &Path) -> Certificates {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "wharf test NATS CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA");
    let ca = Issuer::new(ca_params, ca_key);
    let leaf = |name: &str, purpose: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(vec![name.to_owned()]).expect("params");
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![purpose];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &ca).expect("certificate");
        let cert_path = dir.join(format!("{name}.pem"));
        let key_path = dir.join(format!("{name}-key.pem"));
        std::fs::write(&cert_path, cert.pem()).expect("write certificate");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        (cert_path, key_path)
    };
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, ca_cert.pem()).expect("write CA");
    Certificates {
        ca: ca_path,
        server: leaf("localhost", ExtendedKeyUsagePurpose::ServerAuth),
        client: leaf("wharf-worker", ExtendedKeyUsagePurpose::ClientAuth),
    }
}

/// `nats-server -js` with a configuration file: a user and password, TLS, client
/// certificates verified.
struct SecureServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
    certificates: Certificates,
}

impl SecureServer {
    async fn start() -> SecureServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let certificates = certificates(dir.path());
        let port = free_port();
        let config = format!(
            "listen: \"127.0.0.1:{port}\"\n\
             jetstream {{ store_dir: {store:?} }}\n\
             authorization {{ user: wharf, password: {PASSWORD:?} }}\n\
             tls {{ cert_file: {cert:?}, key_file: {key:?}, ca_file: {ca:?}, verify: true }}\n",
            store = dir.path().join("store"),
            cert = certificates.server.0,
            key = certificates.server.1,
            ca = certificates.ca,
        );
        let config_path = dir.path().join("nats.conf");
        std::fs::write(&config_path, config).expect("write config");
        let binary = std::env::var("WHARF_TEST_NATS_SERVER")
            .unwrap_or_else(|_| "/usr/sbin/nats-server".to_owned());
        let log = std::fs::File::create(dir.path().join("nats.log")).expect("log");
        let child = Command::new(&binary)
            .arg("-c")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| {
                panic!("cannot start {binary} ({error}); install nats-server or set WHARF_TEST_NATS_SERVER")
            });
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "nats-server did not start: {}",
                std::fs::read_to_string(dir.path().join("nats.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        SecureServer {
            child,
            port,
            _dir: dir,
            certificates,
        }
    }

    fn config(&self, security: NatsSecurity) -> NatsConfig {
        NatsConfig {
            url: format!("nats://127.0.0.1:{}", self.port),
            subject_prefix: format!("secure-{}", uuid::Uuid::new_v4().simple()),
            connect_timeout: Duration::from_secs(5),
            security,
            ..NatsConfig::default()
        }
    }

    /// Everything the server asks for.
    fn full(&self) -> NatsSecurity {
        NatsSecurity {
            user: Some("wharf".to_owned()),
            password: Some(PASSWORD.to_owned()),
            token: None,
            require_tls: true,
            ca_file: Some(self.certificates.ca.clone()),
            client_cert: Some(self.certificates.client.clone()),
        }
    }
}

impl Drop for SecureServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_connection_needs_the_servers_credentials_and_tls() {
    let server = SecureServer::start().await;
    let full = server.full();
    let refused = [
        (
            "no credentials",
            NatsSecurity {
                user: None,
                password: None,
                ..full.clone()
            },
        ),
        (
            "a wrong password",
            NatsSecurity {
                password: Some("not-the-password".to_owned()),
                ..full.clone()
            },
        ),
        (
            "no client certificate",
            NatsSecurity {
                client_cert: None,
                ..full.clone()
            },
        ),
        (
            "no TLS at all",
            NatsSecurity {
                require_tls: false,
                ca_file: None,
                client_cert: None,
                ..full.clone()
            },
        ),
    ];
    for (what, security) in refused {
        let error = NatsBus::connect(server.config(security))
            .await
            .expect_err(what);
        let message = error.to_string();
        assert!(!message.contains(PASSWORD), "{what}: {message}");
        assert!(!message.contains("not-the-password"), "{what}: {message}");
    }

    let bus = NatsBus::connect(server.config(full.clone()))
        .await
        .expect("with the credentials, TLS and the client certificate");
    bus.ping().await.expect("ping");
    assert!(!format!("{full:?}").contains(PASSWORD));
}

#[tokio::test]
async fn a_user_and_a_token_at_once_are_refused_before_connecting() {
    let error = NatsBus::connect(NatsConfig {
        url: "nats://127.0.0.1:1".to_owned(),
        security: NatsSecurity {
            user: Some("wharf".to_owned()),
            password: Some(PASSWORD.to_owned()),
            token: Some("t0ken".to_owned()),
            ..NatsSecurity::default()
        },
        ..NatsConfig::default()
    })
    .await
    .expect_err("ambiguous credentials");
    assert!(error.to_string().contains("not both"), "{error}");
}
