//! W3C trace context over every hop: HTTP headers, gRPC metadata and bus messages (a
//! `map<string, string>` field of the protobuf message).
//!
//! Injection writes the context of a `tracing` span through the globally installed
//! propagator ([`crate::init`] installs `TraceContextPropagator`); extraction reads one and
//! [`set_parent`] makes it the parent of a span that has not been entered yet.

use std::collections::HashMap;

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TraceContextExt;
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::header::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(key, value);
        }
    }
}

struct MetadataExtractor<'a>(&'a tonic::metadata::MetadataMap);

impl Extractor for MetadataExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|key| match key {
                tonic::metadata::KeyRef::Ascii(key) => Some(key.as_str()),
                tonic::metadata::KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

fn inject(context: &Context, injector: &mut dyn Injector) {
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(context, injector)
    });
}

fn extract(extractor: &dyn Extractor) -> Context {
    opentelemetry::global::get_text_map_propagator(|propagator| propagator.extract(extractor))
}

/// The trace context of `span` as a string map (`traceparent`, `tracestate`), for a bus
/// message. Empty when the span has no trace.
pub fn span_context_map(span: &tracing::Span) -> HashMap<String, String> {
    let mut map = HashMap::new();
    inject(&span.context(), &mut map);
    map
}

/// The trace context of the current span as a string map.
pub fn current_context_map() -> HashMap<String, String> {
    span_context_map(&tracing::Span::current())
}

/// Writes the trace context of `span` into HTTP headers.
pub fn inject_http_headers(span: &tracing::Span, headers: &mut http::HeaderMap) {
    inject(&span.context(), &mut HeaderInjector(headers));
}

/// Writes the trace context of `span` into gRPC metadata.
pub fn inject_metadata(span: &tracing::Span, metadata: &mut tonic::metadata::MetadataMap) {
    inject(&span.context(), &mut MetadataInjector(metadata));
}

/// Reads a trace context from a string map.
pub fn extract_map(map: &HashMap<String, String>) -> Context {
    extract(map)
}

/// Reads a trace context from HTTP headers.
pub fn extract_http_headers(headers: &http::HeaderMap) -> Context {
    extract(&HeaderExtractor(headers))
}

/// Reads a trace context from gRPC metadata.
pub fn extract_metadata(metadata: &tonic::metadata::MetadataMap) -> Context {
    extract(&MetadataExtractor(metadata))
}

/// Makes `parent` the parent of `span` when it carries a valid remote span context (an
/// absent or malformed one leaves the span where `tracing` put it). Call it before the span
/// is first entered.
pub fn set_parent(span: &tracing::Span, parent: Context) {
    if !parent.span().span_context().is_valid() {
        return;
    }
    if let Err(error) = span.set_parent(parent) {
        tracing::debug!(error = %error, "cannot set the remote parent of a span");
    }
}

/// Links `span` to the span whose context `map` carries (for example the worker span that
/// produced an outcome), when there is a valid one.
pub fn add_link_from_map(span: &tracing::Span, map: &HashMap<String, String>) {
    if map.is_empty() {
        return;
    }
    if let Some(linked) = remote_span_context(&extract_map(map)) {
        span.add_link(linked);
    }
}

/// The span context of `context`, to link to (for example the worker's span that produced an
/// outcome), when it is valid.
pub fn remote_span_context(context: &Context) -> Option<opentelemetry::trace::SpanContext> {
    let span = context.span();
    let span_context = span.span_context();
    span_context.is_valid().then(|| span_context.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_subscriber::layer::SubscriberExt;

    fn with_otel(test: impl FnOnce()) {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, test);
    }

    fn trace_id(span: &tracing::Span) -> String {
        span.context().span().span_context().trace_id().to_string()
    }

    #[test]
    fn a_context_survives_every_carrier() {
        with_otel(|| {
            let sender = tracing::info_span!("sender");
            let expected = trace_id(&sender);

            let map = span_context_map(&sender);
            assert!(map.contains_key("traceparent"), "{map:?}");
            let from_map = tracing::info_span!("from_map");
            set_parent(&from_map, extract_map(&map));
            assert_eq!(trace_id(&from_map), expected);

            let mut headers = http::HeaderMap::new();
            inject_http_headers(&sender, &mut headers);
            let from_headers = tracing::info_span!("from_headers");
            set_parent(&from_headers, extract_http_headers(&headers));
            assert_eq!(trace_id(&from_headers), expected);

            let mut metadata = tonic::metadata::MetadataMap::new();
            inject_metadata(&sender, &mut metadata);
            let from_metadata = tracing::info_span!("from_metadata");
            set_parent(&from_metadata, extract_metadata(&metadata));
            assert_eq!(trace_id(&from_metadata), expected);
        });
    }

    #[test]
    fn a_missing_context_leaves_a_root_span() {
        with_otel(|| {
            let other = tracing::info_span!("other");
            let span = tracing::info_span!("root");
            set_parent(&span, extract_map(&HashMap::new()));
            assert_ne!(trace_id(&span), trace_id(&other));
            assert_ne!(trace_id(&span), "00000000000000000000000000000000");
        });
    }
}
