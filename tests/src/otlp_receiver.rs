//! A small OTLP/gRPC receiver: the collector's `TraceService` and `MetricsService`, generated
//! from the OTLP protobuf definitions (`opentelemetry-proto`), serving on a free port and
//! recording every span and metric data point the real exporters of a `wharf` process send,
//! for the tests to inspect.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value as NumberValue;

/// One exported metric data point, flattened: sums and gauges give their value, histograms
/// their count.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedPoint {
    /// `service.name` of the exporting process's resource.
    pub service: String,
    /// The instrument's name, e.g. `wharf.uploads`.
    pub metric: String,
    /// Attributes, values rendered as text.
    pub attributes: HashMap<String, String>,
    pub value: f64,
}

/// One exported span, flattened.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedSpan {
    /// `service.name` of the exporting process's resource.
    pub service: String,
    pub name: String,
    /// Lower-case hex.
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    /// The span kind (OTLP numbering: 1 internal, 2 server, 3 client, 4 producer, 5 consumer).
    pub kind: i32,
    /// Attributes, values rendered as text.
    pub attributes: HashMap<String, String>,
    /// Attributes of the span's events (log events inside the span), as text.
    pub event_texts: Vec<String>,
    /// `trace_id:span_id` of the linked spans.
    pub links: Vec<String>,
    /// Start and end, unix nanoseconds.
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
}

impl ReceivedSpan {
    /// An attribute's value as text.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

fn text_of(value: Option<&AnyValue>) -> String {
    match value.and_then(|value| value.value.as_ref()) {
        Some(any_value::Value::StringValue(text)) => text.clone(),
        Some(any_value::Value::BoolValue(flag)) => flag.to_string(),
        Some(any_value::Value::IntValue(number)) => number.to_string(),
        Some(any_value::Value::DoubleValue(number)) => number.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attributes_of(attributes: &[KeyValue]) -> HashMap<String, String> {
    attributes
        .iter()
        .map(|pair| (pair.key.clone(), text_of(pair.value.as_ref())))
        .collect()
}

#[derive(Debug, Clone, Default)]
struct Recorder {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    points: Arc<Mutex<Vec<ReceivedPoint>>>,
}

#[tonic::async_trait]
impl MetricsService for Recorder {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let mut received = Vec::new();
        for resource_metrics in request.into_inner().resource_metrics {
            let resource = resource_metrics
                .resource
                .map(|resource| attributes_of(&resource.attributes))
                .unwrap_or_default();
            let service = resource.get("service.name").cloned().unwrap_or_default();
            for metric in resource_metrics
                .scope_metrics
                .into_iter()
                .flat_map(|scope| scope.metrics)
            {
                let point = |attributes: &[KeyValue], value: f64| ReceivedPoint {
                    service: service.clone(),
                    metric: metric.name.clone(),
                    attributes: attributes_of(attributes),
                    value,
                };
                let number = |value: Option<NumberValue>| match value {
                    Some(NumberValue::AsInt(number)) => number as f64,
                    Some(NumberValue::AsDouble(number)) => number,
                    None => f64::NAN,
                };
                match &metric.data {
                    Some(Data::Sum(sum)) => received.extend(
                        sum.data_points
                            .iter()
                            .map(|data| point(&data.attributes, number(data.value))),
                    ),
                    Some(Data::Gauge(gauge)) => received.extend(
                        gauge
                            .data_points
                            .iter()
                            .map(|data| point(&data.attributes, number(data.value))),
                    ),
                    Some(Data::Histogram(histogram)) => received.extend(
                        histogram
                            .data_points
                            .iter()
                            .map(|data| point(&data.attributes, data.count as f64)),
                    ),
                    _ => {}
                }
            }
        }
        self.points
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(received);
        Ok(tonic::Response::new(ExportMetricsServiceResponse {
            partial_success: None,
        }))
    }
}

#[tonic::async_trait]
impl TraceService for Recorder {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut received = Vec::new();
        for resource_spans in request.into_inner().resource_spans {
            let resource = resource_spans
                .resource
                .map(|resource| attributes_of(&resource.attributes))
                .unwrap_or_default();
            let service = resource.get("service.name").cloned().unwrap_or_default();
            for scope_spans in resource_spans.scope_spans {
                for span in scope_spans.spans {
                    received.push(ReceivedSpan {
                        service: service.clone(),
                        name: span.name,
                        trace_id: hex::encode(&span.trace_id),
                        span_id: hex::encode(&span.span_id),
                        parent_span_id: hex::encode(&span.parent_span_id),
                        kind: span.kind,
                        attributes: attributes_of(&span.attributes),
                        event_texts: span
                            .events
                            .iter()
                            .map(|event| {
                                format!("{} {:?}", event.name, attributes_of(&event.attributes))
                            })
                            .collect(),
                        links: span
                            .links
                            .iter()
                            .map(|link| {
                                format!(
                                    "{}:{}",
                                    hex::encode(&link.trace_id),
                                    hex::encode(&link.span_id)
                                )
                            })
                            .collect(),
                        start_unix_nano: span.start_time_unix_nano,
                        end_unix_nano: span.end_time_unix_nano,
                    });
                }
            }
        }
        self.spans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(received);
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// A running receiver; stops when dropped.
#[derive(Debug)]
pub struct OtlpReceiver {
    address: std::net::SocketAddr,
    recorder: Recorder,
    handle: axum_server::Handle<std::net::SocketAddr>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl OtlpReceiver {
    /// Starts a receiver on a free port of 127.0.0.1 (gRPC over plain HTTP/2).
    pub fn start() -> OtlpReceiver {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("receiver runtime");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("receiver port");
        let address = listener.local_addr().expect("receiver address");
        let recorder = Recorder::default();
        let router = tonic::service::Routes::new(TraceServiceServer::new(recorder.clone()))
            .add_service(MetricsServiceServer::new(recorder.clone()))
            .into_axum_router();
        let handle = axum_server::Handle::new();
        {
            let _guard = runtime.enter();
            let server = axum_server::from_tcp(listener)
                .expect("serve the receiver")
                .handle(handle.clone())
                .serve(router.into_make_service());
            runtime.spawn(server);
        }
        OtlpReceiver {
            address,
            recorder,
            handle,
            runtime: Some(runtime),
        }
    }

    /// The value for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.recorder
            .spans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Every metric data point received so far, oldest first.
    pub fn points(&self) -> Vec<ReceivedPoint> {
        self.recorder
            .points
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The latest value of `metric` from `service` whose attributes include `attributes`,
    /// once `ready` accepts it (polled until `timeout`); panics with what arrived if never.
    pub fn wait_for_point(
        &self,
        service: &str,
        metric: &str,
        attributes: &[(&str, &str)],
        timeout: Duration,
        ready: impl Fn(f64) -> bool,
    ) -> f64 {
        let deadline = Instant::now() + timeout;
        loop {
            let latest = self
                .points()
                .into_iter()
                .rev()
                .find(|point| {
                    point.service == service
                        && point.metric == metric
                        && attributes.iter().all(|(key, value)| {
                            point.attributes.get(*key).map(String::as_str) == Some(*value)
                        })
                })
                .map(|point| point.value);
            if let Some(value) = latest.filter(|value| ready(*value)) {
                return value;
            }
            if Instant::now() > deadline {
                let names: std::collections::BTreeSet<String> = self
                    .points()
                    .iter()
                    .map(|point| format!("{}/{}", point.service, point.metric))
                    .collect();
                panic!(
                    "{service}/{metric}{attributes:?} never became ready (last: {latest:?}); received: {names:?}"
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The spans of `trace_id`, once `ready` accepts them (polled until `timeout`); panics
    /// with what arrived if it never does.
    pub fn wait_for_trace(
        &self,
        trace_id: &str,
        timeout: Duration,
        ready: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> Vec<ReceivedSpan> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans: Vec<ReceivedSpan> = self
                .spans()
                .into_iter()
                .filter(|span| span.trace_id == trace_id)
                .collect();
            if ready(&spans) {
                return spans;
            }
            if Instant::now() > deadline {
                let names: Vec<String> = spans
                    .iter()
                    .map(|span| format!("{}/{}", span.service, span.name))
                    .collect();
                panic!(
                    "trace {trace_id} incomplete after {timeout:?}: {names:?}; {} spans received in all",
                    self.spans().len()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.handle.shutdown();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

/// Writes spans as JSON lines (service, name, ids, kind, start and end), for rendering a
/// waterfall (`docs/tools/waterfall.py`).
pub fn dump_spans(spans: &[ReceivedSpan], path: &std::path::Path) -> std::io::Result<()> {
    let mut text = String::new();
    for span in spans {
        let line = serde_json::json!({
            "service": span.service,
            "name": span.name,
            "trace_id": span.trace_id,
            "span_id": span.span_id,
            "parent_span_id": span.parent_span_id,
            "kind": span.kind,
            "start_unix_nano": span.start_unix_nano,
            "end_unix_nano": span.end_unix_nano,
        });
        text.push_str(&line.to_string());
        text.push('\n');
    }
    std::fs::write(path, text)
}
