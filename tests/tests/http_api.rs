//! The HTTP APIs of a real `wharf serve`, spoken directly: the legacy upload API with
//! hand-built multipart bodies (as twine sends them) and deterministic distributions, the
//! simple repository API (PEP 503/691/700/658/714/592), the JSON API and file downloads,
//! checked against PyPI's status codes, reason phrases, bodies and headers (spec §a, §c).
//! Also: a SIGTERM in the middle of an upload lets that upload finish.

use std::collections::BTreeSet;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use wharf_e2e::dist::{Dist, Form, WheelBuilder, sha256_hex, token_auth};
use wharf_e2e::raw_http::{RawResponse, request, request_paced};
use wharf_e2e::{Registry, files_under};

const PROJECT: &str = "Read_Side.Demo";
const NORMALIZED: &str = "read-side-demo";
const SIMPLE_JSON: &str = "application/vnd.pypi.simple.v1+json";
const INVALID_AUTH: &str = "Invalid or non-existent authentication information. \
     See https://pypi.org/help/#invalid-auth for more information.";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// POSTs `form` to `/legacy/` with the token (if any) and `Accept` (if any).
fn upload(
    registry: &Registry,
    token: Option<&str>,
    form: &Form,
    accept: Option<&str>,
) -> RawResponse {
    post_form(registry, "/legacy/", token, form, accept)
}

fn post_form(
    registry: &Registry,
    path: &str,
    token: Option<&str>,
    form: &Form,
    accept: Option<&str>,
) -> RawResponse {
    wharf_e2e::dist::post_form(&registry.url(), path, token, form, accept)
}

/// GET `path` with extra headers.
fn get(registry: &Registry, path: &str, headers: &[(&str, &str)]) -> RawResponse {
    request(&registry.url(), "GET", path, headers, &[])
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#x27;")
}

fn canonical_reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        403 => "Forbidden",
        409 => "Conflict",
        410 => "Gone",
        _ => panic!("no reason phrase for {status} in this test"),
    }
}

/// The message is the reason phrase and is in the (default, HTML) body.
#[track_caller]
fn assert_refused(response: &RawResponse, status: u16, message: &str) {
    assert_eq!(
        (response.status, response.reason.as_str()),
        (status, message),
        "status line; body:\n{}",
        response.text()
    );
    let content_type = response.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/html"),
        "content type {content_type}"
    );
    let body = response.text();
    assert!(
        body.contains(&html_escape(message)),
        "HTML body lacks the message:\n{body}"
    );
    let heading = format!("<h1>{status} {}</h1>", canonical_reason(status));
    assert!(
        body.contains(&heading),
        "HTML body lacks {heading}:\n{body}"
    );
}

/// The message is the reason phrase and the JSON body is `{message, code, title}`.
#[track_caller]
fn assert_refused_json(response: &RawResponse, status: u16, message: &str) {
    assert_eq!(
        (response.status, response.reason.as_str()),
        (status, message),
        "status line"
    );
    let content_type = response.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("application/json"),
        "content type {content_type}"
    );
    // The trace id in the body is the one in the response header.
    let trace_id = response
        .header("x-wharf-trace-id")
        .expect("X-Wharf-Trace-Id header");
    assert_eq!(
        response.json(),
        serde_json::json!({
            "message": message,
            "code": format!("{status} {message}"),
            "title": canonical_reason(status),
            "trace_id": trace_id,
        })
    );
}

/// Starts with the reason phrase `prefix` (for messages with a variable tail).
#[track_caller]
fn assert_refused_starting(response: &RawResponse, status: u16, prefix: &str) {
    assert_eq!(
        response.status, status,
        "status; reason {:?}",
        response.reason
    );
    assert!(
        response.reason.starts_with(prefix),
        "reason {:?} does not start with {prefix:?}",
        response.reason
    );
    assert!(
        response.text().contains(&html_escape(prefix)),
        "body:\n{}",
        response.text()
    );
}

#[track_caller]
fn assert_ok(response: &RawResponse) {
    assert_eq!(
        (response.status, response.reason.as_str()),
        (200, "OK"),
        "upload failed; body:\n{}",
        response.text()
    );
}

/// A registry with a user `alice` and her token.
fn registry_with_token() -> (Registry, String) {
    let registry = Registry::start();
    let token = registry.user_with_token("alice", &[]);
    (registry, token)
}

/// The published fixture: `Read_Side.Demo` 1.0 (wheel + sdist) and 2.0 (wheel).
struct Fixture {
    registry: Registry,
    wheel_1: Dist,
    sdist_1: Dist,
    wheel_2: Dist,
}

fn publish_fixture() -> Fixture {
    let (registry, token) = registry_with_token();
    let wheel_1 = Dist::wheel(PROJECT, "1.0");
    let sdist_1 = Dist::sdist(PROJECT, "1.0");
    let wheel_2 = Dist::wheel(PROJECT, "2.0");
    for dist in [&wheel_1, &sdist_1, &wheel_2] {
        assert_ok(&upload(&registry, Some(&token), &dist.form(), None));
    }
    Fixture {
        registry,
        wheel_1,
        sdist_1,
        wheel_2,
    }
}

/// The path part of an absolute URL on `registry`.
fn path_of<'a>(registry: &Registry, url: &'a str) -> &'a str {
    let base = registry.url();
    assert!(url.starts_with(&base), "{url} is not on {base}");
    &url[base.len()..]
}

fn staging_files(registry: &Registry) -> Vec<std::path::PathBuf> {
    files_under(&registry.data_dir().join("files").join("staging"))
}

/// The storage worker deletes an upload's staged bytes just after it answers; wait for that.
#[track_caller]
fn assert_staging_drains(registry: &Registry) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !staging_files(registry).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left = staging_files(registry);
    assert!(left.is_empty(), "staging left: {left:?}");
}

fn keys(value: &Value) -> BTreeSet<&str> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .map(String::as_str)
        .collect()
}

fn set<'a>(items: &[&'a str]) -> BTreeSet<&'a str> {
    items.iter().copied().collect()
}

fn is_upload_time(text: &str) -> bool {
    // YYYY-MM-DDTHH:MM:SS[.ffffff]Z
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        bytes
            .get(range)
            .is_some_and(|part| part.iter().all(u8::is_ascii_digit))
    };
    bytes.len() >= 20
        && digits(0..4)
        && bytes[4] == b'-'
        && digits(5..7)
        && bytes[7] == b'-'
        && digits(8..10)
        && bytes[10] == b'T'
        && digits(11..13)
        && bytes[13] == b':'
        && digits(14..16)
        && bytes[16] == b':'
        && digits(17..19)
        && text.ends_with('Z')
        && (bytes.len() == 20 || (bytes[19] == b'.' && digits(20..bytes.len() - 1)))
}

// ---------------------------------------------------------------------------------------------
// Upload routing and errors (spec §a)
// ---------------------------------------------------------------------------------------------

#[test]
fn upload_without_authorization_is_403_invalid_auth() {
    let registry = Registry::start();
    let form = Dist::wheel("no-auth", "1.0").form();

    assert_refused(&upload(&registry, None, &form, None), 403, INVALID_AUTH);
    assert_refused_json(
        &upload(&registry, None, &form, Some("application/json")),
        403,
        INVALID_AUTH,
    );
    // uv's Accept header also gets JSON.
    assert_refused_json(
        &upload(
            &registry,
            None,
            &form,
            Some("application/json;q=0.9, text/plain;q=0.8, text/html;q=0.7"),
        ),
        403,
        INVALID_AUTH,
    );
    // A token that does not exist is the same refusal.
    assert_refused(
        &upload(&registry, Some("pypi-nonsense"), &form, None),
        403,
        INVALID_AUTH,
    );
}

#[test]
fn upload_with_action_submit_is_410() {
    let (registry, token) = registry_with_token();
    let form = Dist::wheel("submit-demo", "1.0")
        .form()
        .set(":action", "submit");
    let message =
        "Project pre-registration is no longer required or supported, upload your files instead.";
    assert_refused(&upload(&registry, Some(&token), &form, None), 410, message);
    assert_refused_json(
        &upload(&registry, Some(&token), &form, Some("application/json")),
        410,
        message,
    );
    let form = form.set(":action", "submit_pkg_info");
    assert_refused(&upload(&registry, Some(&token), &form, None), 410, message);
}

#[test]
fn upload_with_action_doc_upload_is_410() {
    let (registry, token) = registry_with_token();
    let form = Dist::wheel("doc-demo", "1.0")
        .form()
        .set(":action", "doc_upload");
    let response = upload(&registry, Some(&token), &form, None);
    assert_eq!(response.status, 410, "{}", response.text());
    assert_refused(
        &response,
        410,
        "Uploading documentation is no longer supported, we recommend using https://readthedocs.org/.",
    );
    // `:action` is read from the query string as well.
    let form = Dist::wheel("doc-demo", "1.0").form().remove(":action");
    let response = post_form(
        &registry,
        "/legacy/?:action=doc_upload",
        Some(&token),
        &form,
        None,
    );
    assert_eq!(response.status, 410, "{}", response.text());
    assert_eq!(
        get(&registry, "/simple/doc-demo/", &[]).status,
        404,
        "nothing was created"
    );
}

#[test]
fn post_to_legacy_without_slash_is_308_to_legacy_slash() {
    let (registry, token) = registry_with_token();
    let form = Dist::wheel("redirect-demo", "1.0").form();
    let response = post_form(&registry, "/legacy", Some(&token), &form, None);
    assert_eq!(response.status, 308, "{}", response.text());
    assert_eq!(response.header("location"), Some("/legacy/"));
    // Nothing was uploaded by the redirect itself.
    let response = get(&registry, "/simple/redirect-demo/", &[]);
    assert_eq!(response.status, 404);
}

#[test]
fn upload_without_content_is_400_no_file() {
    let (registry, token) = registry_with_token();
    let form = Dist::wheel("no-content", "1.0").form().without_file();
    assert_refused(
        &upload(&registry, Some(&token), &form, None),
        400,
        "Upload payload does not have a file.",
    );
}

#[test]
fn upload_with_a_wrong_digest_is_400_and_stores_nothing() {
    let (registry, token) = registry_with_token();
    let dist = Dist::wheel("bad-digest", "1.0");
    let form = dist
        .form()
        .remove("blake2_256_digest")
        .set("sha256_digest", &sha256_hex(b"other bytes"));
    let message = "The digest supplied does not match a digest calculated from the uploaded file.";
    assert_refused(&upload(&registry, Some(&token), &form, None), 400, message);
    // A wrong blake2 next to a right sha256 is refused too: every digest supplied must match.
    let form = dist.form().set("blake2_256_digest", &"0".repeat(64));
    assert_refused(&upload(&registry, Some(&token), &form, None), 400, message);
    assert_eq!(get(&registry, "/simple/bad-digest/", &[]).status, 404);
    assert_staging_drains(&registry);
}

#[test]
fn upload_without_any_digest_is_400() {
    let (registry, token) = registry_with_token();
    let form = Dist::wheel("no-digest", "1.0")
        .form()
        .remove("sha256_digest")
        .remove("blake2_256_digest");
    assert_refused(
        &upload(&registry, Some(&token), &form, None),
        400,
        "Error: Include at least one message digest.",
    );
}

#[test]
fn upload_with_an_invalid_name_is_400() {
    let (registry, token) = registry_with_token();
    let form = Dist::wheel("good-name", "1.0")
        .form()
        .set("name", "-bad-name-");
    assert_refused(
        &upload(&registry, Some(&token), &form, None),
        400,
        "'-bad-name-' is an invalid value for Name. Error: Start and end with a letter or numeral \
         containing only ASCII numeric and '.', '_' and '-'. \
         See https://packaging.python.org/specifications/core-metadata for more information.",
    );
}

#[test]
fn upload_with_a_local_version_is_400() {
    let (registry, token) = registry_with_token();
    let form = Dist::wheel("local-version", "1.0+local").form();
    assert_refused(
        &upload(&registry, Some(&token), &form, None),
        400,
        "The use of local versions in '1.0+local' is not allowed. \
         See https://packaging.python.org/specifications/version-specifiers/#local-version-identifiers \
         for more information.",
    );
}

#[test]
fn upload_with_filetype_bdist_egg_is_400() {
    let (registry, token) = registry_with_token();
    let form = Dist::wheel("egg-demo", "1.0")
        .renamed("egg_demo-1.0-py3.12.egg")
        .form()
        .set("filetype", "bdist_egg");
    assert_refused(
        &upload(&registry, Some(&token), &form, None),
        400,
        "Invalid value for filetype. Error: Use a known file type.",
    );
}

#[test]
fn upload_over_the_file_size_limit_is_400_and_leaves_no_staging() {
    let registry = Registry::start_with(&["--max-file-size", "1KiB"]);
    let token = registry.user_with_token("alice", &[]);
    let dist = WheelBuilder::new("too-big", "1.0")
        .padding(8 * 1024)
        .build();
    assert!(dist.size() > 8 * 1024);
    assert_refused(
        &upload(&registry, Some(&token), &dist.form(), None),
        400,
        "File too large. Limit for project 'too-big' is 0 MB. \
         See https://pypi.org/help/#file-size-limit for more information.",
    );
    assert!(
        staging_files(&registry).is_empty(),
        "staging left: {:?}",
        staging_files(&registry)
    );
    assert_eq!(get(&registry, "/simple/too-big/", &[]).status, 404);
    // A file under the limit still goes through.
    let small = Dist::sdist("too-big", "1.0");
    assert!(small.size() < 1024, "the sdist is {} bytes", small.size());
    assert_ok(&upload(&registry, Some(&token), &small.form(), None));
}

#[test]
fn sdist_with_an_unnormalized_filename_is_400() {
    let (registry, token) = registry_with_token();
    let dist = Dist::sdist("Sdist.Demo", "1.0").renamed("Sdist.Demo-1.0.tar.gz");
    assert_refused(
        &upload(&registry, Some(&token), &dist.form(), None),
        400,
        "Filename 'Sdist.Demo-1.0.tar.gz' is invalid, should be 'sdist_demo-1.0.tar.gz'.",
    );
    // The version must be spelled normalized too.
    let dist = Dist::sdist("sdist-demo", "1.0").renamed("sdist_demo-1.00.tar.gz");
    assert_refused(
        &upload(
            &registry,
            Some(&token),
            &dist.form().set("version", "1.00"),
            None,
        ),
        400,
        "Filename 'sdist_demo-1.00.tar.gz' is invalid, should be 'sdist_demo-1.0.tar.gz'.",
    );
}

#[test]
fn wheel_without_its_wheel_file_is_an_invalid_distribution() {
    let (registry, token) = registry_with_token();
    let dist = WheelBuilder::new("no-wheel-file", "1.0")
        .without_wheel_file()
        .build();
    let response = upload(&registry, Some(&token), &dist.form(), None);
    assert_refused_starting(&response, 400, "Invalid distribution file.");
    assert!(
        response
            .reason
            .contains("WHEEL not found at no_wheel_file-1.0.dist-info/WHEEL"),
        "{}",
        response.reason
    );
    assert_staging_drains(&registry);
}

#[test]
fn a_second_sdist_for_a_release_is_400() {
    let (registry, token) = registry_with_token();
    assert_ok(&upload(
        &registry,
        Some(&token),
        &Dist::sdist("one-sdist", "1.0").form(),
        None,
    ));
    // 1.0.0 is the same release as 1.0 (canonical version), with another sdist filename.
    let second = Dist::sdist("one-sdist", "1.0.0");
    assert_eq!(second.filename, "one_sdist-1.0.0.tar.gz");
    assert_refused(
        &upload(&registry, Some(&token), &second.form(), None),
        400,
        "Only one sdist may be uploaded per release.",
    );
    // A wheel for the release is still welcome.
    assert_ok(&upload(
        &registry,
        Some(&token),
        &Dist::wheel("one-sdist", "1.0").form(),
        None,
    ));
}

#[test]
fn identical_reupload_is_200() {
    let (registry, token) = registry_with_token();
    let wheel = Dist::wheel("again", "1.0");
    let sdist = Dist::sdist("again", "1.0");
    for dist in [&wheel, &sdist] {
        let first = upload(&registry, Some(&token), &dist.form(), None);
        assert_ok(&first);
        assert_eq!(first.text(), "", "a successful upload has an empty body");
        assert_ok(&upload(&registry, Some(&token), &dist.form(), None));
    }
    let page = get(&registry, "/simple/again/", &[("Accept", SIMPLE_JSON)]).json();
    assert_eq!(page["files"].as_array().map(Vec::len), Some(2), "{page:#}");
}

#[test]
fn same_filename_with_different_bytes_is_400_file_exists() {
    let (registry, token) = registry_with_token();
    let original = Dist::wheel("reused", "1.0");
    assert_ok(&upload(&registry, Some(&token), &original.form(), None));
    let changed = WheelBuilder::new("reused", "1.0")
        .greeting("changed")
        .build();
    assert_eq!(changed.filename, original.filename);
    assert_ne!(changed.bytes, original.bytes);
    let message = format!(
        "File already exists ('{}', with blake2_256 hash '{}'). \
         See https://pypi.org/help/#file-name-reuse for more information.",
        changed.filename,
        changed.blake2_256()
    );
    assert_refused(
        &upload(&registry, Some(&token), &changed.form(), None),
        400,
        &message,
    );
    assert_refused_json(
        &upload(
            &registry,
            Some(&token),
            &changed.form(),
            Some("application/json"),
        ),
        400,
        &message,
    );
    // The same bytes under another filename exist too.
    let renamed = original.clone().renamed("reused-1.0-py2.py3-none-any.whl");
    let response = upload(&registry, Some(&token), &renamed.form(), None);
    assert_eq!(response.status, 400, "{}", response.reason);
    assert_eq!(
        response.reason,
        format!(
            "File already exists ('{}', with blake2_256 hash '{}'). \
             See https://pypi.org/help/#file-name-reuse for more information.",
            renamed.filename,
            original.blake2_256()
        )
    );
}

// ---------------------------------------------------------------------------------------------
// Read side (spec §c)
// ---------------------------------------------------------------------------------------------

#[track_caller]
fn assert_cors(response: &RawResponse) {
    assert_eq!(response.header("access-control-allow-origin"), Some("*"));
    assert_eq!(response.header("access-control-allow-methods"), Some("GET"));
    assert_eq!(
        response.header("access-control-allow-headers"),
        Some("Content-Type, If-Match, If-Modified-Since, If-None-Match, If-Unmodified-Since")
    );
    assert_eq!(response.header("access-control-max-age"), Some("86400"));
    assert_eq!(
        response.header("access-control-expose-headers"),
        Some("X-PyPI-Last-Serial")
    );
}

fn serial_header(response: &RawResponse) -> i64 {
    response
        .header("x-pypi-last-serial")
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no X-PyPI-Last-Serial in {:?}", response.headers))
}

#[test]
fn simple_index_in_html_and_json() {
    let fixture = publish_fixture();
    let registry = &fixture.registry;

    let html = get(registry, "/simple/", &[]);
    assert_eq!(html.status, 200);
    assert!(
        html.header("content-type")
            .is_some_and(|value| value.starts_with("text/html"))
    );
    assert_eq!(html.header("vary"), Some("Accept"));
    assert_cors(&html);
    let serial = serial_header(&html);
    assert!(serial > 0);
    let body = html.text();
    assert!(
        body.contains("<meta name=\"pypi:repository-version\" content=\"1.4\">"),
        "{body}"
    );
    assert!(body.contains("<title>Simple index</title>"), "{body}");
    assert!(
        body.contains("<a href=\"/simple/read-side-demo/\">Read_Side.Demo</a>"),
        "{body}"
    );

    let expected = serde_json::json!({
        "meta": { "api-version": "1.4", "_last-serial": serial },
        "projects": [{ "name": PROJECT, "_last-serial": serial }],
    });
    for response in [
        get(registry, "/simple/", &[("Accept", SIMPLE_JSON)]),
        get(registry, &format!("/simple/?format={SIMPLE_JSON}"), &[]),
        get(
            registry,
            "/simple/?format=application/vnd.pypi.simple.v1%2Bjson",
            &[],
        ),
        // The format parameter wins over Accept.
        get(
            registry,
            &format!("/simple/?format={SIMPLE_JSON}"),
            &[("Accept", "text/html")],
        ),
        // PEP 691 q-values: pip's header.
        get(
            registry,
            "/simple/",
            &[(
                "Accept",
                "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01",
            )],
        ),
    ] {
        assert_eq!(response.status, 200);
        assert_eq!(response.header("content-type"), Some(SIMPLE_JSON));
        assert_eq!(response.header("vary"), Some("Accept"));
        assert_eq!(serial_header(&response), serial);
        assert_cors(&response);
        assert_eq!(response.json(), expected);
    }

    // The v1 HTML media type is offered; nothing acceptable falls back to text/html.
    let response = get(
        registry,
        "/simple/",
        &[("Accept", "application/vnd.pypi.simple.v1+html")],
    );
    assert_eq!(
        response.header("content-type"),
        Some("application/vnd.pypi.simple.v1+html")
    );
    let response = get(registry, "/simple/", &[("Accept", "text/plain")]);
    assert_eq!(response.status, 200);
    assert!(
        response
            .header("content-type")
            .is_some_and(|value| value.starts_with("text/html"))
    );
}

#[test]
fn simple_project_redirects_and_unknown_projects() {
    let fixture = publish_fixture();
    let registry = &fixture.registry;

    let response = get(registry, "/simple/Read_Side.Demo/", &[]);
    assert_eq!(response.status, 301);
    assert_eq!(response.header("location"), Some("/simple/read-side-demo/"));
    assert_eq!(response.header("access-control-allow-origin"), Some("*"));

    let response = get(registry, "/simple/read-side-demo", &[]);
    assert_eq!(response.status, 301);
    assert_eq!(response.header("location"), Some("/simple/read-side-demo/"));

    let response = get(registry, "/simple", &[]);
    assert_eq!(response.status, 301);
    assert_eq!(response.header("location"), Some("/simple/"));

    let response = get(registry, "/simple/no-such-project/", &[]);
    assert_eq!(response.status, 404);
    assert_eq!(response.text(), "404 Not Found");
    let response = get(
        registry,
        "/simple/no-such-project/",
        &[("Accept", SIMPLE_JSON)],
    );
    assert_eq!(response.status, 404);
}

#[test]
fn simple_project_page_in_html_and_json() {
    let fixture = publish_fixture();
    let registry = &fixture.registry;
    let base = registry.url();

    let json_response = get(
        registry,
        "/simple/read-side-demo/",
        &[("Accept", SIMPLE_JSON)],
    );
    assert_eq!(json_response.status, 200);
    assert_eq!(json_response.header("content-type"), Some(SIMPLE_JSON));
    assert_eq!(json_response.header("vary"), Some("Accept"));
    assert_cors(&json_response);
    let serial = serial_header(&json_response);
    let page = json_response.json();
    assert_eq!(
        keys(&page),
        set(&["meta", "name", "project-status", "versions", "files"])
    );
    assert_eq!(
        page["meta"],
        serde_json::json!({ "api-version": "1.4", "_last-serial": serial })
    );
    assert_eq!(page["name"], NORMALIZED);
    assert_eq!(page["project-status"]["status"], "active");
    assert_eq!(page["versions"], serde_json::json!(["1.0", "2.0"]));
    let files = page["files"].as_array().expect("files");
    let expected = [&fixture.wheel_1, &fixture.sdist_1, &fixture.wheel_2];
    assert_eq!(files.len(), expected.len());
    for (file, dist) in files.iter().zip(expected) {
        assert_eq!(
            keys(file),
            set(&[
                "filename",
                "url",
                "hashes",
                "requires-python",
                "size",
                "upload-time",
                "yanked",
                "core-metadata",
                "data-dist-info-metadata",
                "provenance",
            ])
        );
        assert_eq!(file["filename"], dist.filename.as_str());
        let url = file["url"].as_str().expect("url");
        let digests = dist.digests();
        assert_eq!(
            url,
            format!("{base}/packages/{}", digests.storage_path(&dist.filename))
        );
        assert_eq!(
            file["hashes"],
            serde_json::json!({ "sha256": dist.sha256() })
        );
        assert_eq!(file["requires-python"], ">=3.8");
        assert_eq!(file["size"], dist.size());
        let upload_time = file["upload-time"].as_str().expect("upload-time");
        assert!(is_upload_time(upload_time), "{upload_time}");
        assert_eq!(file["yanked"], false);
        let core_metadata = if dist.filetype == "bdist_wheel" {
            serde_json::json!({ "sha256": sha256_hex(dist.metadata.as_bytes()) })
        } else {
            serde_json::json!(false)
        };
        assert_eq!(file["core-metadata"], core_metadata);
        assert_eq!(file["data-dist-info-metadata"], core_metadata);
        assert!(
            file.get("dist-info-metadata").is_none(),
            "pip 22.3–23.1 crash on it"
        );
        assert_eq!(file["provenance"], Value::Null);
    }

    let html_response = get(registry, "/simple/read-side-demo/", &[]);
    assert_eq!(html_response.status, 200);
    assert!(
        html_response
            .header("content-type")
            .is_some_and(|value| value.starts_with("text/html"))
    );
    assert_eq!(html_response.header("vary"), Some("Accept"));
    assert_cors(&html_response);
    assert_eq!(serial_header(&html_response), serial);
    let html = html_response.text();
    for needle in [
        "<meta name=\"pypi:repository-version\" content=\"1.4\">".to_owned(),
        "<meta name=\"pypi:project-status\" content=\"active\">".to_owned(),
        "<title>Links for read-side-demo</title>".to_owned(),
        "<h1>Links for read-side-demo</h1>".to_owned(),
        format!("<!--SERIAL {serial}-->"),
    ] {
        assert!(html.contains(&needle), "no {needle} in\n{html}");
    }
    for dist in expected {
        let url = format!(
            "{base}/packages/{}",
            dist.digests().storage_path(&dist.filename)
        );
        let mut anchor = format!(
            "<a href=\"{url}#sha256={}\" data-requires-python=\"&gt;=3.8\"",
            dist.sha256()
        );
        if dist.filetype == "bdist_wheel" {
            let metadata_sha256 = sha256_hex(dist.metadata.as_bytes());
            anchor.push_str(&format!(
                " data-dist-info-metadata=\"sha256={metadata_sha256}\" data-core-metadata=\"sha256={metadata_sha256}\""
            ));
        }
        anchor.push_str(&format!(">{}</a><br />", dist.filename));
        assert!(html.contains(&anchor), "no {anchor} in\n{html}");
    }
    assert!(!html.contains("data-yanked"), "{html}");
}

#[test]
fn simple_pages_answer_if_none_match_with_304() {
    let fixture = publish_fixture();
    let registry = &fixture.registry;
    for (path, accept) in [
        ("/simple/", "text/html"),
        ("/simple/", SIMPLE_JSON),
        ("/simple/read-side-demo/", "text/html"),
        ("/simple/read-side-demo/", SIMPLE_JSON),
        ("/pypi/read-side-demo/json", "application/json"),
    ] {
        let first = get(registry, path, &[("Accept", accept)]);
        assert_eq!(first.status, 200);
        let etag = first
            .header("etag")
            .unwrap_or_else(|| panic!("no ETag on {path}"))
            .to_owned();
        let again = get(
            registry,
            path,
            &[("Accept", accept), ("If-None-Match", &etag)],
        );
        assert_eq!(again.status, 304, "{path} {accept}");
        assert!(again.body.is_empty());
        assert_eq!(again.header("etag"), Some(etag.as_str()));
        let other = get(
            registry,
            path,
            &[("Accept", accept), ("If-None-Match", "\"something-else\"")],
        );
        assert_eq!(other.status, 200);
    }
    // The HTML and JSON pages are different representations with different tags.
    let html = get(registry, "/simple/read-side-demo/", &[]);
    let json = get(
        registry,
        "/simple/read-side-demo/",
        &[("Accept", SIMPLE_JSON)],
    );
    assert_ne!(html.header("etag"), json.header("etag"));
    // A new upload changes the page and its tag.
    let token = registry.admin(&["token", "create", "--user", "alice"]);
    let etag = json.header("etag").expect("etag").to_owned();
    assert_ok(&upload(
        registry,
        Some(&token),
        &Dist::sdist(PROJECT, "2.0").form(),
        None,
    ));
    let after = get(
        registry,
        "/simple/read-side-demo/",
        &[("Accept", SIMPLE_JSON), ("If-None-Match", &etag)],
    );
    assert_eq!(after.status, 200);
}

#[test]
fn core_metadata_file_is_the_wheels_metadata() {
    let fixture = publish_fixture();
    let registry = &fixture.registry;
    let page = get(
        registry,
        "/simple/read-side-demo/",
        &[("Accept", SIMPLE_JSON)],
    )
    .json();
    let file = &page["files"][0];
    assert_eq!(file["filename"], fixture.wheel_1.filename.as_str());
    let url = format!("{}.metadata", file["url"].as_str().expect("url"));
    let response = get(registry, path_of(registry, &url), &[]);
    assert_eq!(response.status, 200);
    assert_eq!(
        response.body,
        fixture.wheel_1.metadata.as_bytes(),
        "byte-identical METADATA"
    );
    assert_eq!(
        file["core-metadata"]["sha256"].as_str(),
        Some(sha256_hex(&response.body).as_str())
    );
    // An sdist has none.
    let sdist = &page["files"][1];
    assert_eq!(sdist["filename"], fixture.sdist_1.filename.as_str());
    let url = format!("{}.metadata", sdist["url"].as_str().expect("url"));
    assert_eq!(get(registry, path_of(registry, &url), &[]).status, 404);
}

#[test]
fn file_downloads_with_etag_and_ranges() {
    let fixture = publish_fixture();
    let registry = &fixture.registry;
    for dist in [&fixture.wheel_2, &fixture.sdist_1] {
        let path = format!("/packages/{}", dist.digests().storage_path(&dist.filename));
        let content_type = if dist.filetype == "sdist" {
            "application/gzip"
        } else {
            "application/zip"
        };

        let whole = get(registry, &path, &[]);
        assert_eq!(whole.status, 200);
        assert_eq!(whole.body, dist.bytes);
        assert_eq!(whole.header("content-type"), Some(content_type));
        assert_eq!(whole.header("accept-ranges"), Some("bytes"));
        assert_eq!(
            whole.header("content-length"),
            Some(dist.size().to_string().as_str())
        );
        let etag = format!("\"{}\"", dist.blake2_256());
        assert_eq!(whole.header("etag"), Some(etag.as_str()));

        let not_modified = get(registry, &path, &[("If-None-Match", &etag)]);
        assert_eq!(not_modified.status, 304);
        assert!(not_modified.body.is_empty());

        let partial = get(registry, &path, &[("Range", "bytes=0-9")]);
        assert_eq!(partial.status, 206);
        assert_eq!(partial.body, dist.bytes[..10]);
        assert_eq!(
            partial.header("content-range"),
            Some(format!("bytes 0-9/{}", dist.size()).as_str())
        );
        assert_eq!(partial.header("content-length"), Some("10"));

        let suffix = get(registry, &path, &[("Range", "bytes=-4")]);
        assert_eq!(suffix.status, 206);
        assert_eq!(suffix.body, dist.bytes[dist.size() - 4..]);

        let beyond = format!("bytes={}-", dist.size() + 100);
        let unsatisfiable = get(registry, &path, &[("Range", &beyond)]);
        assert_eq!(unsatisfiable.status, 416);
        assert_eq!(
            unsatisfiable.header("content-range"),
            Some(format!("bytes */{}", dist.size()).as_str())
        );
    }
    assert_eq!(
        get(registry, "/packages/00/00/0000/nothing-1.0.tar.gz", &[]).status,
        404
    );
}

const INFO_KEYS: &[&str] = &[
    "name",
    "version",
    "summary",
    "description",
    "description_content_type",
    "keywords",
    "license",
    "license_expression",
    "license_files",
    "classifiers",
    "author",
    "author_email",
    "maintainer",
    "maintainer_email",
    "requires_python",
    "platform",
    "downloads",
    "package_url",
    "project_url",
    "project_urls",
    "release_url",
    "requires_dist",
    "provides_extra",
    "docs_url",
    "bugtrack_url",
    "home_page",
    "download_url",
    "yanked",
    "yanked_reason",
    "dynamic",
];

const FILE_KEYS: &[&str] = &[
    "filename",
    "packagetype",
    "python_version",
    "has_sig",
    "comment_text",
    "md5_digest",
    "digests",
    "core-metadata",
    "size",
    "downloads",
    "upload_time",
    "upload_time_iso_8601",
    "url",
    "requires_python",
    "yanked",
    "yanked_reason",
];

#[track_caller]
fn assert_json_file(file: &Value, dist: &Dist, base: &str) {
    assert_eq!(keys(file), set(FILE_KEYS), "{file:#}");
    let digests = dist.digests();
    assert_eq!(file["filename"], dist.filename.as_str());
    assert_eq!(file["packagetype"], dist.filetype);
    assert_eq!(file["python_version"], dist.pyversion);
    assert_eq!(file["has_sig"], false);
    assert_eq!(file["md5_digest"], digests.md5_hex());
    assert_eq!(
        file["digests"],
        serde_json::json!({
            "md5": digests.md5_hex(),
            "sha256": digests.sha256_hex(),
            "blake2b_256": digests.blake2_256_hex(),
        })
    );
    assert_eq!(file["size"], dist.size());
    assert_eq!(file["downloads"], -1);
    assert_eq!(
        file["url"],
        format!("{base}/packages/{}", digests.storage_path(&dist.filename))
    );
    assert_eq!(file["requires_python"], ">=3.8");
    let iso = file["upload_time_iso_8601"]
        .as_str()
        .expect("upload_time_iso_8601");
    assert!(is_upload_time(iso), "{iso}");
    let plain = file["upload_time"].as_str().expect("upload_time");
    assert_eq!(plain.len(), 19, "{plain}");
    assert!(iso.starts_with(plain), "{plain} vs {iso}");
}

#[test]
fn json_api_project_and_release_documents() {
    let fixture = publish_fixture();
    let registry = &fixture.registry;
    let base = registry.url();

    let response = get(registry, "/pypi/read-side-demo/json", &[]);
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_cors(&response);
    let serial = serial_header(&response);
    let project = response.json();
    assert_eq!(
        keys(&project),
        set(&[
            "info",
            "last_serial",
            "urls",
            "releases",
            "vulnerabilities",
            "ownership"
        ])
    );
    assert_eq!(project["last_serial"], serial);
    assert_eq!(project["vulnerabilities"], serde_json::json!([]));
    assert_eq!(
        project["ownership"],
        serde_json::json!({ "roles": [{ "role": "Owner", "user": "alice" }], "organization": null })
    );
    let info = &project["info"];
    assert_eq!(keys(info), set(INFO_KEYS), "{info:#}");
    assert_eq!(info["name"], PROJECT);
    assert_eq!(info["version"], "2.0", "the latest release");
    assert_eq!(info["summary"], "Wharf HTTP API fixture");
    assert_eq!(info["requires_python"], ">=3.8");
    assert_eq!(info["bugtrack_url"], Value::Null);
    assert_eq!(
        info["downloads"],
        serde_json::json!({ "last_day": -1, "last_week": -1, "last_month": -1 })
    );
    assert_eq!(info["yanked"], false);
    assert_eq!(info["yanked_reason"], Value::Null);
    let urls = project["urls"].as_array().expect("urls");
    assert_eq!(urls.len(), 1);
    assert_json_file(&urls[0], &fixture.wheel_2, &base);
    let releases = &project["releases"];
    assert_eq!(keys(releases), set(&["1.0", "2.0"]));
    assert_eq!(releases["1.0"].as_array().map(Vec::len), Some(2));
    assert_json_file(&releases["1.0"][0], &fixture.wheel_1, &base);
    assert_json_file(&releases["1.0"][1], &fixture.sdist_1, &base);
    assert_eq!(releases["2.0"], project["urls"]);

    // The trailing slash is optional.
    assert_eq!(
        get(registry, "/pypi/read-side-demo/json/", &[]).json(),
        project
    );

    // The release document: no `releases`, the release's files in `urls`.
    for path in [
        "/pypi/read-side-demo/1.0/json",
        "/pypi/read-side-demo/1.0/json/",
        // Looked up by canonical version.
        "/pypi/read-side-demo/1.0.0/json",
    ] {
        let response = get(registry, path, &[]);
        assert_eq!(response.status, 200, "{path}");
        let release = response.json();
        assert_eq!(
            keys(&release),
            set(&[
                "info",
                "last_serial",
                "urls",
                "vulnerabilities",
                "ownership"
            ]),
            "{path}"
        );
        assert_eq!(release["info"]["version"], "1.0");
        assert_eq!(keys(&release["info"]), set(INFO_KEYS));
        let urls = release["urls"].as_array().expect("urls");
        assert_eq!(urls.len(), 2);
        assert_json_file(&urls[0], &fixture.wheel_1, &base);
        assert_json_file(&urls[1], &fixture.sdist_1, &base);
    }

    // A non-normalized name redirects.
    let response = get(registry, "/pypi/Read_Side.Demo/json", &[]);
    assert_eq!(response.status, 301);
    assert_eq!(
        response.header("location"),
        Some("/pypi/read-side-demo/json")
    );
}

#[test]
fn json_api_unknown_project_or_version_is_404() {
    let fixture = publish_fixture();
    let registry = &fixture.registry;
    for path in [
        "/pypi/no-such-project/json",
        "/pypi/no-such-project/1.0/json",
        "/pypi/read-side-demo/9.9/json",
        "/pypi/read-side-demo/not-a-version/json",
    ] {
        let response = get(registry, path, &[]);
        assert_eq!(response.status, 404, "{path}");
        assert!(
            response
                .header("content-type")
                .is_some_and(|value| value.starts_with("application/json")),
            "{path}: {:?}",
            response.header("content-type")
        );
        assert_eq!(
            response.json(),
            serde_json::json!({ "message": "Not Found" }),
            "{path}"
        );
    }
}

#[test]
fn a_yanked_release_shows_its_reason() {
    let fixture = publish_fixture();
    let registry = &fixture.registry;
    let before = serial_header(&get(registry, "/simple/read-side-demo/", &[]));
    registry.admin(&["yank", PROJECT, "1.0", "--reason", "r"]);

    let html_response = get(registry, "/simple/read-side-demo/", &[]);
    assert!(serial_header(&html_response) > before, "a yank is a change");
    let html = html_response.text();
    for dist in [&fixture.wheel_1, &fixture.sdist_1] {
        let line = html
            .lines()
            .find(|line| line.contains(&format!(">{}</a>", dist.filename)))
            .unwrap_or_else(|| panic!("no link for {} in\n{html}", dist.filename));
        assert!(line.contains(" data-yanked=\"r\""), "{line}");
    }
    let line = html
        .lines()
        .find(|line| line.contains(&format!(">{}</a>", fixture.wheel_2.filename)))
        .expect("2.0 link");
    assert!(!line.contains("data-yanked"), "{line}");

    let page = get(
        registry,
        "/simple/read-side-demo/",
        &[("Accept", SIMPLE_JSON)],
    )
    .json();
    let yanked: Vec<&Value> = page["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|file| &file["yanked"])
        .collect();
    assert_eq!(
        yanked,
        [&Value::from("r"), &Value::from("r"), &Value::from(false)]
    );

    let release = get(registry, "/pypi/read-side-demo/1.0/json", &[]).json();
    assert_eq!(release["info"]["yanked"], true);
    assert_eq!(release["info"]["yanked_reason"], "r");
    assert_eq!(release["urls"][0]["yanked"], true);
    assert_eq!(release["urls"][0]["yanked_reason"], "r");

    // Without a reason: an empty attribute in HTML, `true` in JSON.
    registry.admin(&["yank", PROJECT, "2.0"]);
    let html = get(registry, "/simple/read-side-demo/", &[]).text();
    let line = html
        .lines()
        .find(|line| line.contains(&format!(">{}</a>", fixture.wheel_2.filename)))
        .expect("2.0 link");
    assert!(line.contains(" data-yanked=\"\""), "{line}");
    let page = get(
        registry,
        "/simple/read-side-demo/",
        &[("Accept", SIMPLE_JSON)],
    )
    .json();
    assert_eq!(page["files"][2]["yanked"], true);

    // Unyanking removes the marker.
    registry.admin(&["unyank", PROJECT, "1.0"]);
    let page = get(
        registry,
        "/simple/read-side-demo/",
        &[("Accept", SIMPLE_JSON)],
    )
    .json();
    assert_eq!(page["files"][0]["yanked"], false);
}

// ---------------------------------------------------------------------------------------------
// Snapshots
// ---------------------------------------------------------------------------------------------

/// Replaces what differs between runs: the port, trace ids, and upload times.
fn redact_text(registry: &Registry, text: &str) -> String {
    redact_trace_ids(&text.replace(&registry.address(), "127.0.0.1:<port>"))
}

/// Replaces the trace id of an HTML error page (`<p>Trace ID: …</p>`) with `<trace-id>`.
fn redact_trace_ids(text: &str) -> String {
    const PREFIX: &str = "<p>Trace ID: ";
    let mut redacted = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(PREFIX) {
        let after = &rest[start + PREFIX.len()..];
        let id_length = after.find("</p>").unwrap_or(0);
        redacted.push_str(&rest[..start + PREFIX.len()]);
        redacted.push_str("<trace-id>");
        rest = &after[id_length..];
    }
    redacted.push_str(rest);
    redacted
}

fn redact_json(registry: &Registry, body: &[u8]) -> String {
    let text = redact_text(registry, &String::from_utf8_lossy(body));
    let mut value: Value = serde_json::from_str(&text).expect("JSON body");
    redact_times(&mut value);
    serde_json::to_string_pretty(&value).expect("pretty JSON")
}

fn redact_times(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, entry) in map.iter_mut() {
                if matches!(
                    key.as_str(),
                    "upload-time" | "upload_time" | "upload_time_iso_8601"
                ) && entry.is_string()
                {
                    *entry = Value::from("<upload-time>");
                } else if key == "trace_id" && entry.is_string() {
                    *entry = Value::from("<trace-id>");
                } else {
                    redact_times(entry);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_times),
        _ => {}
    }
}

#[test]
fn snapshot_read_side_documents() {
    let fixture = publish_fixture();
    let registry = &fixture.registry;
    registry.admin(&["yank", PROJECT, "1.0", "--reason", "broken build"]);

    let index = get(registry, "/simple/", &[]);
    insta::assert_snapshot!("simple_index_html", redact_text(registry, &index.text()));
    let index = get(registry, "/simple/", &[("Accept", SIMPLE_JSON)]);
    insta::assert_snapshot!("simple_index_json", redact_json(registry, &index.body));

    let html = get(registry, "/simple/read-side-demo/", &[]);
    insta::assert_snapshot!("simple_project_html", redact_text(registry, &html.text()));
    let json = get(
        registry,
        "/simple/read-side-demo/",
        &[("Accept", SIMPLE_JSON)],
    );
    insta::assert_snapshot!("simple_project_json", redact_json(registry, &json.body));

    let project = get(registry, "/pypi/read-side-demo/json", &[]);
    insta::assert_snapshot!("json_api_project", redact_json(registry, &project.body));
}

#[test]
fn snapshot_upload_error_bodies() {
    let (registry, token) = registry_with_token();
    let original = Dist::wheel("snap-demo", "1.0");
    assert_ok(&upload(&registry, Some(&token), &original.form(), None));
    let changed = WheelBuilder::new("snap-demo", "1.0")
        .greeting("changed")
        .build();

    let html = upload(&registry, Some(&token), &changed.form(), None);
    assert_eq!(html.status, 400);
    insta::assert_snapshot!(
        "upload_error_html",
        format!(
            "{} {}\n\n{}",
            html.status,
            html.reason,
            redact_text(&registry, &html.text())
        )
    );
    let json = upload(
        &registry,
        Some(&token),
        &changed.form(),
        Some("application/json"),
    );
    assert_eq!(json.status, 400);
    insta::assert_snapshot!(
        "upload_error_json",
        format!(
            "{} {}\n\n{}",
            json.status,
            json.reason,
            redact_json(&registry, &json.body)
        )
    );

    let no_auth = upload(&registry, None, &changed.form(), None);
    insta::assert_snapshot!(
        "upload_error_invalid_auth_html",
        format!(
            "{} {}\n\n{}",
            no_auth.status,
            no_auth.reason,
            redact_text(&registry, &no_auth.text())
        )
    );
}

// ---------------------------------------------------------------------------------------------
// Graceful shutdown
// ---------------------------------------------------------------------------------------------

#[test]
fn sigterm_during_an_upload_lets_it_finish() {
    let registry = Registry::start();
    let token = registry.user_with_token("alice", &[]);
    let dist = WheelBuilder::new("slow-upload", "1.0")
        .padding(5 * 1024 * 1024)
        .build();
    let form = dist.form();
    let body = form.body();
    let content_type = form.content_type();
    let url = registry.url();
    let auth = token_auth(&token);

    let (progress_tx, progress_rx) = mpsc::channel::<usize>();
    let total = body.len();
    let uploader = std::thread::spawn(move || {
        request_paced(
            &url,
            "POST",
            "/legacy/",
            &[("Content-Type", &content_type), ("Authorization", &auth)],
            &body,
            64 * 1024,
            Duration::from_millis(25),
            |sent| {
                let _ = progress_tx.send(sent);
            },
        )
    });

    // Wait until about a fifth of the body is out, then SIGTERM the server.
    loop {
        let sent = progress_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the upload makes progress");
        if sent >= total / 5 {
            break;
        }
    }
    let status = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(registry.pid().to_string())
        .status()
        .expect("run kill");
    assert!(status.success());
    let sent_at_signal = progress_rx.try_iter().last().unwrap_or(total / 5);
    assert!(sent_at_signal < total, "the signal must arrive mid-body");

    let response = uploader.join().expect("upload thread");
    assert_eq!(
        (response.status, response.reason.as_str()),
        (200, "OK"),
        "{}\nserver log:\n{}",
        response.text(),
        registry.log()
    );

    // The server then exits cleanly, leaving no staged bytes behind.
    let mut registry = registry;
    assert!(
        registry.stop(),
        "wharf serve did not exit cleanly; log:\n{}",
        registry.log()
    );
    assert!(
        registry.log().contains("shutting down"),
        "{}",
        registry.log()
    );
    assert!(
        staging_files(&registry).is_empty(),
        "staging left: {:?}",
        staging_files(&registry)
    );

    // A new server on the same data lists the file, byte for byte.
    let registry = registry.restart_with(&[]);
    let page = get(
        &registry,
        "/simple/slow-upload/",
        &[("Accept", SIMPLE_JSON)],
    );
    assert_eq!(page.status, 200, "{}", page.text());
    let page = page.json();
    assert_eq!(page["files"][0]["filename"], dist.filename.as_str());
    assert_eq!(page["files"][0]["hashes"]["sha256"], dist.sha256());
    let path = format!("/packages/{}", dist.digests().storage_path(&dist.filename));
    let download = get(&registry, &path, &[]);
    assert_eq!(download.status, 200);
    assert!(
        download.body == dist.bytes,
        "the stored file differs from the upload"
    );
}
