//! Opening the adapters behind the ports: the index, the file store and the bus, each through
//! one function, so that where an adapter lives is written in one place.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use wharf_blob::{BlobStore, S3Options};
use wharf_bus::{InProcessBus, UploadBus};
use wharf_index::Index;
use wharf_index_postgres::PgIndex;
use wharf_index_sqlite::SqliteIndex;

/// A configuration error: the binary reports it with exit code 64 before anything listens.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Where the index lives.
#[derive(Debug, Clone)]
pub struct IndexSettings {
    /// Data directory: holds `index.sqlite3` when no URL is given.
    pub data_dir: PathBuf,
    /// Index database URL (`postgres://…` or `sqlite://PATH`).
    pub database_url: Option<String>,
}

/// Opens the index (SQLite or PostgreSQL, by URL scheme), applying migrations.
pub async fn open_index(settings: &IndexSettings) -> anyhow::Result<Arc<dyn Index>> {
    match &settings.database_url {
        Some(url) if url.starts_with("sqlite:") => {
            let index = SqliteIndex::open_url(url)
                .await
                .with_context(|| format!("failed to open the index database {url}"))?;
            Ok(Arc::new(index))
        }
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let index = PgIndex::connect(url)
                .await
                .context("failed to open the PostgreSQL index database")?;
            Ok(Arc::new(index))
        }
        Some(url) => Err(ConfigError(format!(
            "unsupported database URL scheme '{}': use postgres:// or sqlite://",
            url.split(':').next().unwrap_or_default()
        ))
        .into()),
        None => {
            let data_dir = &settings.data_dir;
            std::fs::create_dir_all(data_dir).with_context(|| {
                format!("failed to create the data directory {}", data_dir.display())
            })?;
            let path = data_dir.join("index.sqlite3");
            let index = SqliteIndex::open(&path)
                .await
                .with_context(|| format!("failed to open the index database {}", path.display()))?;
            Ok(Arc::new(index))
        }
    }
}

/// Where published files live.
#[derive(Debug, Clone)]
pub enum StoreSettings {
    /// A local directory.
    Local(PathBuf),
    /// An object store URL (`file:///dir`, `s3://bucket[/prefix]`, `memory://`).
    Url {
        /// The URL.
        url: String,
        /// How to reach an S3-compatible server.
        s3: S3Options,
    },
    /// Memory only (tests).
    Memory,
}

/// Opens the file store.
pub fn open_store(settings: &StoreSettings) -> anyhow::Result<BlobStore> {
    match settings {
        StoreSettings::Local(dir) => BlobStore::local(dir)
            .with_context(|| format!("failed to open the file store {}", dir.display())),
        StoreSettings::Url { url, s3 } => BlobStore::from_url(url, s3)
            .map_err(|error| ConfigError(format!("--store {url}: {error:#}")).into()),
        StoreSettings::Memory => Ok(BlobStore::memory()),
    }
}

/// The store under a data directory: its `files/`.
pub fn local_store_in(data_dir: &Path) -> StoreSettings {
    StoreSettings::Local(data_dir.join("files"))
}

/// Which bus carries staged uploads and public events.
#[derive(Debug, Clone)]
pub enum BusSettings {
    /// In this process only (the embedded mode).
    InProcess,
    /// NATS JetStream, shared by every process of a scaled deployment.
    Nats {
        /// NATS server URL.
        url: String,
        /// Prefix of every subject and stream name.
        prefix: String,
        /// Credentials and TLS of the connection.
        security: wharf_bus_nats::NatsSecurity,
    },
    /// A bus already open, shared with whoever opened it (a test that watches its events).
    Open(Arc<dyn UploadBus>),
}

/// Opens the bus; for NATS, connects and makes sure the streams and the worker consumer exist.
pub async fn open_bus(settings: &BusSettings) -> anyhow::Result<Arc<dyn UploadBus>> {
    match settings {
        BusSettings::InProcess => Ok(Arc::new(InProcessBus::new())),
        BusSettings::Open(bus) => Ok(Arc::clone(bus)),
        BusSettings::Nats {
            url,
            prefix,
            security,
        } => {
            let config = wharf_bus_nats::NatsConfig {
                url: url.clone(),
                subject_prefix: prefix.clone(),
                security: security.clone(),
                ..wharf_bus_nats::NatsConfig::default()
            };
            let bus = wharf_bus_nats::NatsBus::connect(config)
                .await
                .with_context(|| format!("failed to connect to NATS at {url}"))?;
            Ok(Arc::new(bus))
        }
    }
}
