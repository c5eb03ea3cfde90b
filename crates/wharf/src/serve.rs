//! `wharf serve`: the embedded mode, every service in one process.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use wharf_bus::{InProcessBus, UploadBus};
use wharf_gateway::{Gateway, TransportError, VerifierGrpc, VerifierTransport};
use wharf_proto::v1::verifier_client::VerifierClient;
use wharf_proto::v1::verifier_server::VerifierServer;
use wharf_telemetry::{GrpcClientTrace, GrpcServerTrace};
use wharf_verifier::VerifierService;
use wharf_worker::StorageWorker;

use crate::IndexArgs;
use crate::args::{ConfigArgs, TlsArgs, UploadArgs, VerifierPolicyArgs, WorkerPolicyArgs};
use crate::runtime::{self, shutdown_signal};

/// Flags of `wharf serve`.
#[derive(Debug, Clone, Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "WHARF_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[command(flatten)]
    config: ConfigArgs,
    #[command(flatten)]
    index: IndexArgs,
    #[command(flatten)]
    upload: UploadArgs,
    #[command(flatten)]
    tls: TlsArgs,
    #[command(flatten)]
    verifier: VerifierPolicyArgs,
    #[command(flatten)]
    worker: WorkerPolicyArgs,
}

/// Builds the gRPC client of an in-process verifier: real protobuf messages and the real
/// service, without a socket.
fn in_process_verifier(service: VerifierService) -> VerifierGrpc {
    // The same tracing as over the network: the client opens its span and injects
    // `traceparent`, the server opens its span under it.
    let server = ServiceExt::<http::Request<tonic::body::Body>>::map_err(
        GrpcServerTrace::new(VerifierServer::new(service)),
        |never: Infallible| -> TransportError { match never {} },
    );
    VerifierClient::new(VerifierTransport::new(GrpcClientTrace::new(
        server,
        "gateway.verifier",
    )))
}

pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<()> {
    args.config.announce();
    // Every flag is checked before anything is opened or bound.
    let mut gateway_settings = args.upload.settings()?;
    let verifier_settings = args.verifier.settings()?;
    let worker_settings = args.worker.settings()?;
    if worker_settings.staging_max_age <= gateway_settings.outcome_timeout {
        return Err(crate::ConfigError(
            "--staging-max-age must exceed --upload-timeout".to_owned(),
        )
        .into());
    }
    let tls = args.tls.load()?;
    if tls.is_some() {
        gateway_settings.default_scheme = "https";
    }

    let index = args.index.open().await?;
    let files_dir = args.index.data_dir.join("files");
    let blobs = wharf_blob::BlobStore::local(&files_dir)
        .with_context(|| format!("failed to open the file store {}", files_dir.display()))?;
    // Nothing is in flight yet: staged bytes left by a previous run belong to uploads whose
    // clients never got an answer, and will retry.
    let purged = blobs
        .purge_staging()
        .await
        .context("failed to clear stale staging")?;
    if purged > 0 {
        tracing::info!(purged, "removed stale staged uploads");
    }
    let bus: Arc<dyn UploadBus> = Arc::new(InProcessBus::new());

    // One registry for the three services of this process, served at the gateway's /metrics.
    let metrics = wharf_telemetry::Metrics::new();
    let verifier =
        VerifierService::new_with_metrics(Arc::clone(&index), verifier_settings, metrics.clone())
            .context("failed to set up the verifier")?
            .with_events(Arc::clone(&bus));
    let gateway = Gateway::new(
        in_process_verifier(verifier),
        Arc::clone(&index),
        blobs.clone(),
        Arc::clone(&bus),
        gateway_settings,
    )
    .with_metrics(metrics.clone());
    runtime::sample_gauges(metrics.clone(), Arc::clone(&index), Some(Arc::clone(&bus)));
    let worker = StorageWorker::new(Arc::clone(&index), blobs, Arc::clone(&bus), worker_settings)
        .with_metrics(metrics);

    let stop_worker = CancellationToken::new();
    let worker_task = tokio::spawn(worker.run(stop_worker.clone()));
    let serving = runtime::serve(
        args.listen,
        tls,
        gateway.router(),
        Some(args.upload.header_read_timeout),
    )?;
    tracing::info!(address = %serving.address, data_dir = %args.index.data_dir.display(), "wharf is serving");

    shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    // HTTP first: in-flight uploads still need the worker to answer them.
    serving.stop("gateway").await;
    stop_worker.cancel();
    match tokio::time::timeout(runtime::SHUTDOWN_GRACE, worker_task).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(error))) => {
            tracing::warn!(error = %error, "storage worker stopped with an error")
        }
        Ok(Err(error)) => tracing::warn!(error = %error, "storage worker task failed"),
        Err(_) => tracing::warn!("the storage worker did not finish in time"),
    }
    tracing::info!("wharf stopped");
    Ok(())
}
