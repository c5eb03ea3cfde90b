//! The gateway's own routes, through the whole registry running in this test's process
//! ([`TestApp`]: gateway, verifier and worker on 127.0.0.1:0, temporary SQLite, memory store,
//! in-process bus). No binary is built and no process is started. Each test asserts the
//! status, the headers clients rely on, and the body.

use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use wharf_app::TestApp;
use wharf_e2e::dist::{Dist, WheelBuilder, md5_hex, sha256_hex};

const SIMPLE_JSON: &str = "application/vnd.pypi.simple.v1+json";
const INVALID_AUTH: &str = "Invalid or non-existent authentication information. \
     See https://pypi.org/help/#invalid-auth for more information.";
const DIGEST_MISMATCH: &str =
    "The digest supplied does not match a digest calculated from the uploaded file.";
/// The CORS headers of PyPI's read-side documents (the Simple API and the JSON API).
const CORS: [(&str, &str); 5] = [
    ("access-control-allow-origin", "*"),
    ("access-control-allow-methods", "GET"),
    (
        "access-control-allow-headers",
        "Content-Type, If-Match, If-Modified-Since, If-None-Match, If-Unmodified-Since",
    ),
    ("access-control-max-age", "86400"),
    ("access-control-expose-headers", "X-PyPI-Last-Serial"),
];

/// The reason phrase of a response's status line (PyPI puts its messages there).
fn reason(response: &reqwest::Response) -> String {
    response
        .extensions()
        .get::<hyper::ext::ReasonPhrase>()
        .map(|phrase| String::from_utf8_lossy(phrase.as_bytes()).into_owned())
        .or_else(|| response.status().canonical_reason().map(str::to_owned))
        .unwrap_or_default()
}

/// The header `name` of `response`, as text.
fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
}

/// Asserts the CORS headers of a read-side document.
fn assert_cors(response: &reqwest::Response) {
    for (name, value) in CORS {
        assert_eq!(header(response, name), Some(value), "{name}");
    }
}

/// The upload form twine sends for `dist`; `sha256` overrides the SHA-256 digest field.
fn upload_form(dist: &Dist, sha256: Option<&str>) -> Form {
    let sha256 = sha256.map_or_else(|| dist.sha256(), str::to_owned);
    let mut form = Form::new()
        .text(":action", "file_upload")
        .text("protocol_version", "1")
        .text("metadata_version", "2.1")
        .text("name", dist.name.clone())
        .text("version", dist.version.clone())
        .text("summary", "Wharf HTTP API fixture")
        .text("filetype", dist.filetype)
        .text("pyversion", dist.pyversion)
        .text("sha256_digest", sha256);
    if dist.filetype == "bdist_wheel" {
        form = form.text("requires_python", ">=3.8");
    }
    let content = Part::bytes(dist.bytes.clone())
        .file_name(dist.filename.clone())
        .mime_str("application/octet-stream")
        .expect("a valid media type");
    form.part("content", content)
}

/// `POST /legacy/` with `form`, as `__token__` with `token` when given.
async fn upload(
    app: &TestApp,
    token: Option<&str>,
    form: Form,
    accept: Option<&str>,
) -> reqwest::Response {
    let mut request = app.client().post(app.url("/legacy/")).multipart(form);
    if let Some(token) = token {
        request = request.basic_auth("__token__", Some(token));
    }
    if let Some(accept) = accept {
        request = request.header("Accept", accept);
    }
    request.send().await.expect("the upload request")
}

/// `GET path` with `headers`.
async fn get(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = app.client().get(app.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("the GET request")
}

/// Uploads `dist` and asserts PyPI's empty 200.
async fn upload_ok(app: &TestApp, token: &str, dist: &Dist) {
    let response = upload(app, Some(token), upload_form(dist, None), None).await;
    let status = response.status();
    let body = response.text().await.expect("the body");
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, "");
}

/// A registry with `Read_Side.Demo` 1.0 published (one wheel) by `alice`.
async fn published() -> (TestApp, Dist) {
    let app = TestApp::new().await.expect("the test app");
    let token = app
        .user_with_token("alice")
        .await
        .expect("a user and token");
    let dist = Dist::wheel("Read_Side.Demo", "1.0");
    upload_ok(&app, &token, &dist).await;
    (app, dist)
}

/// `/packages/<b2[..2]>/<b2[2..4]>/<b2[4..]>/<filename>`, where PyPI keeps a file.
fn package_path(dist: &Dist) -> String {
    let blake2 = dist.blake2_256();
    format!(
        "/packages/{}/{}/{}/{}",
        &blake2[..2],
        &blake2[2..4],
        &blake2[4..],
        dist.filename
    )
}

/// The `X-PyPI-Last-Serial` of a response, as a number.
fn last_serial(response: &reqwest::Response) -> u64 {
    header(response, "x-pypi-last-serial")
        .and_then(|serial| serial.parse().ok())
        .expect("an X-PyPI-Last-Serial number")
}

#[tokio::test]
async fn healthz_and_readyz_answer_in_plain_text() {
    let app = TestApp::new().await.expect("the test app");
    for (path, body) in [("/healthz", "ok"), ("/readyz", "ready")] {
        let response = get(&app, path, &[]).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(
            header(&response, "content-type"),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(response.text().await.expect("the body"), body);
    }
    app.shutdown().await.expect("a clean shutdown");
}

#[tokio::test]
async fn simple_index_negotiates_html_and_json() {
    let (app, _dist) = published().await;

    let html = get(&app, "/simple/", &[]).await;
    assert_eq!(html.status(), StatusCode::OK);
    assert_eq!(header(&html, "content-type"), Some("text/html"));
    assert_eq!(header(&html, "vary"), Some("Accept"));
    assert_eq!(
        header(&html, "cache-control"),
        Some("max-age=0, must-revalidate")
    );
    assert_cors(&html);
    let serial = last_serial(&html);
    let etag = header(&html, "etag").expect("an ETag").to_owned();
    assert_eq!(
        html.text().await.expect("the body"),
        "<!DOCTYPE html>\n<html>\n  <head>\n    \
         <meta name=\"pypi:repository-version\" content=\"1.4\">\n    \
         <title>Simple index</title>\n  </head>\n  <body>\n    \
         <a href=\"/simple/read-side-demo/\">Read_Side.Demo</a>\n  </body>\n</html>\n"
    );

    // The same ETag again: nothing has changed.
    let again = get(&app, "/simple/", &[("If-None-Match", &etag)]).await;
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert!(again.bytes().await.expect("the body").is_empty());

    let json = get(&app, "/simple/", &[("Accept", SIMPLE_JSON)]).await;
    assert_eq!(json.status(), StatusCode::OK);
    assert_eq!(header(&json, "content-type"), Some(SIMPLE_JSON));
    assert_eq!(header(&json, "vary"), Some("Accept"));
    assert_cors(&json);
    assert_ne!(
        header(&json, "etag"),
        Some(etag.as_str()),
        "one ETag per form"
    );
    let body: Value = json.json().await.expect("JSON");
    assert_eq!(
        body,
        json!({
            "meta": { "_last-serial": serial, "api-version": "1.4" },
            "projects": [{ "_last-serial": serial, "name": "Read_Side.Demo" }],
        })
    );
}

#[tokio::test]
async fn simple_project_page_negotiates_html_and_json() {
    let (app, dist) = published().await;
    let file_url = app.url(&package_path(&dist));
    let metadata_sha256 = sha256_hex(dist.metadata.as_bytes());

    let html = get(&app, "/simple/read-side-demo/", &[]).await;
    assert_eq!(html.status(), StatusCode::OK);
    assert_eq!(header(&html, "content-type"), Some("text/html"));
    assert_eq!(header(&html, "vary"), Some("Accept"));
    assert_cors(&html);
    let serial = last_serial(&html);
    let expected = format!(
        "<!DOCTYPE html>\n<html>\n  <head>\n    \
         <meta name=\"pypi:repository-version\" content=\"1.4\">\n    \
         <meta name=\"pypi:project-status\" content=\"active\">\n    \
         <title>Links for read-side-demo</title>\n  </head>\n  <body>\n    \
         <h1>Links for read-side-demo</h1>\n    \
         <a href=\"{file_url}#sha256={sha256}\" data-requires-python=\"&gt;=3.8\" \
         data-dist-info-metadata=\"sha256={metadata_sha256}\" \
         data-core-metadata=\"sha256={metadata_sha256}\">{filename}</a><br />\n  \
         </body>\n</html>\n<!--SERIAL {serial}-->\n",
        sha256 = dist.sha256(),
        filename = dist.filename,
    );
    assert_eq!(html.text().await.expect("the body"), expected);

    let json = get(&app, "/simple/read-side-demo/", &[("Accept", SIMPLE_JSON)]).await;
    assert_eq!(json.status(), StatusCode::OK);
    assert_eq!(header(&json, "content-type"), Some(SIMPLE_JSON));
    assert_cors(&json);
    let mut body: Value = json.json().await.expect("JSON");
    let upload_time = body["files"][0]
        .as_object_mut()
        .and_then(|file| file.remove("upload-time"))
        .expect("an upload time");
    assert!(
        upload_time.as_str().is_some_and(|time| time.ends_with('Z')),
        "{upload_time}"
    );
    assert_eq!(
        body,
        json!({
            "files": [{
                "core-metadata": { "sha256": metadata_sha256 },
                "data-dist-info-metadata": { "sha256": metadata_sha256 },
                "filename": dist.filename,
                "hashes": { "sha256": dist.sha256() },
                "provenance": null,
                "requires-python": ">=3.8",
                "size": dist.size(),
                "url": file_url,
                "yanked": false,
            }],
            "meta": { "_last-serial": serial, "api-version": "1.4" },
            "name": "read-side-demo",
            "project-status": { "status": "active" },
            "versions": ["1.0"],
        })
    );
}

#[tokio::test]
async fn non_normalized_names_redirect_to_the_normalized_url() {
    let (app, _dist) = published().await;
    for (path, location) in [
        ("/simple", "/simple/"),
        ("/simple/Read_Side.Demo/", "/simple/read-side-demo/"),
        ("/pypi/Read_Side.Demo/json", "/pypi/read-side-demo/json"),
        (
            "/pypi/Read_Side.Demo/1.0/json",
            "/pypi/read-side-demo/1.0/json",
        ),
    ] {
        let response = get(&app, path, &[]).await;
        assert_eq!(response.status(), StatusCode::MOVED_PERMANENTLY, "{path}");
        assert_eq!(header(&response, "location"), Some(location), "{path}");
        assert!(response.bytes().await.expect("the body").is_empty());
    }
}

#[tokio::test]
async fn unknown_projects_files_and_routes_are_404() {
    let (app, _dist) = published().await;

    let simple = get(&app, "/simple/no-such-project/", &[]).await;
    assert_eq!(simple.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        header(&simple, "content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(simple.text().await.expect("the body"), "404 Not Found");

    let json = get(&app, "/pypi/no-such-project/json", &[]).await;
    assert_eq!(json.status(), StatusCode::NOT_FOUND);
    assert_eq!(header(&json, "content-type"), Some("application/json"));
    assert_cors(&json);
    let body: Value = json.json().await.expect("JSON");
    assert_eq!(body, json!({ "message": "Not Found" }));

    let file = get(&app, "/packages/00/00/0000/nothing-1.0.tar.gz", &[]).await;
    assert_eq!(file.status(), StatusCode::NOT_FOUND);
    assert_eq!(file.text().await.expect("the body"), "404 Not Found");

    let route = get(&app, "/no/such/route", &[]).await;
    assert_eq!(route.status(), StatusCode::NOT_FOUND);
    assert!(route.bytes().await.expect("the body").is_empty());
}

#[tokio::test]
async fn json_api_describes_the_project() {
    let (app, dist) = published().await;
    let response = get(&app, "/pypi/read-side-demo/json", &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "content-type"), Some("application/json"));
    assert!(header(&response, "etag").is_some());
    assert_cors(&response);
    let serial = last_serial(&response);
    let project: Value = response.json().await.expect("JSON");

    let info = &project["info"];
    assert_eq!(info["name"], "Read_Side.Demo");
    assert_eq!(info["version"], "1.0");
    assert_eq!(info["summary"], "Wharf HTTP API fixture");
    assert_eq!(info["requires_python"], ">=3.8");
    assert_eq!(
        info["project_url"],
        app.url("/project/read-side-demo/").as_str()
    );
    assert_eq!(
        info["release_url"],
        app.url("/project/read-side-demo/1.0/").as_str()
    );
    assert_eq!(project["last_serial"], serial);
    assert_eq!(
        project["ownership"],
        json!({ "organization": null, "roles": [{ "role": "Owner", "user": "alice" }] })
    );
    assert_eq!(project["vulnerabilities"], json!([]));

    let file = &project["urls"][0];
    assert_eq!(file["filename"], dist.filename.as_str());
    assert_eq!(file["packagetype"], "bdist_wheel");
    assert_eq!(file["python_version"], "py3");
    assert_eq!(file["size"], dist.size());
    assert_eq!(file["url"], app.url(&package_path(&dist)).as_str());
    assert_eq!(
        file["digests"],
        json!({
            "blake2b_256": dist.blake2_256(),
            "md5": md5_hex(&dist.bytes),
            "sha256": dist.sha256(),
        })
    );
    assert_eq!(project["releases"]["1.0"], json!([file.clone()]));
}

#[tokio::test]
async fn file_downloads_with_etag_and_ranges() {
    let (app, dist) = published().await;
    let path = package_path(&dist);

    let whole = get(&app, &path, &[]).await;
    assert_eq!(whole.status(), StatusCode::OK);
    assert_eq!(header(&whole, "content-type"), Some("application/zip"));
    assert_eq!(header(&whole, "accept-ranges"), Some("bytes"));
    let length = dist.size().to_string();
    assert_eq!(header(&whole, "content-length"), Some(length.as_str()));
    let etag = format!("\"{}\"", dist.blake2_256());
    assert_eq!(header(&whole, "etag"), Some(etag.as_str()));
    assert_eq!(whole.bytes().await.expect("the body"), dist.bytes);

    let not_modified = get(&app, &path, &[("If-None-Match", &etag)]).await;
    assert_eq!(not_modified.status(), StatusCode::NOT_MODIFIED);
    assert!(not_modified.bytes().await.expect("the body").is_empty());

    let partial = get(&app, &path, &[("Range", "bytes=0-9")]).await;
    assert_eq!(partial.status(), StatusCode::PARTIAL_CONTENT);
    let range = format!("bytes 0-9/{}", dist.size());
    assert_eq!(header(&partial, "content-range"), Some(range.as_str()));
    assert_eq!(partial.bytes().await.expect("the body"), dist.bytes[..10]);
}

#[tokio::test]
async fn upload_through_legacy_publishes_the_file_and_announces_it() {
    let app = TestApp::new().await.expect("the test app");
    let token = app.user_with_token("bob").await.expect("a user and token");
    let dist = Dist::wheel("hand-made", "0.1");
    let mut events = app.events().expect("the in-process bus's events");

    let response = upload(&app, Some(&token), upload_form(&dist, None), None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header(&response, "content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(response.text().await.expect("the body"), "");
    let published = events
        .wait_for(wharf_bus::SUBJECT_FILE_PUBLISHED)
        .await
        .expect("a file.published event");
    let filename = dist.filename.as_bytes();
    assert!(
        published
            .payload
            .windows(filename.len())
            .any(|window| window == filename),
        "the event names {}",
        dist.filename
    );

    // An identical upload again is accepted, as PyPI does, and publishes nothing new.
    upload_ok(&app, &token, &dist).await;
    let page = get(&app, "/simple/hand-made/", &[("Accept", SIMPLE_JSON)]).await;
    assert_eq!(page.status(), StatusCode::OK);
    let page: Value = page.json().await.expect("JSON");
    assert_eq!(page["files"].as_array().map(Vec::len), Some(1), "{page:#}");
    assert_eq!(page["files"][0]["filename"], dist.filename.as_str());
    app.shutdown().await.expect("a clean shutdown");
}

/// An HTML refusal body as PyPI writes it; the trace line is there only with a tracing
/// subscriber (the binary's telemetry), which a test process has not set up.
fn refusal_html(status: &str, message: &str, body: &str) -> String {
    let without_trace: String = body
        .lines()
        .filter(|line| !line.trim_start().starts_with("<p>Trace ID: "))
        .map(|line| format!("{line}\n"))
        .collect();
    assert_eq!(
        without_trace,
        format!(
            "<html>\n <head>\n  <title>{status}</title>\n </head>\n <body>\n  \
             <h1>{status}</h1>\n  {message}\n </body>\n</html>\n"
        )
    );
    without_trace
}

#[tokio::test]
async fn refusals_keep_pypi_reason_texts() {
    let app = TestApp::new().await.expect("the test app");
    let token = app
        .user_with_token("carol")
        .await
        .expect("a user and token");
    let dist = Dist::wheel("refused-demo", "1.0");

    // No credentials: PyPI's text in the status line and the HTML body.
    let response = upload(&app, None, upload_form(&dist, None), None).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(reason(&response), INVALID_AUTH);
    assert!(header(&response, "content-type").is_some_and(|value| value.starts_with("text/html")));
    let body = response.text().await.expect("the body");
    refusal_html("403 Forbidden", INVALID_AUTH, &body);

    // The same refusal as JSON for a client that asks for it.
    let response = upload(
        &app,
        Some("pypi-nonsense"),
        upload_form(&dist, None),
        Some("application/json"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(reason(&response), INVALID_AUTH);
    let trace_id = header(&response, "x-wharf-trace-id").map(str::to_owned);
    let mut expected = json!({
        "message": INVALID_AUTH,
        "code": format!("403 {INVALID_AUTH}"),
        "title": "Forbidden",
    });
    if let Some(trace_id) = trace_id {
        expected["trace_id"] = Value::String(trace_id);
    }
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body, expected);

    // A digest that does not match the bytes.
    let wrong = "0".repeat(64);
    let response = upload(&app, Some(&token), upload_form(&dist, Some(&wrong)), None).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(reason(&response), DIGEST_MISMATCH);
    let body = response.text().await.expect("the body");
    refusal_html("400 Bad Request", DIGEST_MISMATCH, &body);
    let response = get(&app, "/simple/refused-demo/", &[]).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // Other bytes under a filename already taken.
    upload_ok(&app, &token, &dist).await;
    let other = WheelBuilder::new("refused-demo", "1.0")
        .greeting("changed")
        .build();
    assert_eq!(other.filename, dist.filename);
    let response = upload(&app, Some(&token), upload_form(&other, None), None).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let reuse = format!(
        "File already exists ('{}', with blake2_256 hash '{}'). \
         See https://pypi.org/help/#file-name-reuse for more information.",
        dist.filename,
        other.blake2_256()
    );
    assert_eq!(reason(&response), reuse);
}

#[tokio::test]
async fn oidc_audience_is_the_verifiers() {
    let app = TestApp::builder()
        .verifier(|settings| settings.oidc.audience = "testing".to_owned())
        .start()
        .await
        .expect("the test app");
    let response = get(&app, "/_/oidc/audience", &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "content-type"), Some("application/json"));
    assert_eq!(
        response.text().await.expect("the body"),
        r#"{"audience":"testing"}"#
    );
}

#[tokio::test]
async fn the_registry_runs_on_postgres_nats_and_a_local_store() {
    let app = TestApp::builder()
        .postgres()
        .nats()
        .local_store()
        .start()
        .await
        .expect("the test app (PostgreSQL and NATS from `make services`)");
    let token = app.user_with_token("dave").await.expect("a user and token");
    let dist = Dist::wheel("scaled-demo", "2.0");
    upload_ok(&app, &token, &dist).await;
    let file = get(&app, &package_path(&dist), &[]).await;
    assert_eq!(file.status(), StatusCode::OK);
    assert_eq!(file.bytes().await.expect("the body"), dist.bytes);
    app.shutdown().await.expect("a clean shutdown");
}
