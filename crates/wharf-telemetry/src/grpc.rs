//! Trace context over gRPC: the client side injects `traceparent` into each request's
//! headers, the server side extracts it and opens the request's span under it.

use std::task::{Context, Poll};

use tracing::Instrument;
use tracing::instrument::Instrumented;

use crate::propagation;

/// Adds the current span's trace context to an outgoing request (for a client transport:
/// `ServiceExt::map_request(transport, inject_into_request)`).
pub fn inject_into_request<B>(mut request: http::Request<B>) -> http::Request<B> {
    propagation::inject_http_headers(&tracing::Span::current(), request.headers_mut());
    request
}

/// Wraps a gRPC server: each request runs in a `grpc.server` span (OTel RPC conventions)
/// whose parent is the caller's trace context, so the handlers' spans join the caller's
/// trace.
#[derive(Debug, Clone)]
pub struct GrpcServerTrace<S> {
    inner: S,
}

impl<S> GrpcServerTrace<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> GrpcServerTrace<S> {
        GrpcServerTrace { inner }
    }
}

impl<S, B> tower::Service<http::Request<B>> for GrpcServerTrace<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        let (service, method) = path
            .trim_start_matches('/')
            .split_once('/')
            .unwrap_or(("", path));
        let span = tracing::info_span!(
            "grpc.server",
            otel.name = %format!("{service}/{method}"),
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
        );
        propagation::set_parent(&span, propagation::extract_http_headers(request.headers()));
        self.inner.call(request).instrument(span)
    }
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for GrpcServerTrace<S> {
    const NAME: &'static str = S::NAME;
}
