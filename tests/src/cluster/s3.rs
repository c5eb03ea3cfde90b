//! A private S3-compatible server (moto) with fresh buckets.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::support::{append_log, http_agent, http_get, http_get_with};
use crate::{free_port, workspace_root};

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

    /// Writes object `key` in `bucket` directly, as anyone on the store's network could.
    pub fn put(&self, bucket: &str, key: &str, bytes: &[u8]) {
        let path: Vec<String> = key.split('/').map(percent_encode).collect();
        let url = format!("{}/{bucket}/{}", self.endpoint(), path.join("/"));
        let mut request = ureq::put(&url);
        for (name, value) in MOTO_AUTH {
            request = request.header(name, value);
        }
        let response = request
            .send(bytes)
            .unwrap_or_else(|error| panic!("PUT {url}: {error}"));
        assert_eq!(response.status().as_u16(), 200, "PUT {url}");
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
