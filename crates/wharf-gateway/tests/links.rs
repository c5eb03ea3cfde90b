//! Absolute links (issue #12, finding 11): built from the request's own authority (HTTP/2's
//! `:authority`, which hyper puts in the request URI, not in `Host`), never from
//! `X-Forwarded-Host`/`X-Forwarded-Proto` unless the operator trusts the proxy that sets them;
//! a forged header never reaches another client through the page cache; and `Vary` names the
//! headers the links were built from.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wharf_app::TestApp;
use wharf_e2e::dist::Dist;

const SIMPLE_JSON: &str = "application/vnd.pypi.simple.v1+json";

/// A registry (gateway settings changed by `settings`) with `demo` 1.0 published.
async fn published(settings: impl FnOnce(&mut wharf_gateway::GatewaySettings)) -> TestApp {
    let app = TestApp::builder()
        .gateway(settings)
        .start()
        .await
        .expect("the test app");
    let token = app.user_with_token("alice").await.expect("a token");
    let form = Dist::wheel("demo", "1.0").form();
    let response = app
        .client()
        .post(app.url("/legacy/"))
        .basic_auth("__token__", Some(&token))
        .header("Content-Type", form.content_type())
        .body(form.body())
        .send()
        .await
        .expect("the upload");
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    app
}

/// `GET /simple/demo/` as JSON with `headers`; answers the first file's URL and `Vary`.
async fn file_url(app: &TestApp, headers: &[(&str, &str)]) -> (String, String) {
    let mut request = app
        .client()
        .get(app.url("/simple/demo/"))
        .header("Accept", SIMPLE_JSON);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("the page");
    assert_eq!(response.status(), 200);
    let vary = response
        .headers()
        .get("vary")
        .map(|value| value.to_str().expect("ascii").to_owned())
        .unwrap_or_default();
    let page: Value = response.json().await.expect("JSON");
    let url = page["files"][0]["url"].as_str().expect("a file URL");
    (url.to_owned(), vary)
}

#[tokio::test]
async fn links_use_the_request_uris_authority_over_host() {
    let app = published(|_| {}).await;
    // What an HTTP/2 request is once hyper has read it: the authority in the URI. An
    // absolute-form HTTP/1 request reaches the handler the same way, with a `Host` that must
    // lose to it (RFC 9112 §3.2.2).
    let mut stream = tokio::net::TcpStream::connect(app.base_url().trim_start_matches("http://"))
        .await
        .expect("connect");
    stream
        .write_all(
            format!(
                "GET http://registry.example:8443/simple/demo/ HTTP/1.1\r\nHost: wrong.example\r\n\
                 Accept: {SIMPLE_JSON}\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .expect("the request");
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_string(&mut answer))
        .await
        .expect("an answer")
        .expect("a readable answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains("\"url\":\"http://registry.example:8443/packages/"),
        "{answer}"
    );
    assert!(!answer.contains("wrong.example"), "{answer}");
}

#[tokio::test]
async fn forwarded_headers_are_ignored_unless_the_proxy_is_trusted() {
    let forged = [
        ("X-Forwarded-Host", "evil.example"),
        ("X-Forwarded-Proto", "https"),
    ];
    let app = published(|_| {}).await;
    let (url, vary) = file_url(&app, &forged).await;
    assert!(
        url.starts_with(&format!("{}/packages/", app.base_url())),
        "{url}"
    );
    assert_eq!(vary, "Accept");

    let app = published(|settings| settings.trust_forwarded_headers = true).await;
    let (url, vary) = file_url(&app, &forged).await;
    assert!(url.starts_with("https://evil.example/packages/"), "{url}");
    assert_eq!(vary, "Accept, X-Forwarded-Host, X-Forwarded-Proto");
    // Each proxy appends; the last entry is the one the trusted proxy wrote.
    let (url, _) = file_url(
        &app,
        &[("X-Forwarded-Host", "client-said.example, proxy.example")],
    )
    .await;
    assert!(url.starts_with("http://proxy.example/packages/"), "{url}");
    // The JSON API says the same.
    let response = app
        .client()
        .get(app.url("/pypi/demo/json"))
        .header("X-Forwarded-Host", "proxy.example")
        .send()
        .await
        .expect("the JSON API");
    assert_eq!(
        response.headers()["vary"],
        "X-Forwarded-Host, X-Forwarded-Proto"
    );
    let body: Value = response.json().await.expect("JSON");
    let url = body["urls"][0]["url"].as_str().expect("a URL");
    assert!(url.starts_with("http://proxy.example/packages/"), "{url}");
}

#[tokio::test]
async fn a_forged_header_never_reaches_another_client_through_the_page_cache() {
    for trusted in [false, true] {
        let app = published(|settings| settings.trust_forwarded_headers = trusted).await;
        let base = app.base_url();
        // A renders (and caches) the page with forged headers first …
        let (forged, _) = file_url(
            &app,
            &[
                ("Host", "evil.example"),
                ("X-Forwarded-Host", "evil.example"),
                ("X-Forwarded-Proto", "https"),
            ],
        )
        .await;
        assert!(forged.contains("evil.example"), "{forged}");
        // … B asks normally and gets its own links.
        for _ in 0..2 {
            let (url, _) = file_url(&app, &[]).await;
            assert!(
                url.starts_with(&format!("{base}/packages/")),
                "trusted={trusted}: {url}"
            );
        }
    }
}

#[tokio::test]
async fn a_configured_public_url_wins_over_every_header() {
    let app = published(|settings| {
        settings.public_url = Some("https://pypi.example.com/".to_owned());
        settings.trust_forwarded_headers = true;
    })
    .await;
    let (url, vary) = file_url(
        &app,
        &[
            ("Host", "evil.example"),
            ("X-Forwarded-Host", "evil.example"),
        ],
    )
    .await;
    assert!(
        url.starts_with("https://pypi.example.com/packages/"),
        "{url}"
    );
    assert_eq!(vary, "Accept");
}
