//! Hostile HTTP against a real `wharf serve`, over raw TCP: oversized headers, a huge field,
//! endless parts and part headers, slow senders (headers and body), duplicated fields,
//! invalid UTF-8, and a request cut off mid-body. Each gets a clear error; staging is empty
//! afterwards; the server stays healthy; and its peak memory (VmHWM) stays under
//! [`PEAK_MEMORY_BOUND`]. Then races and crashes: look-alike first uploads at once, concurrent
//! uploads against the project size limit, and a SIGKILL mid-upload.
//!
//! The timeouts are set short by flags (1 s) so the slow-sender tests finish fast; the tests
//! wait on the server (a blocking read with a generous ceiling), never on a clock.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wharf_e2e::Registry;
use wharf_e2e::dist::{Dist, Form, WheelBuilder, token_auth};
use wharf_e2e::raw_http::{RawResponse, parse_response, request};

/// Peak resident memory of the debug-build server across any test here.
const PEAK_MEMORY_BOUND: u64 = 100 * 1024 * 1024;
/// Longest a test waits for the server to answer or close (the server's own limits are 1 s).
const SERVER_CEILING: Duration = Duration::from_secs(30);
const BOUNDARY: &str = "hostileBoundary7d2f";

/// A registry with short timeouts and small limits, and a user token.
fn hostile_registry() -> (Registry, String) {
    let registry = Registry::start_with(&[
        "--header-read-timeout",
        "1s",
        "--body-idle-timeout",
        "1s",
        "--max-form-parts",
        "100",
        "--max-file-size",
        "1MiB",
    ]);
    let token = registry.user_with_token("mallory", &[]);
    (registry, token)
}

/// Writes `bytes` (stopping quietly if the server closes first) and reads the answer.
fn exchange(stream: &mut TcpStream, bytes: &[u8]) -> Option<RawResponse> {
    stream
        .set_read_timeout(Some(SERVER_CEILING))
        .expect("read timeout");
    for piece in bytes.chunks(64 * 1024) {
        if stream.write_all(piece).is_err() {
            break;
        }
    }
    read_answer(stream)
}

/// Reads until the server closes; `None` when it closed without a response.
fn read_answer(stream: &mut TcpStream) -> Option<RawResponse> {
    let mut raw = Vec::new();
    let started = Instant::now();
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => raw.extend_from_slice(&buffer[..read]),
            // A reset after the answer (unread request bytes) ends the exchange too.
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(error) => panic!(
                "the server neither answered nor closed within {:?}: {error}",
                started.elapsed()
            ),
        }
    }
    let complete = raw.windows(4).any(|window| window == b"\r\n\r\n");
    complete.then(|| parse_response(&raw, false))
}

fn connect(registry: &Registry) -> TcpStream {
    TcpStream::connect(registry.address()).expect("connect")
}

/// The head of a `POST /legacy/` with the token and a multipart body of `length` bytes.
fn upload_head(token: &str, length: usize) -> String {
    format!(
        "POST /legacy/ HTTP/1.1\r\nHost: wharf\r\nConnection: close\r\n\
         Authorization: {}\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n\
         Content-Length: {length}\r\n\r\n",
        token_auth(token)
    )
}

/// One text part.
fn text_part(name: &str, value: &[u8]) -> Vec<u8> {
    let mut part =
        format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n")
            .into_bytes();
    part.extend_from_slice(value);
    part.extend_from_slice(b"\r\n");
    part
}

/// A whole upload request of `parts` (the closing boundary is added).
fn upload_request(token: &str, parts: &[Vec<u8>]) -> Vec<u8> {
    let mut body: Vec<u8> = parts.concat();
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    let mut request = upload_head(token, body.len()).into_bytes();
    request.extend_from_slice(&body);
    request
}

/// The body of `form` with this file's boundary.
fn form_body(form: &Form) -> Vec<u8> {
    let body = form.body();
    let theirs = form
        .content_type()
        .split("boundary=")
        .nth(1)
        .expect("a boundary")
        .to_owned();
    replace_all(&body, theirs.as_bytes(), BOUNDARY.as_bytes())
}

fn replace_all(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut rest = haystack;
    while let Some(at) = rest.windows(from.len()).position(|window| window == from) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(to);
        rest = &rest[at + from.len()..];
    }
    out.extend_from_slice(rest);
    out
}

#[track_caller]
fn assert_refused(response: Option<RawResponse>, status: u16, reason: &str) {
    let response = response.expect("a response before the connection closed");
    assert_eq!(
        (response.status, response.reason.as_str()),
        (status, reason),
        "body: {}",
        response.text()
    );
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|entry| {
            let path = entry.path();
            if path.is_dir() {
                files_under(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}

/// Staging empties (an aborted upload's cleanup runs as its request ends).
#[track_caller]
fn assert_staging_empty(registry: &Registry) {
    let staging = registry.data_dir().join("files").join("staging");
    let deadline = Instant::now() + SERVER_CEILING;
    while !files_under(&staging).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left = files_under(&staging);
    assert!(left.is_empty(), "staging left: {left:?}");
}

/// The server answers `/healthz`, and its peak memory so far is under the bound.
#[track_caller]
fn assert_healthy_and_bounded(registry: &Registry) {
    let health = request(&registry.url(), "GET", "/healthz", &[], &[]);
    assert_eq!(health.status, 200, "healthz after the hostile requests");
    let status = std::fs::read_to_string(format!("/proc/{}/status", registry.pid()))
        .expect("the server's /proc status");
    let peak_kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc status");
    assert!(
        peak_kib * 1024 < PEAK_MEMORY_BOUND,
        "peak memory {peak_kib} KiB is over the {} MiB bound",
        PEAK_MEMORY_BOUND / (1024 * 1024)
    );
}

#[test]
fn oversized_headers_are_431() {
    let (registry, _token) = hostile_registry();
    // One header larger than the connection's read buffer.
    let huge = format!(
        "GET /simple/ HTTP/1.1\r\nHost: wharf\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(1024 * 1024)
    );
    let response = exchange(&mut connect(&registry), huge.as_bytes()).expect("a response");
    assert_eq!(response.status, 431, "one huge header");
    // More header lines than the server accepts.
    let mut many = String::from("GET /simple/ HTTP/1.1\r\nHost: wharf\r\n");
    for index in 0..500 {
        many.push_str(&format!("X-Header-{index}: value\r\n"));
    }
    many.push_str("\r\n");
    let response = exchange(&mut connect(&registry), many.as_bytes()).expect("a response");
    assert_eq!(response.status, 431, "too many headers");
    // A path of invalid UTF-8 (percent-encoded) is a clear client error, not a crash.
    let response = request(&registry.url(), "GET", "/simple/%ff%fe/", &[], &[]);
    assert!(
        (400..500).contains(&response.status),
        "invalid UTF-8 path: {}",
        response.status
    );
    assert_healthy_and_bounded(&registry);
}

#[test]
fn huge_fields_and_endless_parts_are_400() {
    let (registry, token) = hostile_registry();
    // One text field over the 16 MiB form budget.
    let huge = upload_request(&token, &[text_part("description", &vec![b'x'; 17 << 20])]);
    assert_refused(
        exchange(&mut connect(&registry), &huge),
        400,
        "The upload form's fields are too large.",
    );
    // A part header that never ends (the parser would buffer it whole).
    let mut endless_header =
        format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"summary\"\r\nX-Pad: ")
            .into_bytes();
    endless_header.resize(endless_header.len() + (24 << 20), b'y');
    let mut request_bytes = upload_head(&token, endless_header.len()).into_bytes();
    request_bytes.extend_from_slice(&endless_header);
    assert_refused(
        exchange(&mut connect(&registry), &request_bytes),
        400,
        "The upload form's fields are too large.",
    );
    // Endless empty parts: the part limit stops them.
    let parts: Vec<Vec<u8>> = (0..5000).map(|_| text_part("keywords", b"")).collect();
    assert_refused(
        exchange(&mut connect(&registry), &upload_request(&token, &parts)),
        400,
        "The upload form has too many fields (the limit is 100).",
    );
    assert_staging_empty(&registry);
    assert_healthy_and_bounded(&registry);
}

#[test]
fn slow_senders_are_cut_off() {
    let (registry, token) = hostile_registry();
    // Headers that never finish: the connection is closed (no request, so no answer).
    let mut stream = connect(&registry);
    let answer = exchange(
        &mut stream,
        b"GET /simple/ HTTP/1.1\r\nHost: wharf\r\nX-Slow: a",
    );
    assert!(
        answer.is_none_or(|response| response.status == 408),
        "an unfinished request head is closed or answered 408"
    );
    // A connection that sends nothing at all is closed too.
    let mut silent = connect(&registry);
    assert!(
        exchange(&mut silent, b"").is_none_or(|response| response.status == 408),
        "a silent connection is closed"
    );
    // A body that stops in the middle of the file: 408, and the staged bytes are removed.
    let dist = Dist::wheel("slow-body", "1.0");
    let body = form_body(&dist.form());
    let mut stream = connect(&registry);
    let mut partial = upload_head(&token, body.len()).into_bytes();
    partial.extend_from_slice(&body[..body.len() - dist.size() / 2]);
    assert_refused(
        exchange(&mut stream, &partial),
        408,
        "Request timeout: no data received for 1 seconds.",
    );
    assert_staging_empty(&registry);
    assert_healthy_and_bounded(&registry);
}

#[test]
fn a_request_cut_off_mid_body_leaves_nothing_behind() {
    let (registry, token) = hostile_registry();
    let dist = Dist::wheel("cut-off", "1.0");
    let body = form_body(&dist.form());
    {
        let mut stream = connect(&registry);
        stream
            .write_all(upload_head(&token, body.len()).as_bytes())
            .expect("write head");
        stream
            .write_all(&body[..body.len() - dist.size() / 2])
            .expect("write half the body");
        stream.shutdown(Shutdown::Both).expect("cut the connection");
    }
    assert_staging_empty(&registry);
    assert_eq!(
        request(&registry.url(), "GET", "/simple/cut-off/", &[], &[]).status,
        404,
        "nothing was published"
    );
    // The same upload, sent whole, goes through.
    let mut whole = upload_head(&token, body.len()).into_bytes();
    whole.extend_from_slice(&body);
    assert_refused(exchange(&mut connect(&registry), &whole), 200, "OK");
    assert_staging_empty(&registry);
    assert_healthy_and_bounded(&registry);
}

#[test]
fn duplicated_fields_and_invalid_utf8() {
    let (registry, token) = hostile_registry();
    // A repeated single-use field is refused, as Warehouse's form parser does; a multi-use
    // field may repeat.
    let dist = Dist::wheel("twice", "1.0");
    let upload = |form: &Form| {
        let body = form_body(form);
        let mut bytes = upload_head(&token, body.len()).into_bytes();
        bytes.extend_from_slice(&body);
        exchange(&mut connect(&registry), &bytes)
    };
    assert_refused(
        upload(&dist.form().field("version", "9.9")),
        400,
        "'version' has invalid data. \
         See https://packaging.python.org/specifications/core-metadata for more information.",
    );
    let classifiers = dist
        .form()
        .field("classifiers", "Programming Language :: Python :: 3")
        .field("classifiers", "Operating System :: OS Independent");
    assert_refused(upload(&classifiers), 200, "OK");
    let json = request(&registry.url(), "GET", "/pypi/twice/json", &[], &[]).json();
    assert_eq!(json["info"]["version"], "1.0");
    // Two file parts.
    let second = Dist::wheel("twice", "1.1");
    let mut body = form_body(&second.form());
    let closing = format!("--{BOUNDARY}--\r\n");
    body.truncate(body.len() - closing.len());
    let file_part = form_body(&Form::new().file(
        "content",
        &second.filename,
        Some("application/octet-stream"),
        &second.bytes,
    ));
    body.extend_from_slice(&file_part);
    let mut two_files = upload_head(&token, body.len()).into_bytes();
    two_files.extend_from_slice(&body);
    assert_refused(
        exchange(&mut connect(&registry), &two_files),
        400,
        "Upload payload has more than one file.",
    );
    // A field that is not UTF-8.
    let invalid = upload_request(
        &token,
        &[
            text_part(":action", b"file_upload"),
            text_part("summary", b"caf\xe9 \xff"),
        ],
    );
    assert_refused(
        exchange(&mut connect(&registry), &invalid),
        400,
        "'summary' has invalid data: it is not UTF-8 text",
    );
    assert_staging_empty(&registry);
    assert_healthy_and_bounded(&registry);
}

// ---------------------------------------------------------------------------------------------
// Races and crashes (issue #12, findings 7, 8 and 10)
// ---------------------------------------------------------------------------------------------

/// `POST /legacy/` of `dist` with `token`.
fn upload_dist(registry: &Registry, token: &str, dist: &Dist) -> RawResponse {
    let form = dist.form();
    request(
        &registry.url(),
        "POST",
        "/legacy/",
        &[
            ("Authorization", &token_auth(token)),
            ("Content-Type", &form.content_type()),
        ],
        &form.body(),
    )
}

/// Uploads every `(token, dist)` at once, one thread each, released together.
fn upload_at_once(registry: &Registry, uploads: Vec<(String, Dist)>) -> Vec<RawResponse> {
    let barrier = std::sync::Barrier::new(uploads.len());
    std::thread::scope(|scope| {
        let threads: Vec<_> = uploads
            .iter()
            .map(|(token, dist)| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    upload_dist(registry, token, dist)
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|thread| thread.join().expect("upload thread"))
            .collect()
    })
}

/// Two users upload the first files of `rN-lib` and `rNlib` (one ultranormalized name) at the
/// same moment, ten times: each time exactly one project exists and the other user gets
/// PyPI's look-alike refusal.
#[test]
fn lookalike_first_uploads_at_once_create_one_project() {
    let registry = Registry::start();
    let alice = registry.user_with_token("alice", &[]);
    let bob = registry.user_with_token("bob", &[]);
    for round in 0..10 {
        let names = [format!("r{round}-lib"), format!("r{round}lib")];
        let responses = upload_at_once(
            &registry,
            vec![
                (alice.clone(), Dist::wheel(&names[0], "1.0")),
                (bob.clone(), Dist::wheel(&names[1], "1.0")),
            ],
        );
        let statuses: Vec<u16> = responses.iter().map(|response| response.status).collect();
        let existing: Vec<&String> = names
            .iter()
            .filter(|name| {
                request(
                    &registry.url(),
                    "GET",
                    &format!("/simple/{name}/"),
                    &[],
                    &[],
                )
                .status
                    == 200
            })
            .collect();
        assert_eq!(
            existing.len(),
            1,
            "round {round}: {existing:?}, {statuses:?}"
        );
        let loser = usize::from(statuses[0] == 200);
        assert_eq!(statuses[1 - loser], 200, "round {round}: {statuses:?}");
        assert_eq!(statuses[loser], 400, "round {round}: {statuses:?}");
        assert_eq!(
            responses[loser].reason,
            format!(
                "The name '{}' is too similar to an existing project. See \
                 https://pypi.org/help/#project-name for more information.",
                names[loser]
            ),
            "round {round}"
        );
    }
    assert_staging_empty(&registry);
}

/// Six uploads of 300 KB each, all at once, to a project under `--max-project-size 1MiB`:
/// the project never holds more than 1 MiB, and the refused ones say so in PyPI's words with
/// the limit as "1 MB".
#[test]
fn concurrent_uploads_never_pass_the_project_size_limit() {
    let registry = Registry::start_with(&["--max-project-size", "1MiB"]);
    let token = registry.user_with_token("alice", &[]);
    let seed = WheelBuilder::new("sized", "0.1").build();
    assert_eq!(upload_dist(&registry, &token, &seed).status, 200);
    let dists: Vec<Dist> = (1..=6)
        .map(|minor| {
            WheelBuilder::new("sized", &format!("1.{minor}"))
                .padding(300 * 1024)
                .build()
        })
        .collect();
    let responses = upload_at_once(
        &registry,
        dists
            .iter()
            .map(|dist| (token.clone(), dist.clone()))
            .collect(),
    );
    let limit = 1024 * 1024;
    let mut accepted = seed.size();
    for (dist, response) in dists.iter().zip(&responses) {
        match response.status {
            200 => accepted += dist.size(),
            400 => assert_eq!(
                response.reason,
                "Project size too large. Limit for project 'sized' total size is 1 MB. \
                 See https://pypi.org/help/#project-size-limit for more information."
            ),
            other => panic!("{other}: {}", response.text()),
        }
    }
    assert!(accepted <= limit, "{accepted} bytes accepted");
    // What is stored: every file the index lists.
    let listing = request(
        &registry.url(),
        "GET",
        "/simple/sized/",
        &[("Accept", "application/vnd.pypi.simple.v1+json")],
        &[],
    );
    let stored: u64 = listing.json()["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|file| file["size"].as_u64().expect("size"))
        .sum();
    assert_eq!(stored, accepted as u64);
    assert!(stored <= limit as u64, "{stored} bytes stored");
    assert_staging_empty(&registry);
}

/// The in-progress parts of staging writes under `registry`'s data directory.
fn staging_parts(registry: &Registry) -> Vec<PathBuf> {
    files_under(&registry.data_dir().join("files").join("staging"))
        .into_iter()
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.contains('#'))
        })
        .collect()
}

/// `wharf serve` killed (SIGKILL) in the middle of a 20 MB upload, three times: each time the
/// staging write's in-progress part is there after the kill, and gone once the server is
/// back (the start-up purge sees it).
#[test]
fn a_kill_mid_upload_leaves_no_staging_part_after_restart() {
    let mut registry = Registry::start();
    let dist = WheelBuilder::new("killed", "1.0")
        .padding(20 * 1024 * 1024)
        .build();
    let body = form_body(&dist.form());
    for round in 0..3 {
        let token = registry.user_with_token(&format!("user{round}"), &[]);
        let mut stream = connect(&registry);
        stream
            .write_all(upload_head(&token, body.len()).as_bytes())
            .expect("write head");
        // More than one 8 MiB part, so the staging write has started its part file.
        stream
            .write_all(&body[..12 * 1024 * 1024])
            .expect("write most of the body");
        let deadline = Instant::now() + SERVER_CEILING;
        while staging_parts(&registry).is_empty() {
            assert!(
                Instant::now() < deadline,
                "round {round}: no staging part appeared"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let status = std::process::Command::new("kill")
            .arg("-KILL")
            .arg(registry.pid().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
        drop(stream);
        assert!(
            !staging_parts(&registry).is_empty(),
            "round {round}: the kill left no part"
        );
        registry = registry.restart_with(&[]);
        let left = staging_parts(&registry);
        assert!(
            left.is_empty(),
            "round {round}: after the restart: {left:?}"
        );
        assert_staging_empty(&registry);
    }
    assert_eq!(
        request(&registry.url(), "GET", "/simple/killed/", &[], &[]).status,
        404,
        "nothing was published"
    );
}
/// Issue #12, finding 2: a registry whose connection timeouts are short (set by flags).
fn deadline_registry() -> (Registry, String) {
    let registry = Registry::start_with(&[
        "--header-read-timeout",
        "1s",
        "--request-timeout",
        "2s",
        "--body-idle-timeout",
        "1s",
        "--upload-min-rate",
        "1KiB",
    ]);
    let token = registry.user_with_token("mallory", &[]);
    (registry, token)
}

/// What the server did to a connection the client kept feeding.
#[derive(Debug)]
enum Fed {
    /// The server answered (this response), then closed.
    Answered(RawResponse),
    /// The server closed without an answer.
    Closed,
}

impl Fed {
    /// The server's answer; panics if it closed without one.
    #[track_caller]
    fn answer(self) -> RawResponse {
        match self {
            Fed::Answered(response) => response,
            Fed::Closed => panic!("the server closed without an answer"),
        }
    }
}

/// Sends `head`, then `trickle` one byte every `pace` (never idle for long), until the
/// server answers or closes; panics if it does neither within [`SERVER_CEILING`] (the
/// connection is held).
fn trickle_until_closed(registry: &Registry, head: &[u8], trickle: &[u8], pace: Duration) -> Fed {
    let mut stream = connect(registry);
    stream.write_all(head).expect("the head");
    // The read timeout paces the trickle: each wait is for the server's answer.
    stream.set_read_timeout(Some(pace)).expect("read timeout");
    let started = Instant::now();
    let mut raw = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    let mut bytes = trickle.iter().cycle();
    let mut writing = true;
    loop {
        assert!(
            started.elapsed() < SERVER_CEILING,
            "the server held a trickling connection for {SERVER_CEILING:?}"
        );
        if writing
            && let Some(byte) = bytes.next()
            && stream.write_all(&[*byte]).is_err()
        {
            writing = false;
        }
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => raw.extend_from_slice(&buffer[..read]),
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    if raw.windows(4).any(|window| window == b"\r\n\r\n") {
        Fed::Answered(parse_response(&raw, false))
    } else {
        Fed::Closed
    }
}

#[test]
fn trickled_headers_are_cut_at_the_header_read_timeout() {
    let (registry, _token) = deadline_registry();
    // The first request's head, one header byte every 100 ms.
    let fed = trickle_until_closed(
        &registry,
        b"GET /simple/ HTTP/1.1\r\nHost: wharf\r\n",
        b"X-Slow: a\r\n",
        Duration::from_millis(100),
    );
    assert!(
        matches!(&fed, Fed::Closed)
            || matches!(&fed, Fed::Answered(response) if response.status == 408),
        "{fed:?}"
    );
    // The second request's head on a kept-alive connection, the same way.
    let fed = trickle_until_closed(
        &registry,
        b"GET /healthz HTTP/1.1\r\nHost: wharf\r\n\r\nGET /simple/ HTTP/1.1\r\nHost: wharf\r\n",
        b"X-Slow: a\r\n",
        Duration::from_millis(100),
    );
    // The first answer arrives; the trickled second request never does.
    let response = fed.answer();
    assert_eq!(response.status, 200, "{}", response.text());
    assert_healthy_and_bounded(&registry);
}

#[test]
fn a_trickled_body_gets_408_at_the_request_deadline() {
    let (registry, _token) = deadline_registry();
    // One byte every 100 ms of a 1,000-byte JSON body: never idle, never done in 2 s.
    let fed = trickle_until_closed(
        &registry,
        b"POST /_/oidc/mint-token HTTP/1.1\r\nHost: wharf\r\nContent-Type: application/json\r\n\
          Content-Length: 1000\r\n\r\n{\"token\": \"",
        b"a",
        Duration::from_millis(100),
    );
    let response = fed.answer();
    assert_eq!(response.status, 408, "{}", response.text());
    assert_healthy_and_bounded(&registry);
}

#[test]
fn an_upload_trickled_below_the_minimum_rate_is_refused_and_leaves_nothing() {
    let (registry, token) = deadline_registry();
    let dist = Dist::wheel("trickled", "1.0");
    let body = form_body(&dist.form());
    let mut head = upload_head(&token, body.len()).into_bytes();
    head.extend_from_slice(&body[..body.len() - dist.size() / 2]);
    // A byte every 100 ms: the old idle timeout (1 s) never fires, but 10 bytes a second is
    // far under 1 KiB a second.
    let fed = trickle_until_closed(&registry, &head, b"x", Duration::from_millis(100));
    assert_refused(
        Some(fed.answer()),
        408,
        "Request timeout: the upload is too slow (under 1024 bytes a second for 1 seconds).",
    );
    assert_staging_empty(&registry);
    assert_healthy_and_bounded(&registry);
}

/// An HTTP/2 frame: length, type, flags, stream id, payload.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len()).expect("a small frame");
    let mut frame = length.to_be_bytes()[1..].to_vec();
    frame.extend_from_slice(&[kind, flags]);
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

#[test]
fn an_idle_http2_connection_is_closed() {
    let (registry, _token) = deadline_registry();
    let mut stream = connect(&registry);
    // HTTP/2 with prior knowledge: the preface, empty SETTINGS, then `GET /healthz` as one
    // HEADERS frame (END_STREAM | END_HEADERS) in HPACK without Huffman: :method GET (2),
    // :scheme http (6), :path (4) "/healthz", :authority (1) "wharf".
    let mut request = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    request.extend(h2_frame(0x4, 0, 0, &[]));
    let mut block = vec![0x82, 0x86, 0x44, 8];
    block.extend_from_slice(b"/healthz");
    block.extend_from_slice(&[0x41, 5]);
    block.extend_from_slice(b"wharf");
    request.extend(h2_frame(0x1, 0x5, 1, &block));
    stream.write_all(&request).expect("the request");
    // The server answers, then, with no stream open for the idle timeout, sends GOAWAY and
    // a PING (h2's graceful shutdown), and closes once the PING is acknowledged, as any
    // live client does; a connection it holds fails the read at the ceiling.
    stream
        .set_read_timeout(Some(SERVER_CEILING))
        .expect("read timeout");
    let mut raw = Vec::new();
    let mut kinds = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => raw.extend_from_slice(&buffer[..read]),
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(error) => panic!("the idle HTTP/2 connection was held open ({kinds:?}): {error}"),
        }
        // Whole frames: note their type, acknowledge PINGs.
        while raw.len() >= 9 {
            let length = usize::from(raw[0]) << 16 | usize::from(raw[1]) << 8 | usize::from(raw[2]);
            if raw.len() < 9 + length {
                break;
            }
            let frame: Vec<u8> = raw.drain(..9 + length).collect();
            kinds.push(frame[3]);
            if frame[3] == 0x6 && frame[4] & 0x1 == 0 {
                let _ = stream.write_all(&h2_frame(0x6, 0x1, 0, &frame[9..]));
            }
        }
    }
    assert!(kinds.contains(&0x1), "no answer to the request: {kinds:?}");
    assert!(
        kinds.contains(&0x7),
        "no GOAWAY before the close: {kinds:?}"
    );
    assert_healthy_and_bounded(&registry);
}

#[test]
fn healthz_answers_while_more_sockets_than_the_file_limit_are_held() {
    const FILES: u64 = 256;
    let registry = Registry::start_with_file_limit(
        FILES,
        // Timeouts far beyond this test's deadline: only the connection cap can make room.
        &[
            "--header-read-timeout",
            "300s",
            "--request-timeout",
            "300s",
            // The attack comes from many addresses; from one, the rate limit would stop it.
            "--mint-token-rate-limit",
            "0",
        ],
    );
    // More sockets than the server has file descriptors, each a request whose body never
    // comes (the server's handler waits for it).
    let mut held = Vec::new();
    for _ in 0..FILES + 100 {
        let address = registry.address().parse().expect("an address");
        let Ok(mut socket) = TcpStream::connect_timeout(&address, Duration::from_secs(2)) else {
            continue;
        };
        let _ = socket.write_all(
            b"POST /_/oidc/mint-token HTTP/1.1\r\nHost: wharf\r\nContent-Type: application/json\r\n\
              Content-Length: 1000\r\n\r\n",
        );
        held.push(socket);
    }
    assert!(
        held.len() as u64 > FILES,
        "the attacker holds {} sockets",
        held.len()
    );
    // A fresh client gets its answers while the attacker still holds its sockets (the
    // oldest are closed to make room): the health check, and a page that needs the database.
    let deadline = Instant::now() + Duration::from_secs(60);
    for path in ["/healthz", "/simple/"] {
        loop {
            let answered = TcpStream::connect_timeout(
                &registry.address().parse().expect("an address"),
                Duration::from_secs(2),
            )
            .ok()
            .and_then(|mut stream| {
                stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
                exchange_quietly(
                    &mut stream,
                    format!("GET {path} HTTP/1.1\r\nHost: wharf\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                )
            });
            if answered
                .as_ref()
                .is_some_and(|response| response.status == 200)
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{path} did not answer while the sockets were held: {answered:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    drop(held);
    assert_healthy_and_bounded(&registry);
    assert!(
        registry.log().contains("max_connections=128"),
        "the cap is derived from the file limit: {}",
        registry.log()
    );
}

/// Writes `bytes` and reads the answer; `None` when the server closed without one or the
/// read timed out.
fn exchange_quietly(stream: &mut TcpStream, bytes: &[u8]) -> Option<RawResponse> {
    stream.write_all(bytes).ok()?;
    let mut raw = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => raw.extend_from_slice(&buffer[..read]),
            Err(_) => return None,
        }
    }
    raw.windows(4)
        .any(|window| window == b"\r\n\r\n")
        .then(|| parse_response(&raw, false))
}
