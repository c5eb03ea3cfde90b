//! A test OIDC issuer that behaves like GitHub Actions' token service, running in-process on
//! `127.0.0.1:<random port>`:
//!
//! - `GET /.well-known/openid-configuration`: the discovery document (`issuer` is this
//!   server's own `http://127.0.0.1:<port>` URL, `jwks_uri` points at `/jwks`);
//! - `GET /jwks`: the RSA public signing key as a JWK (`kid`, `alg: RS256`, `use: sig`);
//! - `GET /token?audience=<aud>` with `Authorization: bearer <request token>`: answers
//!   `{"value": "<jwt>"}`, exactly what a job's `ACTIONS_ID_TOKEN_REQUEST_URL` and
//!   `ACTIONS_ID_TOKEN_REQUEST_TOKEN` point at, so the real clients (`uv publish
//!   --trusted-publishing always`, the `id` package gh-action-pypi-publish uses) fetch their
//!   identity token from it.
//!
//! The tokens carry GitHub's claims for a configurable [`GitHubIdentity`]. For the attack
//! tests the Rust API also signs arbitrary claim sets and headers, with this issuer's key or a
//! foreign one, and builds unsigned (`alg: none`) and tampered tokens.
//!
//! The RSA key is generated at start (aws-lc-rs through rcgen), so nothing secret is checked
//! in and every issuer has its own key.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value, json};

use crate::Registry;

/// The `kid` of a [`TestIssuer`]'s signing key.
pub const KID: &str = "wharf-test-key-1";

/// How long the tokens the issuer mints are valid (GitHub's are valid for a few minutes).
pub const TOKEN_LIFETIME_SECONDS: i64 = 300;

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    let elapsed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    i64::try_from(elapsed.as_secs()).expect("seconds fit in i64")
}

/// base64url without padding, the JWS segment encoding.
pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// An RSA key pair that signs RS256 tokens. `Debug` shows only the `kid`.
pub struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    public_pem: String,
    jwk: Value,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh 2048-bit RSA key with this `kid`.
    pub fn generate(kid: &str) -> SigningKey {
        let pair =
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
                .expect("generate an RSA key");
        let encoding = EncodingKey::from_rsa_pem(pair.serialize_pem().as_bytes())
            .expect("jsonwebtoken reads the PKCS#8 RSA key");
        let mut jwk =
            Jwk::from_encoding_key(&encoding, Algorithm::RS256).expect("JWK of the RSA key");
        jwk.common.key_id = Some(kid.to_owned());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        SigningKey {
            kid: kid.to_owned(),
            encoding,
            public_pem: pair.public_key_pem(),
            jwk: serde_json::to_value(&jwk).expect("JWK as JSON"),
        }
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK (`kty`, `n`, `e`, `kid`, `alg`, `use`).
    pub fn jwk(&self) -> &Value {
        &self.jwk
    }

    /// The public key, PEM (SubjectPublicKeyInfo): what an attacker knows.
    pub fn public_pem(&self) -> &str {
        &self.public_pem
    }

    /// Signs `claims` RS256 with this key, the header naming this key's `kid`.
    pub fn sign(&self, claims: &Map<String, Value>) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        self.sign_with_header(&header, claims)
    }

    /// Signs `claims` with this key under any RS256 `header` (e.g. another `kid`, or none).
    pub fn sign_with_header(&self, header: &Header, claims: &Map<String, Value>) -> String {
        jsonwebtoken::encode(header, claims, &self.encoding).expect("sign the token")
    }
}

/// Signs `claims` HS256 with `secret` (the classic key-confusion attack uses the issuer's
/// public key as the HMAC secret).
pub fn sign_hs256(kid: &str, secret: &[u8], claims: &Map<String, Value>) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).expect("sign HS256")
}

/// An unsigned token: `base64url(header).base64url(claims).` (empty signature), as `alg:
/// none` tokens are written.
pub fn unsigned_token(header: &Value, claims: &Map<String, Value>) -> String {
    format!(
        "{}.{}.",
        b64url(header.to_string().as_bytes()),
        b64url(Value::Object(claims.clone()).to_string().as_bytes())
    )
}

/// `jwt` with its payload decoded, changed by `change`, and encoded again; header and
/// signature are kept, so the signature no longer covers the payload.
pub fn tamper_payload(jwt: &str, change: impl FnOnce(&mut Map<String, Value>)) -> String {
    let mut segments = jwt.split('.');
    let (Some(header), Some(payload), Some(signature)) =
        (segments.next(), segments.next(), segments.next())
    else {
        panic!("not a compact JWS");
    };
    let decoded = URL_SAFE_NO_PAD
        .decode(payload)
        .expect("payload is base64url");
    let mut claims: Map<String, Value> =
        serde_json::from_slice(&decoded).expect("payload is a JSON object");
    change(&mut claims);
    let payload = b64url(Value::Object(claims).to_string().as_bytes());
    format!("{header}.{payload}.{signature}")
}

/// Who a GitHub Actions job is: the values its OIDC token's claims are made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitHubIdentity {
    /// `repository_owner`.
    pub owner: String,
    /// `repository_owner_id`.
    pub owner_id: String,
    /// The repository name, without the owner.
    pub repository: String,
    /// The workflow file name, e.g. `release.yml`.
    pub workflow: String,
    /// `ref`, e.g. `refs/heads/main`.
    pub git_ref: String,
    /// `sha`, the commit.
    pub sha: String,
    /// `event_name`, e.g. `push`.
    pub event_name: String,
    /// `environment`, when the job runs in one.
    pub environment: Option<String>,
}

impl GitHubIdentity {
    /// A `push` to `refs/heads/main` of `owner/repository` running `workflow`, without an
    /// environment; a random commit sha.
    pub fn new(owner: &str, repository: &str, workflow: &str) -> GitHubIdentity {
        let sha = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        GitHubIdentity {
            owner: owner.to_owned(),
            owner_id: "1234567".to_owned(),
            repository: repository.to_owned(),
            workflow: workflow.to_owned(),
            git_ref: "refs/heads/main".to_owned(),
            sha,
            event_name: "push".to_owned(),
            environment: None,
        }
    }

    /// The same identity running in `environment`.
    pub fn in_environment(mut self, environment: &str) -> GitHubIdentity {
        self.environment = Some(environment.to_owned());
        self
    }

    /// The `wharf admin` arguments that add a GitHub trusted publisher for this identity's
    /// repository, workflow and environment to `project`, trusting the issuer `issuer_name`.
    pub fn publisher_add_args(&self, issuer_name: &str, project: &str) -> Vec<String> {
        let mut args: Vec<String> = [
            "publisher",
            "add",
            "github",
            "--issuer",
            issuer_name,
            "--project",
            project,
            "--owner",
            &self.owner,
            "--repository",
            &self.repository,
            "--workflow",
            &self.workflow,
        ]
        .map(str::to_owned)
        .into();
        if let Some(environment) = &self.environment {
            args.extend(["--environment".to_owned(), environment.clone()]);
        }
        args
    }

    /// `<owner>/<repository>`.
    pub fn full_repository(&self) -> String {
        format!("{}/{}", self.owner, self.repository)
    }

    /// `<owner>/<repo>/.github/workflows/<workflow>@<ref>`.
    pub fn workflow_ref(&self) -> String {
        format!(
            "{}/.github/workflows/{}@{}",
            self.full_repository(),
            self.workflow,
            self.git_ref
        )
    }

    /// The claims of a token GitHub would issue to this job for `audience`, valid from now
    /// for [`TOKEN_LIFETIME_SECONDS`], with a fresh `jti`.
    pub fn claims(&self, issuer: &str, audience: &str) -> Map<String, Value> {
        let now = now();
        let repository = self.full_repository();
        let sub = match &self.environment {
            Some(environment) => format!("repo:{repository}:environment:{environment}"),
            None => format!("repo:{repository}:ref:{}", self.git_ref),
        };
        let mut claims = json!({
            "iss": issuer,
            "aud": audience,
            "sub": sub,
            "repository": repository,
            "repository_id": "700001",
            "repository_owner": self.owner,
            "repository_owner_id": self.owner_id,
            "repository_visibility": "public",
            "actor": "octocat",
            "actor_id": "583231",
            "workflow": "Release",
            "workflow_ref": self.workflow_ref(),
            "workflow_sha": self.sha,
            "job_workflow_ref": self.workflow_ref(),
            "job_workflow_sha": self.sha,
            "ref": self.git_ref,
            "ref_type": "branch",
            "ref_protected": "true",
            "sha": self.sha,
            "event_name": self.event_name,
            "run_id": "9000000001",
            "run_number": "7",
            "run_attempt": "1",
            "runner_environment": "github-hosted",
            "jti": uuid::Uuid::new_v4().to_string(),
            "iat": now,
            "nbf": now,
            "exp": now + TOKEN_LIFETIME_SECONDS,
        });
        if let (Some(environment), Some(object)) = (&self.environment, claims.as_object_mut()) {
            object.insert("environment".to_owned(), json!(environment));
        }
        match claims {
            Value::Object(map) => map,
            _ => unreachable!("json! of an object"),
        }
    }
}

/// What the HTTP handlers share.
struct Shared {
    url: String,
    request_token: String,
    key: SigningKey,
    identity: Mutex<GitHubIdentity>,
    token_requests: AtomicUsize,
}

impl Shared {
    fn identity(&self) -> GitHubIdentity {
        self.identity
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The running test issuer; the server stops when this is dropped.
pub struct TestIssuer {
    runtime: Option<tokio::runtime::Runtime>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for TestIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestIssuer")
            .field("url", &self.shared.url)
            .finish_non_exhaustive()
    }
}

impl TestIssuer {
    /// Starts an issuer whose `/token` endpoint issues tokens for `identity`.
    pub fn start(identity: GitHubIdentity) -> TestIssuer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("test-oidc-issuer")
            .enable_all()
            .build()
            .expect("tokio runtime for the test issuer");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind the test issuer");
        let port = listener.local_addr().expect("issuer address").port();
        let shared = Arc::new(Shared {
            url: format!("http://127.0.0.1:{port}"),
            request_token: format!("gha-request-{}", uuid::Uuid::new_v4().simple()),
            key: SigningKey::generate(KID),
            identity: Mutex::new(identity),
            token_requests: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/token", get(token))
            .with_state(Arc::clone(&shared));
        runtime.spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                eprintln!("test OIDC issuer stopped: {error}");
            }
        });
        TestIssuer {
            runtime: Some(runtime),
            shared,
        }
    }

    /// `http://127.0.0.1:<port>`: the issuer URL, exactly as the tokens' `iss`.
    pub fn url(&self) -> &str {
        &self.shared.url
    }

    /// The GitHub-style token request URL (`ACTIONS_ID_TOKEN_REQUEST_URL`).
    pub fn token_request_url(&self) -> String {
        format!("{}/token", self.shared.url)
    }

    /// The bearer secret `/token` requires (`ACTIONS_ID_TOKEN_REQUEST_TOKEN`).
    pub fn request_token(&self) -> &str {
        &self.shared.request_token
    }

    /// How many tokens `/token` has handed out.
    pub fn token_requests(&self) -> usize {
        self.shared.token_requests.load(Ordering::SeqCst)
    }

    /// The environment of a GitHub Actions job with `id-token: write` whose OIDC token comes
    /// from this issuer.
    pub fn github_actions_env(&self) -> Vec<(&'static str, String)> {
        let identity = self.identity();
        vec![
            ("GITHUB_ACTIONS", "true".to_owned()),
            ("ACTIONS_ID_TOKEN_REQUEST_URL", self.token_request_url()),
            (
                "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
                self.request_token().to_owned(),
            ),
            ("GITHUB_REPOSITORY", identity.full_repository()),
            ("GITHUB_REPOSITORY_OWNER", identity.owner.clone()),
            ("GITHUB_WORKFLOW_REF", identity.workflow_ref()),
            ("GITHUB_REF", identity.git_ref.clone()),
            ("GITHUB_SHA", identity.sha.clone()),
            ("GITHUB_EVENT_NAME", identity.event_name.clone()),
        ]
    }

    /// The identity `/token` issues tokens for.
    pub fn identity(&self) -> GitHubIdentity {
        self.shared.identity()
    }

    /// Changes the identity `/token` issues tokens for.
    pub fn set_identity(&self, identity: GitHubIdentity) {
        *self
            .shared
            .identity
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = identity;
    }

    /// The signing key (its public half is published in `/jwks`).
    pub fn key(&self) -> &SigningKey {
        &self.shared.key
    }

    /// The claims `/token` would put in a token for `audience` now (fresh `jti`).
    pub fn claims(&self, audience: &str) -> Map<String, Value> {
        self.identity().claims(&self.shared.url, audience)
    }

    /// Signs any claims with this issuer's key and `kid`.
    pub fn sign(&self, claims: &Map<String, Value>) -> String {
        self.shared.key.sign(claims)
    }

    /// A well-formed token for `audience`, as `/token` would issue it.
    pub fn token(&self, audience: &str) -> String {
        self.sign(&self.claims(audience))
    }

    /// Fetches a token the way a CI job does: `GET /token?audience=…` with the bearer secret.
    pub fn request_over_http(&self, audience: &str) -> String {
        let mut response = ureq::get(&self.token_request_url())
            .query("audience", audience)
            .header(
                "Authorization",
                &format!("bearer {}", self.shared.request_token),
            )
            .call()
            .expect("the test issuer answers /token");
        let text = response
            .body_mut()
            .read_to_string()
            .expect("/token answers a body");
        let body: Value = serde_json::from_str(&text).expect("/token answers JSON");
        body["value"]
            .as_str()
            .expect("/token answers {\"value\": \"<jwt>\"}")
            .to_owned()
    }

    /// Registers this issuer in `registry` as an operator issuer of kind `github` named
    /// `name` (plain HTTP allowed: it is a test issuer).
    pub fn register(&self, registry: &Registry, name: &str) {
        let args = self.admin_add_args(name);
        registry.admin(&args.iter().map(String::as_str).collect::<Vec<_>>());
    }

    /// The `wharf admin` arguments that register this issuer as `name` (kind `github`,
    /// plain HTTP allowed).
    pub fn admin_add_args(&self, name: &str) -> Vec<String> {
        ["issuer", "add", "--name", name, "--kind", "github", "--url"]
            .into_iter()
            .map(str::to_owned)
            .chain([self.url().to_owned(), "--allow-http".to_owned()])
            .collect()
    }
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn discovery(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(json!({
        "issuer": shared.url,
        "jwks_uri": format!("{}/jwks", shared.url),
        "subject_types_supported": ["public", "pairwise"],
        "response_types_supported": ["id_token"],
        "claims_supported": [
            "sub", "aud", "exp", "iat", "iss", "jti", "nbf", "ref", "sha", "repository",
            "repository_id", "repository_owner", "repository_owner_id", "run_id",
            "run_number", "run_attempt", "actor", "actor_id", "workflow", "workflow_ref",
            "workflow_sha", "head_ref", "base_ref", "event_name", "ref_type", "environment",
            "job_workflow_ref", "job_workflow_sha", "runner_environment"
        ],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid"],
    }))
}

async fn jwks(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(json!({ "keys": [shared.key.jwk()] }))
}

async fn token(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .is_some_and(|(scheme, secret)| {
            scheme.eq_ignore_ascii_case("bearer") && secret == shared.request_token
        });
    if !authorized {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "message": "Bad credentials" })),
        )
            .into_response();
    }
    let identity = shared.identity();
    // GitHub's default audience is the owner's URL.
    let audience = query
        .iter()
        .find(|(name, _)| name == "audience")
        .map_or_else(
            || format!("https://github.com/{}", identity.owner),
            |(_, value)| value.clone(),
        );
    let jwt = shared.key.sign(&identity.claims(&shared.url, &audience));
    shared.token_requests.fetch_add(1, Ordering::SeqCst);
    Json(json!({ "count": 1, "value": jwt })).into_response()
}
