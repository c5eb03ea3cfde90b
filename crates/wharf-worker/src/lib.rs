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
use wharf_bus::{BusError, Delivery, FileStaged, PublicEvent, SUBJECT_UPLOAD_FAILED, UploadBus};
use wharf_index::Index;
use wharf_proto::grant::UploadGrantKeys;
use wharf_telemetry::{Metrics, propagation};

pub use process::ProcessError;
use wharf_proto::v1::upload_outcome::Result as OutcomeResult;

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
    /// Staged uploads older than this are deleted by the periodic sweep. It must exceed the
    /// gateways' upload timeout, so that no client is still waiting for what is deleted.
    pub staging_max_age: Duration,
    /// How often the sweep runs.
    pub staging_sweep_every: Duration,
    /// The verifier keys whose upload grants this worker accepts (issue #12, finding 5):
    /// an event without a grant one of them signed is refused. Empty: every event is.
    pub upload_grant_keys: UploadGrantKeys,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            concurrency: 2,
            max_deliveries: 5,
            closed_release_after: None,
            archive_limits: ArchiveLimits::default(),
            staging_max_age: Duration::from_secs(15 * 60),
            staging_sweep_every: Duration::from_secs(60),
            upload_grant_keys: UploadGrantKeys::default(),
        }
    }
}

/// A storage worker.
#[derive(Debug, Clone)]
pub struct StorageWorker {
    index: Arc<dyn Index>,
    blobs: BlobStore,
    bus: Arc<dyn UploadBus>,
    settings: Arc<WorkerSettings>,
    metrics: Metrics,
}

impl StorageWorker {
    /// A worker over the given index, store and bus.
    pub fn new(
        index: Arc<dyn Index>,
        blobs: BlobStore,
        bus: Arc<dyn UploadBus>,
        settings: WorkerSettings,
    ) -> StorageWorker {
        StorageWorker {
            index,
            blobs,
            bus,
            settings: Arc::new(settings),
            metrics: Metrics::new(),
        }
    }

    /// Counts into `metrics` (served at `/metrics`) instead of a private registry.
    pub fn with_metrics(self, metrics: Metrics) -> StorageWorker {
        StorageWorker { metrics, ..self }
    }

    /// Consumes staged uploads until `shutdown` fires; then stops pulling and finishes the
    /// uploads in flight.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), BusError> {
        let deliveries = self.bus.staged_deliveries().await?;
        let concurrency = self.settings.concurrency.max(1);
        let sweeper = tokio::spawn(self.clone().sweep_staging(shutdown.clone()));
        deliveries
            .take_until(shutdown.cancelled_owned())
            .for_each_concurrent(concurrency, |delivery| {
                let worker = self.clone();
                async move { worker.handle(delivery).await }
            })
            .await;
        sweeper.abort();
        tracing::info!("storage worker stopped");
        Ok(())
    }

    /// Deletes staged uploads that no message will ever claim: a gateway that crashed after
    /// staging the bytes but before queueing the upload leaves them behind. Several workers
    /// sweeping at once is harmless.
    async fn sweep_staging(self, shutdown: CancellationToken) {
        let mut every = tokio::time::interval(self.settings.staging_sweep_every);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = every.tick() => {}
            }
            match self
                .blobs
                .purge_staging_older_than(self.settings.staging_max_age)
                .await
            {
                Ok(0) => {}
                Ok(purged) => tracing::info!(purged, "swept abandoned staged uploads"),
                Err(error) => tracing::warn!(error = %error, "staging sweep failed"),
            }
        }
    }

    /// Records an upload that can never succeed: an audit row in the index and a public
    /// `upload.failed` event, so operators see it without reading logs.
    async fn record_failure(&self, event: &FileStaged, delivery_count: u32, error: &ProcessError) {
        let detail = serde_json::json!({
            "upload_id": event.upload_id,
            "filename": event.filename,
            "deliveries": delivery_count,
            "error": error.to_string(),
        })
        .to_string();
        let now = jiff::Timestamp::now().as_microsecond();
        if let Err(index_error) = self.index.record_audit("upload.failed", &detail, now).await {
            tracing::warn!(error = %index_error, "could not record the failed upload");
        }
        let failed = PublicEvent {
            subject: SUBJECT_UPLOAD_FAILED.to_owned(),
            payload: detail.into_bytes().into(),
        };
        if let Err(bus_error) = self.bus.publish_event(failed).await {
            tracing::warn!(error = %bus_error, "could not publish the failed upload");
        }
    }

    /// Processes one delivery and settles it.
    async fn handle(&self, delivery: Delivery) {
        let (event, delivery_count, settle) = delivery.into_parts();
        let span = info_span!(
            "worker.process",
            otel.kind = "consumer",
            messaging.system = "wharf-bus",
            messaging.operation.type = "process",
            messaging.destination.name = wharf_bus::SUBJECT_STAGED,
            wharf.upload_id = %event.upload_id,
            wharf.filename = %event.filename,
            wharf.outcome = tracing::field::Empty,
            messaging.message.delivery_count = delivery_count,
        );
        // The upload's trace continues here: the gateway's publishing span is the parent.
        propagation::set_parent(&span, propagation::extract_map(&event.trace_context));
        self.metrics.delivery(delivery_count);
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
            let mut failed_for_good = false;
            let outcome = match processed {
                Ok(outcome) => outcome,
                Err(ProcessError::Untrusted(refusal)) => {
                    // Not a gateway's upload: nobody waits for an answer, and the staged
                    // bytes it names may be a genuine upload's, so nothing is answered,
                    // deleted or recorded. The line carries the upload's trace id.
                    tracing::warn!(
                        upload_id = %event.upload_id,
                        reason = %refusal,
                        "refused a staged upload: its upload grant does not hold; nothing committed"
                    );
                    self.metrics.upload_processed(wharf_telemetry::UploadResult::Rejected(403));
                    if let Err(error) = settle.reject().await {
                        tracing::warn!(error = %error, "could not settle the delivery");
                    }
                    return;
                }
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
                    self.record_failure(&event, delivery_count, &error).await;
                    failed_for_good = true;
                    process::failed_outcome(&event, &error)
                }
            };
            tracing::Span::current().record("wharf.outcome", process::outcome_label(&outcome));
            let mut outcome = outcome;
            outcome.trace_context = propagation::current_context_map();
            if let Err(error) = self.bus.publish_outcome(&outcome).await {
                // The gateway will time out and the client retry; redelivery answers then.
                tracing::warn!(error = %error, "could not publish the outcome, retrying");
                let _ = settle.retry_later(Duration::from_secs(1)).await;
                return;
            }
            self.metrics.upload_processed(process::outcome_result(&outcome));
            if let Some(published) = process::published_event(&outcome) {
                if let Some(OutcomeResult::Published(file)) = &outcome.result {
                    self.metrics.bytes_stored(file.size);
                }
                if let Err(error) = self.bus.publish_event(published).await {
                    tracing::warn!(error = %error, "could not publish the public event");
                }
            }
            if let Ok(key) = BlobStore::staging_key(&event.upload_id)
                && let Err(error) = self.blobs.delete(&key).await
            {
                tracing::warn!(error = %error, "could not delete the staged bytes");
            }
            // A failure is terminated (never delivered again), a success acknowledged.
            let settled = if failed_for_good {
                settle.reject().await
            } else {
                settle.ack().await
            };
            if let Err(error) = settled {
                tracing::warn!(error = %error, "could not settle the delivery");
            }
        }
        .instrument(span)
        .await;
    }
}
