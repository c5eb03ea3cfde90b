//! Processing of one staged upload.

use std::io::Read;
use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use prost::Message;
use tracing::{Instrument, info_span, instrument};
use wharf_archive::digest::{Digests, MultiHasher, hex_digest_matches, storage_path};
use wharf_archive::{ArchiveError, sdist, wheel};
use wharf_blob::{BlobError, BlobStore, GetResultPayload, ObjectPath};
use wharf_bus::{PublicEvent, SUBJECT_FILE_PUBLISHED, SUBJECT_PROJECT_CREATED};
use wharf_core::core_metadata;
use wharf_core::filename::FileType;
use wharf_core::form::ReleaseMetadata;
use wharf_core::messages;
use wharf_core::name;
use wharf_core::refusal::{ErrorCode, Refusal};
use wharf_core::version::Version;
use wharf_index::{
    CommitResult, FileAdmission, FileCandidate, FileRecord, FileRefusal, IndexError, NewFile,
    NewUpload, ProjectTarget, ReleaseTarget,
};
use wharf_proto::v1::upload_outcome::Result as OutcomeResult;
use wharf_proto::v1::{FilePublished, FileStaged, UploadOutcome};
use wharf_telemetry::{Stage, UploadResult};

use crate::StorageWorker;

/// Bytes read per hashing step.
const HASH_CHUNK_BYTES: usize = 1024 * 1024;

/// Why an upload could not be processed (as opposed to being refused, which is an outcome).
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The index database failed.
    #[error("index error")]
    Index(#[from] IndexError),
    /// The object store failed.
    #[error("object store error")]
    Blob(#[from] BlobError),
    /// The staged bytes are gone and the upload was never committed.
    #[error("the staged bytes of this upload are missing")]
    StagingGone,
    /// The staged bytes are not what the gateway announced.
    #[error("staged size {actual} differs from the announced {announced}")]
    SizeMismatch { announced: u64, actual: u64 },
    /// The event cannot be understood.
    #[error("malformed staged event: {0}")]
    BadEvent(String),
    /// A blocking task failed.
    #[error("background task failed")]
    Join(#[from] tokio::task::JoinError),
    /// Reading the staged bytes failed.
    #[error("reading staged bytes failed")]
    Read(#[from] std::io::Error),
}

impl ProcessError {
    /// Tells whether a later retry may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            ProcessError::Index(error) => error.is_transient(),
            ProcessError::Blob(error) => !error.is_not_found(),
            ProcessError::Read(_) | ProcessError::Join(_) => true,
            ProcessError::StagingGone
            | ProcessError::SizeMismatch { .. }
            | ProcessError::BadEvent(_) => false,
        }
    }
}

fn rejected(event: &FileStaged, rejection: Refusal) -> UploadOutcome {
    UploadOutcome {
        upload_id: event.upload_id.clone(),
        result: Some(OutcomeResult::Rejected(rejection.into())),
        trace_context: Default::default(),
    }
}

/// The outcome sent when processing failed for good: the client is told to retry, never
/// that the file was stored.
pub(crate) fn failed_outcome(event: &FileStaged, error: &ProcessError) -> UploadOutcome {
    let message = match error {
        ProcessError::StagingGone | ProcessError::SizeMismatch { .. } => {
            "The uploaded bytes were lost before they could be stored; please upload again."
        }
        _ => "The upload could not be stored right now; please try again later.",
    };
    UploadOutcome {
        upload_id: event.upload_id.clone(),
        result: Some(OutcomeResult::Rejected(
            Refusal::new(ErrorCode::Unavailable, message).into(),
        )),
        trace_context: Default::default(),
    }
}

/// A short label of an outcome for spans and logs.
pub(crate) fn outcome_label(outcome: &UploadOutcome) -> &'static str {
    match &outcome.result {
        Some(OutcomeResult::Published(published)) if published.already_existed => "identical",
        Some(OutcomeResult::Published(_)) => "published",
        Some(OutcomeResult::Rejected(_)) => "rejected",
        None => "unknown",
    }
}

/// The outcome as the metrics count it.
pub(crate) fn outcome_result(outcome: &UploadOutcome) -> UploadResult {
    match &outcome.result {
        Some(OutcomeResult::Published(published)) if published.already_existed => {
            UploadResult::Identical
        }
        Some(OutcomeResult::Published(_)) => UploadResult::Published,
        Some(OutcomeResult::Rejected(rejected)) => {
            UploadResult::Rejected(Refusal::from(rejected.clone()).status())
        }
        None => UploadResult::Rejected(500),
    }
}

/// The public event announcing a newly published file, if the outcome is one.
pub(crate) fn published_event(outcome: &UploadOutcome) -> Option<PublicEvent> {
    match &outcome.result {
        Some(OutcomeResult::Published(published)) if !published.already_existed => {
            Some(PublicEvent {
                subject: SUBJECT_FILE_PUBLISHED.to_owned(),
                payload: Bytes::from(published.encode_to_vec()),
            })
        }
        _ => None,
    }
}

/// The answer for a file that is visible: the same for every delivery of one upload (the
/// serial is the file's own), so a redelivery re-announces it byte for byte and the bus can
/// de-duplicate the public event.
fn published(
    event: &FileStaged,
    project: &str,
    file: &FileRecord,
    already_existed: bool,
) -> UploadOutcome {
    UploadOutcome {
        upload_id: event.upload_id.clone(),
        result: Some(OutcomeResult::Published(FilePublished {
            project: project.to_owned(),
            normalized_name: name::normalize(project),
            version: file.version.clone(),
            filename: file.filename.clone(),
            size: u64::try_from(file.size).unwrap_or_default(),
            sha256: file.sha256_digest.clone(),
            blake2_256: file.blake2_256_digest.clone(),
            already_existed,
            serial: file.serial,
        })),
        trace_context: Default::default(),
    }
}

/// PyPI's words for the index refusals.
fn refusal_rejection(refusal: &FileRefusal, closed_release_days: u64, uploader: &str) -> Refusal {
    match refusal {
        FileRefusal::FileExists {
            filename,
            blake2_256_digest,
        } => Refusal::bad_request(messages::file_exists(filename, blake2_256_digest)),
        FileRefusal::FilenamePreviouslyUsed => Refusal::bad_request(messages::FILENAME_REUSED),
        FileRefusal::ReleaseClosed => {
            Refusal::bad_request(messages::release_closed(closed_release_days))
        }
        FileRefusal::OneSdistPerRelease => Refusal::bad_request(messages::ONE_SDIST_PER_RELEASE),
        FileRefusal::UploaderNotAllowed { project_name } => {
            Refusal::forbidden(messages::user_not_allowed(uploader, project_name))
        }
        FileRefusal::ProjectMissing => Refusal::bad_request(messages::NON_USER_CREATE),
    }
}

fn archive_rejection(error: &ArchiveError) -> Refusal {
    Refusal::bad_request(error.upload_message())
}

/// What the archive inspection found out.
struct Inspected {
    /// A wheel's METADATA bytes (PEP 658).
    wheel_metadata: Option<Vec<u8>>,
}

impl StorageWorker {
    /// Processes one staged upload and returns the answer for the gateway.
    #[instrument(skip_all, name = "worker.process_upload")]
    pub async fn process(&self, event: &FileStaged) -> Result<UploadOutcome, ProcessError> {
        let metadata = ReleaseMetadata::from(
            event
                .metadata
                .clone()
                .ok_or_else(|| ProcessError::BadEvent("metadata missing".to_owned()))?,
        );
        let project_name = metadata.name.clone().unwrap_or_default();

        // A redelivered event whose upload was already committed: answer as before.
        if let Some(file) = self.index.find_file_by_upload_id(&event.upload_id).await? {
            return Ok(published(event, &project_name, &file, false));
        }

        let staging_key = BlobStore::staging_key(&event.upload_id)?;
        let Some(staged) = self.blobs.head(&staging_key).await? else {
            // A concurrent delivery of the same upload may have committed and cleaned up
            // since the lookup above: then its answer is this one's too.
            if let Some(file) = self.index.find_file_by_upload_id(&event.upload_id).await? {
                return Ok(published(event, &project_name, &file, false));
            }
            return Err(ProcessError::StagingGone);
        };
        if staged.size != event.size {
            return Err(ProcessError::SizeMismatch {
                announced: event.size,
                actual: staged.size,
            });
        }

        let digests = self.hash_staged(&staging_key, staged.size).await?;
        let declared = [
            (&event.md5_digest, digests.md5_hex()),
            (&event.sha256_digest, digests.sha256_hex()),
            (&event.blake2_256_digest, digests.blake2_256_hex()),
        ];
        let mismatch = declared.iter().any(|(declared, actual)| {
            !declared.is_empty() && !hex_digest_matches(declared, actual)
        });
        if mismatch {
            return Ok(rejected(
                event,
                Refusal::bad_request(messages::DIGEST_MISMATCH),
            ));
        }

        let version = Version::parse(metadata.version.as_deref().unwrap_or_default())
            .map_err(|error| ProcessError::BadEvent(format!("version: {error}")))?;
        let normalized_name = name::normalize(&project_name);
        let sha256 = digests.sha256_hex();
        let blake2_256 = digests.blake2_256_hex();
        let now_micros = jiff::Timestamp::now().as_microsecond();
        let closed_release_after_micros = self
            .settings
            .closed_release_after
            .map(|window| i64::try_from(window.as_micros()).unwrap_or(i64::MAX));
        let closed_release_days = self
            .settings
            .closed_release_after
            .map_or(0, |window| window.as_secs() / 86_400);
        let canonical_version = version.canonical();

        // Duplicates before archive validation, as PyPI orders them.
        let candidate = FileCandidate {
            normalized_name: &normalized_name,
            canonical_version: &canonical_version,
            filename: &event.filename,
            packagetype: &event.filetype,
            sha256_digest: &sha256,
            blake2_256_digest: &blake2_256,
            closed_release_after_micros,
            now_micros,
        };
        match self.index.check_file(&candidate).await? {
            FileAdmission::New => {}
            FileAdmission::Identical(existing) => {
                return Ok(published(event, &project_name, &existing, true));
            }
            FileAdmission::Refused(refusal) => {
                return Ok(rejected(
                    event,
                    refusal_rejection(&refusal, closed_release_days, uploader_name(event)),
                ));
            }
        }

        let inspected = match self
            .inspect(event, &staging_key, staged.size, &metadata)
            .await?
        {
            Ok(inspected) => inspected,
            Err(rejection) => return Ok(rejected(event, rejection)),
        };

        // The release metadata: a wheel's own METADATA when there is one (what installers
        // will see through PEP 658), else the validated form.
        let release_metadata = match &inspected.wheel_metadata {
            Some(bytes) => match core_metadata::parse_core_metadata(bytes) {
                Ok(file_metadata) => {
                    if let Err(rejection) =
                        core_metadata::check_wheel_metadata_matches(&metadata, &file_metadata)
                    {
                        return Ok(rejected(event, rejection));
                    }
                    file_metadata
                }
                Err(reason) => {
                    return Ok(rejected(
                        event,
                        Refusal::bad_request(format!(
                            "Invalid distribution file. Unparseable METADATA: {reason}"
                        )),
                    ));
                }
            },
            None => metadata.clone(),
        };

        let path = storage_path(&blake2_256, &event.filename);
        let package_key = BlobStore::package_key(&path)?;
        let metadata_key = BlobStore::metadata_key(&path)?;
        let started = Instant::now();
        self.blobs
            .copy(&staging_key, &package_key)
            .instrument(info_span!("worker.store_file"))
            .await?;
        self.metrics.observe_stage(Stage::Store, started.elapsed());
        let mut metadata_digests = None;
        if let Some(bytes) = inspected.wheel_metadata {
            let mut hasher = MultiHasher::default();
            hasher.update(&bytes);
            metadata_digests = Some(hasher.finalize());
            self.blobs.put(&metadata_key, Bytes::from(bytes)).await?;
        }

        let requires_python = release_metadata.requires_python.clone();
        let upload = NewUpload {
            upload_id: event.upload_id.clone(),
            project: ProjectTarget {
                name: project_name.clone(),
                normalized_name: normalized_name.clone(),
                ultranormalized_name: name::ultranormalize(&project_name),
                create_with_owner: event
                    .uploader
                    .as_ref()
                    .filter(|uploader| uploader.may_create_project && !uploader.user_id.is_empty())
                    .map(|uploader| uploader.user_id.clone()),
            },
            release: ReleaseTarget {
                version: version.normalized(),
                canonical_version: canonical_version.clone(),
                is_prerelease: version.is_prerelease(),
                requires_python: requires_python.clone(),
                metadata_json: serde_json::to_string(&release_metadata)
                    .map_err(|error| ProcessError::BadEvent(format!("metadata: {error}")))?,
            },
            file: NewFile {
                filename: event.filename.clone(),
                packagetype: event.filetype.clone(),
                python_version: event.pyversion.clone(),
                size: i64::try_from(staged.size).unwrap_or(i64::MAX),
                md5_digest: digests.md5_hex(),
                sha256_digest: sha256.clone(),
                blake2_256_digest: blake2_256.clone(),
                path: path.clone(),
                comment_text: Some(event.comment.clone()).filter(|comment| !comment.is_empty()),
                uploaded_via: Some(event.uploaded_via.clone()).filter(|via| !via.is_empty()),
                requires_python,
                metadata_sha256: metadata_digests.as_ref().map(Digests::sha256_hex),
                metadata_blake2_256: metadata_digests.as_ref().map(Digests::blake2_256_hex),
            },
            submitted_by: submitted_by(event),
            closed_release_after_micros,
            now_micros,
        };
        let started = Instant::now();
        let result = self
            .index
            .commit_upload(&upload)
            .instrument(info_span!("worker.index_commit"))
            .await?;
        self.metrics
            .observe_stage(Stage::IndexCommit, started.elapsed());
        match result {
            CommitResult::Published {
                file,
                project_created,
                serial,
            } => {
                if project_created {
                    let created = serde_json::json!({
                        "project": project_name,
                        "normalized_name": normalized_name,
                        "created_by": uploader_name(event),
                        "serial": serial,
                    });
                    let announcement = PublicEvent {
                        subject: SUBJECT_PROJECT_CREATED.to_owned(),
                        payload: Bytes::from(created.to_string()),
                    };
                    if let Err(error) = self.bus.publish_event(announcement).await {
                        tracing::warn!(error = %error, "could not publish the project.created event");
                    }
                }
                Ok(published(event, &project_name, &file, false))
            }
            CommitResult::Identical(existing) => {
                Ok(published(event, &project_name, &existing, true))
            }
            CommitResult::Refused(refusal) => {
                // Another upload won the race; our copy is under a different path, unreferenced.
                self.blobs.delete(&package_key).await?;
                self.blobs.delete(&metadata_key).await?;
                Ok(rejected(
                    event,
                    refusal_rejection(&refusal, closed_release_days, uploader_name(event)),
                ))
            }
        }
    }

    /// Computes the three digests of the staged bytes in one pass, on a blocking thread.
    async fn hash_staged(
        &self,
        staging_key: &ObjectPath,
        size: u64,
    ) -> Result<Digests, ProcessError> {
        let span = info_span!("worker.hash", size);
        let started = Instant::now();
        let Some(staged) = self.blobs.get(staging_key, None).await? else {
            return Err(ProcessError::StagingGone);
        };
        let digests = match staged.payload {
            // A local file: read it directly on a blocking thread, in large chunks.
            GetResultPayload::File(file, _) => {
                tokio::task::spawn_blocking(move || {
                    let _entered = span.enter();
                    hash_reader(file)
                })
                .await??
            }
            // A remote object: one streamed GET, hashed on a blocking thread while the next
            // chunks arrive.
            GetResultPayload::Stream(mut stream) => {
                let (chunks, mut received) = tokio::sync::mpsc::channel::<Bytes>(8);
                let hasher = tokio::task::spawn_blocking(move || {
                    let _entered = span.enter();
                    let mut hasher = MultiHasher::default();
                    while let Some(chunk) = received.blocking_recv() {
                        hasher.update(&chunk);
                    }
                    hasher.finalize()
                });
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(BlobError::from)?;
                    if chunks.send(chunk).await.is_err() {
                        break;
                    }
                }
                drop(chunks);
                hasher.await?
            }
        };
        self.metrics.observe_stage(Stage::Hash, started.elapsed());
        Ok(digests)
    }

    /// Validates the archive and extracts a wheel's METADATA, on a blocking thread.
    async fn inspect(
        &self,
        event: &FileStaged,
        staging_key: &ObjectPath,
        size: u64,
        metadata: &ReleaseMetadata,
    ) -> Result<Result<Inspected, Refusal>, ProcessError> {
        let filetype = FileType::parse(&event.filetype)
            .ok_or_else(|| ProcessError::BadEvent(format!("filetype {}", event.filetype)))?;
        let reader = self.blobs.blocking_reader(
            staging_key.clone(),
            size,
            tokio::runtime::Handle::current(),
        );
        let filename = event.filename.clone();
        let license_files = metadata.license_file.clone();
        let limits = self.settings.archive_limits.clone();
        let span = info_span!("worker.inspect_archive");
        let started = Instant::now();
        let inspected = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            match filetype {
                FileType::BdistWheel => {
                    wheel::inspect_wheel(reader, &filename, &license_files, &limits).map(|wheel| {
                        Inspected {
                            wheel_metadata: Some(wheel.metadata),
                        }
                    })
                }
                FileType::Sdist => sdist::inspect_sdist(reader, &filename, &license_files, &limits)
                    .map(|_| Inspected {
                        wheel_metadata: None,
                    }),
            }
        })
        .await?;
        self.metrics
            .observe_stage(Stage::Inspect, started.elapsed());
        match inspected {
            Ok(inspected) => Ok(Ok(inspected)),
            // Our own read of the staged bytes failed: retry, it says nothing about the file.
            Err(error) if error.is_io() => Err(ProcessError::Read(std::io::Error::other(error))),
            Err(error) => Ok(Err(archive_rejection(&error))),
        }
    }
}

fn hash_reader(mut reader: impl Read) -> Result<Digests, std::io::Error> {
    let mut hasher = MultiHasher::default();
    let mut buffer = vec![0u8; HASH_CHUNK_BYTES];
    loop {
        let count = reader.read(&mut buffer)?;
        if count == 0 {
            break;
        }
        hasher.update(&buffer[..count]);
    }
    Ok(hasher.finalize())
}

fn uploader_name(event: &FileStaged) -> &str {
    event
        .uploader
        .as_ref()
        .map_or("", |uploader| uploader.user_name.as_str())
}

fn submitted_by(event: &FileStaged) -> String {
    match &event.uploader {
        Some(uploader) if !uploader.publisher_id.is_empty() => {
            format!("publisher:{}", uploader.publisher_id)
        }
        Some(uploader) => uploader.user_name.clone(),
        None => String::new(),
    }
}
