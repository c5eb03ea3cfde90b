//! The scaled mode: `wharf gateway`, `wharf verifier` and `wharf worker` as separate
//! processes, any number of each, sharing a database (PostgreSQL), a bus (NATS JetStream) and
//! an object store (S3). The code paths are the embedded mode's; only the adapters differ.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use futures::FutureExt;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use wharf_gateway::{Gateway, TransportError, VerifierTransport};
use wharf_proto::v1::verifier_client::VerifierClient;
use wharf_proto::v1::verifier_server::VerifierServer;
use wharf_telemetry::GrpcServerTrace;
use wharf_verifier::VerifierService;
use wharf_worker::StorageWorker;

use crate::IndexArgs;
use crate::args::{
    ConfigArgs, NatsArgs, StoreArgs, TlsArgs, UploadArgs, VerifierPolicyArgs, WorkerPolicyArgs,
};
use crate::runtime::{self, ReadinessCheck, health_router, shutdown_signal};

/// Flags of `wharf gateway`.
#[derive(Debug, Clone, Args)]
pub(crate) struct GatewayArgs {
    /// Address to listen on (the public HTTP API).
    #[arg(long, env = "WHARF_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[command(flatten)]
    verifier: VerifierClientArgs,
    #[command(flatten)]
    config: ConfigArgs,
    #[command(flatten)]
    index: IndexArgs,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    upload: UploadArgs,
    #[command(flatten)]
    tls: TlsArgs,
}

/// Flags of `wharf verifier`.
#[derive(Debug, Clone, Args)]
pub(crate) struct VerifierArgs {
    /// Address to listen on (gRPC, plus /healthz and /readyz).
    #[arg(long, env = "WHARF_LISTEN", default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    #[command(flatten)]
    config: ConfigArgs,
    #[command(flatten)]
    index: IndexArgs,
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    policy: VerifierPolicyArgs,
    #[command(flatten)]
    tls: TlsArgs,
    /// PEM CA bundle: with --tls-cert, only clients (gateways) presenting a certificate it
    /// signed may call this verifier (mutual TLS).
    #[arg(long, env = "WHARF_TLS_CLIENT_CA", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
}

/// How a gateway reaches its verifier.
#[derive(Debug, Clone, Args)]
pub(crate) struct VerifierClientArgs {
    /// The verifier's gRPC URL; `https://` for TLS.
    #[arg(
        long = "verifier",
        env = "WHARF_VERIFIER",
        default_value = "http://127.0.0.1:8081"
    )]
    url: String,
    /// PEM CA bundle that signed the verifier's certificate (default: the system's roots).
    #[arg(long, env = "WHARF_VERIFIER_CA")]
    verifier_ca: Option<PathBuf>,
    /// PEM client certificate for a verifier that requires one (with --verifier-client-key).
    #[arg(
        long,
        env = "WHARF_VERIFIER_CLIENT_CERT",
        requires = "verifier_client_key"
    )]
    verifier_client_cert: Option<PathBuf>,
    /// PEM private key of --verifier-client-cert.
    #[arg(
        long,
        env = "WHARF_VERIFIER_CLIENT_KEY",
        requires = "verifier_client_cert"
    )]
    verifier_client_key: Option<PathBuf>,
}

/// Flags of `wharf worker`.
#[derive(Debug, Clone, Args)]
pub(crate) struct WorkerArgs {
    /// Address to listen on (/healthz and /readyz).
    #[arg(long, env = "WHARF_LISTEN", default_value = "127.0.0.1:8082")]
    listen: SocketAddr,
    #[command(flatten)]
    config: ConfigArgs,
    #[command(flatten)]
    index: IndexArgs,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    policy: WorkerPolicyArgs,
}

impl VerifierClientArgs {
    /// A gRPC client of the verifier (connected lazily, so the gateway starts, and stays up,
    /// while the verifier is away; requests then get a clean 503).
    fn client(&self) -> anyhow::Result<VerifierClient<VerifierTransport>> {
        let url = &self.url;
        let mut endpoint = tonic::transport::Endpoint::from_shared(url.clone())
            .map_err(|error| crate::ConfigError(format!("--verifier {url}: {error}")))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30));
        let identity = self
            .verifier_client_cert
            .as_deref()
            .zip(self.verifier_client_key.as_deref());
        if url.starts_with("https://") {
            let tls = crate::tls::verifier_client_config(self.verifier_ca.as_deref(), identity)?;
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|error| crate::ConfigError(format!("--verifier {url}: {error}")))?;
        } else if self.verifier_ca.is_some() || identity.is_some() {
            return Err(crate::ConfigError(format!(
                "--verifier-ca and --verifier-client-cert need an https:// verifier, got '{url}'"
            ))
            .into());
        }
        let channel = endpoint.connect_lazy();
        let transport = ServiceExt::<http::Request<tonic::body::Body>>::map_err(channel, |error| {
            TransportError(Box::new(error))
        });
        // Each call is a client span and carries its trace context (`traceparent`).
        let transport = wharf_telemetry::GrpcClientTrace::new(transport, "gateway.verifier");
        Ok(VerifierClient::new(VerifierTransport::new(transport)))
    }
}

fn check<F>(probe: F) -> Arc<dyn Fn() -> futures::future::BoxFuture<'static, bool> + Send + Sync>
where
    F: Fn() -> futures::future::BoxFuture<'static, bool> + Send + Sync + 'static,
{
    Arc::new(probe)
}

pub(crate) async fn run_gateway(args: GatewayArgs) -> anyhow::Result<()> {
    args.config.announce();
    let mut settings = args.upload.settings()?;
    let tls = args.tls.load()?;
    if tls.is_some() {
        settings.default_scheme = "https";
    }
    let verifier = args.verifier.client()?;
    let index = args.index.open().await?;
    let blobs = args.store.open(&args.index.data_dir)?;
    let bus = args.nats.connect().await?;
    let metrics = wharf_telemetry::Metrics::new();
    runtime::sample_gauges(metrics.clone(), Arc::clone(&index), None);
    let gateway = Gateway::new(verifier, index, blobs, bus, settings).with_metrics(metrics);
    let serving = runtime::serve(
        args.listen,
        tls,
        gateway.router(),
        Some(args.upload.header_read_timeout),
    )?;
    tracing::info!(address = %serving.address, verifier = %args.verifier.url, "wharf gateway is serving");
    shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    serving.stop("gateway").await;
    tracing::info!("wharf gateway stopped");
    Ok(())
}

pub(crate) async fn run_verifier(args: VerifierArgs) -> anyhow::Result<()> {
    args.config.announce();
    let settings = args.policy.settings()?;
    let index = args.index.open().await?;
    let bus = args.nats.connect().await?;
    let metrics = wharf_telemetry::Metrics::new();
    runtime::sample_gauges(metrics.clone(), Arc::clone(&index), None);
    let service = VerifierService::new_with_metrics(Arc::clone(&index), settings, metrics.clone())
        .context("failed to set up the verifier")?
        .with_events(bus);
    let ready_index = Arc::clone(&index);
    let health = health_router(
        vec![(
            "index",
            check(move || {
                let index = Arc::clone(&ready_index);
                async move { index.ping().await.is_ok() }.boxed()
            }),
        )],
        metrics,
    );
    // Each call joins the caller's trace (`traceparent` in the request metadata).
    let router = tonic::service::Routes::new(GrpcServerTrace::new(VerifierServer::new(service)))
        .into_axum_router()
        .merge(health);
    let tls = args
        .tls
        .load_requiring_clients(args.tls_client_ca.as_deref())?;
    let serving = runtime::serve(args.listen, tls, router, None)?;
    tracing::info!(address = %serving.address, "wharf verifier is serving");
    shutdown_signal().await;
    serving.stop("verifier").await;
    tracing::info!("wharf verifier stopped");
    Ok(())
}

pub(crate) async fn run_worker(args: WorkerArgs) -> anyhow::Result<()> {
    args.config.announce();
    let settings = args.policy.settings()?;
    let index = args.index.open().await?;
    let blobs = args.store.open(&args.index.data_dir)?;
    let bus = args.nats.connect().await?;
    let checks: Vec<ReadinessCheck> = vec![
        ("index", {
            let index = Arc::clone(&index);
            check(move || {
                let index = Arc::clone(&index);
                async move { index.ping().await.is_ok() }.boxed()
            })
        }),
        ("store", {
            let blobs = blobs.clone();
            check(move || {
                let blobs = blobs.clone();
                async move { blobs.ping().await.is_ok() }.boxed()
            })
        }),
        ("bus", {
            let bus = Arc::clone(&bus);
            check(move || {
                let bus = Arc::clone(&bus);
                async move { bus.ping().await.is_ok() }.boxed()
            })
        }),
    ];
    let metrics = wharf_telemetry::Metrics::new();
    runtime::sample_gauges(metrics.clone(), Arc::clone(&index), Some(Arc::clone(&bus)));
    let worker = StorageWorker::new(index, blobs, bus, settings).with_metrics(metrics.clone());
    let stop = CancellationToken::new();
    let worker_task = tokio::spawn(worker.run(stop.clone()));
    let serving = runtime::serve(
        args.listen,
        None,
        health_router(checks, metrics),
        Some(runtime::HEADER_READ_TIMEOUT),
    )?;
    tracing::info!(address = %serving.address, "wharf worker is running");
    shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight uploads");
    // Stop pulling; uploads in flight finish and are acknowledged (or redelivered to
    // another worker if this one is killed before).
    stop.cancel();
    match tokio::time::timeout(runtime::SHUTDOWN_GRACE, worker_task).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(error))) => {
            tracing::warn!(error = %error, "storage worker stopped with an error")
        }
        Ok(Err(error)) => tracing::warn!(error = %error, "storage worker task failed"),
        Err(_) => {
            tracing::warn!("in-flight uploads did not finish in time; they will be redelivered")
        }
    }
    serving.stop("worker health").await;
    tracing::info!("wharf worker stopped");
    Ok(())
}
