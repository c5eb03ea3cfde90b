//! One upload asks the verifier exactly one question, `AuthorizeUpload`, whichever way it ends
//! (the gateway, the real verifier and the real storage worker in-process; the transport to
//! the verifier records every call).

use std::sync::{Arc, Mutex};

use axum::body::Body;
use http::{Request, StatusCode, header};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;
use wharf_blob::BlobStore;
use wharf_bus::{InProcessBus, UploadBus};
use wharf_e2e::dist::{BOUNDARY, Dist, Form, basic_auth, token_auth};
use wharf_gateway::{Gateway, GatewaySettings, TransportError, VerifierTransport};
use wharf_index::prelude::*;
use wharf_index_sqlite::SqliteIndex;
use wharf_proto::grant::{UploadGrantKeys, UploadGrantSigner};
use wharf_proto::v1::verifier_client::VerifierClient;
use wharf_proto::v1::verifier_server::VerifierServer;
use wharf_verifier::{TokenKeys, TokenRequest, VerifierService, VerifierSettings, mint_user_token};
use wharf_worker::{StorageWorker, WorkerSettings};

/// The gateway, verifier and worker over one temporary index, and the verifier calls made.
struct Registry {
    _dir: tempfile::TempDir,
    index: Arc<dyn Index>,
    token_keys: TokenKeys,
    router: axum::Router,
    calls: Arc<Mutex<Vec<String>>>,
    stop_worker: CancellationToken,
}

impl Registry {
    async fn start() -> Registry {
        Registry::start_with(GatewaySettings::default()).await
    }

    async fn start_with(settings: GatewaySettings) -> Registry {
        let dir = tempfile::tempdir().expect("temp dir");
        let index: Arc<dyn Index> = Arc::new(
            SqliteIndex::open(&dir.path().join("index.sqlite3"))
                .await
                .expect("index"),
        );
        let blobs = BlobStore::memory();
        let bus: Arc<dyn UploadBus> = Arc::new(InProcessBus::new());
        let grant_key = UploadGrantSigner::generate().expect("grant key");
        let worker_settings = WorkerSettings {
            upload_grant_keys: UploadGrantKeys::new([grant_key.public_key()]),
            ..WorkerSettings::default()
        };
        let token_keys = TokenKeys::ephemeral();
        let verifier = VerifierService::new(
            Arc::clone(&index),
            VerifierSettings {
                upload_grants: Some(grant_key),
                token_keys: token_keys.clone(),
                ..VerifierSettings::default()
            },
        )
        .expect("verifier");
        let calls = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&calls);
        let transport = VerifierServer::new(verifier)
            .map_request(move |request: http::Request<tonic::body::Body>| {
                recorded
                    .lock()
                    .expect("calls")
                    .push(request.uri().path().to_owned());
                request
            })
            .map_err(|never: std::convert::Infallible| -> TransportError { match never {} });
        let gateway = Gateway::new(
            VerifierClient::new(VerifierTransport::new(transport)),
            Arc::clone(&index),
            blobs.clone(),
            Arc::clone(&bus),
            settings,
        );
        let worker =
            StorageWorker::new(Arc::clone(&index), blobs, Arc::clone(&bus), worker_settings);
        let stop_worker = CancellationToken::new();
        tokio::spawn(worker.run(stop_worker.clone()));
        Registry {
            _dir: dir,
            index,
            token_keys,
            router: gateway.router(),
            calls,
            stop_worker,
        }
    }

    async fn token_for(&self, user: &str) -> String {
        self.index.create_user(user, 0).await.expect("user");
        let request = TokenRequest {
            user_name: user.to_owned(),
            projects: Vec::new(),
            expires_at: None,
            description: String::new(),
            location: "test".to_owned(),
        };
        let now = jiff::Timestamp::now().as_second();
        mint_user_token(self.index.as_ref(), &self.token_keys, &request, now)
            .await
            .expect("token")
            .1
    }

    /// Sends one upload and returns its status and body, and the verifier calls it made.
    async fn upload(
        &self,
        authorization: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> (StatusCode, String, Vec<String>) {
        self.calls.lock().expect("calls").clear();
        let mut request = Request::post("/legacy/").header(header::CONTENT_TYPE, content_type);
        if let Some(authorization) = authorization {
            request = request.header(header::AUTHORIZATION, authorization);
        }
        let request = request.body(Body::from(body)).expect("request");
        let response = self.router.clone().oneshot(request).await.expect("answer");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        let calls = self.calls.lock().expect("calls").clone();
        (status, String::from_utf8_lossy(&body).into_owned(), calls)
    }

    async fn upload_form(&self, token: &str, form: &Form) -> (StatusCode, String, Vec<String>) {
        self.upload(Some(&token_auth(token)), &form.content_type(), form.body())
            .await
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop_worker.cancel();
    }
}

const AUTHORIZE: &str = "/wharf.v1.Verifier/AuthorizeUpload";

/// Asserts the answer and that the upload made exactly one verifier call, `AuthorizeUpload`.
#[track_caller]
fn assert_one_call(answer: &(StatusCode, String, Vec<String>), status: StatusCode, body: &str) {
    let (got_status, got_body, calls) = answer;
    assert_eq!(*got_status, status, "{got_body}");
    assert!(got_body.contains(body), "{got_body:?} lacks {body:?}");
    assert_eq!(calls, &[AUTHORIZE.to_owned()], "one verifier call");
}

#[tokio::test]
async fn every_upload_path_asks_the_verifier_once() {
    let registry = Registry::start().await;
    let alice = registry.token_for("alice").await;
    let mallory = registry.token_for("mallory").await;
    let dist = Dist::wheel("once-demo", "1.0");

    // Published, then the same file again (identical: 200 too).
    assert_one_call(
        &registry.upload_form(&alice, &dist.form()).await,
        StatusCode::OK,
        "",
    );
    assert_one_call(
        &registry.upload_form(&alice, &dist.form()).await,
        StatusCode::OK,
        "",
    );
    // Refused by the worker: other bytes under the same filename.
    let changed = wharf_e2e::dist::WheelBuilder::new("once-demo", "1.0")
        .greeting("changed")
        .build();
    assert_one_call(
        &registry.upload_form(&alice, &changed.form()).await,
        StatusCode::BAD_REQUEST,
        "File already exists",
    );
    // No identity: an unknown token.
    assert_one_call(
        &registry.upload_form("pypi-garbage", &dist.form()).await,
        StatusCode::FORBIDDEN,
        "Invalid or non-existent authentication information.",
    );
    // The identity is decided before the body: an unknown token with a body that is not a
    // form is still 403.
    assert_one_call(
        &registry
            .upload(
                Some(&token_auth("pypi-garbage")),
                "text/plain",
                b"hello".to_vec(),
            )
            .await,
        StatusCode::FORBIDDEN,
        "Invalid or non-existent authentication information.",
    );
    // An identity without the right to the project.
    assert_one_call(
        &registry
            .upload_form(&mallory, &Dist::wheel("once-demo", "2.0").form())
            .await,
        StatusCode::FORBIDDEN,
        "allowed to upload to project",
    );
    // A form error, a missing file, a missing :action, a body that is not a form.
    assert_one_call(
        &registry
            .upload_form(&alice, &dist.form().set("version", "not a version"))
            .await,
        StatusCode::BAD_REQUEST,
        "is invalid for &#x27;version&#x27;",
    );
    assert_one_call(
        &registry
            .upload_form(&alice, &dist.form().without_file())
            .await,
        StatusCode::BAD_REQUEST,
        "Upload payload does not have a file.",
    );
    assert_one_call(
        &registry
            .upload_form(
                &alice,
                &Dist::wheel("once-demo", "3.0").form().remove(":action"),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "Missing :action.",
    );
    assert_one_call(
        &registry
            .upload(Some(&token_auth(&alice)), "text/plain", b"hello".to_vec())
            .await,
        StatusCode::BAD_REQUEST,
        "",
    );
}

#[tokio::test]
async fn fields_after_the_file_are_checked_without_asking_again() {
    let registry = Registry::start().await;
    let alice = registry.token_for("alice").await;
    let dist = Dist::wheel("late-fields", "1.0");
    let form = dist.form();
    let late = |name: &str, value: &str| {
        let mut body = form.body();
        let end = format!("--{BOUNDARY}--\r\n");
        body.truncate(body.len() - end.len());
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n{end}"
            )
            .as_bytes(),
        );
        body
    };
    let auth = token_auth(&alice);
    // A field after the file that breaks the form: refused, still one call.
    assert_one_call(
        &registry
            .upload(Some(&auth), &form.content_type(), late("version", "2.0"))
            .await,
        StatusCode::BAD_REQUEST,
        "version&#x27; has invalid data",
    );
    // A harmless one: published, one call (the gateway used to authorize twice here).
    assert_one_call(
        &registry
            .upload(Some(&auth), &form.content_type(), late("comment", "late"))
            .await,
        StatusCode::OK,
        "",
    );
}

#[tokio::test]
async fn no_credential_no_call() {
    let registry = Registry::start().await;
    let dist = Dist::wheel("no-call", "1.0");
    let form = dist.form();
    for authorization in [None, Some(basic_auth("alice", "secret"))] {
        let (status, _, calls) = registry
            .upload(authorization.as_deref(), &form.content_type(), form.body())
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(calls.is_empty(), "{calls:?}");
    }
}

#[tokio::test]
async fn a_forged_token_does_not_use_up_the_real_tokens_limit() {
    let mut settings = GatewaySettings::default();
    settings.rate_limits.upload_per_token =
        Some(wharf_index::RateLimit::per_window(1, 3_600_000_000));
    let registry = Registry::start_with(settings).await;
    let alice = registry.token_for("alice").await;
    // The identifier of alice's token, signed with a guessed key.
    let real = wharf_macaroon::decode_token(&alice, "pypi").expect("decode");
    let forged = wharf_macaroon::Macaroon::new(real.location(), real.identifier(), b"guessed");
    let forged = wharf_macaroon::encode_token("pypi", &forged);

    assert_one_call(
        &registry
            .upload_form(&forged, &Dist::wheel("limited", "1.0").form())
            .await,
        StatusCode::FORBIDDEN,
        "Invalid API Token: signatures do not match",
    );
    // The forgery counted for nothing: alice's one upload of the window still goes through.
    assert_one_call(
        &registry
            .upload_form(&alice, &Dist::wheel("limited", "1.0").form())
            .await,
        StatusCode::OK,
        "",
    );
    let (status, _, calls) = registry
        .upload_form(&alice, &Dist::wheel("limited", "2.0").form())
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(calls, [AUTHORIZE.to_owned()]);
}
