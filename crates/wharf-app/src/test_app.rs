//! [`TestApp`]: the whole registry (gateway, verifier, storage worker) in-process on
//! `127.0.0.1:0`, over a temporary SQLite index (or a fresh PostgreSQL database), a memory
//! (or temporary directory) store and the in-process bus (or a private NATS prefix), so that
//! a gateway change is tested without building the binary. It is the embedded [`App`] with
//! test adapters; it stops when dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use wharf_bus::{InProcessBus, PublicEvent, UploadBus};
use wharf_gateway::GatewaySettings;
use wharf_index::prelude::*;
use wharf_verifier::{TokenKeys, TokenRequest, VerifierSettings, mint_user_token};
use wharf_worker::WorkerSettings;

use crate::adapters::{BusSettings, IndexSettings, StoreSettings};
use crate::app::{App, EmbeddedSettings, PublicListener};

/// The PostgreSQL server fresh databases are created on (`WHARF_TEST_POSTGRES_URL`
/// overrides it).
const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// The NATS server private prefixes are made on (`WHARF_TEST_NATS_URL` overrides it).
const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";
/// How long [`Events::wait_for`] waits: an event that takes longer is a failure.
const EVENT_TIMEOUT: Duration = Duration::from_secs(30);

/// How a [`TestApp`] is built; every choice has a default that needs no server.
#[derive(Debug, Clone, Default)]
pub struct TestAppBuilder {
    postgres: bool,
    nats: bool,
    local_store: bool,
    bus: Option<Arc<dyn UploadBus>>,
    gateway: GatewaySettings,
    verifier: VerifierSettings,
    worker: WorkerSettings,
}

impl TestAppBuilder {
    /// Uses a fresh PostgreSQL database instead of a temporary SQLite file.
    pub fn postgres(mut self) -> Self {
        self.postgres = true;
        self
    }

    /// Uses NATS JetStream under a private subject prefix instead of the in-process bus.
    pub fn nats(mut self) -> Self {
        self.nats = true;
        self
    }

    /// Stores files in a temporary directory instead of memory.
    pub fn local_store(mut self) -> Self {
        self.local_store = true;
        self
    }

    /// Uses this bus (e.g. a test double that fails) instead of the in-process one or NATS.
    pub fn bus(mut self, bus: Arc<dyn UploadBus>) -> Self {
        self.bus = Some(bus);
        self
    }

    /// Changes the gateway's settings.
    pub fn gateway(mut self, change: impl FnOnce(&mut GatewaySettings)) -> Self {
        change(&mut self.gateway);
        self
    }

    /// Changes the verifier's settings.
    pub fn verifier(mut self, change: impl FnOnce(&mut VerifierSettings)) -> Self {
        change(&mut self.verifier);
        self
    }

    /// Changes the storage worker's settings.
    pub fn worker(mut self, change: impl FnOnce(&mut WorkerSettings)) -> Self {
        change(&mut self.worker);
        self
    }

    /// Builds the [`App`] without running it, and what must outlive it.
    pub async fn build_app(self) -> anyhow::Result<(App, Resources)> {
        let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
        let database = if self.postgres {
            Some(TestDatabase::create().await?)
        } else {
            None
        };
        let store = if self.local_store {
            StoreSettings::Local(dir.path().join("files"))
        } else {
            StoreSettings::Memory
        };
        // The in-process bus is opened here, so that the test can watch its public events.
        let in_process = (!self.nats && self.bus.is_none()).then(InProcessBus::new);
        let bus = if let Some(bus) = self.bus {
            BusSettings::Open(bus)
        } else if self.nats {
            BusSettings::Nats {
                url: std::env::var("WHARF_TEST_NATS_URL")
                    .unwrap_or_else(|_| DEFAULT_NATS_URL.to_owned()),
                prefix: format!("wharf_test_{}", uuid::Uuid::new_v4().simple()),
                security: Default::default(),
            }
        } else {
            match &in_process {
                Some(bus) => BusSettings::Open(Arc::new(bus.clone())),
                None => BusSettings::InProcess,
            }
        };
        let settings = EmbeddedSettings {
            http: PublicListener {
                listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                tls: None,
                header_read_timeout: Duration::from_secs(30),
                max_connections: None,
            },
            index: IndexSettings {
                data_dir: dir.path().to_path_buf(),
                database_url: database.as_ref().map(|database| database.url.clone()),
            },
            store,
            bus,
            gateway: self.gateway,
            verifier: self.verifier,
            worker: self.worker,
        };
        let app = App::embedded(settings).await?;
        Ok((
            app,
            Resources {
                in_process,
                _dir: dir,
                _database: database,
            },
        ))
    }

    /// Builds the registry and starts it.
    pub async fn start(self) -> anyhow::Result<TestApp> {
        let token_keys = self.verifier.token_keys.clone();
        let (app, resources) = self.build_app().await?;
        let address = app.local_addr();
        let index = Arc::clone(&app.parts().index);
        let stop = CancellationToken::new();
        let task = tokio::spawn(app.run(stop.clone().cancelled_owned()));
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(TestApp {
            address,
            client,
            index,
            token_keys,
            stop,
            task: Some(task),
            resources,
        })
    }
}

/// What a test App needs to outlive it: its temporary directory and database; and its
/// in-process bus, whose events a test may watch.
#[derive(Debug)]
pub struct Resources {
    in_process: Option<InProcessBus>,
    _dir: tempfile::TempDir,
    _database: Option<TestDatabase>,
}

/// The whole registry running in this process; stopped when dropped.
#[derive(Debug)]
pub struct TestApp {
    address: SocketAddr,
    client: reqwest::Client,
    index: Arc<dyn Index>,
    /// The keys the registry's verifier seals root keys with.
    token_keys: TokenKeys,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    resources: Resources,
}

impl TestApp {
    /// The registry with every default: temporary SQLite, memory store, in-process bus.
    pub async fn new() -> anyhow::Result<TestApp> {
        TestApp::builder().start().await
    }

    /// A builder to choose the adapters and settings.
    pub fn builder() -> TestAppBuilder {
        TestAppBuilder::default()
    }

    /// The keys the registry's verifier seals API tokens' root keys with.
    pub fn token_keys(&self) -> &TokenKeys {
        &self.token_keys
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// `base_url` followed by `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url())
    }

    /// An HTTP client that does not follow redirects.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The index the registry runs on.
    pub fn index(&self) -> &Arc<dyn Index> {
        &self.index
    }

    /// Creates a user, as `wharf admin user create` does; returns its id.
    pub async fn create_user(&self, name: &str) -> anyhow::Result<String> {
        let now = now_micros();
        let user = self
            .index
            .create_user(name, now)
            .await
            .context("failed to create the user")?;
        Ok(user.id)
    }

    /// Mints an API token for `user`, limited to `projects` when not empty, as `wharf admin
    /// token create` does; returns the token (`pypi-…`).
    pub async fn create_token(&self, user: &str, projects: &[&str]) -> anyhow::Result<String> {
        let request = TokenRequest {
            user_name: user.to_owned(),
            projects: projects
                .iter()
                .map(|project| (*project).to_owned())
                .collect(),
            expires_at: None,
            description: String::new(),
            location: "wharf".to_owned(),
        };
        let (_id, token) = mint_user_token(
            self.index.as_ref(),
            &self.token_keys,
            &request,
            now_micros() / 1_000_000,
        )
        .await
        .context("failed to create the token")?;
        Ok(token)
    }

    /// A user and an unrestricted token for it.
    pub async fn user_with_token(&self, name: &str) -> anyhow::Result<String> {
        self.create_user(name).await?;
        self.create_token(name, &[]).await
    }

    /// Watches the public events (`wharf.events.…`) published from now on; subscribe before
    /// the action, then [`Events::wait_for`] its event. On the default in-process bus only.
    pub fn events(&self) -> anyhow::Result<Events> {
        match &self.resources.in_process {
            Some(bus) => Ok(Events {
                receiver: bus.subscribe_events(),
            }),
            None => anyhow::bail!("events are watched on the default in-process bus only"),
        }
    }

    /// Stops the registry gracefully and returns how its run ended.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.stop.cancel();
        match self.task.take() {
            Some(task) => task.await.context("the app task panicked")?,
            None => Ok(()),
        }
    }
}

/// The public events of a [`TestApp`], from the moment of [`TestApp::events`] on.
#[derive(Debug)]
pub struct Events {
    receiver: tokio::sync::broadcast::Receiver<PublicEvent>,
}

impl Events {
    /// Waits for the next event on `subject` (skipping others), for up to 30 seconds.
    pub async fn wait_for(&mut self, subject: &str) -> anyhow::Result<PublicEvent> {
        let wait = async {
            loop {
                match self.receiver.recv().await {
                    Ok(event) if event.subject == subject => return Ok(event),
                    Ok(_) => {}
                    Err(error) => return Err(anyhow::anyhow!("no more events: {error}")),
                }
            }
        };
        tokio::time::timeout(EVENT_TIMEOUT, wait)
            .await
            .with_context(|| format!("no {subject} event within {EVENT_TIMEOUT:?}"))?
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // The supervisor stops the tasks; the runtime's end drops whatever is left.
        self.stop.cancel();
    }
}

/// Microseconds since the Unix epoch.
fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

/// A fresh database `wharf_app_<uuid>` on the test PostgreSQL server; dropped on drop.
#[derive(Debug)]
struct TestDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl TestDatabase {
    async fn create() -> anyhow::Result<TestDatabase> {
        use sqlx::Connection;
        let admin_url = std::env::var("WHARF_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
        let name = format!("wharf_app_{}", uuid::Uuid::new_v4().simple());
        let mut connection = sqlx::PgConnection::connect(&admin_url)
            .await
            .with_context(|| format!("cannot reach PostgreSQL at {admin_url}"))?;
        // The name is ours: `wharf_app_` and a UUID's hex digits.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut connection)
            .await
            .context("cannot create the test database")?;
        let url = match admin_url.rsplit_once('/') {
            Some((server, _database)) => format!("{server}/{name}"),
            None => anyhow::bail!("WHARF_TEST_POSTGRES_URL names no database: {admin_url}"),
        };
        Ok(TestDatabase {
            admin_url,
            name,
            url,
        })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop may run inside the test's runtime: a thread of its own with its own runtime.
        let dropped = std::thread::spawn(move || {
            use sqlx::Connection;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut connection = sqlx::PgConnection::connect(&admin_url).await.ok()?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut connection)
                .await
                .ok()
            })
        });
        // Best effort: a database left behind has a unique name and harms nobody.
        let _ = dropped.join();
    }
}
