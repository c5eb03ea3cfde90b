//! A tiny HTTP/1.1 client over a plain `TcpStream`, for what a high-level client hides: the
//! reason phrase of the status line (PyPI puts its upload error messages there) and a request
//! body written slowly, in paced chunks.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A response as it came off the wire.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// The status code.
    pub status: u16,
    /// The reason phrase (decoded as ISO-8859-1).
    pub reason: String,
    /// The headers in order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|error| panic!("body is not JSON ({error}): {}", self.text()))
    }
}

/// `host:port` of an `http://host:port[/…]` URL.
fn authority(base_url: &str) -> &str {
    let rest = base_url.strip_prefix("http://").unwrap_or(base_url);
    rest.split('/').next().unwrap_or(rest)
}

/// Sends one request (with `Connection: close`) and reads the whole response.
pub fn request(
    base_url: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> RawResponse {
    request_paced(
        base_url,
        method,
        path,
        headers,
        body,
        body.len().max(1),
        Duration::ZERO,
        |_| {},
    )
}

/// Sends one request whose body goes out in `chunk`-byte pieces with `pause` between them;
/// `progress` is called with the number of body bytes sent after each piece.
#[allow(clippy::too_many_arguments)]
pub fn request_paced(
    base_url: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    chunk: usize,
    pause: Duration,
    mut progress: impl FnMut(usize),
) -> RawResponse {
    let host = authority(base_url);
    let mut stream =
        TcpStream::connect(host).unwrap_or_else(|error| panic!("connect to {host}: {error}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .expect("read timeout");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" || method == "PUT" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .expect("write request head");
    let mut sent = 0;
    for piece in body.chunks(chunk.max(1)) {
        if let Err(error) = stream.write_all(piece) {
            // The server may answer (and close) before reading the whole body; its answer is
            // what the test wants.
            eprintln!("request body write stopped after {sent} bytes: {error}");
            break;
        }
        sent += piece.len();
        progress(sent);
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
    }
    let _ = stream.flush();
    let mut raw = Vec::new();
    if let Err(error) = stream.read_to_end(&mut raw)
        && raw.is_empty()
    {
        panic!("no response to {method} {path}: {error}");
    }
    parse_response(&raw, method == "HEAD")
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// Parses a complete HTTP/1.1 response.
pub fn parse_response(raw: &[u8], head_only: bool) -> RawResponse {
    let end = find(raw, b"\r\n\r\n")
        .unwrap_or_else(|| panic!("incomplete response: {:?}", String::from_utf8_lossy(raw)));
    // Reason phrases are ISO-8859-1: map each byte to the same code point.
    let head: String = raw[..end].iter().map(|byte| char::from(*byte)).collect();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let _version = parts.next();
    let status: u16 = parts
        .next()
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let reason = parts.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let rest = &raw[end + 4..];
    let header = |name: &str| {
        headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    let body = if head_only || status == 204 || status == 304 {
        Vec::new()
    } else if header("transfer-encoding").is_some_and(|value| value.eq_ignore_ascii_case("chunked"))
    {
        dechunk(rest)
    } else if let Some(length) =
        header("content-length").and_then(|value| value.parse::<usize>().ok())
    {
        rest[..length.min(rest.len())].to_vec()
    } else {
        rest.to_vec()
    };
    RawResponse {
        status,
        reason,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(line_end) = find(data, b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        data = &data[line_end + 2..];
        if size == 0 || data.len() < size {
            break;
        }
        body.extend_from_slice(&data[..size]);
        data = &data[(size + 2).min(data.len())..];
    }
    body
}
