//! The HTTP server span of every request: it continues the caller's trace when the request
//! carries a W3C `traceparent` (a client or a proxy that traces), follows the OTel HTTP
//! semantic conventions, and puts the trace id in the `X-Wharf-Trace-Id` response header so
//! an operator can go from a failed client run to its trace.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;
use wharf_telemetry::{TRACE_ID_HEADER, propagation};

use crate::GatewaySettings;
use crate::access_log::AccessRecord;
use crate::rate_limit::client_ip;

/// Paths polled by probes and scrapers: not worth a trace each.
fn is_probe(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// Routes that redirect to, or answer exactly as, a twin differing by a trailing slash: they
/// are traced under the twin's template, so that one operation has one span name.
const TWINS: [(&str, &str); 5] = [
    ("/legacy", "/legacy/"),
    ("/simple", "/simple/"),
    ("/simple/{project}", "/simple/{project}/"),
    ("/pypi/{project}/json/", "/pypi/{project}/json"),
    (
        "/pypi/{project}/{version}/json/",
        "/pypi/{project}/{version}/json",
    ),
];

/// The route template the router matched (low cardinality, for span names), as axum's
/// [`MatchedPath`] reports it; `None` for requests no route serves.
fn route_of(request: &Request) -> Option<String> {
    let matched = request.extensions().get::<MatchedPath>()?.as_str();
    let route = TWINS
        .iter()
        .find(|(twin, _)| *twin == matched)
        .map_or(matched, |(_, canonical)| canonical);
    Some(route.to_owned())
}

/// Opens the request's server span, answers its trace id in `X-Wharf-Trace-Id`, and with
/// `settings.access_log` writes its access line (see [`crate::access_log`]).
pub(crate) async fn trace_request(
    State(settings): State<Arc<GatewaySettings>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    if is_probe(&path) {
        return next.run(request).await;
    }
    let method = request.method().clone();
    let route = route_of(&request);
    let span_name = match &route {
        Some(route) => format!("{method} {route}"),
        None => method.to_string(),
    };
    let span = tracing::info_span!(
        "http.request",
        otel.name = %span_name,
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = %method,
        http.route = route.as_deref().unwrap_or_default(),
        url.path = %path,
        http.response.status_code = tracing::field::Empty,
    );
    propagation::set_parent(&span, propagation::extract_http_headers(request.headers()));
    let trace_id = span.in_scope(wharf_telemetry::current_trace_id);
    // Dropped with this future if no response is made.
    let access = settings.access_log.then(|| {
        let ip = client_ip(
            &settings.rate_limits,
            request.headers(),
            request.extensions(),
        );
        AccessRecord::start(span.clone(), method.clone(), route.clone(), ip)
    });
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    if let Some(value) = trace_id.and_then(|id| HeaderValue::from_str(&id).ok()) {
        response.headers_mut().insert(TRACE_ID_HEADER, value);
    }
    match access {
        Some(access) => access.into_response(response),
        None => response,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    /// Answers with the route the tracing layer would name, seen from where it sits (a layer
    /// over every route, as in `Gateway::router`).
    async fn route_seen(router: Router, path: &str) -> Option<String> {
        async fn echo(request: Request, next: Next) -> Response {
            let route = route_of(&request);
            let mut response = next.run(request).await;
            if let Some(value) = route.and_then(|route| HeaderValue::from_str(&route).ok()) {
                response.headers_mut().insert("x-route", value);
            }
            response
        }
        let request = Request::builder()
            .uri(path)
            .body(Body::empty())
            .expect("request");
        let response = router
            .layer(axum::middleware::from_fn(echo))
            .oneshot(request)
            .await
            .expect("infallible");
        response
            .headers()
            .get("x-route")
            .map(|value| value.to_str().expect("ascii").to_owned())
    }

    fn router() -> Router {
        let routes = [
            "/legacy/",
            "/legacy",
            "/simple/",
            "/simple",
            "/simple/{project}/",
            "/simple/{project}",
            "/pypi/{project}/json",
            "/pypi/{project}/json/",
            "/pypi/{project}/{version}/json",
            "/pypi/{project}/{version}/json/",
            "/packages/{*path}",
            "/_/oidc/mint-token",
        ];
        routes.into_iter().fold(Router::new(), |router, route| {
            router.route(route, get(|| async {}))
        })
    }

    #[tokio::test]
    async fn routes_are_the_matched_templates() {
        for (path, route) in [
            ("/legacy/", "/legacy/"),
            ("/simple/demo/", "/simple/{project}/"),
            ("/pypi/demo/json", "/pypi/{project}/json"),
            ("/pypi/demo/1.0/json", "/pypi/{project}/{version}/json"),
            ("/packages/ab/cd/x.whl", "/packages/{*path}"),
            ("/_/oidc/mint-token", "/_/oidc/mint-token"),
        ] {
            assert_eq!(
                route_seen(router(), path).await.as_deref(),
                Some(route),
                "{path}"
            );
        }
    }

    #[tokio::test]
    async fn twins_are_named_after_their_canonical_route() {
        for (path, route) in [
            ("/legacy", "/legacy/"),
            ("/simple", "/simple/"),
            ("/simple/demo", "/simple/{project}/"),
            ("/pypi/demo/json/", "/pypi/{project}/json"),
            ("/pypi/demo/1.0/json/", "/pypi/{project}/{version}/json"),
        ] {
            assert_eq!(
                route_seen(router(), path).await.as_deref(),
                Some(route),
                "{path}"
            );
        }
    }

    #[tokio::test]
    async fn unrouted_paths_have_no_route() {
        assert_eq!(route_seen(router(), "/nope").await, None);
        assert_eq!(route_seen(router(), "/simple/a/b/c").await, None);
    }
}
