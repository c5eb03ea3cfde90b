//! The HTTP server span of every request: it continues the caller's trace when the request
//! carries a W3C `traceparent` (a client or a proxy that traces), follows the OTel HTTP
//! semantic conventions, and puts the trace id in the `X-Wharf-Trace-Id` response header so
//! an operator can go from a failed client run to its trace.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;
use wharf_telemetry::{TRACE_ID_HEADER, propagation};

/// Paths polled by probes and scrapers: not worth a trace each.
fn is_probe(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// The route template of a path (low cardinality, for span names), as the router declares
/// it; `None` for paths no route serves.
fn route_of(path: &str) -> Option<&'static str> {
    let route = match path {
        "/legacy/" | "/legacy" => "/legacy/",
        "/pypi" => "/pypi",
        "/simple/" | "/simple" => "/simple/",
        "/_/oidc/audience" => "/_/oidc/audience",
        "/_/oidc/mint-token" => "/_/oidc/mint-token",
        "/_/oidc/github/mint-token" => "/_/oidc/github/mint-token",
        "/_/oidc/burn-token" => "/_/oidc/burn-token",
        _ if path.starts_with("/packages/") => "/packages/{*path}",
        _ if path.starts_with("/simple/") => "/simple/{project}/",
        _ if path.starts_with("/pypi/") => match path.trim_end_matches('/').split('/').count() {
            4 => "/pypi/{project}/json",
            5 => "/pypi/{project}/{version}/json",
            _ => return None,
        },
        _ => return None,
    };
    Some(route)
}

pub(crate) async fn trace_request(request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    if is_probe(&path) {
        return next.run(request).await;
    }
    let method = request.method().clone();
    let route = route_of(&path);
    let span_name = match route {
        Some(route) => format!("{method} {route}"),
        None => method.to_string(),
    };
    let span = tracing::info_span!(
        "http.request",
        otel.name = %span_name,
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = %method,
        http.route = route.unwrap_or_default(),
        url.path = %path,
        http.response.status_code = tracing::field::Empty,
    );
    propagation::set_parent(&span, propagation::extract_http_headers(request.headers()));
    let trace_id = span.in_scope(wharf_telemetry::current_trace_id);
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    if let Some(value) = trace_id.and_then(|id| HeaderValue::from_str(&id).ok()) {
        response.headers_mut().insert(TRACE_ID_HEADER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_templates() {
        assert_eq!(route_of("/legacy/"), Some("/legacy/"));
        assert_eq!(route_of("/pypi"), Some("/pypi"));
        assert_eq!(route_of("/simple/demo/"), Some("/simple/{project}/"));
        assert_eq!(route_of("/pypi/demo/json"), Some("/pypi/{project}/json"));
        assert_eq!(
            route_of("/pypi/demo/1.0/json/"),
            Some("/pypi/{project}/{version}/json")
        );
        assert_eq!(route_of("/packages/ab/cd/x.whl"), Some("/packages/{*path}"));
        assert_eq!(route_of("/nope"), None);
    }
}
