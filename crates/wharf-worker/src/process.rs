//! Processing of one staged upload.

use std::io::Read;
use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use prost::Message;
use tracing::{Instrument, info_span, instrument};
use wharf_archive::digest::{Digests, MultiHasher, hex_digest_matches, storage_path};
use wharf_archive::{sdist, wheel};
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
use wharf_proto::grant::GrantRefusal;
use wharf_proto::v1::upload_outcome::Result as OutcomeResult;
use wharf_proto::v1::{FilePublished, FileStaged, UploadGrantClaims, UploadOutcome};
use wharf_telemetry::{Stage, UploadResult};

use crate::{StorageWorker, WorkerSettings};

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
    /// The event's upload grant does not hold (forged, altered, expired, unsigned): the
    /// event is not a gateway's, and nothing of it is committed.
    #[error("untrusted staged event: {0}")]
    Untrusted(#[from] GrantRefusal),
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
            | ProcessError::BadEvent(_)
            | ProcessError::Untrusted(_) => false,
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
            messages::STAGED_BYTES_LOST
        }
        _ => messages::STORE_FAILED,
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
fn index_refusal(refusal: &FileRefusal, closed_release_days: u64, uploader: &str) -> Refusal {
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
        FileRefusal::NameTooSimilar { project_name } => name::too_similar_rejection(project_name),
        FileRefusal::ProjectTooLarge {
            project_name,
            limit,
        } => Refusal::bad_request(messages::project_too_large(project_name, *limit)),
    }
}

// ---------------------------------------------------------------------------------------------
// The steps' types: read → admit → inspect → store → commit, each step taking what the one
// before it established.
// ---------------------------------------------------------------------------------------------

/// One staged upload as the steps read it: the event, its form metadata in the core type, and
/// the names and version the index keys on.
struct StagedUpload<'a> {
    event: &'a FileStaged,
    /// The metadata the gateway validated from the upload form.
    form: ReleaseMetadata,
    /// The project name as sent.
    project_name: String,
    normalized_name: String,
    version: Version,
    canonical_version: String,
    staging_key: ObjectPath,
}

/// What admission established: the staged bytes are all there and hashed, they match the
/// digests the client declared, and the index rules let a new file in.
struct Admitted {
    size: u64,
    digests: Digests,
    /// The one clock reading that the rules and the commit share.
    now_micros: i64,
}

/// What inspection established: the archive is valid, and the metadata the release carries.
struct Inspected {
    /// A wheel's own METADATA when there is one (what installers will see through PEP 658),
    /// else the validated form.
    release_metadata: ReleaseMetadata,
    /// A wheel's METADATA bytes, stored beside it.
    wheel_metadata: Option<Vec<u8>>,
}

/// What storing established: the file lies under its content-addressed key (and a wheel's
/// METADATA beside it), not yet referenced by any index row, so not yet visible.
struct Stored {
    release_metadata: ReleaseMetadata,
    path: String,
    package_key: ObjectPath,
    metadata_key: ObjectPath,
    metadata_digests: Option<Digests>,
}

/// How an upload ends.
enum Verdict {
    /// The file is visible in the index. `already_existed` when the identical file was
    /// published by another upload; a redelivery of this upload answers as its first delivery
    /// did (false).
    Visible {
        file: Box<FileRecord>,
        already_existed: bool,
    },
    /// PyPI's rules refuse the file.
    Refused(Refusal),
}

impl Verdict {
    fn visible(file: impl Into<Box<FileRecord>>, already_existed: bool) -> Verdict {
        Verdict::Visible {
            file: file.into(),
            already_existed,
        }
    }

    /// The answer for the gateway.
    fn outcome(self, upload: &StagedUpload<'_>) -> UploadOutcome {
        match self {
            Verdict::Visible {
                file,
                already_existed,
            } => published(upload.event, &upload.project_name, &file, already_existed),
            Verdict::Refused(refusal) => rejected(upload.event, refusal),
        }
    }
}

/// Why a step did not hand on to the next: the verdict is already known, or processing failed.
enum Stop {
    Verdict(Verdict),
    Failed(ProcessError),
}

impl<E: Into<ProcessError>> From<E> for Stop {
    fn from(error: E) -> Stop {
        Stop::Failed(error.into())
    }
}

impl From<Verdict> for Stop {
    fn from(verdict: Verdict) -> Stop {
        Stop::Verdict(verdict)
    }
}

impl From<Refusal> for Stop {
    fn from(refusal: Refusal) -> Stop {
        Stop::Verdict(Verdict::Refused(refusal))
    }
}

impl<'a> StagedUpload<'a> {
    /// Reads the event; a malformed one is a bug in the gateway, never retried.
    fn read(event: &'a FileStaged) -> Result<StagedUpload<'a>, ProcessError> {
        let form = ReleaseMetadata::from(
            event
                .metadata
                .clone()
                .ok_or_else(|| ProcessError::BadEvent("metadata missing".to_owned()))?,
        );
        let project_name = form.name.clone().unwrap_or_default();
        let version = Version::parse(form.version.as_deref().unwrap_or_default())
            .map_err(|error| ProcessError::BadEvent(format!("version: {error}")))?;
        Ok(StagedUpload {
            event,
            normalized_name: name::normalize(&project_name),
            canonical_version: version.canonical(),
            staging_key: BlobStore::staging_key(&event.upload_id)?,
            form,
            project_name,
            version,
        })
    }

    fn uploader_name(&self) -> &str {
        self.event
            .uploader
            .as_ref()
            .map_or("", |uploader| uploader.user_name.as_str())
    }
}

impl WorkerSettings {
    fn closed_release_after_micros(&self) -> Option<i64> {
        self.closed_release_after
            .map(|window| i64::try_from(window.as_micros()).unwrap_or(i64::MAX))
    }

    fn closed_release_days(&self) -> u64 {
        self.closed_release_after
            .map_or(0, |window| window.as_secs() / 86_400)
    }
}

impl StorageWorker {
    /// Processes one staged upload and returns the answer for the gateway.
    #[instrument(skip_all, name = "worker.process_upload")]
    pub async fn process(&self, event: &FileStaged) -> Result<UploadOutcome, ProcessError> {
        check_grant(&self.settings, event)?;
        let upload = StagedUpload::read(event)?;
        let verdict = match self.steps(&upload).await {
            Ok(verdict) | Err(Stop::Verdict(verdict)) => verdict,
            Err(Stop::Failed(error)) => return Err(error),
        };
        Ok(verdict.outcome(&upload))
    }

    /// The steps in order. Nothing is visible before `commit`, whose one transaction makes the
    /// file visible, so a kill at any point leaves either no file or the whole file.
    async fn steps(&self, upload: &StagedUpload<'_>) -> Result<Verdict, Stop> {
        let admitted = self.admit(upload).await?;
        let inspected = self.inspect(upload, &admitted).await?;
        check_attestations(upload.event)?;
        let stored = self.store(upload, &admitted, inspected).await?;
        self.commit(upload, &admitted, stored).await
    }

    // -- admit ------------------------------------------------------------------------------

    /// Answers a redelivery as before; hashes the staged bytes and checks them against the
    /// declared digests and the index rules.
    async fn admit(&self, upload: &StagedUpload<'_>) -> Result<Admitted, Stop> {
        if let Some(file) = self.find_committed(upload).await? {
            return Err(Verdict::visible(file, false).into());
        }
        let size = self.staged_size(upload).await?;
        let digests = self.hash_staged(&upload.staging_key, size).await?;
        check_declared_digests(upload.event, &digests)?;
        let now_micros = jiff::Timestamp::now().as_microsecond();
        self.check_index_rules(upload, &digests, now_micros).await?;
        Ok(Admitted {
            size,
            digests,
            now_micros,
        })
    }

    /// The file an earlier delivery of this upload committed, if any.
    async fn find_committed(
        &self,
        upload: &StagedUpload<'_>,
    ) -> Result<Option<FileRecord>, ProcessError> {
        Ok(self
            .index
            .find_file_by_upload_id(&upload.event.upload_id)
            .await?)
    }

    /// The size of the staged bytes, which must be the size the gateway announced.
    async fn staged_size(&self, upload: &StagedUpload<'_>) -> Result<u64, Stop> {
        let Some(staged) = self.blobs.head(&upload.staging_key).await? else {
            // A concurrent delivery of the same upload may have committed and cleaned up
            // since the first lookup: then its answer is this one's too.
            if let Some(file) = self.find_committed(upload).await? {
                return Err(Verdict::visible(file, false).into());
            }
            return Err(ProcessError::StagingGone.into());
        };
        if staged.size != upload.event.size {
            return Err(ProcessError::SizeMismatch {
                announced: upload.event.size,
                actual: staged.size,
            }
            .into());
        }
        Ok(staged.size)
    }

    /// PyPI's duplicate and release rules, before the archive is read, as PyPI orders them.
    async fn check_index_rules(
        &self,
        upload: &StagedUpload<'_>,
        digests: &Digests,
        now_micros: i64,
    ) -> Result<(), Stop> {
        let sha256 = digests.sha256_hex();
        let blake2_256 = digests.blake2_256_hex();
        let candidate = FileCandidate {
            normalized_name: &upload.normalized_name,
            canonical_version: &upload.canonical_version,
            filename: &upload.event.filename,
            packagetype: &upload.event.filetype,
            sha256_digest: &sha256,
            blake2_256_digest: &blake2_256,
            closed_release_after_micros: self.settings.closed_release_after_micros(),
            now_micros,
        };
        match self.index.check_file(&candidate).await? {
            FileAdmission::New => Ok(()),
            FileAdmission::Identical(existing) => Err(Verdict::visible(existing, true).into()),
            FileAdmission::Refused(refusal) => Err(self.index_refusal(upload, &refusal).into()),
        }
    }

    fn index_refusal(&self, upload: &StagedUpload<'_>, refusal: &FileRefusal) -> Refusal {
        index_refusal(
            refusal,
            self.settings.closed_release_days(),
            upload.uploader_name(),
        )
    }

    // -- inspect ----------------------------------------------------------------------------

    /// Validates the archive and settles the release metadata: a wheel's own METADATA, which
    /// must agree with the form, else the form.
    async fn inspect(
        &self,
        upload: &StagedUpload<'_>,
        admitted: &Admitted,
    ) -> Result<Inspected, Stop> {
        let wheel_metadata = self.inspect_archive(upload, admitted.size).await?;
        let release_metadata = match &wheel_metadata {
            Some(bytes) => wheel_release_metadata(&upload.form, bytes)?,
            None => upload.form.clone(),
        };
        Ok(Inspected {
            release_metadata,
            wheel_metadata,
        })
    }

    /// Validates the archive on a blocking thread and returns a wheel's METADATA bytes.
    async fn inspect_archive(
        &self,
        upload: &StagedUpload<'_>,
        size: u64,
    ) -> Result<Option<Vec<u8>>, Stop> {
        let event = upload.event;
        let filetype = FileType::parse(&event.filetype)
            .ok_or_else(|| ProcessError::BadEvent(format!("filetype {}", event.filetype)))?;
        let reader = self.blobs.blocking_reader(
            upload.staging_key.clone(),
            size,
            tokio::runtime::Handle::current(),
        );
        let filename = event.filename.clone();
        let license_files = upload.form.license_file.clone();
        let limits = self.settings.archive_limits.clone();
        let span = info_span!("worker.inspect_archive");
        let started = Instant::now();
        let inspected = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            match filetype {
                FileType::BdistWheel => {
                    wheel::inspect_wheel(reader, &filename, &license_files, &limits)
                        .map(|wheel| Some(wheel.metadata))
                }
                FileType::Sdist => {
                    sdist::inspect_sdist(reader, &filename, &license_files, &limits).map(|_| None)
                }
            }
        })
        .await?;
        self.metrics
            .observe_stage(Stage::Inspect, started.elapsed());
        match inspected {
            Ok(wheel_metadata) => Ok(wheel_metadata),
            // Our own read of the staged bytes failed: retry, it says nothing about the file.
            Err(error) if error.is_io() => {
                Err(ProcessError::Read(std::io::Error::other(error)).into())
            }
            // The archive crate words its own verdicts as PyPI does.
            Err(error) => Err(Refusal::bad_request(error.upload_message()).into()),
        }
    }

    // -- store ------------------------------------------------------------------------------

    /// Copies the staged bytes to their content-addressed key, and a wheel's METADATA beside
    /// them. Nothing refers to them yet: a kill here leaves an unreferenced object, never a
    /// visible file, and a redelivery stores the same bytes under the same keys again.
    async fn store(
        &self,
        upload: &StagedUpload<'_>,
        admitted: &Admitted,
        inspected: Inspected,
    ) -> Result<Stored, ProcessError> {
        let path = storage_path(&admitted.digests.blake2_256_hex(), &upload.event.filename);
        let package_key = BlobStore::package_key(&path)?;
        let metadata_key = BlobStore::metadata_key(&path)?;
        let started = Instant::now();
        self.blobs
            .copy(&upload.staging_key, &package_key)
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
        Ok(Stored {
            release_metadata: inspected.release_metadata,
            path,
            package_key,
            metadata_key,
            metadata_digests,
        })
    }

    // -- commit -----------------------------------------------------------------------------

    /// Writes the index rows in one transaction: only then is the file visible. A race
    /// lost to another upload deletes this upload's stored copy.
    async fn commit(
        &self,
        upload: &StagedUpload<'_>,
        admitted: &Admitted,
        stored: Stored,
    ) -> Result<Verdict, Stop> {
        let new_upload = new_upload(
            upload,
            admitted,
            &stored,
            self.settings.closed_release_after_micros(),
        )?;
        let started = Instant::now();
        let result = self
            .index
            .commit_upload(&new_upload)
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
                log_published(upload, admitted);
                if project_created {
                    self.announce_project_created(upload, serial).await;
                }
                Ok(Verdict::visible(file, false))
            }
            CommitResult::Identical(existing) => Ok(Verdict::visible(existing, true)),
            CommitResult::Refused(refusal) => {
                // Another upload won the race; our copy is under a different path, unreferenced.
                self.blobs.delete(&stored.package_key).await?;
                self.blobs.delete(&stored.metadata_key).await?;
                Ok(Verdict::Refused(self.index_refusal(upload, &refusal)))
            }
        }
    }

    /// The public `project.created` event; a failure to send it is logged, the upload stands.
    async fn announce_project_created(&self, upload: &StagedUpload<'_>, serial: i64) {
        let created = serde_json::json!({
            "project": upload.project_name,
            "normalized_name": upload.normalized_name,
            "created_by": upload.uploader_name(),
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
}

/// Before anything, even reading the event: a trusted key signed the event's grant, it has
/// not expired, and the event is the upload it grants (id, hence staging object; project;
/// filename; version; uploader; the right to create the project).
fn check_grant(settings: &WorkerSettings, event: &FileStaged) -> Result<(), GrantRefusal> {
    let claims = settings.upload_grant_keys.verify(
        event.grant.as_ref(),
        jiff::Timestamp::now().as_microsecond(),
    )?;
    match claims.differs_from(&UploadGrantClaims::stated_by(event)) {
        Some(what) => Err(GrantRefusal::Mismatch(what)),
        None => Ok(()),
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

fn submitted_by(event: &FileStaged) -> String {
    match &event.uploader {
        Some(uploader) if !uploader.publisher_id.is_empty() => {
            format!("publisher:{}", uploader.publisher_id)
        }
        Some(uploader) => uploader.user_name.clone(),
        None => String::new(),
    }
}

/// Refuses declared digests that differ from the computed ones (case-insensitively; an
/// undeclared digest is not compared).
fn check_declared_digests(event: &FileStaged, digests: &Digests) -> Result<(), Refusal> {
    let declared = [
        (&event.md5_digest, digests.md5_hex()),
        (&event.sha256_digest, digests.sha256_hex()),
        (&event.blake2_256_digest, digests.blake2_256_hex()),
    ];
    let mismatch = declared
        .iter()
        .any(|(declared, actual)| !declared.is_empty() && !hex_digest_matches(declared, actual));
    if mismatch {
        return Err(Refusal::bad_request(messages::DIGEST_MISMATCH));
    }
    Ok(())
}

/// PyPI's step 23: attestations need a trusted publisher (Wharf accepts a publisher's
/// attestations without verifying or keeping them).
fn check_attestations(event: &FileStaged) -> Result<(), Refusal> {
    let trusted = event
        .uploader
        .as_ref()
        .is_some_and(|uploader| !uploader.publisher_id.is_empty());
    if event.attestations && !trusted {
        return Err(Refusal::bad_request(
            messages::ATTESTATIONS_NEED_TRUSTED_PUBLISHING,
        ));
    }
    Ok(())
}

/// A wheel's METADATA as the release metadata, once it agrees with the form.
fn wheel_release_metadata(
    form: &ReleaseMetadata,
    bytes: &[u8],
) -> Result<ReleaseMetadata, Refusal> {
    let file_metadata = core_metadata::parse_core_metadata(bytes)
        .map_err(|reason| Refusal::bad_request(messages::unparseable_metadata(&reason)))?;
    core_metadata::check_wheel_metadata_matches(form, &file_metadata)?;
    Ok(file_metadata)
}

/// The index rows for the stored file.
fn new_upload(
    upload: &StagedUpload<'_>,
    admitted: &Admitted,
    stored: &Stored,
    closed_release_after_micros: Option<i64>,
) -> Result<NewUpload, ProcessError> {
    let event = upload.event;
    let requires_python = stored.release_metadata.requires_python.clone();
    Ok(NewUpload {
        upload_id: event.upload_id.clone(),
        project: ProjectTarget {
            name: upload.project_name.clone(),
            normalized_name: upload.normalized_name.clone(),
            ultranormalized_name: name::ultranormalize(&upload.project_name),
            create_with_owner: event
                .uploader
                .as_ref()
                .filter(|uploader| uploader.may_create_project && !uploader.user_id.is_empty())
                .map(|uploader| uploader.user_id.clone()),
        },
        release: ReleaseTarget {
            version: upload.version.normalized(),
            canonical_version: upload.canonical_version.clone(),
            is_prerelease: upload.version.is_prerelease(),
            requires_python: requires_python.clone(),
            metadata_json: serde_json::to_string(&stored.release_metadata)
                .map_err(|error| ProcessError::BadEvent(format!("metadata: {error}")))?,
        },
        file: NewFile {
            filename: event.filename.clone(),
            packagetype: event.filetype.clone(),
            python_version: event.pyversion.clone(),
            size: i64::try_from(admitted.size).unwrap_or(i64::MAX),
            md5_digest: admitted.digests.md5_hex(),
            sha256_digest: admitted.digests.sha256_hex(),
            blake2_256_digest: admitted.digests.blake2_256_hex(),
            path: stored.path.clone(),
            comment_text: Some(event.comment.clone()).filter(|comment| !comment.is_empty()),
            uploaded_via: Some(event.uploaded_via.clone()).filter(|via| !via.is_empty()),
            requires_python,
            metadata_sha256: stored.metadata_digests.as_ref().map(Digests::sha256_hex),
            metadata_blake2_256: stored
                .metadata_digests
                .as_ref()
                .map(Digests::blake2_256_hex),
        },
        submitted_by: submitted_by(event),
        closed_release_after_micros,
        // The limit the gateway admitted the upload under, enforced again by the commit.
        max_project_size: event.max_project_size,
        now_micros: admitted.now_micros,
    })
}

/// The operator's one line per committed file (written once: only the commit that made the
/// file visible logs it), in the upload's trace, so it ends with the trace id the client got
/// in `X-Wharf-Trace-Id`.
fn log_published(upload: &StagedUpload<'_>, admitted: &Admitted) {
    tracing::info!(
        project = %upload.project_name,
        version = %upload.version.normalized(),
        filename = %upload.event.filename,
        size = admitted.size,
        sha256 = %admitted.digests.sha256_hex(),
        by = %submitted_by(upload.event),
        "file published"
    );
}
