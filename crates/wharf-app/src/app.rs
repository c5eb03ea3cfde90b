//! [`App`]: one Wharf process (the embedded mode, or one scaled service) built from typed
//! settings, its listener bound, its tasks run under one [`Supervisor`].

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum_server::tls_rustls::RustlsConfig;
use futures::FutureExt;
use tower::ServiceExt;
use wharf_blob::BlobStore;
use wharf_bus::UploadBus;
use wharf_gateway::{Gateway, GatewaySettings, TransportError, VerifierGrpc, VerifierTransport};
use wharf_index::prelude::*;
use wharf_proto::v1::verifier_client::VerifierClient;
use wharf_proto::v1::verifier_server::VerifierServer;
use wharf_telemetry::{GrpcClientTrace, GrpcServerTrace};
use wharf_verifier::{VerifierService, VerifierSettings};
use wharf_worker::{StorageWorker, WorkerSettings};

use crate::adapters::{
    BusSettings, ConfigError, IndexSettings, StoreSettings, open_bus, open_index, open_store,
};
use crate::connections::ConnectionLimits;
use crate::server::{
    BoundServer, HEADER_READ_TIMEOUT, ReadinessCheck, SHUTDOWN_GRACE, add_gauges, health_router,
    probe,
};
use crate::supervisor::Supervisor;

/// The gateway's public HTTP listener (embedded and scaled alike): where, whether over TLS,
/// and how long and how many connections it holds.
#[derive(Debug, Clone)]
pub struct PublicListener {
    /// Address to listen on (port 0: any free port).
    pub listen: SocketAddr,
    /// HTTPS, or plain HTTP when `None`.
    pub tls: Option<RustlsConfig>,
    /// Close a connection whose request headers are not complete after this long, or with
    /// no request in flight for as long.
    pub header_read_timeout: Duration,
    /// Connections served at once (default: derived from the file limit).
    pub max_connections: Option<usize>,
}

impl PublicListener {
    /// The scheme of links built without a public URL.
    fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// Binds the gateway's router here, with the connection limits.
    fn bind(self, router: axum::Router) -> anyhow::Result<BoundServer> {
        let limits = ConnectionLimits::new(self.header_read_timeout, self.max_connections);
        BoundServer::bind(self.listen, self.tls, router, Some(limits))
    }
}

/// Settings of the embedded mode (`wharf serve`): every service in one process.
#[derive(Debug, Clone)]
pub struct EmbeddedSettings {
    /// The public HTTP listener.
    pub http: PublicListener,
    /// Where the index lives.
    pub index: IndexSettings,
    /// Where published files live.
    pub store: StoreSettings,
    /// The bus between the gateway and the worker (in-process unless a test asks for NATS).
    pub bus: BusSettings,
    /// The gateway's limits and links.
    pub gateway: GatewaySettings,
    /// The verifier's policy.
    pub verifier: VerifierSettings,
    /// How the storage worker works.
    pub worker: WorkerSettings,
}

/// Settings of a scaled gateway (`wharf gateway`).
#[derive(Debug, Clone)]
pub struct GatewayProcessSettings {
    /// The public HTTP listener.
    pub http: PublicListener,
    /// The gRPC client of the verifier (connected lazily).
    pub verifier: VerifierGrpc,
    /// How the verifier is named in the logs.
    pub verifier_url: String,
    /// Where the index lives.
    pub index: IndexSettings,
    /// Where published files live.
    pub store: StoreSettings,
    /// The bus to the workers.
    pub bus: BusSettings,
    /// The gateway's limits and links.
    pub gateway: GatewaySettings,
}

/// Settings of a scaled verifier (`wharf verifier`).
#[derive(Debug, Clone)]
pub struct VerifierProcessSettings {
    /// Address to listen on (gRPC, plus /healthz and /readyz).
    pub listen: SocketAddr,
    /// Where the index lives.
    pub index: IndexSettings,
    /// The bus the verifier publishes its public events on.
    pub bus: BusSettings,
    /// HTTPS (possibly requiring client certificates), or plain HTTP/2 when `None`.
    pub tls: Option<RustlsConfig>,
    /// The verifier's policy.
    pub verifier: VerifierSettings,
}

/// Settings of a scaled storage worker (`wharf worker`).
#[derive(Debug, Clone)]
pub struct WorkerProcessSettings {
    /// Address to listen on (/healthz and /readyz).
    pub listen: SocketAddr,
    /// Where the index lives.
    pub index: IndexSettings,
    /// Where published files live.
    pub store: StoreSettings,
    /// The bus the worker consumes staged uploads from.
    pub bus: BusSettings,
    /// How the storage worker works.
    pub worker: WorkerSettings,
}

/// One Wharf process: built (adapters opened, listener bound), then run until a shutdown
/// signal or the first task that ends on its own.
pub struct App {
    local_addr: SocketAddr,
    supervisor: Supervisor,
    /// What the logs call this process ("wharf", "wharf gateway", …).
    title: &'static str,
    /// Logs the start line once the tasks run (the binary's log lines, field for field).
    announce: Box<dyn FnOnce() + Send>,
    /// Logged when the shutdown signal arrives (the verifier says nothing).
    stopping: Option<&'static str>,
    parts: Parts,
}

impl std::fmt::Debug for App {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("App")
            .field("local_addr", &self.local_addr)
            .field("title", &self.title)
            .field("supervisor", &self.supervisor)
            .field("parts", &self.parts)
            .finish_non_exhaustive()
    }
}

/// The adapters an embedded App opened, for the tests that drive it.
#[derive(Debug, Clone)]
pub struct Parts {
    /// The index.
    pub index: Arc<dyn Index>,
    /// The file store.
    pub blobs: Option<BlobStore>,
    /// The bus.
    pub bus: Option<Arc<dyn UploadBus>>,
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

/// Refuses to start when token rows are sealed under a token key that is not configured,
/// and seals the rows an older Wharf stored in the clear (issue #12, finding 12).
async fn prepare_token_keys(index: &dyn Index, verifier: &VerifierSettings) -> anyhow::Result<()> {
    match wharf_verifier::prepare_token_keys(index, &verifier.token_keys).await {
        Ok(0) => Ok(()),
        Ok(sealed) => {
            tracing::info!(
                sealed,
                "sealed the root keys of API tokens stored in the clear"
            );
            Ok(())
        }
        Err(error @ wharf_verifier::SealingError::UnconfiguredKeys { .. }) => {
            Err(ConfigError(error.to_string()).into())
        }
        Err(error) => {
            Err(anyhow::Error::new(error).context("failed to seal the API tokens' root keys"))
        }
    }
}

/// Adds the storage worker as a supervised task: asked to stop, it stops pulling and lets
/// the uploads in flight finish.
fn add_worker(supervisor: &mut Supervisor, worker: StorageWorker, late: &'static str) {
    supervisor.add("storage worker", SHUTDOWN_GRACE, late, move |stop| {
        worker
            .run(stop)
            .map(|result| result.map_err(anyhow::Error::from))
    });
}

impl App {
    /// The embedded mode: gateway, in-process verifier (over an in-process gRPC transport),
    /// storage worker and bus in one process. Staged bytes left by a previous run are
    /// removed first.
    pub async fn embedded(settings: EmbeddedSettings) -> anyhow::Result<App> {
        let EmbeddedSettings {
            http,
            index,
            store,
            bus,
            mut gateway,
            mut verifier,
            mut worker,
        } = settings;
        // One process holds both ends of the upload grants: a key in memory, new at each
        // start (the in-process bus keeps no event across a restart, so no grant must).
        let grant_key = wharf_proto::grant::UploadGrantSigner::generate()
            .context("failed to generate the upload grant key")?;
        worker.upload_grant_keys =
            wharf_proto::grant::UploadGrantKeys::new([grant_key.public_key()]);
        verifier.upload_grants = Some(grant_key);
        if worker.staging_max_age <= gateway.outcome_timeout {
            return Err(
                ConfigError("--staging-max-age must exceed --upload-timeout".to_owned()).into(),
            );
        }
        gateway.default_scheme = http.scheme();
        let data_dir = index.data_dir.display().to_string();
        let index = open_index(&index).await?;
        prepare_token_keys(index.as_ref(), &verifier).await?;
        let blobs = open_store(&store)?;
        // Nothing is in flight yet: staged bytes left by a previous run belong to uploads
        // whose clients never got an answer, and will retry.
        let purged = blobs
            .purge_staging()
            .await
            .context("failed to clear stale staging")?;
        if purged > 0 {
            tracing::info!(purged, "removed stale staged uploads");
        }
        let bus = open_bus(&bus).await?;

        // One registry for the three services of this process, served at the gateway's
        // /metrics.
        let metrics = wharf_telemetry::Metrics::new();
        let verifier =
            VerifierService::new_with_metrics(Arc::clone(&index), verifier, metrics.clone())
                .context("failed to set up the verifier")?
                .with_events(Arc::clone(&bus));
        let gateway = Gateway::new(
            in_process_verifier(verifier),
            Arc::clone(&index),
            blobs.clone(),
            Arc::clone(&bus),
            gateway,
        )
        .with_metrics(metrics.clone());
        let storage_worker =
            StorageWorker::new(Arc::clone(&index), blobs.clone(), Arc::clone(&bus), worker)
                .with_metrics(metrics.clone());
        let server = http.bind(gateway.router())?;
        let local_addr = server.address;

        let mut supervisor = Supervisor::new();
        // HTTP first: in-flight uploads still need the worker to answer them.
        server.supervise(&mut supervisor, "gateway");
        add_worker(
            &mut supervisor,
            storage_worker,
            "the storage worker did not finish in time",
        );
        add_gauges(
            &mut supervisor,
            metrics,
            Arc::clone(&index),
            Some(Arc::clone(&bus)),
        );
        Ok(App {
            local_addr,
            supervisor,
            title: "wharf",
            announce: Box::new(move || {
                tracing::info!(address = %local_addr, data_dir = %data_dir, "wharf is serving");
            }),
            stopping: Some("shutting down: finishing in-flight requests"),
            parts: Parts {
                index,
                blobs: Some(blobs),
                bus: Some(bus),
            },
        })
    }

    /// A scaled gateway: the public HTTP API, asking a verifier over gRPC and handing uploads
    /// to workers over the bus.
    pub async fn gateway(settings: GatewayProcessSettings) -> anyhow::Result<App> {
        let verifier_url = settings.verifier_url.clone();
        let mut gateway = settings.gateway;
        gateway.default_scheme = settings.http.scheme();
        let index = open_index(&settings.index).await?;
        let blobs = open_store(&settings.store)?;
        let bus = open_bus(&settings.bus).await?;
        let metrics = wharf_telemetry::Metrics::new();
        let router = Gateway::new(
            settings.verifier,
            Arc::clone(&index),
            blobs.clone(),
            Arc::clone(&bus),
            gateway,
        )
        .with_metrics(metrics.clone())
        .router();
        let server = settings.http.bind(router)?;
        let local_addr = server.address;
        let mut supervisor = Supervisor::new();
        server.supervise(&mut supervisor, "gateway");
        add_gauges(&mut supervisor, metrics, Arc::clone(&index), None);
        Ok(App {
            local_addr,
            supervisor,
            title: "wharf gateway",
            announce: Box::new(move || {
                tracing::info!(address = %local_addr, verifier = %verifier_url, "wharf gateway is serving");
            }),
            stopping: Some("shutting down: finishing in-flight requests"),
            parts: Parts {
                index,
                blobs: Some(blobs),
                bus: Some(bus),
            },
        })
    }

    /// A scaled verifier: the gRPC service that answers every credential question, with
    /// /healthz, /readyz and /metrics on the same port.
    pub async fn verifier(settings: VerifierProcessSettings) -> anyhow::Result<App> {
        let index = open_index(&settings.index).await?;
        prepare_token_keys(index.as_ref(), &settings.verifier).await?;
        let bus = open_bus(&settings.bus).await?;
        let metrics = wharf_telemetry::Metrics::new();
        let service = VerifierService::new_with_metrics(
            Arc::clone(&index),
            settings.verifier,
            metrics.clone(),
        )
        .context("failed to set up the verifier")?
        .with_events(Arc::clone(&bus));
        let health = health_router(vec![index_check(&index)], metrics.clone());
        // Each call joins the caller's trace (`traceparent` in the request metadata).
        let router =
            tonic::service::Routes::new(GrpcServerTrace::new(VerifierServer::new(service)))
                .into_axum_router()
                .merge(health);
        let server = BoundServer::bind(settings.listen, settings.tls, router, None)?;
        let local_addr = server.address;
        let mut supervisor = Supervisor::new();
        server.supervise(&mut supervisor, "verifier");
        add_gauges(&mut supervisor, metrics, Arc::clone(&index), None);
        Ok(App {
            local_addr,
            supervisor,
            title: "wharf verifier",
            announce: Box::new(move || {
                tracing::info!(address = %local_addr, "wharf verifier is serving");
            }),
            stopping: None,
            parts: Parts {
                index,
                blobs: None,
                bus: Some(bus),
            },
        })
    }

    /// A scaled storage worker: consumes staged uploads from the bus, with /healthz, /readyz
    /// and /metrics on its port.
    pub async fn worker(settings: WorkerProcessSettings) -> anyhow::Result<App> {
        let index = open_index(&settings.index).await?;
        let blobs = open_store(&settings.store)?;
        let bus = open_bus(&settings.bus).await?;
        let checks: Vec<ReadinessCheck> = vec![
            index_check(&index),
            ("store", {
                let blobs = blobs.clone();
                probe(move || {
                    let blobs = blobs.clone();
                    async move { blobs.ping().await.is_ok() }.boxed()
                })
            }),
            ("bus", {
                let bus = Arc::clone(&bus);
                probe(move || {
                    let bus = Arc::clone(&bus);
                    async move { bus.ping().await.is_ok() }.boxed()
                })
            }),
        ];
        let metrics = wharf_telemetry::Metrics::new();
        let worker = StorageWorker::new(
            Arc::clone(&index),
            blobs.clone(),
            Arc::clone(&bus),
            settings.worker,
        )
        .with_metrics(metrics.clone());
        let server = BoundServer::bind(
            settings.listen,
            None,
            health_router(checks, metrics.clone()),
            Some(ConnectionLimits::new(HEADER_READ_TIMEOUT, None)),
        )?;
        let local_addr = server.address;
        let mut supervisor = Supervisor::new();
        // The worker first: uploads in flight finish and are acknowledged (or redelivered
        // to another worker if this one is killed before); health answers meanwhile.
        add_worker(
            &mut supervisor,
            worker,
            "in-flight uploads did not finish in time; they will be redelivered",
        );
        server.supervise(&mut supervisor, "worker health");
        add_gauges(
            &mut supervisor,
            metrics,
            Arc::clone(&index),
            Some(Arc::clone(&bus)),
        );
        Ok(App {
            local_addr,
            supervisor,
            title: "wharf worker",
            announce: Box::new(move || {
                tracing::info!(address = %local_addr, "wharf worker is running");
            }),
            stopping: Some("shutting down: finishing in-flight uploads"),
            parts: Parts {
                index,
                blobs: Some(blobs),
                bus: Some(bus),
            },
        })
    }

    /// The address the listener is bound to (the real port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The adapters this App opened.
    pub fn parts(&self) -> &Parts {
        &self.parts
    }

    /// Adds a task to the supervisor (stopped after the App's own); tests use it to check
    /// that a failing task ends the run.
    pub fn add_task<F, Fut>(&mut self, name: &'static str, start: F)
    where
        F: FnOnce(tokio_util::sync::CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        self.supervisor
            .add(name, SHUTDOWN_GRACE, "the task did not stop in time", start);
    }

    /// Runs every task until `shutdown` resolves (then stops them in order, within the
    /// grace time) or until one ends on its own, which stops the others and ends the run with
    /// an error naming it.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        (self.announce)();
        let result = self.supervisor.run(shutdown, self.stopping).await;
        match &result {
            Ok(()) => tracing::info!("{} stopped", self.title),
            Err(_) => tracing::info!("{} stopped after a failure", self.title),
        }
        result
    }
}

/// The readiness check of the index.
fn index_check(index: &Arc<dyn Index>) -> ReadinessCheck {
    let index = Arc::clone(index);
    (
        "index",
        probe(move || {
            let index = Arc::clone(&index);
            async move { index.ping().await.is_ok() }.boxed()
        }),
    )
}
