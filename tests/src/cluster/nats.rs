//! NATS: the shared server, a private `nats-server` for outage tests, and reading streams back.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::support::{HOW_TO_START, append_log, block_on, host_port, tcp_reachable};
use crate::free_port;

/// The shared NATS server with JetStream.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";
/// The `nats-server` binary for private servers (`WHARF_TEST_NATS_SERVER` overrides it).
pub const DEFAULT_NATS_SERVER: &str = "/usr/sbin/nats-server";

/// The URL of the shared NATS server.
pub fn shared_nats_url() -> String {
    std::env::var("WHARF_TEST_NATS_URL").unwrap_or_else(|_| DEFAULT_NATS_URL.to_owned())
}

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
pub(super) fn require_nats(url: &str) {
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
pub(super) fn delete_streams(url: &str, prefix: &str) {
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
