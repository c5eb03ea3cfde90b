//! What every service process needs: the shutdown signal, a router bound to a listener
//! (plain or TLS, with graceful shutdown) and run as a supervised task, `/healthz` +
//! `/readyz` + `/metrics`, and the sampled gauges.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum_server::accept::{DefaultAcceptor, NoDelayAcceptor};
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::connections::{
    ConnectionLimits, HTTP2_KEEP_ALIVE_INTERVAL, HTTP2_KEEP_ALIVE_TIMEOUT, LimitedAcceptor,
};
use crate::supervisor::Supervisor;

/// How long a connection may take to send its request headers, for the health endpoints of
/// the worker (the gateway's is a setting; the verifier's gRPC clients hold idle connections).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long shutdown waits for in-flight work before giving up on it.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(60);

/// Resolves when SIGINT or SIGTERM arrives.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::warn!(error = %error, "cannot listen for SIGTERM");
                let _ = interrupt.await;
                return;
            }
        };
    tokio::select! {
        _ = interrupt => {}
        _ = terminate.recv() => {}
    }
}

/// How often the gauges (database pool, upload queue) are sampled.
const GAUGE_INTERVAL: Duration = Duration::from_secs(5);

/// Adds the task that samples the index pool's connections and, in a process that runs
/// storage workers (`bus`), the upload queue's backlog into `metrics`: at once, then every
/// few seconds, until it is stopped.
pub(crate) fn add_gauges(
    supervisor: &mut Supervisor,
    metrics: wharf_telemetry::Metrics,
    index: Arc<dyn wharf_index::Index>,
    bus: Option<Arc<dyn wharf_bus::UploadBus>>,
) {
    supervisor.add(
        "gauges",
        Duration::from_secs(5),
        "the gauge sampler did not stop in time",
        move |stop| async move {
            let mut ticks = tokio::time::interval(GAUGE_INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => return Ok(()),
                    _ = ticks.tick() => {}
                }
                let pool = index.pool_usage();
                metrics.db_pool(wharf_telemetry::PoolUsage {
                    open: pool.open,
                    idle: pool.idle,
                    max: pool.max,
                });
                if let Some(bus) = &bus {
                    match bus.backlog().await {
                        Ok(backlog) => metrics.consumer_backlog(wharf_telemetry::ConsumerBacklog {
                            pending: backlog.pending,
                            ack_pending: backlog.ack_pending,
                            redelivered: backlog.redelivered,
                        }),
                        // Readiness reports the outage; the gauge keeps its last value.
                        Err(error) => {
                            tracing::debug!(error = %error, "cannot sample the upload queue")
                        }
                    }
                }
            }
        },
    );
}

/// A probe of one dependency: true when it answers.
pub(crate) type Probe = Arc<dyn Fn() -> BoxFuture<'static, bool> + Send + Sync>;

/// One dependency a service needs to be ready: a name and a probe.
pub(crate) type ReadinessCheck = (&'static str, Probe);

/// Wraps a probe closure (the type annotation closures need to become a [`Probe`]).
pub(crate) fn probe<F>(probe: F) -> Probe
where
    F: Fn() -> BoxFuture<'static, bool> + Send + Sync + 'static,
{
    Arc::new(probe)
}

/// `/healthz` (alive), `/readyz` (every check passes) and `/metrics` (Prometheus), for
/// services without a gateway.
pub(crate) fn health_router(
    checks: Vec<ReadinessCheck>,
    metrics: wharf_telemetry::Metrics,
) -> Router {
    let checks = Arc::new(checks);
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(http::header::CONTENT_TYPE, metrics.content_type())],
                        metrics.encode(),
                    )
                }
            }),
        )
        .route(
            "/readyz",
            get(move || {
                let checks = Arc::clone(&checks);
                async move {
                    let mut failing = Vec::new();
                    for (name, check) in checks.iter() {
                        if !check().await {
                            failing.push(*name);
                        }
                    }
                    if failing.is_empty() {
                        (StatusCode::OK, "ready".to_owned()).into_response()
                    } else {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("not ready: {}", failing.join(", ")),
                        )
                            .into_response()
                    }
                }
            }),
        )
}

/// A router bound to its listener, not serving yet: connections wait in the backlog until
/// the supervisor starts it.
pub(crate) struct BoundServer {
    /// The address the listener is bound to (the real port when 0 was asked for).
    pub(crate) address: SocketAddr,
    handle: axum_server::Handle<SocketAddr>,
    serve: BoxFuture<'static, std::io::Result<()>>,
}

impl std::fmt::Debug for BoundServer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("BoundServer")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl BoundServer {
    /// Binds `address` for `router` (HTTPS when `tls` is given; plain HTTP/1 and HTTP/2
    /// otherwise, which gRPC clients use). With `limits`, a connection whose first request
    /// has not arrived within the header read timeout is closed, so is one whose later
    /// HTTP/1 request headers take longer (slowloris; hyper's own timer covers only headers
    /// it has started) and one with no request in flight for as long (HTTP/1 keep-alive and
    /// HTTP/2); a connection beyond the cap closes the oldest (issue #12, finding 2).
    pub(crate) fn bind(
        address: SocketAddr,
        tls: Option<RustlsConfig>,
        router: Router,
        limits: Option<ConnectionLimits>,
    ) -> anyhow::Result<BoundServer> {
        let listener = std::net::TcpListener::bind(address)
            .with_context(|| format!("failed to listen on {address}"))?;
        let address = listener.local_addr().context("listener has no address")?;
        let handle = axum_server::Handle::new();
        // The peer address is the client IP of the rate limits (unless a proxy header is
        // trusted).
        let app = router.into_make_service_with_connect_info::<SocketAddr>();
        // TCP_NODELAY: a response is written as headers, then body chunks; with Nagle's
        // algorithm the second write waits for the client's delayed ACK (~40 ms per
        // response).
        let server = with_header_timeouts(
            axum_server::from_tcp(listener).context("cannot serve on the listener")?,
            limits.map(|limits| limits.header_read_timeout),
        );
        let serve: BoxFuture<'static, std::io::Result<()>> = match (tls, limits) {
            (Some(config), Some(limits)) => Box::pin(
                server
                    .acceptor(LimitedAcceptor::new(
                        RustlsAcceptor::new(config).acceptor(DefaultAcceptor::new()),
                        limits,
                    ))
                    .handle(handle.clone())
                    .serve(app),
            ),
            (None, Some(limits)) => Box::pin(
                server
                    .acceptor(LimitedAcceptor::new(DefaultAcceptor::new(), limits))
                    .handle(handle.clone())
                    .serve(app),
            ),
            (Some(config), None) => Box::pin(
                server
                    .acceptor(RustlsAcceptor::new(config).acceptor(NoDelayAcceptor::new()))
                    .handle(handle.clone())
                    .serve(app),
            ),
            (None, None) => Box::pin(
                server
                    .acceptor(NoDelayAcceptor::new())
                    .handle(handle.clone())
                    .serve(app),
            ),
        };
        Ok(BoundServer {
            address,
            handle,
            serve,
        })
    }

    /// Adds the server to `supervisor` as task `name`: asked to stop, it stops accepting
    /// connections and lets in-flight requests finish (up to the grace time).
    pub(crate) fn supervise(self, supervisor: &mut Supervisor, name: &'static str) {
        supervisor.add(
            name,
            SHUTDOWN_GRACE + Duration::from_secs(5),
            "in-flight requests did not finish in time",
            move |stop: CancellationToken| async move {
                let BoundServer {
                    handle, mut serve, ..
                } = self;
                tokio::select! {
                    result = &mut serve => {
                        result.context("the server failed")?;
                        anyhow::bail!("the server stopped serving");
                    }
                    () = stop.cancelled() => {}
                }
                handle.graceful_shutdown(Some(SHUTDOWN_GRACE));
                serve.await.context("the server failed while draining")
            },
        );
    }
}

/// Bounds the wait for the first request on a connection and for later HTTP/1 request heads,
/// and pings HTTP/2 peers so a vanished one is noticed.
fn with_header_timeouts<Acceptor>(
    mut server: axum_server::Server<SocketAddr, Acceptor>,
    header_read_timeout: Option<Duration>,
) -> axum_server::Server<SocketAddr, Acceptor> {
    server
        .http_builder()
        .http1()
        .header_read_timeout(header_read_timeout);
    if header_read_timeout.is_some() {
        server
            .http_builder()
            .http2()
            .keep_alive_interval(Some(HTTP2_KEEP_ALIVE_INTERVAL))
            .keep_alive_timeout(HTTP2_KEEP_ALIVE_TIMEOUT);
    }
    server.first_request_timeout(header_read_timeout)
}
