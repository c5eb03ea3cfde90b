//! Harness for the scaled-mode tests: a private PostgreSQL database, a private NATS subject
//! prefix, a private S3-compatible server (moto) with a fresh bucket, `wharf migrate`, and any
//! number of `wharf verifier`, `wharf worker` and `wharf gateway` processes on free ports, each
//! with its own log file. Processes can be killed (`SIGKILL`), stopped (`SIGTERM`) and
//! restarted on the same port.
//!
//! For outage tests there are two stand-ins for the machine's shared servers, which other
//! tests use and must never be stopped: a private `nats-server` ([`NatsServer`]) and a TCP
//! proxy ([`TcpProxy`]) that can cut and restore every connection to a server behind it.
//!
//! PostgreSQL (`WHARF_TEST_POSTGRES_URL`, default [`DEFAULT_POSTGRES_URL`]), NATS with
//! JetStream (`WHARF_TEST_NATS_URL`, default [`DEFAULT_NATS_URL`]) and moto
//! (`tests/.venv/bin/moto_server`) must be available: when one is not, the test fails with a
//! message that says what is missing and how to start it. Nothing is skipped.
//!
//! One module per fixture: [`postgres`], [`nats`], [`s3`], [`proxy`]; this module holds the
//! cluster of `wharf` processes itself.

use std::ffi::OsString;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use self::nats::{delete_streams, require_nats};
use self::support::{append_log, signal, tail, wait_exit};
use crate::tls::TestCa;
use crate::{free_port, run_ok, wharf_binary};

mod nats;
mod postgres;
mod proxy;
mod s3;
mod support;

pub use nats::{
    DEFAULT_NATS_SERVER, DEFAULT_NATS_URL, NatsServer, StreamMessage, events_stream_name,
    read_stream, shared_nats_url, uploads_stream_name,
};
pub use postgres::{
    DEFAULT_POSTGRES_URL, TestDatabase, postgres_admin_url, postgres_server_address,
};
pub use proxy::TcpProxy;
pub use s3::S3Server;
pub use support::{http_agent, http_get, http_get_with};

/// How long a service may take to answer `/readyz` with 200 after it was started.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A kind of Wharf service process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// `wharf verifier`.
    Verifier,
    /// `wharf worker`.
    Worker,
    /// `wharf gateway`.
    Gateway,
}

impl Role {
    /// The `wharf` subcommand.
    pub fn command(self) -> &'static str {
        match self {
            Role::Verifier => "verifier",
            Role::Worker => "worker",
            Role::Gateway => "gateway",
        }
    }
}

/// How to build a [`Cluster`].
#[derive(Debug, Clone)]
pub struct ClusterBuilder {
    verifiers: usize,
    workers: usize,
    gateways: usize,
    nats_url: Option<String>,
    database_address: Option<String>,
    gateway_args: Vec<String>,
    worker_args: Vec<String>,
    verifier_args: Vec<String>,
    verifier_tls: Option<Arc<TestCa>>,
    env: Vec<(String, String)>,
    workers_without_listen: bool,
}

impl ClusterBuilder {
    /// Starts the workers without `--listen`: each binds its default health listener, and
    /// the harness finds it at the address the worker prints.
    pub fn workers_without_listen(mut self) -> ClusterBuilder {
        self.workers_without_listen = true;
        self
    }

    /// An environment variable for every service process.
    pub fn env(mut self, key: &str, value: &str) -> ClusterBuilder {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Number of verifiers (default 1).
    pub fn verifiers(mut self, count: usize) -> ClusterBuilder {
        self.verifiers = count;
        self
    }

    /// Number of workers (default 1).
    pub fn workers(mut self, count: usize) -> ClusterBuilder {
        self.workers = count;
        self
    }

    /// Number of gateways (default 1).
    pub fn gateways(mut self, count: usize) -> ClusterBuilder {
        self.gateways = count;
        self
    }

    /// Uses this NATS server (a private [`NatsServer`]) instead of the shared one.
    pub fn nats_url(mut self, url: &str) -> ClusterBuilder {
        self.nats_url = Some(url.to_owned());
        self
    }

    /// Connects the Wharf processes to PostgreSQL through `address` (a [`TcpProxy`]); the
    /// harness itself still uses the server directly.
    pub fn database_via(mut self, address: &str) -> ClusterBuilder {
        self.database_address = Some(address.to_owned());
        self
    }

    /// Extra flags of every gateway.
    pub fn gateway_args(mut self, args: &[&str]) -> ClusterBuilder {
        self.gateway_args = args.iter().map(|arg| (*arg).to_owned()).collect();
        self
    }

    /// Extra flags of every worker.
    pub fn worker_args(mut self, args: &[&str]) -> ClusterBuilder {
        self.worker_args = args.iter().map(|arg| (*arg).to_owned()).collect();
        self
    }

    /// Extra flags of every verifier.
    pub fn verifier_args(mut self, args: &[&str]) -> ClusterBuilder {
        self.verifier_args = args.iter().map(|arg| (*arg).to_owned()).collect();
        self
    }

    /// Verifiers serve gRPC over TLS with `ca`'s server certificate and accept only clients
    /// holding `ca`'s client certificate, which the gateways present (mutual TLS).
    pub fn verifier_tls(mut self, ca: Arc<TestCa>) -> ClusterBuilder {
        self.verifier_tls = Some(ca);
        self
    }

    /// Starts everything and waits until every service is ready.
    pub fn start(self) -> Cluster {
        Cluster::start(self)
    }
}

/// One service process (restartable on its port).
#[derive(Debug)]
struct Service {
    role: Role,
    index: usize,
    /// The port given with `--listen`; 0: none given, the service prints the one it bound.
    port: u16,
    child: Option<Child>,
    log_path: PathBuf,
    args: Vec<OsString>,
    /// Extra environment of the process (e.g. the OTLP exporter's settings).
    env: Vec<(String, String)>,
    /// Serves TLS that needs a client certificate (a verifier with `--tls-client-ca`).
    tls: bool,
}

impl Service {
    fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.bound_port())
    }

    /// The port it listens on: the one given, or the last one it printed at start (0 before).
    fn bound_port(&self) -> u16 {
        if self.port != 0 {
            return self.port;
        }
        self.log()
            .lines()
            .rev()
            .filter(|line| line.contains(" is running ") || line.contains(" is serving "))
            .find_map(|line| {
                let address = line.split_once("address=")?.1.split_whitespace().next()?;
                address.parse::<std::net::SocketAddr>().ok()
            })
            .map_or(0, |address| address.port())
    }

    fn name(&self) -> String {
        format!("{}-{}", self.role.command(), self.index)
    }

    fn spawn(&mut self) {
        let (log, log_err) = append_log(&self.log_path);
        let mut command = Command::new(wharf_binary());
        command.arg(self.role.command());
        if self.port != 0 {
            command
                .arg("--listen")
                .arg(format!("127.0.0.1:{}", self.port));
        }
        command.args(&self.args);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("WHARF_") {
                command.env_remove(key);
            }
        }
        let child = command
            .envs(self.env.iter().map(|(key, value)| (key, value)))
            .env("AWS_ACCESS_KEY_ID", "wharf-e2e")
            .env("AWS_SECRET_ACCESS_KEY", "wharf-e2e")
            .env("AWS_REGION", "us-east-1")
            .env("NO_COLOR", "1")
            .env(
                "RUST_LOG",
                std::env::var("WHARF_TEST_LOG").unwrap_or_else(|_| "info".to_owned()),
            )
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start wharf {}: {error}", self.role.command()));
        self.child = Some(child);
    }

    /// Waits for `/readyz` to answer 200; `false` if the process exited or time ran out.
    fn wait_ready(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let agent = http_agent(Duration::from_secs(10));
        while Instant::now() < deadline {
            match self.child.as_mut().map(Child::try_wait) {
                None | Some(Ok(Some(_))) => return false,
                _ => {}
            }
            // A mutual-TLS verifier only talks to gateways (whose own readiness calls it), so
            // here it is ready once it accepts connections.
            let ready = if self.bound_port() == 0 {
                false
            } else if self.tls {
                TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            } else {
                agent
                    .get(format!("{}/readyz", self.url()))
                    .call()
                    .is_ok_and(|response| response.status().as_u16() == 200)
            };
            if ready {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait; `Some(clean exit)`, or `None` if it had to be killed after `grace`.
    fn terminate(&mut self, grace: Duration) -> Option<bool> {
        let mut child = self.child.take()?;
        signal(child.id(), "TERM");
        match wait_exit(&mut child, grace) {
            Some(status) => Some(status.success()),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                None
            }
        }
    }
}

/// A scaled-mode Wharf: verifiers, workers and gateways on a private database, NATS prefix
/// and S3 bucket. Every process is stopped on drop; the database is dropped and the NATS
/// streams deleted (best effort).
#[derive(Debug)]
pub struct Cluster {
    services: Vec<Service>,
    database_url: String,
    nats_url: String,
    nats_prefix: String,
    bucket: String,
    store_prefix: String,
    database: TestDatabase,
    s3: S3Server,
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    verifier_tls: Option<Arc<TestCa>>,
}

impl Cluster {
    /// A builder: 1 verifier, 1 worker, 1 gateway on the shared PostgreSQL and NATS.
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder {
            verifiers: 1,
            workers: 1,
            gateways: 1,
            nats_url: None,
            database_address: None,
            gateway_args: Vec::new(),
            worker_args: Vec::new(),
            verifier_args: Vec::new(),
            verifier_tls: None,
            env: Vec::new(),
            workers_without_listen: false,
        }
    }

    fn start(builder: ClusterBuilder) -> Cluster {
        assert!(
            builder.verifiers >= 1,
            "gateways need at least one verifier"
        );
        let nats_url = builder.nats_url.clone().unwrap_or_else(shared_nats_url);
        require_nats(&nats_url);
        let database = TestDatabase::create();
        let dir = tempfile::tempdir().expect("temp dir");
        let s3 = S3Server::start(dir.path());
        let bucket = format!(
            "wharf-e2e-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        s3.create_bucket(&bucket);
        let database_url = match &builder.database_address {
            Some(address) => database.url_via(address),
            None => database.url().to_owned(),
        };
        let nats_prefix = format!("e2e-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let mut cluster = Cluster {
            services: Vec::new(),
            database_url,
            nats_url,
            nats_prefix,
            bucket,
            store_prefix: "wharf".to_owned(),
            database,
            s3,
            dir,
            env: builder.env.clone(),
            verifier_tls: builder.verifier_tls.clone(),
        };
        cluster.migrate();
        cluster.create_upload_grant_key();
        // The verifiers' token key file (a Kubernetes Secret in production), created by the
        // admin command operators use.
        let token_key_file = cluster.dir.path().join("token-key");
        cluster.env.push((
            "WHARF_TOKEN_KEY_FILE".to_owned(),
            token_key_file.display().to_string(),
        ));
        cluster.admin(&["token-key", "create"]);
        let verifiers: Vec<usize> = (0..builder.verifiers)
            .map(|index| cluster.add(Role::Verifier, index, &builder.verifier_args))
            .collect();
        cluster.start_all(&verifiers);
        let workers: Vec<usize> = (0..builder.workers)
            .map(|index| cluster.add(Role::Worker, index, &builder.worker_args))
            .collect();
        if builder.workers_without_listen {
            for &position in &workers {
                cluster.services[position].port = 0;
            }
        }
        cluster.start_all(&workers);
        let gateways: Vec<usize> = (0..builder.gateways)
            .map(|index| cluster.add(Role::Gateway, index, &builder.gateway_args))
            .collect();
        cluster.start_all(&gateways);
        cluster
    }

    fn common_args(&self, role: Role, index: usize) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "--data-dir".into(),
            self.dir
                .path()
                .join(format!("data-{}-{index}", role.command()))
                .into(),
            "--database-url".into(),
            self.database_url.clone().into(),
            "--nats-url".into(),
            self.nats_url.clone().into(),
            "--nats-prefix".into(),
            self.nats_prefix.clone().into(),
        ];
        if role != Role::Verifier {
            args.extend(self.store_args().into_iter().map(OsString::from));
        }
        // The verifiers sign upload grants, the workers verify them (issue #12, finding 5).
        let keys = self.dir.path().join("grant-keys");
        match role {
            Role::Verifier => {
                args.extend([
                    "--upload-grant-key-file".into(),
                    keys.join("upload-grant.key").into(),
                ]);
            }
            Role::Worker => args.extend([
                "--upload-grant-public-key-file".into(),
                keys.join("upload-grant.pub").into(),
            ]),
            Role::Gateway => {}
        }
        args
    }

    /// `wharf admin upload-grant-key`: the cluster's upload grant key pair.
    fn create_upload_grant_key(&self) {
        run_ok(
            Command::new(wharf_binary())
                .args(["admin", "upload-grant-key", "--out"])
                .arg(self.dir.path().join("grant-keys")),
        );
    }

    /// The `--store` flags of this cluster's S3 bucket.
    pub fn store_args(&self) -> Vec<String> {
        vec![
            "--store".to_owned(),
            format!("s3://{}/{}", self.bucket, self.store_prefix),
            "--s3-endpoint".to_owned(),
            self.s3.endpoint(),
            "--s3-region".to_owned(),
            "us-east-1".to_owned(),
            "--s3-allow-http".to_owned(),
            "--s3-path-style".to_owned(),
        ]
    }

    fn add(&mut self, role: Role, index: usize, extra: &[String]) -> usize {
        let mut args = self.common_args(role, index);
        if role == Role::Gateway {
            let verifiers: Vec<&Service> = self
                .services
                .iter()
                .filter(|service| service.role == Role::Verifier)
                .collect();
            let verifier = verifiers[index % verifiers.len()].url();
            args.push("--verifier".into());
            args.push(verifier.into());
            if let Some(ca) = &self.verifier_tls {
                args.extend([
                    "--verifier-ca".into(),
                    ca.ca_cert().into(),
                    "--verifier-client-cert".into(),
                    ca.client_cert().into(),
                    "--verifier-client-key".into(),
                    ca.client_key().into(),
                ]);
            }
        }
        let tls = role == Role::Verifier && self.verifier_tls.is_some();
        if tls && let Some(ca) = &self.verifier_tls {
            args.extend(ca.serve_args().into_iter().map(OsString::from));
            args.extend(["--tls-client-ca".into(), ca.ca_cert().into()]);
        }
        args.extend(extra.iter().map(OsString::from));
        let log_path = self
            .dir
            .path()
            .join(format!("{}-{index}.log", role.command()));
        self.services.push(Service {
            role,
            index,
            port: free_port(),
            child: None,
            log_path,
            args,
            env: self.env.clone(),
            tls,
        });
        self.services.len() - 1
    }

    /// Spawns the given services together, then waits for each to be ready (picking a new
    /// port for one that exited at once, e.g. because its port was taken meanwhile).
    fn start_all(&mut self, positions: &[usize]) {
        for &position in positions {
            self.services[position].spawn();
        }
        for &position in positions {
            let mut attempts = 0;
            while !self.services[position].wait_ready(READY_TIMEOUT) {
                // A service on its default listener gets no other port: it has to start as is.
                let chose_its_port = self.services[position].port == 0;
                let service = &mut self.services[position];
                let exited = service
                    .child
                    .as_mut()
                    .is_some_and(|child| matches!(child.try_wait(), Ok(Some(_))));
                attempts += 1;
                if chose_its_port
                    || !exited
                    || attempts >= 3
                    || !service.log().contains("failed to listen")
                {
                    let name = service.name();
                    let log = service.log();
                    panic!("{name} did not become ready; its log:\n{}", tail(&log, 80));
                }
                service.kill();
                service.port = free_port();
                service.spawn();
            }
        }
    }

    fn position(&self, role: Role, index: usize) -> usize {
        self.services
            .iter()
            .position(|service| service.role == role && service.index == index)
            .unwrap_or_else(|| panic!("no {} #{index} in this cluster", role.command()))
    }

    fn service(&self, role: Role, index: usize) -> &Service {
        &self.services[self.position(role, index)]
    }

    fn service_mut(&mut self, role: Role, index: usize) -> &mut Service {
        let position = self.position(role, index);
        &mut self.services[position]
    }

    /// Runs `wharf migrate` against the cluster's database.
    pub fn migrate(&self) {
        run_ok(
            Command::new(wharf_binary())
                .arg("migrate")
                .arg("--data-dir")
                .arg(self.dir.path().join("data-migrate"))
                .arg("--database-url")
                .arg(&self.database_url),
        );
    }

    /// `http://127.0.0.1:<port>` of a service.
    pub fn url(&self, role: Role, index: usize) -> String {
        self.service(role, index).url()
    }

    /// `http://127.0.0.1:<port>` of gateway `index`.
    pub fn gateway_url(&self, index: usize) -> String {
        self.url(Role::Gateway, index)
    }

    /// The process id of a service (0 when it is not running).
    pub fn pid(&self, role: Role, index: usize) -> u32 {
        self.service(role, index)
            .child
            .as_ref()
            .map_or(0, Child::id)
    }

    /// `/readyz` of a service: status and body, or the connection error.
    pub fn readyz(&self, role: Role, index: usize) -> Result<(u16, String), String> {
        http_get(&format!("{}/readyz", self.url(role, index)))
            .map(|(status, body)| (status, String::from_utf8_lossy(&body).into_owned()))
    }

    /// Waits up to `timeout` for a service's `/readyz` to answer 200.
    pub fn wait_ready(&mut self, role: Role, index: usize, timeout: Duration) -> bool {
        self.service_mut(role, index).wait_ready(timeout)
    }

    /// Kills a service with `SIGKILL` (no cleanup, no draining).
    pub fn kill(&mut self, role: Role, index: usize) {
        self.service_mut(role, index).kill();
    }

    /// Stops a service with `SIGTERM`; `true` when it exited cleanly within 60 s.
    pub fn terminate(&mut self, role: Role, index: usize) -> bool {
        self.service_mut(role, index)
            .terminate(Duration::from_secs(60))
            .unwrap_or(false)
    }

    /// Starts a stopped (or killed) service again on its port without waiting.
    pub fn spawn(&mut self, role: Role, index: usize) {
        let service = self.service_mut(role, index);
        assert!(
            service.child.is_none(),
            "{} is still running",
            service.name()
        );
        service.spawn();
    }

    /// Starts a stopped (or killed) service again on its port and waits until it is ready;
    /// a running one is killed first.
    pub fn restart(&mut self, role: Role, index: usize) {
        let service = self.service_mut(role, index);
        service.kill();
        service.spawn();
        if !service.wait_ready(READY_TIMEOUT) {
            panic!(
                "{} did not become ready after its restart; its log:\n{}",
                service.name(),
                tail(&service.log(), 80)
            );
        }
    }

    /// A service's log so far.
    pub fn log(&self, role: Role, index: usize) -> String {
        self.service(role, index).log()
    }

    /// The last `lines` lines of every service's log (for failure messages).
    pub fn log_tails(&self, lines: usize) -> String {
        let mut text = String::new();
        for service in &self.services {
            text.push_str(&format!(
                "===== {} ({}) =====\n{}\n",
                service.name(),
                service.log_path.display(),
                tail(&service.log(), lines)
            ));
        }
        text
    }

    /// Runs `wharf admin <args>` against the cluster's database; returns stdout (trimmed).
    pub fn admin(&self, args: &[&str]) -> String {
        run_ok(self.admin_command().args(args)).trim().to_owned()
    }

    /// `wharf admin` against this cluster's database (and, given its [`Cluster::store_args`],
    /// its bucket), for the arguments to follow.
    pub fn admin_command(&self) -> Command {
        let mut command = Command::new(wharf_binary());
        command
            .arg("admin")
            .arg("--data-dir")
            .arg(self.dir.path().join("data-admin"))
            .arg("--database-url")
            .arg(self.database.url())
            .arg("--token-key-file")
            .arg(self.dir.path().join("token-key"))
            .env("AWS_ACCESS_KEY_ID", "wharf-e2e")
            .env("AWS_SECRET_ACCESS_KEY", "wharf-e2e")
            .env("AWS_REGION", "us-east-1");
        command
    }

    /// Creates a user and returns a fresh API token for it.
    pub fn user_with_token(&self, user: &str) -> String {
        self.admin(&["user", "create", user]);
        self.admin(&["token", "create", "--user", user])
    }

    /// The cluster's database (queried directly, not through any proxy).
    pub fn database(&self) -> &TestDatabase {
        &self.database
    }

    /// The S3 server.
    pub fn s3(&self) -> &S3Server {
        &self.s3
    }

    /// The bucket holding the store.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The NATS subject prefix of this cluster.
    pub fn nats_prefix(&self) -> &str {
        &self.nats_prefix
    }

    /// The NATS URL the services use.
    pub fn nats_url(&self) -> &str {
        &self.nats_url
    }

    /// Keys (relative to the store's prefix) and sizes of every object below `prefix` in
    /// the store, e.g. `staging/` or `packages/`.
    pub fn store_objects(&self, prefix: &str) -> Vec<(String, u64)> {
        let full = format!("{}/{prefix}", self.store_prefix);
        let strip = format!("{}/", self.store_prefix);
        self.s3
            .list(&self.bucket, &full)
            .into_iter()
            .map(|(key, size)| (key.strip_prefix(&strip).unwrap_or(&key).to_owned(), size))
            .collect()
    }

    /// The staged uploads still in the store.
    pub fn staging_objects(&self) -> Vec<String> {
        self.store_objects("staging/")
            .into_iter()
            .map(|(key, _)| key)
            .collect()
    }

    /// Waits up to `timeout` for the staging area to be empty; what is left.
    pub fn wait_staging_empty(&self, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = self.staging_objects();
            if left.is_empty() || Instant::now() >= deadline {
                return left;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The bytes of a store object (key relative to the store's prefix), if it exists.
    pub fn store_object(&self, key: &str) -> Option<Vec<u8>> {
        self.s3
            .get(&self.bucket, &format!("{}/{key}", self.store_prefix))
    }

    /// Writes a store object (key relative to the store's prefix) behind Wharf's back.
    pub fn put_store_object(&self, key: &str, bytes: &[u8]) {
        self.s3
            .put(&self.bucket, &format!("{}/{key}", self.store_prefix), bytes);
    }

    /// Every public event of this cluster (`<prefix>.events.>`), in order.
    pub fn public_events(&self) -> Vec<StreamMessage> {
        read_stream(&self.nats_url, &events_stream_name(&self.nats_prefix))
    }

    /// The directory holding logs and data directories.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Keep the logs of a failed test for a closer look.
            let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
            eprintln!(
                "cluster logs (kept in {}):\n{}",
                dir.keep().display(),
                self.log_tails(60)
            );
        }
        // Gateways first (no new uploads), then workers and verifiers; all at once.
        for service in self.services.iter().rev() {
            if let Some(child) = &service.child {
                signal(child.id(), "TERM");
            }
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        for service in self.services.iter_mut() {
            if let Some(mut child) = service.child.take() {
                let left = deadline.saturating_duration_since(Instant::now());
                if wait_exit(&mut child, left).is_none() {
                    eprintln!("{} did not stop in time; killed", service.name());
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
        delete_streams(&self.nats_url, &self.nats_prefix);
    }
}
