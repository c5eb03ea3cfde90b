//! The storage worker: takes staged uploads off the bus, and for each one hashes the bytes in
//! one pass (md5, sha256, blake2b-256), checks them against what the client declared and
//! against the index rules, validates the archive, stores the file under its content-addressed
//! key (plus a wheel's METADATA for PEP 658), commits the index rows in one transaction, and
//! answers the waiting gateway.
//!
//! Every step is idempotent: an upload whose event is delivered twice ends as one file and
//! the same answer, because the commit is keyed by upload id and by filename/digest.

mod process;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span};
use wharf_archive::ArchiveLimits;
use wharf_blob::BlobStore;
use wharf_bus::{BusError, Delivery, UploadBus};
use wharf_index::IndexRepo;

pub use process::ProcessError;

/// How often a delivery in progress extends its redelivery deadline.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// Operator settings of the worker.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Uploads processed at the same time by this worker.
    pub concurrency: usize,
    /// Deliveries of one message before it is given up as failed.
    pub max_deliveries: u32,
    /// Refuse new files in releases older than this (PyPI: 14 days); `None` keeps releases open.
    pub closed_release_after: Option<Duration>,
    /// Bounds on archive inspection.
    pub archive_limits: ArchiveLimits,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            concurrency: 2,
            max_deliveries: 5,
            closed_release_after: None,
            archive_limits: ArchiveLimits::default(),
        }
    }
}

/// A storage worker.
#[derive(Debug, Clone)]
pub struct StorageWorker {
    index: Arc<dyn IndexRepo>,
    blobs: BlobStore,
    bus: Arc<dyn UploadBus>,
    settings: Arc<WorkerSettings>,
}

impl StorageWorker {
    /// A worker over the given index, store and bus.
    pub fn new(
        index: Arc<dyn IndexRepo>,
        blobs: BlobStore,
        bus: Arc<dyn UploadBus>,
        settings: WorkerSettings,
    ) -> StorageWorker {
        StorageWorker {
            index,
            blobs,
            bus,
            settings: Arc::new(settings),
        }
    }

    /// Consumes staged uploads until `shutdown` fires; then stops pulling and finishes the
    /// uploads in flight.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), BusError> {
        let deliveries = self.bus.staged_deliveries().await?;
        let concurrency = self.settings.concurrency.max(1);
        deliveries
            .take_until(shutdown.cancelled_owned())
            .for_each_concurrent(concurrency, |delivery| {
                let worker = self.clone();
                async move { worker.handle(delivery).await }
            })
            .await;
        tracing::info!("storage worker stopped");
        Ok(())
    }

    /// Processes one delivery and settles it.
    async fn handle(&self, delivery: Delivery) {
        let (event, delivery_count, settle) = delivery.into_parts();
        let span = info_span!(
            "worker.process",
            wharf.upload_id = %event.upload_id,
            wharf.filename = %event.filename,
            wharf.outcome = tracing::field::Empty,
            messaging.message.delivery_count = delivery_count,
        );
        async move {
            let processed = {
                // Tell the bus the message is still being worked on, so a big file is not
                // redelivered to another worker while this one hashes it.
                let processing = self.process(&event);
                tokio::pin!(processing);
                let mut progress = tokio::time::interval(PROGRESS_EVERY);
                progress.tick().await;
                loop {
                    tokio::select! {
                        result = &mut processing => break result,
                        _ = progress.tick() => {
                            if let Err(error) = settle.in_progress().await {
                                tracing::warn!(error = %error, "could not extend the ack deadline");
                            }
                        }
                    }
                }
            };
            let outcome = match processed {
                Ok(outcome) => outcome,
                Err(error) if error.is_transient() && delivery_count < self.settings.max_deliveries => {
                    let delay = Duration::from_millis(250 * 2u64.pow(delivery_count.min(6)));
                    tracing::warn!(error = %error, delay_ms = delay.as_millis() as u64, "transient failure, retrying");
                    if let Err(bus_error) = settle.retry_later(delay).await {
                        tracing::error!(error = %bus_error, "could not schedule the retry");
                    }
                    return;
                }
                Err(error) => {
                    tracing::error!(error = %error, source = ?std::error::Error::source(&error), "upload failed for good");
                    process::failed_outcome(&event, &error)
                }
            };
            tracing::Span::current().record("wharf.outcome", process::outcome_label(&outcome));
            if let Err(error) = self.bus.publish_outcome(&outcome).await {
                // The gateway will time out and the client retry; redelivery answers then.
                tracing::warn!(error = %error, "could not publish the outcome, retrying");
                let _ = settle.retry_later(Duration::from_secs(1)).await;
                return;
            }
            if let Some(published) = process::published_event(&outcome)
                && let Err(error) = self.bus.publish_event(published).await
            {
                tracing::warn!(error = %error, "could not publish the public event");
            }
            if let Ok(key) = BlobStore::staging_key(&event.upload_id)
                && let Err(error) = self.blobs.delete(&key).await
            {
                tracing::warn!(error = %error, "could not delete the staged bytes");
            }
            if let Err(error) = settle.ack().await {
                tracing::warn!(error = %error, "could not acknowledge the delivery");
            }
        }
        .instrument(span)
        .await;
    }
}
