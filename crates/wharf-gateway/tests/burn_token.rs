//! `POST /_/oidc/burn-token` (issue #12, finding 3): a token is revoked only if it is
//! genuine (its signature verifies, not just its public identifier), and the endpoint is
//! rate limited per client IP.

use reqwest::StatusCode;
use serde_json::{Value, json};
use wharf_app::TestApp;
use wharf_e2e::dist::Dist;
use wharf_index::RateLimit;
use wharf_verifier::TOKEN_PREFIX;
use wharf_verifier::test_support::store_minted_token;

/// A publisher of `project` and a token minted for it, stored as trusted publishing stores
/// them; answers the token's identifier and its text.
async fn minted_token(app: &TestApp, project: &str) -> (String, String) {
    let index = app.index();
    let project = index
        .find_project(project)
        .await
        .expect("the index")
        .expect("the project");
    store_minted_token(
        index.as_ref(),
        app.token_keys(),
        vec![project.id],
        &[9_u8; 32],
    )
    .await
}

/// `POST /_/oidc/burn-token` of `token`.
async fn burn(app: &TestApp, token: &str) -> reqwest::Response {
    app.client()
        .post(app.url("/_/oidc/burn-token"))
        .json(&json!({ "token": token }))
        .send()
        .await
        .expect("the burn request")
}

/// Uploads `dist` with `token`; answers the status and body.
async fn upload(app: &TestApp, token: &str, dist: &Dist) -> (StatusCode, String) {
    let form = dist.form();
    let response = app
        .client()
        .post(app.url("/legacy/"))
        .basic_auth("__token__", Some(token))
        .header("Content-Type", form.content_type())
        .header("Accept", "application/json")
        .body(form.body())
        .send()
        .await
        .expect("the upload");
    let status = response.status();
    (status, response.text().await.expect("the body"))
}

/// Asserts PyPI's answer to every burn: `202` and an empty error list.
async fn assert_accepted(response: reqwest::Response) {
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body: Value = response.json().await.expect("a JSON body");
    assert_eq!(body, json!({ "message": "Accepted", "errors": [] }));
}

/// A registry where `alice` published `burn-demo` 1.0, and a token minted for its publisher.
async fn with_minted_token(app: &TestApp) -> (String, String) {
    let alice = app
        .user_with_token("alice")
        .await
        .expect("a user and token");
    let (status, body) = upload(app, &alice, &Dist::wheel("burn-demo", "1.0")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    minted_token(app, "burn-demo").await
}

#[tokio::test]
async fn a_forged_token_burns_nothing_and_a_genuine_one_burns() {
    let app = TestApp::new().await.expect("the test app");
    let (id, genuine) = with_minted_token(&app).await;

    // The real identifier (it is public: in the token, in `oidc.minted` events) under a
    // guessed key: the same 202 as for garbage, and the token still uploads.
    let forged = wharf_macaroon::Macaroon::new("wharf", id.as_bytes(), b"guessed key");
    let forged = wharf_macaroon::encode_token(TOKEN_PREFIX, &forged);
    assert_accepted(burn(&app, &forged).await).await;
    assert_accepted(burn(&app, "pypi-garbage").await).await;
    let (status, body) = upload(&app, &genuine, &Dist::wheel("burn-demo", "2.0")).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The genuine token is burnt: it no longer uploads.
    assert_accepted(burn(&app, &genuine).await).await;
    let (status, body) = upload(&app, &genuine, &Dist::wheel("burn-demo", "3.0")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        app.index().find_token(&id).await.expect("find").is_none(),
        "the token is gone"
    );
}

#[tokio::test]
async fn burns_are_rate_limited_per_client_ip() {
    let app = TestApp::builder()
        .gateway(|settings| {
            settings.rate_limits.burn_per_ip = Some(RateLimit {
                burst: 2,
                interval_micros: 3_600_000_000,
            });
        })
        .start()
        .await
        .expect("the test app");
    for _ in 0..2 {
        assert_accepted(burn(&app, "pypi-garbage").await).await;
    }
    let response = burn(&app, "pypi-garbage").await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .expect("a Retry-After in seconds");
    assert!(retry_after > 0 && retry_after <= 3600, "{retry_after}");
    let body: Value = response.json().await.expect("a JSON body");
    assert_eq!(body["errors"][0]["code"], "rate-limited", "{body}");
}
