//! The gateway's own routes, through the whole registry running in this test's process
//! ([`TestApp`]: gateway, verifier and worker on 127.0.0.1:0, temporary SQLite, memory store,
//! in-process bus). No binary is built and no process is started.

use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::Value;
use wharf_app::TestApp;
use wharf_e2e::dist::Dist;

const SIMPLE_JSON: &str = "application/vnd.pypi.simple.v1+json";
const INVALID_AUTH: &str = "Invalid or non-existent authentication information. \
     See https://pypi.org/help/#invalid-auth for more information.";
const DIGEST_MISMATCH: &str =
    "The digest supplied does not match a digest calculated from the uploaded file.";

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

/// The upload form twine sends for `dist`, as reqwest multipart parts; `digest` overrides
/// the SHA-256 digest field.
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

async fn get(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = app.client().get(app.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("the GET request")
}

/// A registry with `read-side-demo` 1.0 published (one wheel) by `alice`.
async fn published() -> (TestApp, Dist) {
    let app = TestApp::new().await.expect("the test app");
    let token = app
        .user_with_token("alice")
        .await
        .expect("a user and token");
    let dist = Dist::wheel("Read_Side.Demo", "1.0");
    let response = upload(&app, Some(&token), upload_form(&dist, None), None).await;
    let status = response.status();
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        response.text().await.unwrap_or_default()
    );
    (app, dist)
}

#[tokio::test]
async fn healthz_and_readyz_answer() {
    let app = TestApp::new().await.expect("the test app");
    let response = get(&app, "/healthz", &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = get(&app, "/readyz", &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    app.shutdown().await.expect("a clean shutdown");
}

#[tokio::test]
async fn simple_index_negotiates_html_and_json() {
    let (app, dist) = published().await;

    let html = get(&app, "/simple/", &[]).await;
    assert_eq!(html.status(), StatusCode::OK);
    assert!(header(&html, "content-type").is_some_and(|value| value.starts_with("text/html")));
    assert_eq!(header(&html, "vary"), Some("Accept"));
    let body = html.text().await.expect("the body");
    assert!(body.contains("<title>Simple index</title>"), "{body}");
    assert!(
        body.contains("<a href=\"/simple/read-side-demo/\">Read_Side.Demo</a>"),
        "{body}"
    );

    let json = get(&app, "/simple/", &[("Accept", SIMPLE_JSON)]).await;
    assert_eq!(json.status(), StatusCode::OK);
    assert_eq!(header(&json, "content-type"), Some(SIMPLE_JSON));
    let index: Value = json.json().await.expect("JSON");
    assert_eq!(index["meta"]["api-version"], "1.4");
    assert_eq!(index["projects"][0]["name"], "Read_Side.Demo");

    let project = get(&app, "/simple/read-side-demo/", &[("Accept", SIMPLE_JSON)]).await;
    assert_eq!(project.status(), StatusCode::OK);
    let project: Value = project.json().await.expect("JSON");
    assert_eq!(project["files"][0]["filename"], dist.filename.as_str());
    assert_eq!(
        project["files"][0]["hashes"]["sha256"],
        dist.sha256().as_str()
    );
}

#[tokio::test]
async fn simple_project_redirects_non_normalized_names_and_404s_unknown_ones() {
    let (app, _dist) = published().await;
    let response = get(&app, "/simple/Read_Side.Demo/", &[]).await;
    assert_eq!(response.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        header(&response, "location"),
        Some("/simple/read-side-demo/")
    );

    let response = get(&app, "/simple/no-such-project/", &[]).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(response.text().await.expect("the body"), "404 Not Found");
}

#[tokio::test]
async fn json_api_describes_the_project() {
    let (app, dist) = published().await;
    let response = get(&app, "/pypi/read-side-demo/json", &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let project: Value = response.json().await.expect("JSON");
    assert_eq!(project["info"]["name"], "Read_Side.Demo");
    assert_eq!(project["info"]["version"], "1.0");
    assert_eq!(project["urls"][0]["filename"], dist.filename.as_str());

    let response = get(&app, "/pypi/Read_Side.Demo/json", &[]).await;
    assert_eq!(response.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        header(&response, "location"),
        Some("/pypi/read-side-demo/json")
    );
    let response = get(&app, "/pypi/no-such-project/json", &[]).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn file_downloads_with_etag_and_ranges() {
    let (app, dist) = published().await;
    let project = get(&app, "/simple/read-side-demo/", &[("Accept", SIMPLE_JSON)]).await;
    let project: Value = project.json().await.expect("JSON");
    let url = project["files"][0]["url"].as_str().expect("a file URL");
    let path = url.strip_prefix(&app.base_url()).unwrap_or(url).to_owned();

    let whole = get(&app, &path, &[]).await;
    assert_eq!(whole.status(), StatusCode::OK);
    assert_eq!(header(&whole, "content-type"), Some("application/zip"));
    assert_eq!(header(&whole, "accept-ranges"), Some("bytes"));
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

    let missing = get(&app, "/packages/00/00/0000/nothing-1.0.tar.gz", &[]).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn upload_through_legacy_publishes_the_file() {
    let app = TestApp::new().await.expect("the test app");
    let token = app.user_with_token("bob").await.expect("a user and token");
    let dist = Dist::wheel("hand-made", "0.1");

    let response = upload(&app, Some(&token), upload_form(&dist, None), None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.expect("the body"), "");
    // An identical upload again is accepted, as PyPI does.
    let response = upload(&app, Some(&token), upload_form(&dist, None), None).await;
    assert_eq!(response.status(), StatusCode::OK);

    let page = get(&app, "/simple/hand-made/", &[("Accept", SIMPLE_JSON)]).await;
    let page: Value = page.json().await.expect("JSON");
    assert_eq!(page["files"].as_array().map(Vec::len), Some(1), "{page:#}");
    app.shutdown().await.expect("a clean shutdown");
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
    assert!(body.contains("<h1>403 Forbidden</h1>"), "{body}");

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
    // The trace id is there only with a tracing subscriber (the binary's telemetry); when
    // it is, the body carries the header's.
    let trace_id = header(&response, "x-wharf-trace-id").map(str::to_owned);
    let mut expected = serde_json::json!({
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
    let response = get(&app, "/simple/refused-demo/", &[]).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
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
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body, serde_json::json!({ "audience": "testing" }));
}
