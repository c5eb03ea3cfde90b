//! Trace context over gRPC: the client side opens a client span per call and injects its
//! `traceparent` into the request's headers, the server side extracts it and opens the
//! request's span under it.

use std::task::{Context, Poll};

use heck::ToSnakeCase;
use tracing::Instrument;
use tracing::instrument::Instrumented;

use crate::propagation;

/// The service and method of a gRPC request path (`/wharf.v1.Verifier/AuthorizeUpload`).
fn rpc_of(path: &str) -> (&str, &str) {
    path.trim_start_matches('/')
        .split_once('/')
        .unwrap_or(("", path))
}

/// Wraps a gRPC client transport or server so that each call runs in its span (OTel RPC
/// conventions); `E` says which end, and so which span: [`GrpcClientTrace`] or
/// [`GrpcServerTrace`].
#[derive(Debug, Clone)]
pub struct GrpcTrace<S, E> {
    inner: S,
    end: E,
}

/// A client transport: each call runs in a client span named `{caller}.{method in snake case}`
/// (`gateway.verifier.authorize_upload`), a child of the caller's current span, and carries
/// that span's trace context (`traceparent`) to the server, so the server's spans join the
/// caller's trace.
pub type GrpcClientTrace<S> = GrpcTrace<S, ClientEnd>;

/// A server: each request runs in a `grpc.server` span whose parent is the caller's trace
/// context, so the handlers' spans join the caller's trace.
pub type GrpcServerTrace<S> = GrpcTrace<S, ServerEnd>;

/// The end of a call a [`GrpcTrace`] wraps: it opens the call's span.
pub trait TraceEnd {
    /// The span of the call `request` starts; may add headers to it.
    fn open<B>(&self, request: &mut http::Request<B>) -> tracing::Span;
}

/// The client end of [`GrpcClientTrace`].
#[derive(Debug, Clone, Copy)]
pub struct ClientEnd {
    caller: &'static str,
}

/// The server end of [`GrpcServerTrace`].
#[derive(Debug, Clone, Copy)]
pub struct ServerEnd;

impl TraceEnd for ClientEnd {
    fn open<B>(&self, request: &mut http::Request<B>) -> tracing::Span {
        let (service, method) = rpc_of(request.uri().path());
        let span = tracing::info_span!(
            "grpc.client",
            otel.name = %format!("{}.{}", self.caller, method.to_snake_case()),
            otel.kind = "client",
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
        );
        propagation::inject_http_headers(&span, request.headers_mut());
        span
    }
}

impl TraceEnd for ServerEnd {
    fn open<B>(&self, request: &mut http::Request<B>) -> tracing::Span {
        let (service, method) = rpc_of(request.uri().path());
        let span = tracing::info_span!(
            "grpc.server",
            otel.name = %format!("{service}/{method}"),
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
        );
        propagation::set_parent(&span, propagation::extract_http_headers(request.headers()));
        span
    }
}

impl<S> GrpcClientTrace<S> {
    /// Wraps the client transport `inner`; `caller` prefixes the span names
    /// (`gateway.verifier`).
    pub fn new(inner: S, caller: &'static str) -> GrpcClientTrace<S> {
        GrpcTrace {
            inner,
            end: ClientEnd { caller },
        }
    }
}

impl<S> GrpcServerTrace<S> {
    /// Wraps the server `inner`.
    pub fn new(inner: S) -> GrpcServerTrace<S> {
        GrpcTrace {
            inner,
            end: ServerEnd,
        }
    }
}

impl<S, E, B> tower::Service<http::Request<B>> for GrpcTrace<S, E>
where
    S: tower::Service<http::Request<B>>,
    E: TraceEnd,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let span = self.end.open(&mut request);
        // Entered while the inner service is called too, so that whatever it opens or
        // injects synchronously sees this call's span as the current one.
        let future = span.in_scope(|| self.inner.call(request));
        future.instrument(span)
    }
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for GrpcServerTrace<S> {
    const NAME: &'static str = S::NAME;
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use std::convert::Infallible;
    use tower::Service as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    use tracing_subscriber::layer::SubscriberExt;

    fn ids(span: &tracing::Span) -> (String, String) {
        let context = span.context();
        let span_context = context.span().span_context().clone();
        (
            span_context.trace_id().to_string(),
            span_context.span_id().to_string(),
        )
    }

    #[test]
    fn a_call_is_a_client_span_between_the_caller_and_the_server() {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime");
            let caller = tracing::info_span!("caller");
            let (caller_trace, caller_span) = ids(&caller);
            let server =
                GrpcServerTrace::new(tower::service_fn(|request: http::Request<()>| async move {
                    let traceparent = request
                        .headers()
                        .get("traceparent")
                        .and_then(|value| value.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    Ok::<_, Infallible>((ids(&tracing::Span::current()).0, traceparent))
                }));
            let mut client = GrpcClientTrace::new(server, "gateway.verifier");
            let request = http::Request::builder()
                .uri("/wharf.v1.Verifier/AuthorizeUpload")
                .body(())
                .expect("request");
            let (server_trace, traceparent) = runtime
                .block_on(async { client.call(request).await }.instrument(caller.clone()))
                .expect("answer");
            assert_eq!(
                server_trace, caller_trace,
                "the server joins the caller's trace"
            );
            let parts: Vec<&str> = traceparent.split('-').collect();
            assert_eq!(parts.len(), 4, "{traceparent}");
            assert_eq!(parts[1], caller_trace);
            assert_ne!(
                parts[2], caller_span,
                "the server's parent is the client span, not the caller's span"
            );
        });
    }

    #[test]
    fn paths_split_into_service_and_method() {
        assert_eq!(
            rpc_of("/wharf.v1.Verifier/AuthorizeUpload"),
            ("wharf.v1.Verifier", "AuthorizeUpload")
        );
        assert_eq!("AuthorizeUpload".to_snake_case(), "authorize_upload");
        assert_eq!("OidcAudience".to_snake_case(), "oidc_audience");
    }
}
