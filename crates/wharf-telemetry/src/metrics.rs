//! The Prometheus metrics of every service, in one registry per process (the embedded mode
//! shares it between its three services). Services get a [`Metrics`] handle passed in
//! explicitly; [`Metrics::encode`] renders the OpenMetrics text served at `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// The content type of [`Metrics::encode`]'s output.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A timed stage of an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Gateway: streaming the file part to staging.
    StageFile,
    /// Gateway: asking the verifier (authenticate + authorize).
    Verifier,
    /// Gateway: waiting for the worker's outcome.
    AwaitOutcome,
    /// Worker: the digest pass.
    Hash,
    /// Worker: archive validation.
    Inspect,
    /// Worker: the content-addressed copy.
    Store,
    /// Worker: the index transaction.
    IndexCommit,
}

impl Stage {
    fn as_str(self) -> &'static str {
        match self {
            Stage::StageFile => "stage_file",
            Stage::Verifier => "verifier",
            Stage::AwaitOutcome => "await_outcome",
            Stage::Hash => "hash",
            Stage::Inspect => "inspect",
            Stage::Store => "store",
            Stage::IndexCommit => "index_commit",
        }
    }
}

/// How an upload ended, as its client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadResult {
    /// A new file was published.
    Published,
    /// Identical bytes were already published (a no-op success).
    Identical,
    /// Refused with this HTTP status.
    Rejected(u16),
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UploadLabels {
    outcome: &'static str,
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    stage: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MintLabels {
    outcome: &'static str,
    code: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    limit: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PageLabels {
    page: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    // 1 ms … ~33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

struct Inner {
    registry: Registry,
    uploads: Family<UploadLabels, Counter>,
    worker_outcomes: Family<UploadLabels, Counter>,
    received_bytes: Counter,
    stored_bytes: Counter,
    stage_seconds: HistogramFamily<StageLabels>,
    deliveries: Counter,
    redeliveries: Counter,
    mint_outcomes: Family<MintLabels, Counter>,
    jwks_fetches: Counter,
    jwks_failures: Counter,
    simple_requests: Family<PageLabels, Counter>,
    rate_limited: Family<LimitLabels, Counter>,
}

/// Wharf's metrics; cheap to clone (one shared registry).
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh registry with every Wharf metric (prefix `wharf_`).
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("wharf");
        let uploads = Family::<UploadLabels, Counter>::default();
        registry.register(
            "uploads",
            "Upload requests answered by the gateway, by outcome (published, identical, rejected) and HTTP status",
            uploads.clone(),
        );
        let worker_outcomes = Family::<UploadLabels, Counter>::default();
        registry.register(
            "worker_outcomes",
            "Uploads processed by storage workers, by outcome and HTTP status",
            worker_outcomes.clone(),
        );
        let received_bytes = Counter::default();
        registry.register_with_unit(
            "upload_received",
            "Distribution bytes streamed to staging by the gateway",
            Unit::Bytes,
            received_bytes.clone(),
        );
        let stored_bytes = Counter::default();
        registry.register_with_unit(
            "stored",
            "Distribution bytes newly stored by storage workers",
            Unit::Bytes,
            stored_bytes.clone(),
        );
        let stage_seconds: HistogramFamily<StageLabels> =
            Family::new_with_constructor(duration_histogram);
        registry.register_with_unit(
            "upload_stage_duration",
            "Duration of each upload stage (gateway: stage_file, verifier, await_outcome; worker: hash, inspect, store, index_commit)",
            Unit::Seconds,
            stage_seconds.clone(),
        );
        let deliveries = Counter::default();
        registry.register(
            "bus_deliveries",
            "Staged-upload deliveries received by storage workers",
            deliveries.clone(),
        );
        let redeliveries = Counter::default();
        registry.register(
            "bus_redeliveries",
            "Staged-upload deliveries that were redeliveries (delivery count above 1)",
            redeliveries.clone(),
        );
        let mint_outcomes = Family::<MintLabels, Counter>::default();
        registry.register(
            "oidc_mint",
            "Trusted-publishing token exchanges, by outcome and PyPI error code",
            mint_outcomes.clone(),
        );
        let jwks_fetches = Counter::default();
        registry.register(
            "oidc_jwks_fetches",
            "JWKS fetches from OIDC issuers",
            jwks_fetches.clone(),
        );
        let jwks_failures = Counter::default();
        registry.register(
            "oidc_jwks_fetch_failures",
            "JWKS fetches from OIDC issuers that failed",
            jwks_failures.clone(),
        );
        let simple_requests = Family::<PageLabels, Counter>::default();
        registry.register(
            "simple_requests",
            "Simple repository API pages served, by page (index, project)",
            simple_requests.clone(),
        );
        let rate_limited = Family::<LimitLabels, Counter>::default();
        registry.register(
            "rate_limited_requests",
            "Requests refused with 429 by a rate limit, by limit",
            rate_limited.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry,
                uploads,
                worker_outcomes,
                received_bytes,
                stored_bytes,
                stage_seconds,
                deliveries,
                redeliveries,
                mint_outcomes,
                jwks_fetches,
                jwks_failures,
                simple_requests,
                rate_limited,
            }),
        }
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(error) =
            prometheus_client::encoding::text::encode(&mut text, &self.inner.registry)
        {
            tracing::warn!(error = %error, "cannot encode the metrics");
        }
        text
    }

    /// The content type of [`Metrics::encode`]'s output.
    pub fn content_type(&self) -> &'static str {
        METRICS_CONTENT_TYPE
    }

    fn upload_labels(result: UploadResult) -> UploadLabels {
        match result {
            UploadResult::Published => UploadLabels {
                outcome: "published",
                status: "200".to_owned(),
            },
            UploadResult::Identical => UploadLabels {
                outcome: "identical",
                status: "200".to_owned(),
            },
            UploadResult::Rejected(status) => UploadLabels {
                outcome: "rejected",
                status: status.to_string(),
            },
        }
    }

    /// Gateway: an upload request was answered.
    pub fn upload_answered(&self, result: UploadResult) {
        self.inner
            .uploads
            .get_or_create(&Self::upload_labels(result))
            .inc();
    }

    /// Worker: an upload was processed (its outcome was sent).
    pub fn upload_processed(&self, result: UploadResult) {
        self.inner
            .worker_outcomes
            .get_or_create(&Self::upload_labels(result))
            .inc();
    }

    /// Gateway: bytes streamed to staging.
    pub fn bytes_received(&self, bytes: u64) {
        self.inner.received_bytes.inc_by(bytes);
    }

    /// Worker: bytes of a newly stored file.
    pub fn bytes_stored(&self, bytes: u64) {
        self.inner.stored_bytes.inc_by(bytes);
    }

    /// A stage took `elapsed`.
    pub fn observe_stage(&self, stage: Stage, elapsed: Duration) {
        self.inner
            .stage_seconds
            .get_or_create(&StageLabels {
                stage: stage.as_str(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Worker: a delivery arrived (`delivery_count` 1 for the first delivery).
    pub fn delivery(&self, delivery_count: u32) {
        self.inner.deliveries.inc();
        if delivery_count > 1 {
            self.inner.redeliveries.inc();
        }
    }

    /// Verifier: a token exchange ended: minted (`None`) or refused with a PyPI error code.
    pub fn mint_outcome(&self, refusal_code: Option<&str>) {
        let labels = match refusal_code {
            None => MintLabels {
                outcome: "minted",
                code: String::new(),
            },
            Some(code) => MintLabels {
                outcome: "refused",
                code: code.to_owned(),
            },
        };
        self.inner.mint_outcomes.get_or_create(&labels).inc();
    }

    /// Verifier: a JWKS fetch ended.
    pub fn jwks_fetch(&self, succeeded: bool) {
        self.inner.jwks_fetches.inc();
        if !succeeded {
            self.inner.jwks_failures.inc();
        }
    }

    /// Gateway: a simple API page was served (`index` or `project`).
    pub fn simple_request(&self, page: &'static str) {
        self.inner
            .simple_requests
            .get_or_create(&PageLabels { page })
            .inc();
    }

    /// Gateway: a request was refused by the rate limit `limit` (e.g. `upload-ip`).
    pub fn rate_limited(&self, limit: &'static str) {
        self.inner
            .rate_limited
            .get_or_create(&LimitLabels { limit })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_show_in_the_text_format() {
        let metrics = Metrics::new();
        metrics.upload_answered(UploadResult::Published);
        metrics.upload_answered(UploadResult::Rejected(400));
        metrics.upload_answered(UploadResult::Rejected(400));
        metrics.bytes_received(1234);
        metrics.observe_stage(Stage::Hash, Duration::from_millis(3));
        metrics.delivery(1);
        metrics.delivery(2);
        metrics.mint_outcome(Some("invalid-payload"));
        metrics.jwks_fetch(false);
        metrics.simple_request("project");
        let text = metrics.encode();
        for expected in [
            "wharf_uploads_total{outcome=\"published\",status=\"200\"} 1",
            "wharf_uploads_total{outcome=\"rejected\",status=\"400\"} 2",
            "wharf_upload_received_bytes_total 1234",
            "wharf_upload_stage_duration_seconds_count{stage=\"hash\"} 1",
            "wharf_bus_deliveries_total 2",
            "wharf_bus_redeliveries_total 1",
            "wharf_oidc_mint_total{outcome=\"refused\",code=\"invalid-payload\"} 1",
            "wharf_oidc_jwks_fetches_total 1",
            "wharf_oidc_jwks_fetch_failures_total 1",
            "wharf_simple_requests_total{page=\"project\"} 1",
            "# EOF",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
    }
}
