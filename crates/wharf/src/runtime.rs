//! What every service process needs: the shutdown signal, serving a router on a listener
//! (plain or TLS, with graceful shutdown), and `/healthz` + `/readyz` + `/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum_server::accept::NoDelayAcceptor;
use axum_server::tls_rustls::RustlsAcceptor;
use futures::future::BoxFuture;

/// How long a connection may take to send its request headers, for the health endpoints of
/// the worker (the gateway's is a flag; the verifier's gRPC clients hold idle connections).
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long shutdown waits for in-flight work before giving up on it.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(60);

/// Resolves when SIGINT or SIGTERM arrives.
pub(crate) async fn shutdown_signal() {
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

/// Samples the index pool's connections and, in a process that runs storage workers
/// (`bus`), the upload queue's backlog into `metrics`: at once, then every few seconds, for
/// as long as the runtime lives.
pub(crate) fn sample_gauges(
    metrics: wharf_telemetry::Metrics,
    index: Arc<dyn wharf_index::Index>,
    bus: Option<Arc<dyn wharf_bus::UploadBus>>,
) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(GAUGE_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
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
                    Err(error) => tracing::debug!(error = %error, "cannot sample the upload queue"),
                }
            }
        }
    });
}

/// One dependency a service needs to be ready: a name and a probe.
pub(crate) type ReadinessCheck = (
    &'static str,
    Arc<dyn Fn() -> BoxFuture<'static, bool> + Send + Sync>,
);

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

/// A router being served; stop it with [`Serving::stop`].
#[derive(Debug)]
pub(crate) struct Serving {
    pub(crate) address: SocketAddr,
    handle: axum_server::Handle<SocketAddr>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Serving {
    /// Stops accepting connections, lets in-flight requests finish (up to the grace time)
    /// and waits for the server to end.
    pub(crate) async fn stop(self, what: &str) {
        self.handle.graceful_shutdown(Some(SHUTDOWN_GRACE));
        match tokio::time::timeout(SHUTDOWN_GRACE + Duration::from_secs(5), self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => {
                tracing::warn!(error = %error, what, "server stopped with an error")
            }
            Ok(Err(error)) => tracing::warn!(error = %error, what, "server task failed"),
            Err(_) => tracing::warn!(what, "in-flight requests did not finish in time"),
        }
    }
}

/// Binds `address` and serves `router` on it (HTTPS when `tls` is given; plain HTTP/1 and
/// HTTP/2 otherwise, which gRPC clients use). With `header_read_timeout`, a connection whose
/// first request has not arrived in time is closed, and so is one whose later HTTP/1 request
/// headers take longer (slowloris; hyper's own timer covers only headers it has started).
pub(crate) fn serve(
    address: SocketAddr,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    router: Router,
    header_read_timeout: Option<Duration>,
) -> anyhow::Result<Serving> {
    let listener = std::net::TcpListener::bind(address)
        .with_context(|| format!("failed to listen on {address}"))?;
    let address = listener.local_addr().context("listener has no address")?;
    let handle = axum_server::Handle::new();
    // The peer address is the client IP of the rate limits (unless a proxy header is trusted).
    let app = router.into_make_service_with_connect_info::<SocketAddr>();
    // TCP_NODELAY: a response is written as headers, then body chunks; with Nagle's
    // algorithm the second write waits for the client's delayed ACK (~40 ms per response).
    let server = with_header_timeouts(
        axum_server::from_tcp(listener).context("cannot serve on the listener")?,
        header_read_timeout,
    );
    let task = match tls {
        Some(config) => tokio::spawn(
            server
                .acceptor(RustlsAcceptor::new(config).acceptor(NoDelayAcceptor::new()))
                .handle(handle.clone())
                .serve(app),
        ),
        None => tokio::spawn(
            server
                .acceptor(NoDelayAcceptor::new())
                .handle(handle.clone())
                .serve(app),
        ),
    };
    Ok(Serving {
        address,
        handle,
        task,
    })
}

/// Bounds the wait for the first request on a connection and for later HTTP/1 request heads.
fn with_header_timeouts<Acceptor>(
    mut server: axum_server::Server<SocketAddr, Acceptor>,
    header_read_timeout: Option<Duration>,
) -> axum_server::Server<SocketAddr, Acceptor> {
    server
        .http_builder()
        .http1()
        .header_read_timeout(header_read_timeout);
    server.first_request_timeout(header_read_timeout)
}
