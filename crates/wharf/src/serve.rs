//! `wharf serve`: the embedded mode, every service in one process.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use wharf_blob::BlobStore;
use wharf_bus::{InProcessBus, UploadBus};
use wharf_gateway::{Gateway, GatewaySettings, TransportError, VerifierGrpc, VerifierTransport};
use wharf_proto::v1::verifier_client::VerifierClient;
use wharf_proto::v1::verifier_server::VerifierServer;
use wharf_verifier::{OidcSettings, VerifierService, VerifierSettings};
use wharf_worker::{StorageWorker, WorkerSettings};

use crate::IndexArgs;
use crate::units::{parse_duration, parse_size};

/// How long shutdown waits for in-flight uploads before giving up on them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(60);

/// A configuration error: reported with exit code 64 before anything listens.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct ConfigError(pub(crate) String);

/// Flags of `wharf serve`.
#[derive(Debug, Clone, Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "WHARF_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[command(flatten)]
    index: IndexArgs,
    /// Base URL of this registry as clients reach it, for absolute links (default: from each
    /// request's Host header).
    #[arg(long, env = "WHARF_PUBLIC_URL")]
    public_url: Option<String>,
    /// Largest accepted distribution file (PyPI: 100MiB).
    #[arg(long, env = "WHARF_MAX_FILE_SIZE", default_value = "100MiB", value_parser = parse_size)]
    max_file_size: u64,
    /// Largest total size of one project (PyPI: 10GiB).
    #[arg(long, env = "WHARF_MAX_PROJECT_SIZE", default_value = "10GiB", value_parser = parse_size)]
    max_project_size: u64,
    /// Refuse new files in releases older than this (PyPI: 14d); off when unset.
    #[arg(long, env = "WHARF_CLOSE_RELEASES_AFTER", value_parser = parse_duration)]
    close_releases_after: Option<Duration>,
    /// Comma-separated project names nobody may create.
    #[arg(long, env = "WHARF_PROHIBITED_NAMES", value_delimiter = ',')]
    prohibited_names: Vec<String>,
    /// Uploads the storage worker processes at the same time.
    #[arg(long, env = "WHARF_WORKER_CONCURRENCY", default_value_t = 2)]
    worker_concurrency: usize,
    /// PEM certificate chain for HTTPS (with --tls-key); plain HTTP when unset.
    #[arg(long, env = "WHARF_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// PEM private key for HTTPS (with --tls-cert).
    #[arg(long, env = "WHARF_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// The audience OIDC tokens must carry for trusted publishing (PyPI: `pypi`). Give two
    /// registries side by side different audiences so they refuse each other's tokens.
    #[arg(long, env = "WHARF_OIDC_AUDIENCE", default_value = "wharf")]
    oidc_audience: String,
    /// Lifetime of tokens minted by trusted publishing, unless a publisher sets its own.
    #[arg(long, env = "WHARF_OIDC_TOKEN_TTL", default_value = "15m", value_parser = parse_duration)]
    oidc_token_ttl: Duration,
    /// The longest lifetime a publisher may give its minted tokens.
    #[arg(long, env = "WHARF_OIDC_MAX_TOKEN_TTL", default_value = "6h", value_parser = parse_duration)]
    oidc_max_token_ttl: Duration,
    /// Turn trusted publishing off (the /_/oidc endpoints then refuse).
    #[arg(long, env = "WHARF_NO_TRUSTED_PUBLISHING")]
    no_trusted_publishing: bool,
    /// How long an upload waits for the storage worker's answer.
    #[arg(long, env = "WHARF_UPLOAD_TIMEOUT", default_value = "300s", value_parser = parse_duration)]
    upload_timeout: Duration,
}

/// Builds the gRPC client of an in-process verifier: real protobuf messages and the real
/// service, without a socket.
fn in_process_verifier(service: VerifierService) -> VerifierGrpc {
    let server = ServiceExt::<http::Request<tonic::body::Body>>::map_err(
        VerifierServer::new(service),
        |never: Infallible| -> TransportError { match never {} },
    );
    VerifierClient::new(VerifierTransport::new(server))
}

/// Resolves when SIGINT or SIGTERM arrives.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
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
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<()> {
    if let Some(url) = &args.public_url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(ConfigError(format!(
            "--public-url must start with http:// or https://, got '{url}'"
        ))
        .into());
    }
    if args.worker_concurrency == 0 {
        return Err(ConfigError("--worker-concurrency must be at least 1".to_owned()).into());
    }

    if args.oidc_token_ttl > args.oidc_max_token_ttl {
        return Err(ConfigError(
            "--oidc-token-ttl must not exceed --oidc-max-token-ttl".to_owned(),
        )
        .into());
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(
            axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                .await
                .map_err(|error| {
                    ConfigError(format!(
                        "cannot load the TLS certificate {} and key {}: {error}",
                        cert.display(),
                        key.display()
                    ))
                })?,
        ),
        _ => None,
    };

    let index = args.index.open().await?;
    let files_dir = args.index.data_dir.join("files");
    let blobs = BlobStore::local(&files_dir)
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

    let verifier = VerifierService::new(
        Arc::clone(&index),
        VerifierSettings {
            prohibited_names: args
                .prohibited_names
                .iter()
                .map(|name| wharf_core::name::normalize(name))
                .collect(),
            oidc: OidcSettings {
                enabled: !args.no_trusted_publishing,
                audience: args.oidc_audience.clone(),
                default_token_ttl: args.oidc_token_ttl,
                max_token_ttl: args.oidc_max_token_ttl,
                ..OidcSettings::default()
            },
        },
    )
    .context("failed to set up the verifier")?
    .with_events(Arc::clone(&bus));
    let gateway = Gateway::new(
        in_process_verifier(verifier),
        Arc::clone(&index),
        blobs.clone(),
        Arc::clone(&bus),
        GatewaySettings {
            max_file_size: args.max_file_size,
            max_project_size: args.max_project_size,
            outcome_timeout: args.upload_timeout,
            public_url: args.public_url.clone(),
            ..GatewaySettings::default()
        },
    );
    let worker = StorageWorker::new(
        Arc::clone(&index),
        blobs,
        Arc::clone(&bus),
        WorkerSettings {
            concurrency: args.worker_concurrency,
            closed_release_after: args.close_releases_after,
            ..WorkerSettings::default()
        },
    );

    let listener = std::net::TcpListener::bind(args.listen)
        .with_context(|| format!("failed to listen on {}", args.listen))?;
    let address = listener.local_addr().context("listener has no address")?;

    let stop_worker = CancellationToken::new();
    let worker_task = tokio::spawn(worker.run(stop_worker.clone()));
    let http = axum_server::Handle::new();
    let mut router = gateway.router();
    if tls.is_some() {
        // The gateway builds absolute links (simple index file URLs) with the scheme of
        // X-Forwarded-Proto, else http: on a TLS listener it is https, whatever a client says.
        router = router.layer(tower::util::MapRequestLayer::new(
            |mut request: http::Request<axum::body::Body>| {
                request
                    .headers_mut()
                    .insert("x-forwarded-proto", http::HeaderValue::from_static("https"));
                request
            },
        ));
    }
    let app = router.into_make_service();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let server_task = match tls {
        Some(config) => tokio::spawn(
            axum_server::from_tcp_rustls(listener, config)
                .context("cannot serve on the listener")?
                .handle(http.clone())
                .serve(app),
        ),
        None => tokio::spawn(
            axum_server::from_tcp(listener)
                .context("cannot serve on the listener")?
                .handle(http.clone())
                .serve(app),
        ),
    };
    tracing::info!(%address, scheme, data_dir = %args.index.data_dir.display(), "wharf is serving");

    shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    // HTTP first: in-flight uploads still need the worker to answer them.
    http.graceful_shutdown(Some(SHUTDOWN_GRACE));
    match tokio::time::timeout(SHUTDOWN_GRACE, server_task).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(error))) => tracing::warn!(error = %error, "http server stopped with an error"),
        Ok(Err(error)) => tracing::warn!(error = %error, "http server task failed"),
        Err(_) => tracing::warn!("in-flight requests did not finish in time; abandoning them"),
    }
    stop_worker.cancel();
    match tokio::time::timeout(SHUTDOWN_GRACE, worker_task).await {
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
