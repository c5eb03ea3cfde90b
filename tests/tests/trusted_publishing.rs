//! Trusted publishing end to end (issue 3, spec §b): a test OIDC issuer that behaves like
//! GitHub Actions' token service, Wharf serving HTTPS with a test CA's certificate, and the
//! real clients — `uv publish --trusted-publishing always`, the `id` package + mint-token
//! exchange of gh-action-pypi-publish followed by `twine upload`, and `pip install` — plus the
//! refusals: expired and burned minted tokens, another registry's audience, a publisher token
//! outside its project, and an attack matrix over HTTP.
//!
//! Tokens are never printed: assertion messages show status codes and refusal bodies only.

use std::process::Command;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use serde_json::{Value, json};
use wharf_e2e::oidc_issuer::{
    GitHubIdentity, KID, SigningKey, TestIssuer, now, sign_hs256, tamper_payload, unsigned_token,
};
use wharf_e2e::raw_http::{self, RawResponse};
use wharf_e2e::tls::TestCa;
use wharf_e2e::{BuiltProject, Registry, fresh_venv, run_failing, run_ok, squash, venv_tool};

/// The issuer's name in the registries under test.
const ISSUER_NAME: &str = "test-gh";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// `POST <path>` with a JSON body to a plain-HTTP registry.
fn post(registry: &Registry, path: &str, body: &str) -> RawResponse {
    raw_http::request(
        &registry.url(),
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
}

/// `POST /_/oidc/mint-token` with `{"token": jwt}`.
fn mint(registry: &Registry, jwt: &str) -> RawResponse {
    post(
        registry,
        "/_/oidc/mint-token",
        &json!({ "token": jwt }).to_string(),
    )
}

/// The response for an assertion message, with any `token` value blanked.
fn shown(response: &RawResponse) -> String {
    match serde_json::from_slice::<Value>(&response.body) {
        Ok(mut body) => {
            if let Some(token) = body.get_mut("token") {
                *token = json!("<redacted>");
            }
            format!("HTTP {} {body}", response.status)
        }
        Err(_) => format!("HTTP {} {}", response.status, response.text()),
    }
}

/// One mint-token request per JWT, from as many threads released at once; the responses in
/// the same order.
fn mint_at_once(registry: &Registry, jwts: Vec<String>) -> Vec<RawResponse> {
    let barrier = Arc::new(Barrier::new(jwts.len()));
    let url = registry.url();
    let handles: Vec<_> = jwts
        .into_iter()
        .map(|jwt| {
            let body = json!({ "token": jwt }).to_string();
            let (barrier, url) = (Arc::clone(&barrier), url.clone());
            std::thread::spawn(move || {
                barrier.wait();
                raw_http::request(
                    &url,
                    "POST",
                    "/_/oidc/mint-token",
                    &[("Content-Type", "application/json")],
                    body.as_bytes(),
                )
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|handle| handle.join().expect("racer thread"))
        .collect()
}

/// Asserts a successful exchange with PyPI's 200 shape; returns the minted token.
fn minted(response: &RawResponse) -> String {
    assert_eq!(response.status, 200, "{}", shown(response));
    let body = response.json();
    assert_eq!(body["success"], json!(true), "{}", shown(response));
    let expires = body["expires"]
        .as_i64()
        .unwrap_or_else(|| panic!("expires is an integer: {}", shown(response)));
    assert!(expires > now() - 60, "{}", shown(response));
    let token = body["token"]
        .as_str()
        .unwrap_or_else(|| panic!("token is a string: {}", shown(response)));
    assert!(token.starts_with("pypi-"), "not a pypi- token");
    assert_eq!(
        body.as_object().map(|object| object.len()),
        Some(3),
        "{}",
        shown(response)
    );
    token.to_owned()
}

/// Asserts PyPI's 422 refusal with `code`; returns its description.
fn refused(response: &RawResponse, code: &str) -> String {
    assert_eq!(response.status, 422, "{}", shown(response));
    let body = response.json();
    assert_eq!(
        body["message"],
        json!("Token request failed"),
        "{}",
        shown(response)
    );
    let errors = body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("errors is a list: {}", shown(response)));
    assert_eq!(errors.len(), 1, "{}", shown(response));
    assert_eq!(errors[0]["code"], json!(code), "{}", shown(response));
    errors[0]["description"]
        .as_str()
        .unwrap_or_else(|| panic!("description is a string: {}", shown(response)))
        .to_owned()
}

/// Asserts a refusal with `code` whose description is exactly `description`.
fn refused_with(response: &RawResponse, code: &str, description: &str, case: &str) {
    assert_eq!(response.status, 422, "{case}: {}", shown(response));
    let actual = refused(response, code);
    assert_eq!(actual, description, "{case}");
}

/// `wharf admin publisher add github …` for `identity`'s repository and workflow.
fn add_github_publisher(
    registry: &Registry,
    identity: &GitHubIdentity,
    project: &str,
    pending_user: Option<&str>,
) -> String {
    let mut args = identity.publisher_add_args(ISSUER_NAME, project);
    if let Some(user) = pending_user {
        args.extend(["--pending", "--user", user].map(str::to_owned));
    }
    registry.admin(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// A plain-HTTP registry (started with `flags`) trusting a fresh test issuer for `identity`,
/// with user `alice` and a pending publisher registered by her for `project`.
fn registry_with_pending_publisher(
    flags: &[&str],
    identity: GitHubIdentity,
    project: &str,
) -> (TestIssuer, Registry) {
    let issuer = TestIssuer::start(identity.clone());
    let registry = Registry::start_with(flags);
    registry.admin(&["user", "create", "alice"]);
    issuer.register(&registry, ISSUER_NAME);
    add_github_publisher(&registry, &identity, project, Some("alice"));
    (issuer, registry)
}

/// How many audit events of `kind` there are.
fn count_events(events: &[(String, Value)], kind: &str) -> usize {
    events.iter().filter(|(event, _)| event == kind).count()
}

/// `twine upload` of `files` with `token` to `registry` (plain HTTP).
fn twine(registry: &Registry, token: &str, files: &[std::path::PathBuf]) -> Command {
    wharf_e2e::twine_upload(registry, token, files)
}

// ---------------------------------------------------------------------------------------------
// The real clients
// ---------------------------------------------------------------------------------------------

/// `uv publish --trusted-publishing always` inside a (simulated) GitHub Actions job.
fn uv_trusted_publish(
    registry: &Registry,
    issuer: &TestIssuer,
    ca: &TestCa,
    files: &[std::path::PathBuf],
) -> Command {
    let mut command = Command::new(venv_tool("uv"));
    command
        .args(["publish", "--trusted-publishing", "always", "--publish-url"])
        .arg(registry.upload_url())
        .args(files)
        .envs(issuer.github_actions_env())
        .env("UV_NO_CACHE", "1")
        .env_remove("UV_PUBLISH_TOKEN")
        .env_remove("UV_PUBLISH_USERNAME")
        .env_remove("UV_PUBLISH_PASSWORD");
    ca.trust(&mut command);
    command
}

#[test]
fn uv_publishes_a_new_project_through_a_pending_publisher_then_a_second_release() {
    let ca = TestCa::generate();
    let identity =
        GitHubIdentity::new("octo-org", "fresh-project", "release.yml").in_environment("pypi");
    let issuer = TestIssuer::start(identity.clone());
    let registry = Registry::start_tls(&ca, &[]);
    assert!(registry.url().starts_with("https://"));
    registry.admin(&["user", "create", "alice"]);
    issuer.register(&registry, ISSUER_NAME);
    add_github_publisher(&registry, &identity, "fresh-project", Some("alice"));
    assert!(
        registry
            .admin(&["publisher", "list"])
            .contains("fresh-project (pending)")
    );

    // The first release creates the project through the pending publisher.
    let first = BuiltProject::build("fresh-project", "fresh_project", "1.0.0", "first");
    run_ok(&mut uv_trusted_publish(
        &registry,
        &issuer,
        &ca,
        &first.dists(),
    ));
    assert_eq!(issuer.token_requests(), 1, "uv fetched one OIDC token");
    let publishers = registry.admin(&["publisher", "list"]);
    assert!(!publishers.contains("(pending)"), "{publishers}");
    assert!(publishers.contains("fresh-project"), "{publishers}");
    // The owner id was pinned from the first exchange.
    assert!(publishers.contains(&identity.owner_id), "{publishers}");
    assert!(
        registry
            .admin(&["project", "list"])
            .contains("fresh-project")
    );

    // The second release goes through the now-active publisher.
    let second = BuiltProject::build("fresh-project", "fresh_project", "1.1.0", "second");
    run_ok(&mut uv_trusted_publish(
        &registry,
        &issuer,
        &ca,
        &second.dists(),
    ));
    assert_eq!(issuer.token_requests(), 2, "uv fetched a second OIDC token");

    // pip installs it from the simple index over HTTPS, trusting the test CA.
    let env = fresh_venv();
    let python = env.path().join("venv/bin/python");
    run_ok(
        ca.trust(
            Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--no-cache-dir",
                    "--disable-pip-version-check",
                    "--cert",
                ])
                .arg(ca.ca_cert())
                .arg("--index-url")
                .arg(registry.index_url())
                .arg("fresh-project"),
        ),
    );
    let greeting = run_ok(
        Command::new(&python).args(["-c", "import fresh_project; print(fresh_project.hello())"]),
    );
    assert_eq!(greeting.trim(), "second");

    // Audited: the activation, the pinned owner id, two mints, and uv burning each minted
    // token once it has uploaded.
    let events = registry.audit_events();
    assert_eq!(count_events(&events, "oidc.publisher_activated"), 1);
    assert_eq!(count_events(&events, "oidc.publisher_pinned"), 1);
    assert_eq!(count_events(&events, "oidc.minted"), 2);
    assert_eq!(count_events(&events, "oidc.burned"), 2);
}

/// What gh-action-pypi-publish's `oidc-exchange.py` does: ask the registry for its
/// audience, get the ambient GitHub credential with the `id` package, exchange it at
/// `/_/oidc/mint-token` with `requests` (json=…), and hand the result back. It prints
/// `{"status": …, "body": …}` on stdout for the test to check (the test never shows it).
const GH_ACTION_EXCHANGE: &str = r#"
import json, sys
import id, requests

base = sys.argv[1].rstrip("/")
audience = requests.get(base + "/_/oidc/audience", timeout=30).json()["audience"]
oidc_token = id.detect_credential(audience=audience)
response = requests.post(base + "/_/oidc/mint-token", json={"token": oidc_token}, timeout=30)
json.dump({"audience": audience, "status": response.status_code, "body": response.json()}, sys.stdout)
"#;

#[test]
fn the_gh_action_exchange_with_the_id_package_then_twine_upload() {
    let ca = TestCa::generate();
    let identity = GitHubIdentity::new("octo-org", "action-demo", "publish.yaml");
    let issuer = TestIssuer::start(identity.clone());
    let registry = Registry::start_tls(&ca, &["--oidc-audience", "wharf-e2e"]);
    let alice = registry.user_with_token("alice", &[]);
    issuer.register(&registry, ISSUER_NAME);

    // The project exists already (alice uploaded it); the publisher is an active one.
    let first = BuiltProject::build("action-demo", "action_demo", "1.0", "one");
    run_ok(ca.trust(&mut wharf_e2e::twine_upload(
        &registry,
        &alice,
        &first.dists(),
    )));
    add_github_publisher(&registry, &identity, "action-demo", None);

    // The `id` package on its own finds the ambient credential (for the registry's audience).
    let detected = run_ok(
        Command::new(venv_tool("python"))
            .args([
                "-c",
                "import id, sys; t = id.detect_credential(audience='wharf-e2e'); \
                 print(len(t.split('.')))",
            ])
            .envs(issuer.github_actions_env()),
    );
    assert_eq!(detected.trim(), "3", "id returned a compact JWS");
    // The token endpoint honours ACTIONS_ID_TOKEN_REQUEST_TOKEN: a wrong one gets nothing.
    let output = run_failing(
        Command::new(venv_tool("python"))
            .args([
                "-c",
                "import id; id.detect_credential(audience='wharf-e2e')",
            ])
            .envs(issuer.github_actions_env())
            .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "not-the-request-token"),
    );
    assert!(
        output.contains("OIDC token request failed (code=401"),
        "{output}"
    );

    let output = run_ok(
        Command::new(venv_tool("python"))
            .args(["-c", GH_ACTION_EXCHANGE])
            .arg(registry.url())
            .envs(issuer.github_actions_env())
            .env("REQUESTS_CA_BUNDLE", ca.ca_cert())
            .env_remove("CURL_CA_BUNDLE"),
    );
    let exchange: Value = serde_json::from_str(&output).expect("the exchange printed JSON");
    assert_eq!(exchange["audience"], json!("wharf-e2e"));
    assert_eq!(exchange["status"], json!(200));
    let body = &exchange["body"];
    assert_eq!(body["success"], json!(true));
    assert!(body["expires"].is_i64(), "expires is an integer");
    assert!(body["expires"].as_i64().unwrap_or(0) > now());
    assert_eq!(body.as_object().map(|object| object.len()), Some(3));
    let token = body["token"].as_str().expect("token is a string");
    assert!(token.starts_with("pypi-"), "a pypi- token");

    // twine uploads the next release with the minted token, over HTTPS, with attestations
    // as the action sends them (accepted from a trusted publisher; Wharf does not verify
    // or keep them).
    let second = BuiltProject::build("action-demo", "action_demo", "2.0", "two");
    let attestations = tempfile::tempdir().expect("temp dir");
    let attestation_files = wharf_e2e::attestation_files(attestations.path(), &second.dists());
    run_ok(
        ca.trust(
            Command::new(venv_tool("twine"))
                .args([
                    "upload",
                    "--non-interactive",
                    "--disable-progress-bar",
                    "--repository-url",
                ])
                .arg(registry.upload_url())
                .arg("--cert")
                .arg(ca.ca_cert())
                .args(["--username", "__token__", "--password", token])
                .arg("--attestations")
                .args(second.dists())
                .args(&attestation_files),
        ),
    );
}

// ---------------------------------------------------------------------------------------------
// Minted tokens: expiry, burn, audience, scope
// ---------------------------------------------------------------------------------------------

#[test]
fn a_minted_token_is_refused_after_it_expires() {
    let identity = GitHubIdentity::new("octo-org", "short-lived", "release.yml");
    let (issuer, registry) = registry_with_pending_publisher(
        &["--oidc-token-ttl", "2s", "--oidc-max-token-ttl", "2s"],
        identity,
        "short-lived",
    );
    let project = BuiltProject::build("short-lived", "short_lived", "1.0", "x");
    let response = mint(&registry, &issuer.request_over_http("wharf"));
    let token = minted(&response);
    let expires = response.json()["expires"].as_i64().unwrap_or_default();
    assert!(expires <= now() + 2, "the 2 s lifetime is used");

    std::thread::sleep(Duration::from_secs(3));
    let output = run_failing(&mut twine(&registry, &token, &project.dists()));
    assert!(output.contains("403"), "{output}");
    assert!(
        output.contains("Invalid API Token: token is expired"),
        "{output}"
    );
}

#[test]
fn a_burned_token_is_refused() {
    let identity = GitHubIdentity::new("octo-org", "burn-demo", "release.yml");
    let (issuer, registry) = registry_with_pending_publisher(&[], identity, "burn-demo");
    let token = minted(&mint(&registry, &issuer.request_over_http("wharf")));

    let first = BuiltProject::build("burn-demo", "burn_demo", "1.0", "one");
    run_ok(&mut twine(&registry, &token, &first.dists()));

    let response = post(
        &registry,
        "/_/oidc/burn-token",
        &json!({ "token": token }).to_string(),
    );
    assert_eq!(response.status, 202, "{}", shown(&response));
    assert_eq!(
        response.json(),
        json!({ "message": "Accepted", "errors": [] })
    );

    let second = BuiltProject::build("burn-demo", "burn_demo", "2.0", "two");
    let output = run_failing(&mut twine(&registry, &token, &second.dists()));
    assert!(output.contains("403"), "{output}");
    assert!(
        output.contains("Invalid or non-existent authentication information"),
        "{output}"
    );

    // Burning again, or burning garbage, still answers 202.
    for body in [
        json!({ "token": token }).to_string(),
        json!({ "token": "pypi-garbage" }).to_string(),
        "not json".to_owned(),
    ] {
        let response = post(&registry, "/_/oidc/burn-token", &body);
        assert_eq!(response.status, 202, "{}", shown(&response));
    }
}

#[test]
fn a_token_for_the_test_registry_is_refused_by_production() {
    let identity = GitHubIdentity::new("octo-org", "twin-demo", "release.yml");
    let issuer = TestIssuer::start(identity.clone());
    let production = Registry::start_with(&["--oidc-audience", "prod"]);
    let staging = Registry::start_with(&["--oidc-audience", "test"]);
    for registry in [&production, &staging] {
        registry.admin(&["user", "create", "alice"]);
        issuer.register(registry, ISSUER_NAME);
        add_github_publisher(registry, &identity, "twin-demo", Some("alice"));
    }
    for (registry, audience) in [(&production, "prod"), (&staging, "test")] {
        let response = raw_http::request(&registry.url(), "GET", "/_/oidc/audience", &[], b"");
        assert_eq!(response.status, 200, "{}", shown(&response));
        assert_eq!(response.json(), json!({ "audience": audience }));
    }

    let for_test = issuer.request_over_http("test");
    refused_with(
        &mint(&production, &for_test),
        "invalid-token",
        "malformed or invalid token",
        "a test-audience token at production",
    );
    // The test instance takes it (and production's own audience works at production).
    minted(&mint(&staging, &for_test));
    minted(&mint(&production, &issuer.request_over_http("prod")));
}

#[test]
fn a_publisher_token_is_limited_to_its_project() {
    let owned = GitHubIdentity::new("octo-org", "tp-owned", "release.yml");
    let (issuer, registry) = registry_with_pending_publisher(&[], owned.clone(), "tp-owned");
    // Another project, created by another publisher (its own pending publisher).
    let other = GitHubIdentity::new("octo-org", "tp-other", "release.yml");
    add_github_publisher(&registry, &other, "tp-other", Some("alice"));
    minted(&mint(
        &registry,
        &issuer.sign(&other.claims(issuer.url(), "wharf")),
    ));

    let token = minted(&mint(&registry, &issuer.request_over_http("wharf")));

    let foreign = BuiltProject::build("tp-other", "tp_other", "1.0", "x");
    let output = run_failing(&mut twine(&registry, &token, &foreign.dists()));
    assert!(output.contains("403"), "{output}");
    assert!(
        output.contains("Invalid API Token: OIDC scoped token is not valid for project 'tp-other'"),
        "{output}"
    );

    let brand_new = BuiltProject::build("tp-brand-new", "tp_brand_new", "1.0", "x");
    let output = run_failing(&mut twine(&registry, &token, &brand_new.dists()));
    assert!(output.contains("400"), "{output}");
    assert!(
        output.contains("Non-user identities cannot create new projects"),
        "{output}"
    );

    // Its own project takes it.
    let own = BuiltProject::build("tp-owned", "tp_owned", "1.0", "x");
    run_ok(&mut twine(&registry, &token, &own.dists()));
    let projects = registry.admin(&["project", "list"]);
    assert!(!projects.contains("tp-brand-new"), "{projects}");
}

// ---------------------------------------------------------------------------------------------
// The attack matrix
// ---------------------------------------------------------------------------------------------

/// The GitHub claims PyPI requires of every token (spec §b.5).
const REQUIRED_GITHUB_CLAIMS: &[&str] = &[
    "repository",
    "repository_owner",
    "repository_owner_id",
    "job_workflow_ref",
    "jti",
    "event_name",
    "ref",
    "sha",
];

#[test]
fn the_attack_matrix_is_refused_with_pypis_codes() {
    let identity =
        GitHubIdentity::new("octo-org", "attack-target", "release.yml").in_environment("release");
    let (issuer, registry) =
        registry_with_pending_publisher(&[], identity.clone(), "attack-target");
    let aud = "wharf";

    // The baseline: a well-formed token is exchanged (and activates the publisher).
    minted(&mint(&registry, &issuer.token(aud)));
    // The legacy alias behaves the same.
    minted(&post(
        &registry,
        "/_/oidc/github/mint-token",
        &json!({ "token": issuer.token(aud) }).to_string(),
    ));

    let invalid_token = |jwt: &str, case: &str| {
        refused_with(
            &mint(&registry, jwt),
            "invalid-token",
            "malformed or invalid token",
            case,
        );
    };

    // alg: none, with and without a kid.
    let claims = issuer.claims(aud);
    invalid_token(
        &unsigned_token(&json!({ "alg": "none", "typ": "JWT", "kid": KID }), &claims),
        "alg none",
    );
    invalid_token(
        &unsigned_token(&json!({ "alg": "none" }), &claims),
        "alg none without kid",
    );
    // HS256 keyed with the issuer's public key (PEM, and the JWK's modulus as bytes).
    invalid_token(
        &sign_hs256(
            KID,
            issuer.key().public_pem().as_bytes(),
            &issuer.claims(aud),
        ),
        "HS256 keyed with the public key",
    );
    invalid_token(
        &sign_hs256(
            KID,
            issuer.key().jwk()["n"]
                .as_str()
                .unwrap_or_default()
                .as_bytes(),
            &issuer.claims(aud),
        ),
        "HS256 keyed with the public modulus",
    );
    // A foreign key claiming the issuer's kid.
    let foreign = SigningKey::generate(KID);
    invalid_token(&foreign.sign(&issuer.claims(aud)), "foreign key, known kid");
    // The issuer's key under an unknown kid, and without a kid.
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("no-such-key".to_owned());
    invalid_token(
        &issuer.key().sign_with_header(&header, &issuer.claims(aud)),
        "unknown kid",
    );
    header.kid = None;
    invalid_token(
        &issuer.key().sign_with_header(&header, &issuer.claims(aud)),
        "no kid",
    );
    // A validly signed token whose payload was changed afterwards.
    invalid_token(
        &tamper_payload(&issuer.token(aud), |claims| {
            claims.insert("repository_owner_id".to_owned(), json!("666"));
        }),
        "tampered payload",
    );
    // Time: expired, not yet valid, issued in the future.
    let mut claims = issuer.claims(aud);
    claims.insert("iat".to_owned(), json!(now() - 900));
    claims.insert("nbf".to_owned(), json!(now() - 900));
    claims.insert("exp".to_owned(), json!(now() - 300));
    invalid_token(&issuer.sign(&claims), "expired");
    let mut claims = issuer.claims(aud);
    claims.insert("nbf".to_owned(), json!(now() + 600));
    invalid_token(&issuer.sign(&claims), "future nbf");
    let mut claims = issuer.claims(aud);
    claims.remove("exp");
    invalid_token(&issuer.sign(&claims), "no exp");
    // Audience: a list (even containing ours), another one, none.
    let mut claims = issuer.claims(aud);
    claims.insert("aud".to_owned(), json!([aud]));
    invalid_token(&issuer.sign(&claims), "aud as a list");
    invalid_token(&issuer.token("pypi"), "wrong aud");
    let mut claims = issuer.claims(aud);
    claims.remove("aud");
    invalid_token(&issuer.sign(&claims), "no aud");

    // An issuer that is not registered.
    let mut claims = issuer.claims(aud);
    claims.insert("iss".to_owned(), json!("http://127.0.0.1:9"));
    refused_with(
        &mint(&registry, &issuer.sign(&claims)),
        "invalid-payload",
        "unknown trusted publishing issuer",
        "unregistered iss",
    );
    let mut claims = issuer.claims(aud);
    claims.insert("iss".to_owned(), json!(format!("{}/", issuer.url())));
    refused_with(
        &mint(&registry, &issuer.sign(&claims)),
        "invalid-payload",
        "unknown trusted publishing issuer",
        "iss with a trailing slash",
    );

    // Replay: the same JWT twice, and another JWT reusing a spent jti.
    let jwt = issuer.token(aud);
    minted(&mint(&registry, &jwt));
    refused_with(
        &mint(&registry, &jwt),
        "invalid-reuse-token",
        "invalid token: already used",
        "replayed JWT",
    );
    let spent_jti = serde_json::from_slice::<Value>(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            jwt.split('.').nth(1).unwrap_or_default(),
        )
        .expect("payload"),
    )
    .expect("payload JSON")["jti"]
        .clone();
    let mut claims = issuer.claims(aud);
    claims.insert("jti".to_owned(), spent_jti);
    refused_with(
        &mint(&registry, &issuer.sign(&claims)),
        "invalid-reuse-token",
        "invalid token: already used",
        "new JWT, spent jti",
    );

    // Each required GitHub claim missing.
    for claim in REQUIRED_GITHUB_CLAIMS {
        let mut claims = issuer.claims(aud);
        claims.remove(*claim);
        let description = refused(&mint(&registry, &issuer.sign(&claims)), "invalid-publisher");
        assert!(
            description.starts_with(&format!(
                "valid token, but no corresponding publisher (Missing claim '{claim}')"
            )),
            "missing {claim}: {description}"
        );
    }

    // pull_request_target is refused.
    let mut target = identity.clone();
    target.event_name = "pull_request_target".to_owned();
    issuer.set_identity(target);
    let description = refused(
        &mint(&registry, &issuer.request_over_http(aud)),
        "invalid-publisher",
    );
    assert!(
        description.contains(
            "Publishing from a workflow invoked via 'pull_request_target' is not supported."
        ),
        "{description}"
    );

    // A workflow no publisher declares: explain mode names the closest publisher and what it
    // expects, and never echoes the token or its claim values.
    let mut wrong_workflow = identity.clone();
    wrong_workflow.workflow = "sneaky-other.yml".to_owned();
    wrong_workflow.git_ref = "refs/heads/topic-ab12cd".to_owned();
    issuer.set_identity(wrong_workflow.clone());
    let claims = issuer.claims(aud);
    let jwt = issuer.sign(&claims);
    let description = refused(&mint(&registry, &jwt), "invalid-publisher");
    assert!(
        description.starts_with("valid token, but no corresponding publisher ("),
        "{description}"
    );
    assert!(
        description.contains("github:octo-org/attack-target release.yml"),
        "the closest publisher is named: {description}"
    );
    assert!(
        description.contains(".github/workflows/release.yml"),
        "the expected workflow is named: {description}"
    );
    for secret in [
        jwt.as_str(),
        jwt.split('.').nth(2).unwrap_or_default(),
        claims["jti"].as_str().unwrap_or_default(),
        &wrong_workflow.sha,
        &wrong_workflow.workflow,
        &wrong_workflow.git_ref,
        &wrong_workflow.workflow_ref(),
    ] {
        assert!(
            !description.contains(secret),
            "explain mode echoes a token value ({} chars)",
            secret.len()
        );
    }
    issuer.set_identity(identity.clone());

    // Malformed bodies and JWTs.
    for (body, expected) in [
        ("not json", None),
        ("{}", Some("token: Field required")),
        (
            r#"{"token": 1}"#,
            Some("token: Input should be a valid string"),
        ),
        ("[]", None),
        (r#"{"token": "not-a-jwt"}"#, Some("malformed JWT")),
        (r#"{"token": "a.b.c"}"#, Some("malformed JWT")),
        (r#"{"token": ""}"#, Some("malformed JWT")),
    ] {
        let response = post(&registry, "/_/oidc/mint-token", body);
        let description = refused(&response, "invalid-payload");
        if let Some(expected) = expected {
            assert_eq!(description, expected, "body {body}");
        }
    }
    // No content type at all, as older uv sent it: still read.
    let response = raw_http::request(
        &registry.url(),
        "POST",
        "/_/oidc/mint-token",
        &[],
        json!({ "token": issuer.token(aud) }).to_string().as_bytes(),
    );
    minted(&response);

    // The audience endpoint.
    let response = raw_http::request(&registry.url(), "GET", "/_/oidc/audience", &[], b"");
    assert_eq!(response.status, 200);
    assert_eq!(response.json(), json!({ "audience": "wharf" }));

    // Every refusal was answered; the server is still healthy.
    let response = raw_http::request(&registry.url(), "GET", "/readyz", &[], b"");
    assert_eq!(response.status, 200);

    // Refusals are audited with their code; no JWT (every one starts
    // with `eyJ`, base64url of `{"`) reaches the audit trail or the log.
    let events = registry.audit_events();
    let codes: std::collections::BTreeSet<&str> = events
        .iter()
        .filter(|(kind, _)| kind == "oidc.mint_refused")
        .filter_map(|(_, detail)| detail["code"].as_str())
        .collect();
    for code in [
        "invalid-token",
        "invalid-payload",
        "invalid-reuse-token",
        "invalid-publisher",
    ] {
        assert!(
            codes.contains(code),
            "no audited refusal with {code}: {codes:?}"
        );
    }
    // Bodies the gateway could not read are audited too, with the text the client saw.
    for description in [
        "token: Field required",
        "token: Input should be a valid string",
    ] {
        assert!(
            events
                .iter()
                .any(|(kind, detail)| kind == "oidc.mint_refused"
                    && detail["description"] == description),
            "the refusal '{description}' was not audited"
        );
    }
    assert!(
        events
            .iter()
            .all(|(_, detail)| !detail.to_string().contains("eyJ")),
        "a JWT in the audit trail"
    );
    assert!(
        !squash(&registry.log()).contains("eyJ"),
        "a JWT in the server log"
    );
}

#[test]
fn the_same_jwt_raced_from_16_requests_is_exchanged_exactly_once() {
    let identity = GitHubIdentity::new("octo-org", "race-target", "release.yml");
    let (issuer, registry) = registry_with_pending_publisher(&[], identity, "race-target");
    // Activate the publisher (and warm the JWKS cache) first.
    minted(&mint(&registry, &issuer.token("wharf")));

    for (round, racers) in [(1, 16), (2, 16)] {
        let jwt = issuer.token("wharf");
        let responses = mint_at_once(&registry, vec![jwt; racers]);
        let winners = responses.iter().filter(|r| r.status == 200).count();
        assert_eq!(
            winners,
            1,
            "round {round}: {:?}",
            responses.iter().map(shown).collect::<Vec<_>>()
        );
        for response in responses.iter().filter(|r| r.status != 200) {
            refused_with(
                response,
                "invalid-reuse-token",
                "invalid token: already used",
                "race loser",
            );
        }
        minted(
            &responses
                .into_iter()
                .find(|r| r.status == 200)
                .expect("a winner"),
        );
    }
}

/// Beyond `--mint-token-identity-rate-limit` exchanges a minute, one identity (issuer and
/// `sub`) gets `429` with `Retry-After`; another identity of the same issuer is not held up.
#[test]
fn mint_token_exchanges_are_limited_per_identity() {
    let identity = GitHubIdentity::new("octo-org", "busy-repo", "release.yml");
    let (issuer, registry) = registry_with_pending_publisher(
        &["--mint-token-identity-rate-limit", "2"],
        identity,
        "busy-target",
    );
    minted(&mint(&registry, &issuer.token("wharf")));
    minted(&mint(&registry, &issuer.token("wharf")));
    let limited = mint(&registry, &issuer.token("wharf"));
    assert_eq!(limited.status, 429, "{}", shown(&limited));
    let retry_after: u64 = limited
        .header("retry-after")
        .and_then(|value| value.parse().ok())
        .expect("Retry-After seconds");
    assert!((1..=30).contains(&retry_after), "{retry_after}");
    let body = limited.json();
    assert_eq!(body["errors"][0]["code"], "rate-limited", "{body}");
    assert_eq!(
        body["errors"][0]["description"],
        format!("Too many token requests for this identity. Try again in {retry_after} seconds.")
            .as_str(),
        "{body}"
    );

    let other = GitHubIdentity::new("octo-org", "quiet-repo", "release.yml");
    add_github_publisher(&registry, &other, "quiet-target", Some("alice"));
    issuer.set_identity(other);
    minted(&mint(&registry, &issuer.token("wharf")));
}

#[test]
fn trusted_publishing_can_be_turned_off() {
    let identity = GitHubIdentity::new("octo-org", "off-demo", "release.yml");
    let (issuer, registry) =
        registry_with_pending_publisher(&["--no-trusted-publishing"], identity, "off-demo");
    let response = raw_http::request(&registry.url(), "GET", "/_/oidc/audience", &[], b"");
    assert_eq!(response.status, 403, "{}", shown(&response));
    assert_eq!(
        response.json(),
        json!({ "message": "Trusted publishing functionality not enabled" })
    );
    refused(&mint(&registry, &issuer.token("wharf")), "not-enabled");
}

/// Issue #12, finding 4: a token of an unrelated repository is refused with PyPI's bare text
/// and learns nothing of another project's (private) publisher; the audit trail names that
/// publisher for operators; the publisher's own repository is still told what differs.
#[test]
fn explain_mode_tells_an_unrelated_repository_nothing_of_another_projects_publisher() {
    let mut secret = GitHubIdentity::new("hidden-org", "private-repo", "deploy-secret.yml")
        .in_environment("prod-secret");
    secret.owner_id = "7770001".to_owned();
    let (issuer, registry) = registry_with_pending_publisher(&[], secret.clone(), "secret-project");
    // The first exchange creates the project and pins the owner id.
    minted(&mint(&registry, &issuer.token("wharf")));

    let mut stranger = GitHubIdentity::new("mallory", "unrelated", "release.yml");
    stranger.owner_id = "9990001".to_owned();
    issuer.set_identity(stranger);
    let response = mint(&registry, &issuer.token("wharf"));
    refused_with(
        &response,
        "invalid-publisher",
        "valid token, but no corresponding publisher (Publisher with matching claims was not found)",
        "an unrelated repository",
    );
    let body = response.text();
    for private in [
        "hidden-org",
        "private-repo",
        "7770001",
        "prod-secret",
        "deploy-secret",
        "secret-project",
        "Closest publisher",
    ] {
        assert!(
            !body.contains(private),
            "the stranger sees '{private}': {body}"
        );
    }
    let events = registry.audit_events();
    let (_, detail) = events
        .iter()
        .rev()
        .find(|(kind, _)| kind == "oidc.mint_refused")
        .expect("the refusal is audited");
    assert_eq!(detail["code"], "invalid-publisher", "{detail}");
    let closest = detail["closest_publisher"].as_str().unwrap_or_default();
    for expected in [
        "github:hidden-org/private-repo deploy-secret.yml",
        "claim 'repository_owner_id' expected '7770001'",
        "claim 'environment' expected 'prod-secret'",
    ] {
        assert!(closest.contains(expected), "audit trail: {detail}");
    }

    // The publisher's own repository, in another environment: told what differs.
    let mut staging = secret;
    staging.environment = Some("staging".to_owned());
    issuer.set_identity(staging);
    let description = refused(
        &mint(&registry, &issuer.token("wharf")),
        "invalid-publisher",
    );
    assert!(
        description.ends_with(
            "Closest publisher: github:hidden-org/private-repo deploy-secret.yml: \
             claim 'environment' expected 'prod-secret'"
        ),
        "{description}"
    );
}

/// Issue #12, finding 9: many exchanges of one pending publisher at once (distinct JWTs of
/// the same job identity). One creates the project; every other one is answered — minted
/// (it found the publisher active already) or `invalid-pending-publisher` (it lost the race
/// to create the project) with an audit row — and none gets 503. No timing is assumed: how
/// many lose depends on the schedule; what each gets does not.
#[test]
fn racing_exchanges_of_one_pending_publisher_never_answer_unavailable() {
    let identity = GitHubIdentity::new("octo-org", "pending-race", "release.yml");
    let (issuer, registry) = registry_with_pending_publisher(&[], identity, "pending-race-target");
    // Warm the JWKS cache with a token for another audience (refused; activates nothing).
    refused(&mint(&registry, &issuer.token("pypi")), "invalid-token");

    let racers = 12;
    let responses = mint_at_once(
        &registry,
        (0..racers).map(|_| issuer.token("wharf")).collect(),
    );
    let shown_all = || responses.iter().map(shown).collect::<Vec<_>>();
    let mut losers = 0;
    for response in &responses {
        if response.status == 200 {
            minted(response);
        } else {
            refused_with(
                response,
                "invalid-pending-publisher",
                "valid token, but project already exists",
                &format!("race loser: {:?}", shown_all()),
            );
            losers += 1;
        }
    }
    assert!(losers < racers, "nobody minted: {:?}", shown_all());

    let events = registry.audit_events();
    assert_eq!(
        count_events(&events, "oidc.publisher_activated"),
        1,
        "{events:?}"
    );
    let audited_losers = events
        .iter()
        .filter(|(kind, detail)| {
            kind == "oidc.mint_refused" && detail["code"] == "invalid-pending-publisher"
        })
        .count();
    assert_eq!(audited_losers, losers, "{events:?}");
    assert_eq!(
        count_events(&events, "oidc.minted"),
        racers - losers,
        "{events:?}"
    );
    let projects = registry.admin(&["publisher", "list"]);
    assert!(!projects.contains("(pending)"), "{projects}");
}
