//! Request body limits (issue #12, finding 1): only `/legacy/` streams a large body; the
//! trusted-publishing routes refuse an oversized `Content-Length` before reading a byte of
//! the body, and stop reading a body without one at the limit. Spoken over raw TCP so that
//! the test decides exactly what is sent, and can leave the body unfinished.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wharf_app::TestApp;
use wharf_e2e::dist::WheelBuilder;
use wharf_gateway::SMALL_BODY_BYTES;

/// A `Content-Length` an attacker might announce: 400 MiB.
const HUGE: u64 = 400 * 1024 * 1024;
/// Where an unfinished chunked body stops growing: far over the limit.
const ENDLESS_BOUND: usize = 64 * 1024 * 1024;
/// How long the server has to answer. A server that waits for the body never answers, and
/// the test fails on this deadline instead of hanging.
const ANSWER_DEADLINE: Duration = Duration::from_secs(30);

/// A parsed HTTP/1.1 response: status code and body (the head is not needed here).
struct Answer {
    status: u16,
    body: String,
}

/// The `host:port` of the app, for a raw socket.
fn address(app: &TestApp) -> String {
    app.base_url()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

/// Reads one response from `reader` until the server closes the connection (it must, since
/// the request body was not read to its end), then parses the status line and the body.
async fn read_answer(mut reader: impl AsyncReadExt + Unpin) -> Answer {
    let mut received = Vec::new();
    let mut buffer = [0_u8; 8192];
    let read = async {
        loop {
            match reader.read(&mut buffer).await {
                Ok(0) => break,
                Ok(count) => received.extend_from_slice(&buffer[..count]),
                // A reset after the answer (the unread body) still leaves the answer read.
                Err(_) if !received.is_empty() => break,
                Err(error) => panic!("reading the answer: {error}"),
            }
        }
    };
    tokio::time::timeout(ANSWER_DEADLINE, read)
        .await
        .expect("an answer before the body was sent");
    let text = String::from_utf8_lossy(&received).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let chunked = head
        .lines()
        .any(|line| line.eq_ignore_ascii_case("transfer-encoding: chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Answer { status, body }
}

/// The data of a chunked body.
fn dechunk(mut body: &str) -> String {
    let mut data = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).expect("a chunk size");
        if size == 0 {
            break;
        }
        data.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    data
}

/// Sends only the head of a POST to `path` announcing `HUGE` bytes, and reads the answer.
async fn post_head_only(app: &TestApp, path: &str) -> Answer {
    let mut socket = TcpStream::connect(address(app)).await.expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {HUGE}\r\n\r\n"
    );
    socket.write_all(head.as_bytes()).await.expect("the head");
    read_answer(socket).await
}

/// POSTs to `path` a chunked body that never ends (chunks until the server hangs up), and
/// reads the answer, which must therefore come before the body's end.
async fn post_endless_chunks(app: &TestApp, path: &str) -> Answer {
    let socket = TcpStream::connect(address(app)).await.expect("connect");
    let (reader, mut writer) = socket.into_split();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n"
    );
    writer.write_all(head.as_bytes()).await.expect("the head");
    let sender = tokio::spawn(async move {
        let chunk = format!("4000\r\n{}\r\n", " ".repeat(0x4000));
        let mut sent = 0_usize;
        // Until the server hangs up, or a bound that keeps a server that reads everything
        // (the bug) from eating the machine; the body is never finished either way.
        while sent < ENDLESS_BOUND && writer.write_all(chunk.as_bytes()).await.is_ok() {
            sent += 0x4000;
        }
        // The writer is handed back, so the connection stays open with the body unfinished.
        (sent, writer)
    });
    let answer = read_answer(reader).await;
    let (sent, _writer) = sender.await.expect("the sender");
    assert!(sent > SMALL_BODY_BYTES, "only {sent} bytes were sent");
    answer
}

#[tokio::test]
async fn an_oversized_content_length_is_refused_before_the_body_is_sent() {
    let app = TestApp::new().await.expect("the test app");
    for path in [
        "/_/oidc/mint-token",
        "/_/oidc/github/mint-token",
        "/_/oidc/burn-token",
    ] {
        let answer = post_head_only(&app, path).await;
        assert_eq!(answer.status, 413, "{path}: {}", answer.body);
        assert_eq!(answer.body, "length limit exceeded", "{path}");
    }
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_stops_being_read_at_the_limit() {
    let app = TestApp::new().await.expect("the test app");

    // Mint-token keeps its refusal of a too-long body: PyPI's JSON, `invalid-payload`.
    let answer = post_endless_chunks(&app, "/_/oidc/mint-token").await;
    assert_eq!(answer.status, 422, "{}", answer.body);
    let body: Value = serde_json::from_str(&answer.body).expect("a JSON body");
    assert_eq!(body["errors"][0]["code"], "invalid-payload", "{body}");
    assert!(
        body["errors"][0]["description"]
            .as_str()
            .is_some_and(|text| text.contains("request body too large")),
        "{body}"
    );
    assert!(body["message"].is_string(), "{body}");

    // Burn-token answers 202 whatever happened, as PyPI does.
    let answer = post_endless_chunks(&app, "/_/oidc/burn-token").await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    let body: Value = serde_json::from_str(&answer.body).expect("a JSON body");
    assert_eq!(
        body,
        serde_json::json!({ "message": "Accepted", "errors": [] })
    );
}

#[tokio::test]
async fn legacy_upload_still_accepts_a_file_over_the_small_limit() {
    let app = TestApp::new().await.expect("the test app");
    let token = app
        .user_with_token("big-uploader")
        .await
        .expect("a user and token");
    let dist = WheelBuilder::new("big-demo", "1.0")
        .padding(4 * SMALL_BODY_BYTES)
        .build();
    assert!(dist.size() > 4 * SMALL_BODY_BYTES);
    let form = dist.form();
    let response = app
        .client()
        .post(app.url("/legacy/"))
        .basic_auth("__token__", Some(&token))
        .header("Content-Type", form.content_type())
        .body(form.body())
        .send()
        .await
        .expect("the upload");
    let status = response.status();
    let body = response.text().await.expect("the body");
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, "");
}
