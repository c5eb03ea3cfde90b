//! The metrics of every service, in one registry per process (the embedded mode shares it
//! between its three services). Services get a [`Metrics`] handle passed in explicitly;
//! [`Metrics::encode`] renders the OpenMetrics text served at `/metrics`. Every measurement is
//! also recorded on OpenTelemetry instruments of the global meter provider, which exports
//! them over OTLP when an endpoint is configured (see [`crate::init`]) and is a no-op
//! otherwise. The OTel names are dotted (`wharf.uploads`) and translate to the Prometheus ones
//! (`wharf_uploads_total`) under the usual OTLP-to-Prometheus rules.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{
    Counter as OtelCounter, Gauge as OtelGauge, Histogram as OtelHistogram,
};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// The content type of [`Metrics::encode`]'s output.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A timed stage of an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Gateway: streaming the file part to staging.
    StageFile,
    /// Gateway: asking the verifier (the one `AuthorizeUpload` call).
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

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    state: &'static str,
}

/// A bus consumer's backlog, as the broker reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConsumerBacklog {
    /// Messages not yet delivered to any worker.
    pub pending: u64,
    /// Messages delivered and not yet acknowledged.
    pub ack_pending: u64,
    /// Messages delivered more than once and not yet acknowledged.
    pub redelivered: u64,
}

/// Connections of a database pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolUsage {
    /// Open connections, idle or in use.
    pub open: u32,
    /// Open connections not in use.
    pub idle: u32,
    /// The most connections the pool opens.
    pub max: u32,
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
    simple_cache: Family<CacheLabels, Counter>,
    rate_limited: Family<LimitLabels, Counter>,
    consumer_backlog: Family<BacklogLabels, Gauge>,
    db_pool: Family<PoolLabels, Gauge>,
    otel: OtelInstruments,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BacklogLabels {
    state: &'static str,
}

/// The same measurements on OpenTelemetry instruments (exported over OTLP when configured).
struct OtelInstruments {
    uploads: OtelCounter<u64>,
    worker_outcomes: OtelCounter<u64>,
    received_bytes: OtelCounter<u64>,
    stored_bytes: OtelCounter<u64>,
    stage_seconds: OtelHistogram<f64>,
    deliveries: OtelCounter<u64>,
    redeliveries: OtelCounter<u64>,
    mint_outcomes: OtelCounter<u64>,
    jwks_fetches: OtelCounter<u64>,
    jwks_failures: OtelCounter<u64>,
    simple_requests: OtelCounter<u64>,
    simple_cache: OtelCounter<u64>,
    consumer_backlog: OtelGauge<u64>,
    db_pool: OtelGauge<u64>,
    rate_limited: OtelCounter<u64>,
}

impl OtelInstruments {
    fn new() -> OtelInstruments {
        let meter = opentelemetry::global::meter("wharf");
        let counter = |name: &'static str, unit: &'static str, description: &'static str| {
            meter
                .u64_counter(name)
                .with_unit(unit)
                .with_description(description)
                .build()
        };
        let gauge = |name: &'static str, description: &'static str| {
            meter
                .u64_gauge(name)
                .with_unit("{message}")
                .with_description(description)
                .build()
        };
        OtelInstruments {
            uploads: counter(
                "wharf.uploads",
                "{request}",
                "Upload requests answered by the gateway",
            ),
            worker_outcomes: counter(
                "wharf.worker_outcomes",
                "{upload}",
                "Uploads processed by storage workers",
            ),
            received_bytes: counter(
                "wharf.upload_received",
                "By",
                "Distribution bytes streamed to staging",
            ),
            stored_bytes: counter("wharf.stored", "By", "Distribution bytes newly stored"),
            stage_seconds: meter
                .f64_histogram("wharf.upload_stage_duration")
                .with_unit("s")
                .with_description("Duration of each upload stage")
                .with_boundaries(
                    (0..16)
                        .map(|power| 0.001 * f64::from(1u32 << power))
                        .collect(),
                )
                .build(),
            deliveries: counter(
                "wharf.bus_deliveries",
                "{delivery}",
                "Staged-upload deliveries received",
            ),
            redeliveries: counter(
                "wharf.bus_redeliveries",
                "{delivery}",
                "Staged-upload redeliveries received",
            ),
            mint_outcomes: counter(
                "wharf.oidc_mint",
                "{exchange}",
                "Trusted-publishing token exchanges",
            ),
            jwks_fetches: counter("wharf.oidc_jwks_fetches", "{fetch}", "JWKS fetches"),
            jwks_failures: counter(
                "wharf.oidc_jwks_fetch_failures",
                "{fetch}",
                "JWKS fetches that failed",
            ),
            simple_requests: counter(
                "wharf.simple_requests",
                "{request}",
                "Simple API pages served",
            ),
            simple_cache: counter(
                "wharf.simple_cache",
                "{request}",
                "Simple API pages from the page cache (hit) or rendered (miss)",
            ),
            consumer_backlog: gauge(
                "wharf.bus_consumer_messages",
                "The staged-upload consumer's backlog, by state",
            ),
            db_pool: meter
                .u64_gauge("wharf.db_pool_connections")
                .with_unit("{connection}")
                .with_description("Index database pool connections, by state")
                .build(),
            rate_limited: counter(
                "wharf.rate_limited_requests",
                "{request}",
                "Requests refused with 429 by a rate limit",
            ),
        }
    }
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
        let simple_cache = Family::<CacheLabels, Counter>::default();
        registry.register(
            "simple_cache",
            "Simple API pages served from the gateway's page cache (hit) or rendered (miss)",
            simple_cache.clone(),
        );
        let consumer_backlog = Family::<BacklogLabels, Gauge>::default();
        registry.register(
            "bus_consumer_messages",
            "The staged-upload consumer's backlog: pending (not yet delivered), ack_pending (delivered, unacknowledged), redelivered (delivered more than once, unacknowledged); sampled every few seconds",
            consumer_backlog.clone(),
        );
        let db_pool = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "db_pool_connections",
            "Index database pool connections: in_use, idle, max; sampled every few seconds",
            db_pool.clone(),
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
                simple_cache,
                rate_limited,
                consumer_backlog,
                db_pool,
                otel: OtelInstruments::new(),
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

    fn upload_attributes(result: UploadResult) -> [KeyValue; 2] {
        let labels = Self::upload_labels(result);
        [
            KeyValue::new("outcome", labels.outcome),
            KeyValue::new("status", labels.status),
        ]
    }

    /// Gateway: an upload request was answered.
    pub fn upload_answered(&self, result: UploadResult) {
        self.inner
            .uploads
            .get_or_create(&Self::upload_labels(result))
            .inc();
        self.inner
            .otel
            .uploads
            .add(1, &Self::upload_attributes(result));
    }

    /// Worker: an upload was processed (its outcome was sent).
    pub fn upload_processed(&self, result: UploadResult) {
        self.inner
            .worker_outcomes
            .get_or_create(&Self::upload_labels(result))
            .inc();
        self.inner
            .otel
            .worker_outcomes
            .add(1, &Self::upload_attributes(result));
    }

    /// Gateway: bytes streamed to staging.
    pub fn bytes_received(&self, bytes: u64) {
        self.inner.received_bytes.inc_by(bytes);
        self.inner.otel.received_bytes.add(bytes, &[]);
    }

    /// Worker: bytes of a newly stored file.
    pub fn bytes_stored(&self, bytes: u64) {
        self.inner.stored_bytes.inc_by(bytes);
        self.inner.otel.stored_bytes.add(bytes, &[]);
    }

    /// A stage took `elapsed`.
    pub fn observe_stage(&self, stage: Stage, elapsed: Duration) {
        self.inner
            .stage_seconds
            .get_or_create(&StageLabels {
                stage: stage.as_str(),
            })
            .observe(elapsed.as_secs_f64());
        self.inner.otel.stage_seconds.record(
            elapsed.as_secs_f64(),
            &[KeyValue::new("stage", stage.as_str())],
        );
    }

    /// Worker: a delivery arrived (`delivery_count` 1 for the first delivery).
    pub fn delivery(&self, delivery_count: u32) {
        self.inner.deliveries.inc();
        self.inner.otel.deliveries.add(1, &[]);
        if delivery_count > 1 {
            self.inner.redeliveries.inc();
            self.inner.otel.redeliveries.add(1, &[]);
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
        self.inner.otel.mint_outcomes.add(
            1,
            &[
                KeyValue::new("outcome", labels.outcome),
                KeyValue::new("code", labels.code),
            ],
        );
    }

    /// Verifier: a JWKS fetch ended.
    pub fn jwks_fetch(&self, succeeded: bool) {
        self.inner.jwks_fetches.inc();
        self.inner.otel.jwks_fetches.add(1, &[]);
        if !succeeded {
            self.inner.jwks_failures.inc();
            self.inner.otel.jwks_failures.add(1, &[]);
        }
    }

    /// Gateway: a simple API page was served (`index` or `project`).
    pub fn simple_request(&self, page: &'static str) {
        self.inner
            .simple_requests
            .get_or_create(&PageLabels { page })
            .inc();
        self.inner
            .otel
            .simple_requests
            .add(1, &[KeyValue::new("page", page)]);
    }

    /// Gateway: a simple API page came from the page cache (`hit`) or was rendered.
    pub fn simple_cache(&self, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        self.inner
            .simple_cache
            .get_or_create(&CacheLabels { result })
            .inc();
        self.inner
            .otel
            .simple_cache
            .add(1, &[KeyValue::new("result", result)]);
    }

    /// Worker: the staged-upload consumer's backlog as last read from the broker.
    pub fn consumer_backlog(&self, backlog: ConsumerBacklog) {
        for (state, count) in [
            ("pending", backlog.pending),
            ("ack_pending", backlog.ack_pending),
            ("redelivered", backlog.redelivered),
        ] {
            self.inner
                .consumer_backlog
                .get_or_create(&BacklogLabels { state })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
            self.inner
                .otel
                .consumer_backlog
                .record(count, &[KeyValue::new("state", state)]);
        }
    }

    /// The index database pool's connections as last sampled.
    pub fn db_pool(&self, usage: PoolUsage) {
        let in_use = usage.open.saturating_sub(usage.idle);
        for (state, count) in [("in_use", in_use), ("idle", usage.idle), ("max", usage.max)] {
            self.inner
                .db_pool
                .get_or_create(&PoolLabels { state })
                .set(i64::from(count));
            self.inner
                .otel
                .db_pool
                .record(u64::from(count), &[KeyValue::new("state", state)]);
        }
    }

    /// Gateway: a request was refused by the rate limit `limit` (e.g. `upload-ip`).
    pub fn rate_limited(&self, limit: &'static str) {
        self.inner
            .rate_limited
            .get_or_create(&LimitLabels { limit })
            .inc();
        self.inner
            .otel
            .rate_limited
            .add(1, &[KeyValue::new("limit", limit)]);
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
        metrics.consumer_backlog(ConsumerBacklog {
            pending: 7,
            ack_pending: 2,
            redelivered: 1,
        });
        metrics.db_pool(PoolUsage {
            open: 5,
            idle: 2,
            max: 10,
        });
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
            "wharf_bus_consumer_messages{state=\"pending\"} 7",
            "wharf_bus_consumer_messages{state=\"redelivered\"} 1",
            "wharf_db_pool_connections{state=\"in_use\"} 3",
            "wharf_db_pool_connections{state=\"max\"} 10",
            "# EOF",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
    }
}
