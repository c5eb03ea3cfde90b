//! Wharf's event bus: gateways publish [`FileStaged`] work, storage workers consume it and
//! answer with an [`UploadOutcome`], and everyone may publish public events.
//!
//! Services only see the [`UploadBus`] trait (this crate is the port); [`InProcessBus`] serves
//! the embedded mode, and the `wharf-bus-nats` crate's `NatsBus` (NATS JetStream) the scaled
//! mode.

mod in_process;

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;

pub use in_process::InProcessBus;
pub use wharf_proto::v1::{FileStaged, UploadOutcome};

/// Subject of the upload work queue.
pub const SUBJECT_STAGED: &str = "wharf.upload.staged";
/// Prefix of the per-upload outcome subjects (`wharf.upload.outcome.<upload id>`).
pub const SUBJECT_OUTCOME_PREFIX: &str = "wharf.upload.outcome";
/// Subject of the public event announcing a published file.
pub const SUBJECT_FILE_PUBLISHED: &str = "wharf.events.file.published";
/// Subject of the public event announcing a project created by its first upload (JSON).
pub const SUBJECT_PROJECT_CREATED: &str = "wharf.events.project.created";
/// Subject of the public event announcing an upload given up as failed (JSON payload).
pub const SUBJECT_UPLOAD_FAILED: &str = "wharf.events.upload.failed";

/// Errors of the bus.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The bus is not reachable or refused the operation.
    #[error("event bus unavailable: {0}")]
    Unavailable(String),
    /// No outcome arrived in time.
    #[error("timed out waiting for the upload outcome")]
    Timeout,
    /// A message could not be decoded.
    #[error("undecodable bus message: {0}")]
    Decode(#[from] prost::DecodeError),
    /// The bus was shut down.
    #[error("event bus closed")]
    Closed,
}

/// A public event: a subject below `wharf.events.` and its protobuf payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicEvent {
    pub subject: String,
    pub payload: Bytes,
}

/// The bus as services use it; one adapter per transport.
#[async_trait]
pub trait UploadBus: Send + Sync + std::fmt::Debug {
    /// Tells whether the bus is usable.
    async fn ping(&self) -> Result<(), BusError>;
    /// Registers for the outcome of an upload. Call it before publishing the upload's
    /// [`FileStaged`], so the answer cannot be missed.
    async fn watch_outcome(&self, upload_id: &str) -> Result<OutcomeWatch, BusError>;
    /// Queues a staged upload for the storage workers.
    async fn publish_staged(&self, event: &FileStaged) -> Result<(), BusError>;
    /// Answers the gateway waiting for an upload.
    async fn publish_outcome(&self, outcome: &UploadOutcome) -> Result<(), BusError>;
    /// Publishes a public event.
    async fn publish_event(&self, event: PublicEvent) -> Result<(), BusError>;
    /// The work queue as this worker sees it. Each delivery must be settled with
    /// [`Settle::ack`], [`Settle::retry_later`] or [`Settle::reject`]; one dropped
    /// unsettled is delivered again.
    async fn staged_deliveries(&self) -> Result<BoxStream<'static, Delivery>, BusError>;
    /// The staged-upload work queue's backlog, for metrics.
    async fn backlog(&self) -> Result<Backlog, BusError>;
}

/// How much work waits in the staged-upload queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backlog {
    /// Uploads not yet delivered to any worker.
    pub pending: u64,
    /// Uploads delivered and not yet settled.
    pub ack_pending: u64,
    /// Uploads delivered more than once and not yet settled.
    pub redelivered: u64,
}

/// A pending wait for one upload's outcome.
pub struct OutcomeWatch {
    outcome: BoxFuture<'static, Result<UploadOutcome, BusError>>,
}

impl std::fmt::Debug for OutcomeWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutcomeWatch").finish_non_exhaustive()
    }
}

impl OutcomeWatch {
    /// Wraps the future that resolves to the outcome.
    pub fn new(outcome: BoxFuture<'static, Result<UploadOutcome, BusError>>) -> OutcomeWatch {
        OutcomeWatch { outcome }
    }

    /// Waits at most `timeout` for the outcome.
    pub async fn wait(self, timeout: Duration) -> Result<UploadOutcome, BusError> {
        tokio::time::timeout(timeout, self.outcome)
            .await
            .map_err(|_| BusError::Timeout)?
    }
}

/// How a delivery is settled; implemented by each adapter.
#[async_trait]
pub trait Settle: Send + Sync {
    /// The message is done; never deliver it again.
    async fn ack(self: Box<Self>) -> Result<(), BusError>;
    /// Deliver the message again after `delay` (transient failure).
    async fn retry_later(self: Box<Self>, delay: Duration) -> Result<(), BusError>;
    /// The message can never succeed; drop it for good.
    async fn reject(self: Box<Self>) -> Result<(), BusError>;
    /// Still working on it: extend the redelivery deadline.
    async fn in_progress(&self) -> Result<(), BusError>;
}

/// One delivery of a [`FileStaged`] message.
pub struct Delivery {
    /// The staged upload.
    pub event: FileStaged,
    /// 1 on the first delivery, 2 on the first redelivery, …
    pub delivery_count: u32,
    settle: Box<dyn Settle>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("upload_id", &self.event.upload_id)
            .field("delivery_count", &self.delivery_count)
            .finish_non_exhaustive()
    }
}

impl Delivery {
    /// Builds a delivery (for adapters).
    pub fn new(event: FileStaged, delivery_count: u32, settle: Box<dyn Settle>) -> Delivery {
        Delivery {
            event,
            delivery_count,
            settle,
        }
    }

    /// Splits the delivery into its message and its settle handle.
    pub fn into_parts(self) -> (FileStaged, u32, Box<dyn Settle>) {
        (self.event, self.delivery_count, self.settle)
    }
}
