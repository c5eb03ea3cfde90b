//! The scaled mode: `wharf gateway`, `wharf verifier` and `wharf worker` as separate
//! processes, any number of each, sharing a database (PostgreSQL), a bus (NATS JetStream) and
//! an object store (S3). The code paths are the embedded mode's; only the adapters differ.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use tower::ServiceExt;
use wharf_app::server::shutdown_signal;
use wharf_app::{App, GatewayProcessSettings, VerifierProcessSettings, WorkerProcessSettings};
use wharf_gateway::{TransportError, VerifierTransport};
use wharf_proto::v1::verifier_client::VerifierClient;

use crate::IndexArgs;
use crate::args::{
    ConfigArgs, NatsArgs, StoreArgs, TlsArgs, TokenKeyArgs, UploadArgs, VerifierPolicyArgs,
    WorkerPolicyArgs,
};

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
    profile: crate::profile::ProfileArgs,
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
    profile: crate::profile::ProfileArgs,
    #[command(flatten)]
    index: IndexArgs,
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    policy: VerifierPolicyArgs,
    #[command(flatten)]
    token_key: TokenKeyArgs,
    #[command(flatten)]
    tls: TlsArgs,
    /// PEM CA bundle: with --tls-cert, only clients (gateways) presenting a certificate it
    /// signed may call this verifier (mutual TLS).
    #[arg(long, env = "WHARF_TLS_CLIENT_CA", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Listen beyond loopback without --tls-client-ca: only when the network itself admits
    /// nobody but the gateways (a NetworkPolicy, a private network).
    #[arg(long, env = "WHARF_INSECURE_NO_CLIENT_AUTH")]
    insecure_no_client_auth: bool,
    #[command(flatten)]
    grant_key: crate::trust::UploadGrantKeyArgs,
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
    /// Address of the health listener (/healthz, /readyz, /metrics). The default port 0 takes
    /// a free port, printed at start (`wharf worker is running address=…`), so several
    /// workers run on one host without flags.
    #[arg(long, env = "WHARF_LISTEN", default_value = "127.0.0.1:0")]
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
    #[command(flatten)]
    grant_trust: crate::trust::UploadGrantTrustArgs,
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

/// Runs `wharf gateway` until SIGINT or SIGTERM, or until its server fails.
pub(crate) async fn run_gateway(args: GatewayArgs) -> anyhow::Result<()> {
    args.config.announce();
    args.profile.announce();
    let settings = GatewayProcessSettings {
        http: args.upload.listener(args.listen, args.tls.load()?),
        gateway: args.upload.settings(args.profile.profile)?,
        verifier: args.verifier.client()?,
        verifier_url: args.verifier.url.clone(),
        store: args.store.settings(&args.index.data_dir),
        index: args.index.settings(),
        bus: args.nats.settings(),
    };
    App::gateway(settings).await?.run(shutdown_signal()).await
}

/// Runs `wharf verifier` until SIGINT or SIGTERM, or until its server fails.
pub(crate) async fn run_verifier(args: VerifierArgs) -> anyhow::Result<()> {
    args.config.announce();
    args.profile.announce();
    crate::trust::check_verifier_exposure(
        args.listen,
        args.tls_client_ca.is_some(),
        args.insecure_no_client_auth,
    )?;
    let grant_key = args.grant_key.signer()?;
    tracing::info!(key_id = grant_key.key_id(), "signing upload grants");
    let mut verifier = args.policy.settings(args.profile.profile)?;
    verifier.upload_grants = Some(grant_key);
    let mut settings = VerifierProcessSettings {
        listen: args.listen,
        verifier,
        tls: args
            .tls
            .load_requiring_clients(args.tls_client_ca.as_deref())?,
        index: args.index.settings(),
        bus: args.nats.settings(),
    };
    settings.verifier.token_keys = args.token_key.load(None)?;
    App::verifier(settings).await?.run(shutdown_signal()).await
}

/// Runs `wharf worker` until SIGINT or SIGTERM, or until the worker or its health server
/// fails.
pub(crate) async fn run_worker(args: WorkerArgs) -> anyhow::Result<()> {
    args.config.announce();
    let upload_grant_keys = args.grant_trust.keys()?;
    tracing::info!(key_ids = ?upload_grant_keys.key_ids(), "accepting upload grants");
    let settings = WorkerProcessSettings {
        listen: args.listen,
        worker: wharf_worker::WorkerSettings {
            upload_grant_keys,
            ..args.policy.settings()?
        },
        store: args.store.settings(&args.index.data_dir),
        index: args.index.settings(),
        bus: args.nats.settings(),
    };
    App::worker(settings).await?.run(shutdown_signal()).await
}
