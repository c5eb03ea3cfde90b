//! The gateway: Wharf's only public surface.
//!
//! It serves PyPI's legacy upload API (`POST /legacy/`), the simple repository API
//! (`/simple/`, PEP 503/691/700/658/714/592/792), the JSON API (`/pypi/<name>/json`) and file
//! downloads (`/packages/…`). It holds no key material: every credential question goes to the
//! verifier over gRPC. Uploads stream to a staging object; a storage worker, reached through
//! the bus, verifies and publishes them while the gateway waits for its answer.

mod access_log;
mod files;
pub mod form;
mod json_api;
mod negotiate;
mod oidc;
mod page_cache;
mod rate_limit;
mod response;
mod simple;
mod tracing_layer;
mod upload;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use wharf_blob::BlobStore;
use wharf_bus::UploadBus;
use wharf_index::Index;
use wharf_proto::v1::verifier_client::VerifierClient;
use wharf_telemetry::Metrics;

/// The largest body of any route but an upload (a trusted-publishing JWT is a few KiB).
pub const SMALL_BODY_BYTES: usize = 64 * 1024;

pub use rate_limit::RateLimits;

/// The transport under the verifier client: an in-process service in the embedded mode, a
/// network channel in the scaled mode.
pub type VerifierTransport = tower::util::BoxCloneSyncService<
    http::Request<tonic::body::Body>,
    http::Response<tonic::body::Body>,
    TransportError,
>;

/// A failure of the transport to the verifier (a concrete type: tonic's client bounds do not
/// accept a bare boxed error inside `Send` futures).
#[derive(Debug, thiserror::Error)]
#[error("verifier transport failed")]
pub struct TransportError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

/// The gRPC client the gateway asks the verifier with.
pub type VerifierGrpc = VerifierClient<VerifierTransport>;

/// Operator settings of the gateway.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// Largest accepted distribution file, in bytes (PyPI: 100 MiB).
    pub max_file_size: u64,
    /// Largest total size of one project, in bytes (PyPI: 10 GiB).
    pub max_project_size: u64,
    /// How long an upload waits for the storage worker's answer.
    pub outcome_timeout: Duration,
    /// Base URL for absolute links (`https://pypi.example.com`); derived from the request's
    /// authority (`:authority` or `Host`) when unset.
    pub public_url: Option<String>,
    /// Build links from `X-Forwarded-Host`/`X-Forwarded-Proto` (set by a reverse proxy the
    /// operator trusts); ignored otherwise.
    pub trust_forwarded_headers: bool,
    /// Largest total size of an upload form's text fields, in bytes.
    pub max_form_text_bytes: usize,
    /// Most parts (fields and file) in one upload form.
    pub max_form_parts: usize,
    /// How long an upload may send no body bytes before it is refused with 408.
    pub body_idle_timeout: Duration,
    /// The slowest an upload body may arrive, in bytes a second over each
    /// `body_idle_timeout` (refused with 408 below it).
    pub upload_min_rate: u64,
    /// Every other request is answered 408 if not answered within this long.
    pub request_timeout: Duration,
    /// Scheme of absolute links when neither `public_url` nor a trusted `X-Forwarded-Proto` says:
    /// `https` when the gateway itself serves TLS.
    pub default_scheme: &'static str,
    /// Rate limits on uploads and token exchanges (all off by default).
    pub rate_limits: RateLimits,
    /// Write one INFO line per request under the log target `wharf::access` (method, route,
    /// status, duration, bytes, client IP, in the request's trace).
    pub access_log: bool,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        GatewaySettings {
            max_file_size: 100 * 1024 * 1024,
            max_project_size: 10 * 1024 * 1024 * 1024,
            outcome_timeout: Duration::from_secs(300),
            public_url: None,
            trust_forwarded_headers: false,
            max_form_text_bytes: 16 * 1024 * 1024,
            max_form_parts: 1000,
            body_idle_timeout: Duration::from_secs(60),
            upload_min_rate: 1024,
            request_timeout: Duration::from_secs(60),
            default_scheme: "http",
            rate_limits: RateLimits::default(),
            access_log: false,
        }
    }
}

/// Everything a gateway request handler needs.
#[derive(Clone)]
pub struct Gateway {
    verifier: VerifierGrpc,
    index: Arc<dyn Index>,
    blobs: BlobStore,
    bus: Arc<dyn UploadBus>,
    settings: Arc<GatewaySettings>,
    metrics: Metrics,
    pages: page_cache::PageCache,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// A gateway over the given verifier, index, store and bus.
    pub fn new(
        verifier: VerifierGrpc,
        index: Arc<dyn Index>,
        blobs: BlobStore,
        bus: Arc<dyn UploadBus>,
        settings: GatewaySettings,
    ) -> Gateway {
        Gateway {
            verifier,
            index,
            blobs,
            bus,
            settings: Arc::new(settings),
            metrics: Metrics::new(),
            pages: page_cache::PageCache::default(),
        }
    }

    /// Counts into `metrics` (served at `/metrics`) instead of a private registry.
    pub fn with_metrics(self, metrics: Metrics) -> Gateway {
        Gateway { metrics, ..self }
    }

    /// The HTTP routes.
    pub fn router(self) -> Router {
        // Only an upload may stream a large body; it enforces its own limits while reading.
        // The two old upload URLs never read theirs, and keep answering twine's large posts
        // with their redirect or `410` rather than a `413`.
        let uploads = Router::new()
            .route("/legacy/", post(upload::upload))
            .route(
                "/legacy",
                post(|| async { Redirect::permanent("/legacy/") }),
            )
            .route("/pypi", post(upload::moved_to_legacy))
            .layer(DefaultBodyLimit::disable());
        // Everything else is small: an oversized `Content-Length` is refused with `413`
        // before a byte of the body is read, and a body without one stops being read at the
        // limit (issue #12, finding 1).
        let small = Router::new()
            .route("/simple/", get(simple::index_page))
            .route(
                "/simple",
                get(|| async { response::moved_permanently("/simple/") }),
            )
            .route("/simple/{project}/", get(simple::project_page))
            .route("/simple/{project}", get(simple::project_page_without_slash))
            .route("/pypi/{project}/json", get(json_api::project))
            .route("/pypi/{project}/json/", get(json_api::project))
            .route("/pypi/{project}/{version}/json", get(json_api::release))
            .route("/pypi/{project}/{version}/json/", get(json_api::release))
            .route("/packages/{*path}", get(files::download))
            .route("/_/oidc/audience", get(oidc::audience))
            .route("/_/oidc/mint-token", post(oidc::mint_token))
            .route("/_/oidc/github/mint-token", post(oidc::mint_token))
            .route("/_/oidc/burn-token", post(oidc::burn_token))
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(readiness))
            .route("/metrics", get(metrics))
            .layer(RequestBodyLimitLayer::new(SMALL_BODY_BYTES))
            // A deadline for the whole request, body included: a client trickling its body
            // (or a slow backend) cannot hold the connection (issue #12, finding 2). Uploads
            // have their own minimum rate instead.
            .layer(TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                self.settings.request_timeout,
            ));
        uploads
            .merge(small)
            // One server span per request, continuing the caller's trace (W3C `traceparent`),
            // and the trace id in the `X-Wharf-Trace-Id` response header; the access log.
            .layer(axum::middleware::from_fn_with_state(
                self.settings.clone(),
                tracing_layer::trace_request,
            ))
            .with_state(self)
    }
}

/// `GET /metrics`: the Prometheus (OpenMetrics) text of this process's metrics.
async fn metrics(State(gateway): State<Gateway>) -> Response {
    (
        [(http::header::CONTENT_TYPE, gateway.metrics.content_type())],
        gateway.metrics.encode(),
    )
        .into_response()
}

/// Answers 200 once the index, the store and the bus all respond.
async fn readiness(State(gateway): State<Gateway>) -> Response {
    let mut failures = Vec::new();
    if let Err(error) = gateway.index.ping().await {
        tracing::warn!(error = %error, "readiness: index unavailable");
        failures.push("index");
    }
    if let Err(error) = gateway.blobs.ping().await {
        tracing::warn!(error = %error, "readiness: object store unavailable");
        failures.push("store");
    }
    if let Err(error) = gateway.bus.ping().await {
        tracing::warn!(error = %error, "readiness: bus unavailable");
        failures.push("bus");
    }
    let mut verifier = gateway.verifier.clone();
    if let Err(status) = verifier
        .oidc_audience(wharf_proto::v1::OidcAudienceRequest {})
        .await
    {
        tracing::warn!(code = ?status.code(), "readiness: verifier unavailable");
        failures.push("verifier");
    }
    if failures.is_empty() {
        (StatusCode::OK, "ready").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}", failures.join(", ")),
        )
            .into_response()
    }
}
