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

use std::ffi::OsString;
use std::future::Future;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::tls::TestCa;
use crate::{free_port, run_ok, wharf_binary, workspace_root};

/// The PostgreSQL server (and a database on it) the tests create their databases from.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// The shared NATS server with JetStream.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";
/// The `nats-server` binary for private servers (`WHARF_TEST_NATS_SERVER` overrides it).
pub const DEFAULT_NATS_SERVER: &str = "/usr/sbin/nats-server";

const HOW_TO_START: &str = "start PostgreSQL and NATS with `make services` \
     (scripts/ensure-services.sh)";

/// How long a service may take to answer `/readyz` with 200 after it was started.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `future` to completion on a fresh single-threaded runtime.
fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(future)
}

/// The admin URL of the test PostgreSQL server.
pub fn postgres_admin_url() -> String {
    std::env::var("WHARF_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned())
}

/// `host:port` of the test PostgreSQL server (for a [`TcpProxy`] in front of it).
pub fn postgres_server_address() -> String {
    host_port(&postgres_admin_url(), 5432)
}

/// The URL of the shared NATS server.
pub fn shared_nats_url() -> String {
    std::env::var("WHARF_TEST_NATS_URL").unwrap_or_else(|_| DEFAULT_NATS_URL.to_owned())
}

/// Splits `scheme://authority/rest` into (`scheme://`, authority, `/rest`).
fn split_url(url: &str) -> (&str, &str, &str) {
    let scheme_end = url.find("://").map_or(0, |index| index + 3);
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    (
        &url[..scheme_end],
        &rest[..authority_end],
        &rest[authority_end..],
    )
}

/// `host:port` of a URL (without user info); `default_port` when it names none.
fn host_port(url: &str, default_port: u16) -> String {
    let (_, authority, _) = split_url(url);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if host
        .rsplit_once(':')
        .is_some_and(|(_, port)| port.parse::<u16>().is_ok())
    {
        host.to_owned()
    } else {
        format!("{host}:{default_port}")
    }
}

/// `url` with its host and port replaced by `address` (user info kept).
fn with_address(url: &str, address: &str) -> String {
    let (scheme, authority, rest) = split_url(url);
    match authority.rsplit_once('@') {
        Some((user_info, _)) => format!("{scheme}{user_info}@{address}{rest}"),
        None => format!("{scheme}{address}{rest}"),
    }
}

/// `url` naming database `name` instead of its own.
fn with_database(url: &str, name: &str) -> String {
    let (scheme, authority, rest) = split_url(url);
    let query = rest.find('?').map_or("", |index| &rest[index..]);
    format!("{scheme}{authority}/{name}{query}")
}

fn tcp_reachable(address: &str) -> Result<(), String> {
    let addresses: Vec<SocketAddr> = address
        .to_socket_addrs()
        .map_err(|error| error.to_string())?
        .collect();
    let mut last = format!("{address} resolves to no address");
    for socket in addresses {
        match TcpStream::connect_timeout(&socket, Duration::from_secs(2)) {
            Ok(_) => return Ok(()),
            Err(error) => last = error.to_string(),
        }
    }
    Err(last)
}

/// Sends `signal` (`TERM`, `KILL`, …) to a process.
fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Waits up to `timeout` for `child` to exit; its exit status if it did.
fn wait_exit(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The last `lines` lines of a text.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn append_log(path: &Path) -> (std::fs::File, std::fs::File) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|error| panic!("cannot open {}: {error}", path.display()));
    let log_err = log.try_clone().expect("log file handle");
    (log, log_err)
}

/// An HTTP agent with a timeout that returns non-2xx responses instead of errors.
pub fn http_agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

/// GET `url`: status and body, or the connection error.
pub fn http_get(url: &str) -> Result<(u16, Vec<u8>), String> {
    http_get_with(url, &[])
}

/// GET `url` with extra headers: status and body, or the connection error.
pub fn http_get_with(url: &str, headers: &[(&str, &str)]) -> Result<(u16, Vec<u8>), String> {
    let mut request = http_agent(Duration::from_secs(30)).get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut response = request.call().map_err(|error| error.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(256 * 1024 * 1024)
        .read_to_vec()
        .map_err(|error| error.to_string())?;
    Ok((status, body))
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------------------------

/// A fresh database `wharf_e2e_<uuid>` on the test server; dropped (best effort) on drop.
#[derive(Debug)]
pub struct TestDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl TestDatabase {
    /// Creates the database; fails the test when PostgreSQL cannot be reached.
    pub fn create() -> TestDatabase {
        let admin_url = postgres_admin_url();
        let name = format!("wharf_e2e_{}", uuid::Uuid::new_v4().simple());
        block_on(async {
            use sqlx::Connection;
            let mut connection = sqlx::PgConnection::connect(&admin_url)
                .await
                .unwrap_or_else(|error| {
                    panic!(
                        "PostgreSQL is not reachable at {} ({error}): {HOW_TO_START}, or set \
                         WHARF_TEST_POSTGRES_URL to a server where this user may CREATE DATABASE",
                        redact(&admin_url)
                    )
                });
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut connection)
                .await
                .unwrap_or_else(|error| panic!("CREATE DATABASE {name} failed: {error}"));
            let _ = connection.close().await;
        });
        let url = with_database(&admin_url, &name);
        TestDatabase {
            admin_url,
            name,
            url,
        }
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `host:port` of the server.
    pub fn server_address(&self) -> String {
        host_port(&self.url, 5432)
    }

    /// The database's URL through another `host:port` (a proxy in front of the server).
    pub fn url_via(&self, address: &str) -> String {
        with_address(&self.url, address)
    }

    /// Runs a query returning one `bigint` (e.g. `SELECT count(*) …`).
    pub fn query_i64(&self, sql: &str) -> i64 {
        let sql = sql.to_owned();
        block_on(async {
            use sqlx::Connection;
            let mut connection = sqlx::PgConnection::connect(&self.url)
                .await
                .unwrap_or_else(|error| panic!("cannot connect to {}: {error}", self.name));
            let value: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone()))
                .fetch_one(&mut connection)
                .await
                .unwrap_or_else(|error| panic!("{sql} failed: {error}"));
            let _ = connection.close().await;
            value
        })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let result = block_on(async {
            use sqlx::Connection;
            let mut connection = sqlx::PgConnection::connect(&self.admin_url).await?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )))
            .execute(&mut connection)
            .await?;
            connection.close().await
        });
        if let Err(error) = result {
            eprintln!("could not drop the test database {}: {error}", self.name);
        }
    }
}

/// A URL with any password replaced, for messages.
fn redact(url: &str) -> String {
    let (scheme, authority, rest) = split_url(url);
    match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _)) => format!("{scheme}{user}:***@{host}{rest}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// S3 (moto)
// ---------------------------------------------------------------------------------------------

/// A private moto S3 server on a free port; killed on drop.
#[derive(Debug)]
pub struct S3Server {
    child: Option<Child>,
    port: u16,
    log_path: PathBuf,
}

impl S3Server {
    /// Starts `tests/.venv/bin/moto_server` with its log in `log_dir/moto.log`.
    pub fn start(log_dir: &Path) -> S3Server {
        let binary = workspace_root().join("tests/.venv/bin/moto_server");
        assert!(
            binary.is_file(),
            "the S3 test server {} is missing: run `make venv`, or \
             `tests/.venv/bin/pip install -r tests/python/requirements.txt` (moto[server])",
            binary.display()
        );
        let log_path = log_dir.join("moto.log");
        for _attempt in 0..3 {
            let port = free_port();
            let (log, log_err) = append_log(&log_path);
            let child = Command::new(&binary)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log_err)
                .spawn()
                .unwrap_or_else(|error| panic!("cannot start {}: {error}", binary.display()));
            let mut server = S3Server {
                child: Some(child),
                port,
                log_path: log_path.clone(),
            };
            if server.wait_ready(Duration::from_secs(30)) {
                return server;
            }
            server.stop();
        }
        panic!(
            "moto_server did not start; log:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
    }

    fn wait_ready(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(_)) = child.try_wait()
            {
                return false;
            }
            if http_get(&self.endpoint()).is_ok_and(|(status, _)| status == 200) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Creates `bucket`.
    pub fn create_bucket(&self, bucket: &str) {
        let response = http_agent(Duration::from_secs(30))
            .put(&format!("{}/{bucket}", self.endpoint()))
            .send_empty()
            .unwrap_or_else(|error| panic!("cannot create bucket {bucket}: {error}"));
        assert_eq!(
            response.status().as_u16(),
            200,
            "creating bucket {bucket} failed"
        );
    }

    /// Every key below `prefix` in `bucket`, with its size (ListObjectsV2, all pages).
    pub fn list(&self, bucket: &str, prefix: &str) -> Vec<(String, u64)> {
        let mut objects = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut url = format!(
                "{}/{bucket}?list-type=2&prefix={}",
                self.endpoint(),
                percent_encode(prefix)
            );
            if let Some(token) = &token {
                url.push_str(&format!("&continuation-token={}", percent_encode(token)));
            }
            let (status, body) =
                http_get_with(&url, &MOTO_AUTH).unwrap_or_else(|error| panic!("{url}: {error}"));
            let body = String::from_utf8_lossy(&body).into_owned();
            assert_eq!(status, 200, "listing {url} failed: {body}");
            for contents in xml_elements(&body, "Contents") {
                let key = xml_elements(contents, "Key")
                    .first()
                    .map(|key| xml_unescape(key))
                    .unwrap_or_default();
                let size = xml_elements(contents, "Size")
                    .first()
                    .and_then(|size| size.parse().ok())
                    .unwrap_or(0);
                objects.push((key, size));
            }
            let truncated = xml_elements(&body, "IsTruncated").first() == Some(&"true");
            token = xml_elements(&body, "NextContinuationToken")
                .first()
                .map(|token| xml_unescape(token));
            if !truncated || token.is_none() {
                break;
            }
        }
        objects
    }

    /// The bytes of object `key` in `bucket`, or `None` when it does not exist.
    pub fn get(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let path: Vec<String> = key.split('/').map(percent_encode).collect();
        let url = format!("{}/{bucket}/{}", self.endpoint(), path.join("/"));
        let (status, body) =
            http_get_with(&url, &MOTO_AUTH).unwrap_or_else(|error| panic!("{url}: {error}"));
        match status {
            200 => Some(body),
            404 => None,
            other => panic!(
                "GET {url} answered {other}: {}",
                String::from_utf8_lossy(&body)
            ),
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Headers that make moto treat a request as coming from the services' (dummy) credentials:
/// moto parses the access key from `Authorization` but does not check signatures, and refuses
/// anonymous reads of objects written with credentials.
const MOTO_AUTH: [(&str, &str); 2] = [
    (
        "Authorization",
        "AWS4-HMAC-SHA256 Credential=wharf-e2e/20240101/us-east-1/s3/aws4_request, \
         SignedHeaders=host;x-amz-date, Signature=0",
    ),
    ("x-amz-date", "20240101T000000Z"),
];

fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// The inner texts of every `<name>…</name>` element (no nesting of the same name).
fn xml_elements<'a>(xml: &'a str, name: &str) -> Vec<&'a str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let mut found = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else {
            break;
        };
        found.push(&after[..end]);
        rest = &after[end + close.len()..];
    }
    found
}

fn xml_unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

// ---------------------------------------------------------------------------------------------
// NATS
// ---------------------------------------------------------------------------------------------

/// A private `nats-server -js` on a free port with its own store directory, which a test may
/// stop and start again (same port, same store) to simulate an outage.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl NatsServer {
    /// Starts the server and waits until it accepts connections.
    pub fn start() -> NatsServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server = NatsServer {
            child: None,
            port: free_port(),
            dir,
        };
        server.spawn();
        server
    }

    fn binary() -> PathBuf {
        let binary = std::env::var_os("WHARF_TEST_NATS_SERVER")
            .map_or_else(|| PathBuf::from(DEFAULT_NATS_SERVER), PathBuf::from);
        assert!(
            binary.is_file(),
            "{} is missing: install NATS with `make services` (scripts/ensure-services.sh \
             installs Debian's nats-server), or set WHARF_TEST_NATS_SERVER",
            binary.display()
        );
        binary
    }

    fn spawn(&mut self) {
        let (log, log_err) = append_log(&self.dir.path().join("nats.log"));
        let child = Command::new(NatsServer::binary())
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(self.dir.path().join("store"))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if tcp_reachable(&format!("127.0.0.1:{}", self.port)).is_ok() {
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("nats-server exited with {status}; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("nats-server did not listen in time; log:\n{}", self.log());
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nats.log")).unwrap_or_default()
    }

    /// Kills the server (`SIGKILL`): every client loses its connection at once.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same store.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Fails the test unless NATS answers at `url`.
fn require_nats(url: &str) {
    let address = host_port(url, 4222);
    if let Err(error) = tcp_reachable(&address) {
        panic!(
            "NATS is not reachable at {address} ({error}): {HOW_TO_START}, or set WHARF_TEST_NATS_URL"
        );
    }
}

/// The name of the public events stream for a subject prefix (as `wharf-bus` derives it).
pub fn events_stream_name(prefix: &str) -> String {
    format!(
        "{}_EVENTS",
        prefix.to_ascii_uppercase().replace(['.', '-'], "_")
    )
}

/// The name of the staged-uploads work queue for a subject prefix.
pub fn uploads_stream_name(prefix: &str) -> String {
    format!(
        "{}_UPLOADS",
        prefix.to_ascii_uppercase().replace(['.', '-'], "_")
    )
}

/// A message read back from a JetStream stream.
#[derive(Debug, Clone)]
pub struct StreamMessage {
    /// Its subject.
    pub subject: String,
    /// Its payload.
    pub payload: Vec<u8>,
}

/// Every message in `stream` at `url`, in order.
pub fn read_stream(url: &str, stream: &str) -> Vec<StreamMessage> {
    block_on(async {
        let client = async_nats::connect(url)
            .await
            .unwrap_or_else(|error| panic!("cannot connect to NATS at {url}: {error}"));
        let jetstream = async_nats::jetstream::new(client);
        let mut handle = jetstream
            .get_stream(stream)
            .await
            .unwrap_or_else(|error| panic!("no JetStream stream {stream}: {error}"));
        let state = handle.info().await.expect("stream info").state.clone();
        let mut messages = Vec::new();
        if state.messages == 0 {
            return messages;
        }
        for sequence in state.first_sequence..=state.last_sequence {
            match handle.get_raw_message(sequence).await {
                Ok(message) => messages.push(StreamMessage {
                    subject: message.subject.to_string(),
                    payload: message.payload.to_vec(),
                }),
                Err(error) => {
                    // A deleted message leaves a gap; anything else is a failure.
                    let text = error.to_string();
                    assert!(
                        text.contains("not found") || text.contains("no message"),
                        "reading {stream} #{sequence}: {text}"
                    );
                }
            }
        }
        messages
    })
}

/// Deletes the streams of `prefix` (best effort).
fn delete_streams(url: &str, prefix: &str) {
    let result: Result<(), String> = block_on(async {
        let client = tokio::time::timeout(Duration::from_secs(5), async_nats::connect(url))
            .await
            .map_err(|_| "timeout".to_owned())?
            .map_err(|error| error.to_string())?;
        let jetstream = async_nats::jetstream::new(client);
        for stream in [uploads_stream_name(prefix), events_stream_name(prefix)] {
            let _ = tokio::time::timeout(Duration::from_secs(5), jetstream.delete_stream(&stream))
                .await;
        }
        Ok(())
    });
    if let Err(error) = result {
        eprintln!("could not delete the NATS streams of {prefix}: {error}");
    }
}

// ---------------------------------------------------------------------------------------------
// TCP proxy
// ---------------------------------------------------------------------------------------------

/// A TCP proxy from a free local port to `upstream`, whose connections a test can cut (every
/// open connection is reset and new ones are closed at once, as if the server were gone) and
/// restore.
#[derive(Debug)]
pub struct TcpProxy {
    port: u16,
    state: Arc<ProxyState>,
    accept_thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Debug)]
struct ProxyState {
    upstream: String,
    up: AtomicBool,
    stopping: AtomicBool,
    connections: Mutex<Vec<TcpStream>>,
}

impl ProxyState {
    fn cut_all(&self) {
        let connections = std::mem::take(
            &mut *self
                .connections
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for connection in connections {
            let _ = connection.shutdown(Shutdown::Both);
        }
    }
}

impl TcpProxy {
    /// Starts forwarding a free port to `upstream` (`host:port`).
    pub fn start(upstream: &str) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let state = Arc::new(ProxyState {
            upstream: upstream.to_owned(),
            up: AtomicBool::new(true),
            stopping: AtomicBool::new(false),
            connections: Mutex::new(Vec::new()),
        });
        let accept_state = Arc::clone(&state);
        let accept_thread = std::thread::spawn(move || {
            for incoming in listener.incoming() {
                if accept_state.stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = incoming else { continue };
                if !accept_state.up.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                relay(&accept_state, client);
            }
        });
        TcpProxy {
            port,
            state,
            accept_thread: Some(accept_thread),
        }
    }

    /// `127.0.0.1:<port>`, the address to connect to instead of the upstream.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Resets every open connection and refuses new ones until [`TcpProxy::restore`].
    pub fn cut(&self) {
        self.state.up.store(false, Ordering::SeqCst);
        self.state.cut_all();
    }

    /// Forwards new connections again.
    pub fn restore(&self) {
        self.state.up.store(true, Ordering::SeqCst);
    }
}

fn relay(state: &Arc<ProxyState>, client: TcpStream) {
    let Some(server) = state
        .upstream
        .to_socket_addrs()
        .ok()
        .and_then(|mut addresses| addresses.next())
        .and_then(|address| TcpStream::connect_timeout(&address, Duration::from_secs(2)).ok())
    else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let clones = (
        client.try_clone(),
        server.try_clone(),
        client.try_clone(),
        server.try_clone(),
    );
    let (Ok(client_read), Ok(server_write), Ok(client_track), Ok(server_track)) = clones else {
        return;
    };
    {
        let mut connections = state
            .connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        connections.retain(|connection| connection.peer_addr().is_ok());
        connections.push(client_track);
        connections.push(server_track);
    }
    let pump = |mut from: TcpStream, mut to: TcpStream| {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
        });
    };
    pump(client_read, server_write);
    pump(server, client);
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.state.stopping.store(true, Ordering::SeqCst);
        self.state.cut_all();
        // Wake the accept loop so it sees `stopping`.
        let _ = TcpStream::connect_timeout(
            &SocketAddr::from(([127, 0, 0, 1], self.port)),
            Duration::from_secs(1),
        );
        if let Some(thread) = self.accept_thread.take() {
            let _ = thread.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The cluster
// ---------------------------------------------------------------------------------------------

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
}

impl ClusterBuilder {
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
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    fn name(&self) -> String {
        format!("{}-{}", self.role.command(), self.index)
    }

    fn spawn(&mut self) {
        let (log, log_err) = append_log(&self.log_path);
        let mut command = Command::new(wharf_binary());
        command
            .arg(self.role.command())
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .args(&self.args);
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
        let url = format!("{}/readyz", self.url());
        let agent = http_agent(Duration::from_secs(10));
        while Instant::now() < deadline {
            match self.child.as_mut().map(Child::try_wait) {
                None | Some(Ok(Some(_))) => return false,
                _ => {}
            }
            // A mutual-TLS verifier only talks to gateways (whose own readiness calls it), so
            // here it is ready once it accepts connections.
            let ready = if self.tls {
                TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            } else {
                agent
                    .get(&url)
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
        let verifiers: Vec<usize> = (0..builder.verifiers)
            .map(|index| cluster.add(Role::Verifier, index, &builder.verifier_args))
            .collect();
        cluster.start_all(&verifiers);
        let workers: Vec<usize> = (0..builder.workers)
            .map(|index| cluster.add(Role::Worker, index, &builder.worker_args))
            .collect();
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
        args
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
                let service = &mut self.services[position];
                let exited = service
                    .child
                    .as_mut()
                    .is_some_and(|child| matches!(child.try_wait(), Ok(Some(_))));
                attempts += 1;
                if !exited || attempts >= 3 || !service.log().contains("failed to listen") {
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
        run_ok(
            Command::new(wharf_binary())
                .arg("admin")
                .arg("--data-dir")
                .arg(self.dir.path().join("data-admin"))
                .arg("--database-url")
                .arg(self.database.url())
                .args(args),
        )
        .trim()
        .to_owned()
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
