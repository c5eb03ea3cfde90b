//! Telemetry set-up shared by every Wharf service, in one place:
//!
//! - logs: an `EnvFilter` from `RUST_LOG` (default `info,sqlx=warn`), human-readable lines on
//!   stderr, or JSON lines with `WHARF_LOG_FORMAT=json`; each line inside a span carries its
//!   `trace_id` and `span_id`;
//! - traces: the W3C TraceContext propagator, and spans exported with OTLP over gRPC when
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, honouring
//!   the standard `OTEL_*` variables (service name, resource attributes, sampler, headers,
//!   batch processor). Without an endpoint nothing is exported, but every span still gets a
//!   trace id, so logs and the `X-Wharf-Trace-Id` response header always have one;
//! - [`propagation`]: carrying the trace context over HTTP headers, gRPC metadata and bus
//!   messages, plus a tower wrapper for gRPC servers ([`GrpcServerTrace`]);
//! - [`Metrics`]: the Prometheus registry every service exposes at `/metrics`, mirrored on
//!   OpenTelemetry instruments that are exported with OTLP over gRPC when
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`) is set, every
//!   `OTEL_METRIC_EXPORT_INTERVAL` milliseconds (default 60 000);
//! - [`Redacted`]: a wrapper for secrets that never shows them.

#[cfg(any(test, feature = "test-support"))]
mod capture;
mod grpc;
mod metrics;
pub mod propagation;
mod redact;

use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

#[cfg(any(test, feature = "test-support"))]
pub use capture::CapturedLog;
pub use grpc::{ClientEnd, GrpcClientTrace, GrpcServerTrace, GrpcTrace, ServerEnd, TraceEnd};
pub use metrics::{ConsumerBacklog, METRICS_CONTENT_TYPE, Metrics, PoolUsage, Stage, UploadResult};
pub use redact::Redacted;

/// The response header that carries a request's trace id.
pub const TRACE_ID_HEADER: &str = "x-wharf-trace-id";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per event, with the span context.
    Json,
}

impl LogFormat {
    /// Reads `WHARF_LOG_FORMAT` (`json` or `text`, default `text`).
    pub fn from_env() -> LogFormat {
        match std::env::var("WHARF_LOG_FORMAT") {
            Ok(value) if value.eq_ignore_ascii_case("json") => LogFormat::Json,
            _ => LogFormat::Text,
        }
    }
}

/// Keeps telemetry alive; [`TelemetryGuard::shutdown`] flushes the spans still buffered.
#[derive(Debug)]
pub struct TelemetryGuard {
    service_name: String,
    provider: SdkTracerProvider,
    exporting: bool,
    /// Exports metrics over OTLP, when configured.
    meter_provider: Option<SdkMeterProvider>,
}

impl TelemetryGuard {
    /// The service name telemetry reports.
    pub fn service_name(&self) -> &str {
        &self.service_name
    }

    /// Tells whether spans are exported (an OTLP endpoint is configured).
    pub fn exporting(&self) -> bool {
        self.exporting
    }

    /// Tells whether metrics are exported over OTLP.
    pub fn exporting_metrics(&self) -> bool {
        self.meter_provider.is_some()
    }

    /// Flushes and stops the trace and metric pipelines. The SDK's shutdown blocks (it waits
    /// for the exporters' threads), so it runs on the blocking pool.
    pub async fn shutdown(self) {
        if let Some(meter_provider) = self.meter_provider {
            match tokio::task::spawn_blocking(move || meter_provider.shutdown()).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::warn!(error = %error, "could not flush the metric exporter")
                }
                Err(error) => {
                    tracing::warn!(error = %error, "metric exporter shutdown task failed")
                }
            }
        }
        let provider = self.provider;
        let exporting = self.exporting;
        match tokio::task::spawn_blocking(move || provider.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) if exporting => {
                tracing::warn!(error = %error, "could not flush the trace exporter")
            }
            Ok(Err(_)) => {}
            Err(error) => tracing::warn!(error = %error, "trace exporter shutdown task failed"),
        }
    }
}

/// The trace exporter's endpoint, if one is configured through the standard variables.
fn otlp_endpoint() -> Option<String> {
    signal_endpoint("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
}

/// The endpoint of one signal's exporter: its own variable, else the common one; none when
/// the SDK or that exporter is disabled.
fn signal_endpoint(exporter_variable: &str, endpoint_variable: &str) -> Option<String> {
    if env_is("OTEL_SDK_DISABLED", "true") || env_is(exporter_variable, "none") {
        return None;
    }
    [endpoint_variable, "OTEL_EXPORTER_OTLP_ENDPOINT"]
        .into_iter()
        .find_map(|name| {
            std::env::var(name)
                .ok()
                .filter(|value| !value.trim().is_empty())
        })
}

fn env_is(name: &str, expected: &str) -> bool {
    std::env::var(name).is_ok_and(|value| value.trim().eq_ignore_ascii_case(expected))
}

/// The resource: `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` win over `service_name`.
fn resource(service_name: &str) -> Resource {
    let builder = Resource::builder().with_attribute(opentelemetry::KeyValue::new(
        "service.version",
        env!("CARGO_PKG_VERSION"),
    ));
    let named_by_env = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|name| !name.is_empty());
    if named_by_env {
        builder.build()
    } else {
        builder.with_service_name(service_name.to_owned()).build()
    }
}

/// Builds the tracer provider: with the OTLP/gRPC batch exporter when an endpoint is set,
/// else without any exporter and a sampler that records nothing new (ids are still
/// generated, and a sampled parent from a client is respected).
///
/// Must run inside a Tokio runtime: the tonic exporter's channel lives on it.
fn tracer_provider(service_name: &str) -> (SdkTracerProvider, Result<bool, String>) {
    let builder = SdkTracerProvider::builder().with_resource(resource(service_name));
    let Some(endpoint) = otlp_endpoint() else {
        let provider = builder
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOff)))
            .build();
        return (provider, Ok(false));
    };
    // The exporter reads the endpoint, headers, timeout and compression from the standard
    // variables itself; the sampler comes from OTEL_TRACES_SAMPLER(_ARG) through the SDK's
    // default configuration.
    match opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()
    {
        Ok(exporter) => (builder.with_batch_exporter(exporter).build(), Ok(true)),
        Err(error) => (
            builder
                .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOff)))
                .build(),
            Err(format!("{endpoint}: {error}")),
        ),
    }
}

/// The OTLP metric pipeline when an endpoint is configured: a periodic reader (interval from
/// `OTEL_METRIC_EXPORT_INTERVAL`) over the gRPC exporter, which reads the endpoint, headers
/// and timeout from the standard variables. Must run inside a Tokio runtime.
fn meter_provider(service_name: &str) -> Result<Option<SdkMeterProvider>, String> {
    let Some(endpoint) = signal_endpoint(
        "OTEL_METRICS_EXPORTER",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    ) else {
        return Ok(None);
    };
    let exporter = opentelemetry_otlp::MetricExporter::builder()
        .with_tonic()
        .build()
        .map_err(|error| format!("{endpoint}: {error}"))?;
    Ok(Some(
        SdkMeterProvider::builder()
            .with_resource(resource(service_name))
            .with_reader(PeriodicReader::builder(exporter).build())
            .build(),
    ))
}

/// Installs the global subscriber and the W3C propagator for `service_name`. Call once, from
/// inside the Tokio runtime, before anything else logs.
pub fn init(service_name: &str) -> TelemetryGuard {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let (provider, exporter) = tracer_provider(service_name);
    opentelemetry::global::set_tracer_provider(provider.clone());
    let otel_layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("wharf"))
        .with_target(false)
        .with_threads(false);

    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let registry = tracing_subscriber::registry().with(filter).with(otel_layer);
    let result = match LogFormat::from_env() {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false)
                    .map_event_format(|format| WithTraceIds {
                        inner: format,
                        json: true,
                    })
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .map_event_format(|format| WithTraceIds {
                        inner: format,
                        json: false,
                    })
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    if result.is_err() {
        tracing::debug!("a global tracing subscriber was already installed");
    }
    let exporting = match exporter {
        Ok(exporting) => exporting,
        Err(error) => {
            tracing::warn!(error = %error, "cannot set up the OTLP trace exporter; spans are not exported");
            false
        }
    };
    if exporting {
        tracing::info!(
            service = service_name,
            "exporting traces with OTLP over gRPC"
        );
    }
    // Installed before any `Metrics` is made: its instruments come from the global provider.
    let meter_provider = match meter_provider(service_name) {
        Ok(provider) => provider,
        Err(error) => {
            tracing::warn!(error = %error, "cannot set up the OTLP metric exporter; metrics are not exported");
            None
        }
    };
    if let Some(provider) = &meter_provider {
        opentelemetry::global::set_meter_provider(provider.clone());
        tracing::info!(
            service = service_name,
            "exporting metrics with OTLP over gRPC"
        );
    }
    TelemetryGuard {
        service_name: service_name.to_owned(),
        provider,
        exporting,
        meter_provider,
    }
}

/// The trace id of the current span (32 lower-case hex digits), if it has one.
pub fn current_trace_id() -> Option<String> {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

/// Formats events with the wrapped format, then adds the current span's trace and span ids:
/// as ` trace_id=… span_id=…` at the end of a text line, as two fields of a JSON object.
struct WithTraceIds<F> {
    inner: F,
    json: bool,
}

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'lookup> LookupSpan<'lookup>,
    N: for<'writer> FormatFields<'writer> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        // Entering a span activates its OpenTelemetry context (tracing-opentelemetry's
        // context activation), so the current context is the event's span.
        let context = opentelemetry::Context::current();
        let span = context.span();
        let span_context = span.span_context();
        if !span_context.is_valid() {
            return writer.write_str(&line);
        }
        let trace_id = span_context.trace_id();
        let span_id = span_context.span_id();
        let body = line.strip_suffix('\n').unwrap_or(&line);
        if self.json {
            match body.strip_suffix('}') {
                Some(object) => {
                    let separator = if object.ends_with('{') { "" } else { "," };
                    writeln!(
                        writer,
                        "{object}{separator}\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\"}}"
                    )
                }
                None => writer.write_str(&line),
            }
        } else {
            writeln!(writer, "{body} trace_id={trace_id} span_id={span_id}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture(json: bool, emit: impl FnOnce()) -> String {
        let captured = CapturedLog::default();
        let provider = SdkTracerProvider::builder().build();
        let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
        let registry = tracing_subscriber::registry().with(otel);
        if json {
            let subscriber = registry.with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .map_event_format(|format| WithTraceIds {
                        inner: format,
                        json: true,
                    })
                    .with_writer(captured.clone()),
            );
            tracing::subscriber::with_default(subscriber, emit);
        } else {
            let subscriber = registry.with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .map_event_format(|format| WithTraceIds {
                        inner: format,
                        json: false,
                    })
                    .with_writer(captured.clone()),
            );
            tracing::subscriber::with_default(subscriber, emit);
        }
        captured.text()
    }

    #[test]
    fn json_lines_carry_trace_and_span_ids_inside_a_span() {
        let mut expected_trace = String::new();
        let output = capture(true, || {
            tracing::info!("outside");
            let span = tracing::info_span!("work");
            let _entered = span.enter();
            expected_trace = current_trace_id().expect("a trace id");
            tracing::info!(count = 3, "inside");
        });
        let lines: Vec<serde_json::Value> = output
            .lines()
            .map(|line| serde_json::from_str(line).expect("each line is JSON"))
            .collect();
        assert_eq!(lines.len(), 2, "{output}");
        assert!(lines[0].get("trace_id").is_none());
        assert_eq!(lines[1]["trace_id"], expected_trace.as_str());
        assert_eq!(lines[1]["span_id"].as_str().map(str::len), Some(16));
        assert_eq!(lines[1]["fields"]["count"], 3);
    }

    #[test]
    fn text_lines_end_with_the_ids() {
        let mut expected_trace = String::new();
        let output = capture(false, || {
            let span = tracing::info_span!("work");
            let _entered = span.enter();
            expected_trace = current_trace_id().expect("a trace id");
            tracing::info!("inside");
        });
        let line = output.lines().next().expect("one line");
        assert!(
            line.contains(&format!(" trace_id={expected_trace} span_id=")),
            "{line}"
        );
        assert!(line.contains("inside"), "{line}");
    }
}
