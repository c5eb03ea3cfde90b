//! The storage worker end to end inside one process: a staged wheel, a `FileStaged` event on
//! the in-process bus, a temp SQLite index and a temp local (or in-memory) object store.
//!
//! Digests are computed here with the RustCrypto crates directly, independently of
//! `wharf-archive`'s hasher, and storage paths are built by hand from PyPI's layout.

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use prost::Message;
use sha2::Digest;
use tokio_util::sync::CancellationToken;
use wharf_blob::BlobStore;
use wharf_bus::{
    Backlog, BusError, Delivery, InProcessBus, OutcomeWatch, PublicEvent, SUBJECT_FILE_PUBLISHED,
    UploadBus,
};
use wharf_core::form::ReleaseMetadata;
use wharf_core::refusal::Refusal;
use wharf_index::User;
use wharf_index::prelude::*;
use wharf_index_sqlite::SqliteIndex;
use wharf_proto::grant::{UploadGrantKeys, UploadGrantSigner};
use wharf_proto::v1::upload_outcome::Result as OutcomeResult;
use wharf_proto::v1::{FilePublished, FileStaged, UploadGrantClaims, UploadOutcome, Uploader};
use wharf_worker::{ProcessError, StorageWorker, WorkerSettings};

const OUTCOME_TIMEOUT: Duration = Duration::from_secs(30);
const DIGEST_MISMATCH: &str =
    "The digest supplied does not match a digest calculated from the uploaded file.";

// ---------------------------------------------------------------------------------------------
// Independent digests and paths
// ---------------------------------------------------------------------------------------------

struct Hashes {
    md5: String,
    sha256: String,
    blake2_256: String,
}

fn hashes(bytes: &[u8]) -> Hashes {
    Hashes {
        md5: hex::encode(md5::Md5::digest(bytes)),
        sha256: hex::encode(sha2::Sha256::digest(bytes)),
        blake2_256: hex::encode(blake2::Blake2b::<blake2::digest::consts::U32>::digest(
            bytes,
        )),
    }
}

/// PyPI's `<b[0:2]>/<b[2:4]>/<b[4:]>/<filename>` (spec a.8).
fn pypi_path(bytes: &[u8], filename: &str) -> String {
    let b = hashes(bytes).blake2_256;
    format!("{}/{}/{}/{filename}", &b[..2], &b[2..4], &b[4..])
}

#[test]
fn independent_hashes_are_the_right_algorithms() {
    // hashlib.blake2b(b"", digest_size=32) — not BLAKE2b-512 truncated.
    let empty = hashes(b"");
    assert_eq!(
        empty.blake2_256,
        "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8"
    );
    assert_eq!(empty.md5, "d41d8cd98f00b204e9800998ecf8427e");
    assert_eq!(
        empty.sha256,
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

// ---------------------------------------------------------------------------------------------
// Wheels
// ---------------------------------------------------------------------------------------------

/// A wheel built in memory, byte-for-byte reproducible.
struct Wheel {
    filename: String,
    bytes: Vec<u8>,
    metadata: Vec<u8>,
}

fn build_wheel(name: &str, version: &str, module_body: &str) -> Wheel {
    let dist = wharf_core::name::normalize(name).replace('-', "_");
    let dist_info = format!("{dist}-{version}.dist-info");
    let metadata = format!(
        "Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: A test package\n\
         Requires-Python: >=3.9\n\nA long description.\n"
    )
    .into_bytes();
    let wheel =
        b"Wheel-Version: 1.0\nGenerator: wharf-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n";
    let module = format!("{dist}/__init__.py");
    let record =
        format!("{module},,\n{dist_info}/METADATA,,\n{dist_info}/WHEEL,,\n{dist_info}/RECORD,,\n");
    let members: Vec<(String, Vec<u8>, zip::CompressionMethod)> = vec![
        (
            module,
            module_body.as_bytes().to_vec(),
            zip::CompressionMethod::Deflated,
        ),
        (
            format!("{dist_info}/METADATA"),
            metadata.clone(),
            zip::CompressionMethod::Deflated,
        ),
        // Stored, so a test can corrupt its bytes in place.
        (
            format!("{dist_info}/WHEEL"),
            wheel.to_vec(),
            zip::CompressionMethod::Stored,
        ),
        (
            format!("{dist_info}/RECORD"),
            record.into_bytes(),
            zip::CompressionMethod::Deflated,
        ),
    ];
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (path, content, method) in members {
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(method)
            .last_modified_time(zip::DateTime::default())
            .unix_permissions(0o644);
        zip.start_file(path, options).expect("start member");
        zip.write_all(&content).expect("write member");
    }
    let bytes = zip.finish().expect("finish zip").into_inner();
    Wheel {
        filename: format!("{dist}-{version}-py3-none-any.whl"),
        bytes,
        metadata,
    }
}

#[test]
fn wheels_are_reproducible() {
    let a = build_wheel("demo-pkg", "1.0", "x = 1\n");
    let b = build_wheel("demo-pkg", "1.0", "x = 1\n");
    assert_eq!(a.bytes, b.bytes);
    assert_ne!(a.bytes, build_wheel("demo-pkg", "1.0", "x = 2\n").bytes);
}

// ---------------------------------------------------------------------------------------------
// A bus that records every outcome the worker publishes
// ---------------------------------------------------------------------------------------------

/// The in-process bus, plus a log of every outcome (the in-process bus only hands the first
/// one to the waiting gateway and drops the others).
#[derive(Debug)]
struct RecordingBus {
    inner: InProcessBus,
    outcomes: Mutex<Vec<UploadOutcome>>,
}

impl RecordingBus {
    fn outcomes_for(&self, upload_id: &str) -> Vec<UploadOutcome> {
        self.outcomes
            .lock()
            .expect("outcomes")
            .iter()
            .filter(|outcome| outcome.upload_id == upload_id)
            .cloned()
            .collect()
    }

    /// Waits until `count` outcomes of `upload_id` were published.
    async fn wait_for_outcomes(&self, upload_id: &str, count: usize) -> Vec<UploadOutcome> {
        let deadline = tokio::time::Instant::now() + OUTCOME_TIMEOUT;
        loop {
            let outcomes = self.outcomes_for(upload_id);
            if outcomes.len() >= count {
                return outcomes;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {} of {count} outcomes arrived: {outcomes:?}",
                outcomes.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[async_trait]
impl UploadBus for RecordingBus {
    async fn ping(&self) -> Result<(), BusError> {
        self.inner.ping().await
    }

    async fn watch_outcome(&self, upload_id: &str) -> Result<OutcomeWatch, BusError> {
        self.inner.watch_outcome(upload_id).await
    }

    async fn publish_staged(&self, event: &FileStaged) -> Result<(), BusError> {
        self.inner.publish_staged(event).await
    }

    async fn publish_outcome(&self, outcome: &UploadOutcome) -> Result<(), BusError> {
        self.outcomes
            .lock()
            .expect("outcomes")
            .push(outcome.clone());
        self.inner.publish_outcome(outcome).await
    }

    async fn publish_event(&self, event: PublicEvent) -> Result<(), BusError> {
        self.inner.publish_event(event).await
    }

    async fn staged_deliveries(&self) -> Result<BoxStream<'static, Delivery>, BusError> {
        self.inner.staged_deliveries().await
    }

    async fn backlog(&self) -> Result<Backlog, BusError> {
        self.inner.backlog().await
    }
}

// ---------------------------------------------------------------------------------------------
// Environment
// ---------------------------------------------------------------------------------------------

struct Env {
    dir: tempfile::TempDir,
    index: Arc<SqliteIndex>,
    blobs: BlobStore,
    /// What the gateway talks to.
    bus: InProcessBus,
    recorder: Arc<RecordingBus>,
    worker: StorageWorker,
    user: User,
    /// The verifier's key, whose grants the worker trusts.
    grant_key: UploadGrantSigner,
}

impl Env {
    /// A temp SQLite index and a temp local object store.
    async fn new() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let blobs = BlobStore::local(&dir.path().join("blobs")).expect("local store");
        Env::with_blobs(dir, blobs).await
    }

    async fn with_blobs(dir: tempfile::TempDir, blobs: BlobStore) -> Env {
        let index = Arc::new(
            SqliteIndex::open(&dir.path().join("index.sqlite3"))
                .await
                .expect("open index"),
        );
        let user = index
            .create_user("alice", 1_700_000_000_000_000)
            .await
            .expect("create user");
        let bus = InProcessBus::new();
        let recorder = Arc::new(RecordingBus {
            inner: bus.clone(),
            outcomes: Mutex::new(Vec::new()),
        });
        let grant_key = UploadGrantSigner::generate().expect("grant key");
        let worker = StorageWorker::new(
            Arc::clone(&index) as Arc<dyn Index>,
            blobs.clone(),
            Arc::clone(&recorder) as Arc<dyn UploadBus>,
            WorkerSettings {
                upload_grant_keys: UploadGrantKeys::new([grant_key.public_key()]),
                ..WorkerSettings::default()
            },
        );
        Env {
            dir,
            index,
            blobs,
            bus,
            recorder,
            worker,
            user,
            grant_key,
        }
    }

    /// Starts the worker's consumer loop.
    fn start(&self) -> Running {
        let token = CancellationToken::new();
        let handle = tokio::spawn(self.worker.clone().run(token.clone()));
        Running { token, handle }
    }

    /// Puts the bytes where the gateway would have staged them.
    async fn stage(&self, event: &FileStaged, bytes: &[u8]) {
        let key = BlobStore::staging_key(&event.upload_id).expect("staging key");
        self.blobs
            .put(&key, Bytes::copy_from_slice(bytes))
            .await
            .expect("stage");
    }

    /// What the gateway does: watch, publish, wait for the answer.
    async fn submit(&self, event: &FileStaged) -> UploadOutcome {
        let watch = self
            .bus
            .watch_outcome(&event.upload_id)
            .await
            .expect("watch");
        self.bus.publish_staged(event).await.expect("publish");
        watch.wait(OUTCOME_TIMEOUT).await.expect("outcome")
    }

    /// Grants `event` as it now reads, as the verifier would, valid for an hour.
    fn grant(&self, event: &mut FileStaged) {
        event.grant = Some(self.grant_key.sign(&UploadGrantClaims {
            expires_at_micros: jiff::Timestamp::now().as_microsecond() + 3_600_000_000,
            ..UploadGrantClaims::stated_by(event)
        }));
    }

    /// A `FileStaged` for `wheel` by this env's user, declaring all three digests, with its
    /// upload grant.
    fn event(&self, wheel: &Wheel, name: &str, version: &str) -> FileStaged {
        let mut event = self.ungranted_event(wheel, name, version);
        self.grant(&mut event);
        event
    }

    /// [`Env::event`] without the grant.
    fn ungranted_event(&self, wheel: &Wheel, name: &str, version: &str) -> FileStaged {
        let upload_id = uuid::Uuid::new_v4().to_string();
        let digests = hashes(&wheel.bytes);
        let metadata = ReleaseMetadata {
            metadata_version: Some("2.1".to_owned()),
            name: Some(name.to_owned()),
            version: Some(version.to_owned()),
            ..ReleaseMetadata::default()
        };
        FileStaged {
            staging_key: BlobStore::staging_key(&upload_id)
                .expect("staging key")
                .to_string(),
            upload_id,
            size: wheel.bytes.len() as u64,
            filename: wheel.filename.clone(),
            filetype: "bdist_wheel".to_owned(),
            pyversion: "py3".to_owned(),
            md5_digest: digests.md5,
            sha256_digest: digests.sha256,
            blake2_256_digest: digests.blake2_256,
            comment: String::new(),
            uploaded_via: "twine/6.1.0 CPython/3.12.3".to_owned(),
            metadata: Some(metadata.into()),
            uploader: Some(Uploader {
                user_id: self.user.id.clone(),
                publisher_id: String::new(),
                may_create_project: true,
                user_name: self.user.name.clone(),
            }),
            received_at_micros: 1_700_000_000_000_000,
            max_project_size: None,
            trace_context: Default::default(),
            grant: None,
            attestations: false,
        }
    }

    async fn staging_exists(&self, event: &FileStaged) -> bool {
        let key = BlobStore::staging_key(&event.upload_id).expect("staging key");
        self.blobs.head(&key).await.expect("head").is_some()
    }

    async fn object(&self, key: &str) -> Option<Vec<u8>> {
        let key = wharf_blob::ObjectPath::parse(key).expect("key");
        let result = self.blobs.get(&key, None).await.expect("get")?;
        Some(result.bytes().await.expect("read object").to_vec())
    }

    /// Every file below `packages/` in the local store.
    fn package_files(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries {
                let path = entry.expect("dir entry").path();
                if path.is_dir() {
                    walk(&path, out);
                } else {
                    out.push(path);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.dir.path().join("blobs").join("packages"), &mut out);
        out
    }

    async fn file_rows(&self, normalized_name: &str) -> Vec<wharf_index::FileRecord> {
        match self
            .index
            .find_project(normalized_name)
            .await
            .expect("find project")
        {
            Some(project) => self
                .index
                .project_files(&project.id)
                .await
                .expect("project files"),
            None => Vec::new(),
        }
    }

    /// Nothing of an upload is visible: no project, no journal, no stored object.
    async fn assert_nothing_published(&self, normalized_name: &str) {
        assert!(
            self.index
                .find_project(normalized_name)
                .await
                .expect("find")
                .is_none()
        );
        assert_eq!(self.index.max_serial().await.expect("max_serial"), 0);
        assert_eq!(self.package_files(), Vec::<PathBuf>::new());
    }
}

struct Running {
    token: CancellationToken,
    handle: tokio::task::JoinHandle<Result<(), BusError>>,
}

impl Running {
    /// Stops pulling and waits for the uploads in flight (so their staging is cleaned).
    async fn stop(self) {
        self.token.cancel();
        tokio::time::timeout(OUTCOME_TIMEOUT, self.handle)
            .await
            .expect("worker stops")
            .expect("worker task")
            .expect("worker run");
    }
}

fn published(outcome: &UploadOutcome) -> &FilePublished {
    match &outcome.result {
        Some(OutcomeResult::Published(published)) => published,
        other => panic!("not published: {other:?}"),
    }
}

fn rejected(outcome: &UploadOutcome) -> Refusal {
    match &outcome.result {
        Some(OutcomeResult::Rejected(rejected)) => Refusal::from(rejected.clone()),
        other => panic!("not rejected: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_a_staged_wheel() {
    let env = Env::new().await;
    let wheel = build_wheel("Demo.Pkg", "1.0", "__version__ = '1.0'\n");
    let event = env.event(&wheel, "Demo.Pkg", "1.0");
    env.stage(&event, &wheel.bytes).await;
    let mut public_events = env.bus.subscribe_events();

    let running = env.start();
    let outcome = env.submit(&event).await;
    running.stop().await;

    assert_eq!(outcome.upload_id, event.upload_id);
    let expected = hashes(&wheel.bytes);
    let answer = published(&outcome);
    assert_eq!(answer.project, "Demo.Pkg");
    assert_eq!(answer.normalized_name, "demo-pkg");
    assert_eq!(answer.version, "1.0");
    assert_eq!(answer.filename, "demo_pkg-1.0-py3-none-any.whl");
    assert_eq!(answer.size, wheel.bytes.len() as u64);
    assert_eq!(answer.sha256, expected.sha256);
    assert_eq!(answer.blake2_256, expected.blake2_256);
    assert!(!answer.already_existed);
    assert_eq!(
        answer.serial,
        env.index.max_serial().await.expect("max_serial")
    );

    // The index row: digests as computed here, PyPI's storage path, the PEP 658 digests.
    let rows = env.file_rows("demo-pkg").await;
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.filename, wheel.filename);
    assert_eq!(row.packagetype, "bdist_wheel");
    assert_eq!(row.python_version, "py3");
    assert_eq!(row.version, "1.0");
    assert_eq!(row.size, wheel.bytes.len() as i64);
    assert_eq!(row.md5_digest, expected.md5);
    assert_eq!(row.sha256_digest, expected.sha256);
    assert_eq!(row.blake2_256_digest, expected.blake2_256);
    let path = pypi_path(&wheel.bytes, &wheel.filename);
    assert_eq!(row.path, path);
    assert_eq!(row.requires_python.as_deref(), Some(">=3.9"));
    let metadata_hashes = hashes(&wheel.metadata);
    assert_eq!(
        row.metadata_sha256.as_deref(),
        Some(metadata_hashes.sha256.as_str())
    );
    assert_eq!(
        row.metadata_blake2_256.as_deref(),
        Some(metadata_hashes.blake2_256.as_str())
    );
    assert_eq!(
        env.index
            .find_file_by_upload_id(&event.upload_id)
            .await
            .expect("by upload id")
            .as_ref(),
        Some(row)
    );

    // Project created with the uploader as owner; the release carries the wheel's metadata.
    let project = env
        .index
        .find_project("demo-pkg")
        .await
        .expect("find")
        .expect("project");
    assert_eq!(project.name, "Demo.Pkg");
    assert_eq!(
        env.index
            .user_role(&project.id, &env.user.id)
            .await
            .expect("role"),
        Some("Owner".to_owned())
    );
    let releases = env
        .index
        .project_releases(&project.id)
        .await
        .expect("releases");
    assert_eq!(releases.len(), 1);
    let release_metadata: ReleaseMetadata =
        serde_json::from_str(&releases[0].metadata).expect("release metadata json");
    assert_eq!(release_metadata.summary.as_deref(), Some("A test package"));
    assert_eq!(release_metadata.requires_python.as_deref(), Some(">=3.9"));

    // The stored objects: the very bytes, and METADATA beside them.
    assert_eq!(
        env.object(&format!("packages/{path}")).await.as_deref(),
        Some(wheel.bytes.as_slice())
    );
    assert_eq!(
        env.object(&format!("packages/{path}.metadata"))
            .await
            .as_deref(),
        Some(wheel.metadata.as_slice())
    );
    assert_eq!(env.package_files().len(), 2);

    // Staging is gone once the delivery is settled.
    assert!(!env.staging_exists(&event).await);

    // Public events: the project's creation, then the file.
    let created = public_events.try_recv().expect("project.created event");
    assert_eq!(created.subject, "wharf.events.project.created");
    let created: serde_json::Value = serde_json::from_slice(&created.payload).expect("json");
    assert_eq!(created["normalized_name"], "demo-pkg");
    let public = public_events.try_recv().expect("file.published event");
    assert_eq!(public.subject, SUBJECT_FILE_PUBLISHED);
    assert_eq!(
        FilePublished::decode(public.payload).expect("decode event"),
        *answer
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_event_twice_is_one_file_and_the_same_answer() {
    let env = Env::new().await;
    let wheel = build_wheel("demo", "2.0", "VALUE = 2\n");
    let event = env.event(&wheel, "demo", "2.0");
    env.stage(&event, &wheel.bytes).await;

    // Processing directly, twice.
    let first = env.worker.process(&event).await.expect("first process");
    assert!(!published(&first).already_existed);
    let second = env.worker.process(&event).await.expect("second process");
    assert_eq!(second, first);
    assert_eq!(env.file_rows("demo").await.len(), 1);

    // The same event through the bus, twice (a redelivery, then another one after the
    // staging was cleaned up by the first).
    let running = env.start();
    let through_bus = env.submit(&event).await;
    assert_eq!(through_bus, first);
    let again = env.submit(&event).await;
    assert_eq!(again, first);
    running.stop().await;

    let rows = env.file_rows("demo").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].sha256_digest, hashes(&wheel.bytes).sha256);
    let path = pypi_path(&wheel.bytes, &wheel.filename);
    assert_eq!(
        env.object(&format!("packages/{path}")).await.as_deref(),
        Some(wheel.bytes.as_slice())
    );
    assert_eq!(env.package_files().len(), 2);
    assert!(!env.staging_exists(&event).await);
    // Journal: create, add Owner, new release, add file — nothing more.
    assert_eq!(env.index.max_serial().await.expect("max_serial"), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_delivery_in_flight_is_one_file() {
    for round in 0..5 {
        let env = Env::new().await;
        let wheel = build_wheel("demo", "3.0", &format!("ROUND = {round}\n"));
        let event = env.event(&wheel, "demo", "3.0");
        env.stage(&event, &wheel.bytes).await;

        // Both copies are queued before the worker (two uploads at a time) starts.
        let watch = env
            .bus
            .watch_outcome(&event.upload_id)
            .await
            .expect("watch");
        env.bus.publish_staged(&event).await.expect("publish");
        env.bus.publish_staged(&event).await.expect("publish again");
        let running = env.start();
        let answer = watch.wait(OUTCOME_TIMEOUT).await.expect("outcome");
        let outcomes = env.recorder.wait_for_outcomes(&event.upload_id, 2).await;
        running.stop().await;

        let first = published(&answer);
        assert_eq!(first.sha256, hashes(&wheel.bytes).sha256);
        // Every answer for this upload says "stored" with the same file: none is an error.
        for outcome in &outcomes {
            let other = published(outcome);
            assert_eq!(
                (
                    &other.filename,
                    &other.sha256,
                    &other.blake2_256,
                    &other.version
                ),
                (
                    &first.filename,
                    &first.sha256,
                    &first.blake2_256,
                    &first.version
                ),
                "round {round}"
            );
        }
        assert_eq!(env.file_rows("demo").await.len(), 1, "round {round}");
        assert_eq!(
            env.package_files().len(),
            2,
            "round {round}: {:?}",
            env.package_files()
        );
        assert!(!env.staging_exists(&event).await, "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_upload_of_the_same_bytes_is_a_noop_and_other_bytes_are_refused() {
    let env = Env::new().await;
    let wheel = build_wheel("demo", "1.0", "A = 1\n");
    let event = env.event(&wheel, "demo", "1.0");
    env.stage(&event, &wheel.bytes).await;
    let original = env.worker.process(&event).await.expect("process");
    let serial = published(&original).serial;

    // twine re-run: a new upload id, identical bytes.
    let rerun = env.event(&wheel, "demo", "1.0");
    env.stage(&rerun, &wheel.bytes).await;
    let running = env.start();
    let outcome = env.submit(&rerun).await;
    let answer = published(&outcome);
    assert!(answer.already_existed);
    assert_eq!(answer.sha256, published(&original).sha256);
    assert_eq!(answer.serial, serial);

    // Other bytes under the taken filename: PyPI's "File already exists".
    let other = build_wheel("demo", "1.0", "A = 2\n");
    assert_eq!(other.filename, wheel.filename);
    let conflicting = env.event(&other, "demo", "1.0");
    env.stage(&conflicting, &other.bytes).await;
    let outcome = env.submit(&conflicting).await;
    running.stop().await;
    let refusal = rejected(&outcome);
    assert_eq!(refusal.status(), 400);
    assert_eq!(
        refusal.message,
        format!(
            "File already exists ('{}', with blake2_256 hash '{}'). See \
             https://pypi.org/help/#file-name-reuse for more information.",
            other.filename,
            hashes(&other.bytes).blake2_256
        )
    );
    assert!(refusal.message.starts_with("File already exists"));

    assert_eq!(env.file_rows("demo").await.len(), 1);
    assert_eq!(env.index.max_serial().await.expect("max_serial"), serial);
    let other_path = pypi_path(&other.bytes, &other.filename);
    assert_eq!(env.object(&format!("packages/{other_path}")).await, None);
    assert_eq!(env.package_files().len(), 2);
    assert!(!env.staging_exists(&rerun).await);
    assert!(!env.staging_exists(&conflicting).await);
}

/// About `len` characters of incompressible text (hex of a fixed pseudo-random sequence), so a
/// wheel holding it is about `len / 2` bytes.
fn noise(seed: u64, len: usize) -> String {
    let mut state = seed;
    let mut out = String::with_capacity(len);
    while out.len() < len {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        out.push_str(&format!("{:016x}", state >> 1));
    }
    out
}

/// Two uploads that each fit under a 1 MiB project limit but not together, both admitted
/// (as concurrent uploads are, against the same total): the commit refuses the second with
/// PyPI's words and the limit in a unit that does not round to 0; its stored copy and its
/// staged bytes are gone, nothing of it is visible (issue #12, finding 10).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_project_size_limit_holds_at_commit() {
    let env = Env::new().await;
    let limit = 1 << 20;
    let first = build_wheel("demo", "1.0", &format!("A = '{}'\n", noise(1, 1_200_000)));
    let second = build_wheel("demo", "1.1", &format!("A = '{}'\n", noise(2, 1_200_000)));
    let (a, b) = (first.bytes.len() as u64, second.bytes.len() as u64);
    assert!(a < limit && b < limit && a + b > limit, "{a} + {b}");
    let mut events = Vec::new();
    for (wheel, version) in [(&first, "1.0"), (&second, "1.1")] {
        let mut event = env.ungranted_event(wheel, "demo", version);
        event.max_project_size = Some(limit);
        env.grant(&mut event);
        env.stage(&event, &wheel.bytes).await;
        events.push(event);
    }
    let running = env.start();
    published(&env.submit(&events[0]).await);
    let outcome = env.submit(&events[1]).await;
    running.stop().await;
    let refusal = rejected(&outcome);
    assert_eq!(refusal.status(), 400);
    assert_eq!(
        refusal.message,
        "Project size too large. Limit for project 'demo' total size is 1 MB. \
         See https://pypi.org/help/#project-size-limit for more information."
    );
    assert_eq!(env.file_rows("demo").await.len(), 1);
    let project = env
        .index
        .find_project("demo")
        .await
        .expect("find")
        .expect("project");
    assert_eq!(project.total_size as u64, a);
    let refused_path = pypi_path(&second.bytes, &second.filename);
    assert_eq!(env.object(&format!("packages/{refused_path}")).await, None);
    // The first wheel and its METADATA.
    assert_eq!(env.package_files().len(), 2);
    assert!(!env.staging_exists(&events[1]).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_digests_must_match() {
    let env = Env::new().await;
    let wheel = build_wheel("demo", "1.0", "A = 1\n");
    let wrong = hashes(b"something else entirely");

    // Each declared digest is checked on its own, directly…
    let mut events = Vec::new();
    for field in ["md5", "sha256", "blake2_256"] {
        let mut event = env.event(&wheel, "demo", "1.0");
        match field {
            "md5" => event.md5_digest = wrong.md5.clone(),
            "sha256" => event.sha256_digest = wrong.sha256.clone(),
            _ => event.blake2_256_digest = wrong.blake2_256.clone(),
        }
        env.stage(&event, &wheel.bytes).await;
        let outcome = env.worker.process(&event).await.expect("process");
        let refusal = rejected(&outcome);
        assert_eq!(refusal.status(), 400, "{field}");
        assert_eq!(refusal.message, DIGEST_MISMATCH, "{field}");
        events.push(event);
    }
    env.assert_nothing_published("demo").await;

    // …and through the bus, which also cleans the staging up.
    let running = env.start();
    for event in &events {
        let outcome = env.submit(event).await;
        assert_eq!(rejected(&outcome).message, DIGEST_MISMATCH);
    }
    running.stop().await;
    for event in &events {
        assert!(!env.staging_exists(event).await);
    }
    env.assert_nothing_published("demo").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_digests_compare_case_insensitively_and_may_be_absent() {
    let env = Env::new().await;
    let wheel = build_wheel("demo", "1.0", "A = 1\n");
    let mut event = env.event(&wheel, "demo", "1.0");
    event.sha256_digest = event.sha256_digest.to_ascii_uppercase();
    event.md5_digest.clear();
    event.blake2_256_digest.clear();
    env.stage(&event, &wheel.bytes).await;
    let outcome = env.worker.process(&event).await.expect("process");
    let answer = published(&outcome);
    // What is stored is the lower-case digest computed from the bytes.
    assert_eq!(answer.sha256, hashes(&wheel.bytes).sha256);
    assert_eq!(
        env.file_rows("demo").await[0].md5_digest,
        hashes(&wheel.bytes).md5
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attestations_need_a_trusted_publisher() {
    const REFUSED: &str = "Invalid attestations supplied during upload: \
         Attestations are only supported when using Trusted Publishing";
    let env = Env::new().await;
    let wheel = build_wheel("demo", "1.0", "A = 1\n");
    let process = |event: FileStaged, bytes: Vec<u8>| {
        let env = &env;
        async move {
            env.stage(&event, &bytes).await;
            env.worker.process(&event).await.expect("process")
        }
    };
    // A user's upload that carries attestations is refused, with PyPI's text…
    let mut by_user = env.event(&wheel, "demo", "1.0");
    by_user.attestations = true;
    let refusal = rejected(&process(by_user, wheel.bytes.clone()).await);
    assert_eq!((refusal.status(), refusal.message.as_str()), (400, REFUSED));
    env.assert_nothing_published("demo").await;
    // …after the archive checks, as PyPI orders them (step 21 before step 23).
    let not_a_zip = Wheel {
        filename: wheel.filename.clone(),
        bytes: b"not a zip".to_vec(),
        metadata: Vec::new(),
    };
    let mut broken = env.event(&not_a_zip, "demo", "1.0");
    broken.attestations = true;
    let refusal = rejected(&process(broken, not_a_zip.bytes.clone()).await);
    assert!(refusal.message.starts_with("Invalid distribution file."));
    // Without attestations the same file is published; a trusted publisher's attestations
    // are accepted (unverified).
    let plain = env.event(&wheel, "demo", "1.0");
    published(&process(plain, wheel.bytes.clone()).await);
    let next = build_wheel("demo", "2.0", "A = 2\n");
    let mut by_publisher = env.ungranted_event(&next, "demo", "2.0");
    by_publisher.attestations = true;
    by_publisher.uploader = Some(Uploader {
        user_id: String::new(),
        publisher_id: "publisher-1".to_owned(),
        may_create_project: false,
        user_name: String::new(),
    });
    env.grant(&mut by_publisher);
    published(&process(by_publisher, next.bytes.clone()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_wheels_are_rejected_and_cleaned_up() {
    let env = Env::new().await;
    let good = build_wheel("demo", "1.0", "A = 1\n");

    // Not a zip at all.
    let not_a_zip = Wheel {
        filename: good.filename.clone(),
        bytes: b"this is not a zip archive, just text pretending to be one".to_vec(),
        metadata: Vec::new(),
    };
    // A zip whose WHEEL member's bytes were altered (CRC mismatch on read).
    let mut flipped = good.bytes.clone();
    let at = flipped
        .windows(b"Root-Is-Purelib".len())
        .position(|window| window == b"Root-Is-Purelib")
        .expect("stored WHEEL content");
    flipped[at] ^= 0x20;
    let corrupt_member = Wheel {
        filename: good.filename.clone(),
        bytes: flipped,
        metadata: Vec::new(),
    };
    // Truncated in the middle.
    let truncated = Wheel {
        filename: good.filename.clone(),
        bytes: good.bytes[..good.bytes.len() / 2].to_vec(),
        metadata: Vec::new(),
    };

    let running = env.start();
    for (label, wheel) in [
        ("not a zip", &not_a_zip),
        ("corrupt member", &corrupt_member),
        ("truncated", &truncated),
    ] {
        let event = env.event(wheel, "demo", "1.0");
        env.stage(&event, &wheel.bytes).await;
        let outcome = env.submit(&event).await;
        let refusal = rejected(&outcome);
        assert_eq!(refusal.status(), 400, "{label}");
        assert!(
            refusal.message.starts_with("Invalid distribution file."),
            "{label}: {}",
            refusal.message
        );
    }
    running.stop().await;
    for (label, wheel) in [
        ("not a zip", &not_a_zip),
        ("corrupt member", &corrupt_member),
    ] {
        let path = pypi_path(&wheel.bytes, &wheel.filename);
        assert_eq!(
            env.object(&format!("packages/{path}")).await,
            None,
            "{label}"
        );
    }
    env.assert_nothing_published("demo").await;
    let staged: Vec<_> = std::fs::read_dir(env.dir.path().join("blobs").join("staging"))
        .map(|entries| entries.map(|entry| entry.expect("entry").path()).collect())
        .unwrap_or_default();
    assert_eq!(staged, Vec::<PathBuf>::new(), "staging left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_staging_is_a_503_never_a_success() {
    let env = Env::new().await;
    let wheel = build_wheel("demo", "1.0", "A = 1\n");
    let event = env.event(&wheel, "demo", "1.0");
    // Nothing staged, nothing committed.
    let error = env
        .worker
        .process(&event)
        .await
        .expect_err("missing staging");
    assert!(matches!(error, ProcessError::StagingGone), "{error:?}");
    assert!(!error.is_transient());

    let mut public_events = env.bus.subscribe_events();
    let running = env.start();
    let outcome = env.submit(&event).await;
    running.stop().await;
    let refusal = rejected(&outcome);
    assert_eq!(refusal.status(), 503);
    assert!(!refusal.message.is_empty());
    env.assert_nothing_published("demo").await;

    // The failure is recorded for operators: a public event (and an audit row).
    let failed = public_events.try_recv().expect("an upload.failed event");
    assert_eq!(failed.subject, "wharf.events.upload.failed");
    let detail: serde_json::Value = serde_json::from_slice(&failed.payload).expect("json");
    assert_eq!(detail["upload_id"], event.upload_id.as_str());
    assert_eq!(detail["filename"], event.filename.as_str());
}

/// An event without its metadata (what a gateway of the `metadata_json` days would send) is a
/// malformed event: refused for good before anything is hashed or stored, never published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_without_metadata_is_malformed_and_publishes_nothing() {
    let env = Env::new().await;
    let wheel = build_wheel("demo", "1.0", "A = 1\n");
    let mut event = env.event(&wheel, "demo", "1.0");
    event.metadata = None;
    env.grant(&mut event);
    env.stage(&event, &wheel.bytes).await;
    let error = env.worker.process(&event).await.expect_err("no metadata");
    assert!(matches!(error, ProcessError::BadEvent(_)), "{error:?}");
    assert!(!error.is_transient());
    env.assert_nothing_published("demo").await;
}

// ---------------------------------------------------------------------------------------------
// A store whose reads fail on demand
// ---------------------------------------------------------------------------------------------

/// An in-memory store whose `n`-th ranged read (counting from 1) fails, once.
#[derive(Debug)]
struct FlakyStore {
    inner: object_store::memory::InMemory,
    ranged_reads: AtomicUsize,
    fail_at: usize,
}

impl std::fmt::Display for FlakyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FlakyStore")
    }
}

#[async_trait]
impl object_store::ObjectStore for FlakyStore {
    async fn put_opts(
        &self,
        location: &object_store::path::Path,
        payload: object_store::PutPayload,
        opts: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &object_store::path::Path,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &object_store::path::Path,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        if options.range.is_some()
            && self.ranged_reads.fetch_add(1, Ordering::SeqCst) + 1 == self.fail_at
        {
            return Err(object_store::Error::Generic {
                store: "FlakyStore",
                source: "connection reset by peer".into(),
            });
        }
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<object_store::path::Path>>,
    ) -> BoxStream<'static, object_store::Result<object_store::path::Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> object_store::Result<object_store::ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &object_store::path::Path,
        to: &object_store::path::Path,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// A store failure while the archive is read is the server's problem: the upload is retried
/// (and then succeeds), the client never gets a 400 for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_failure_while_inspecting_is_retried_not_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Ranged read 1 hashes the (small) staged file; read 2 is the archive inspection's first.
    let store = Arc::new(FlakyStore {
        inner: object_store::memory::InMemory::new(),
        ranged_reads: AtomicUsize::new(0),
        fail_at: 2,
    });
    let env = Env::with_blobs(dir, BlobStore::from_store(store)).await;
    let wheel = build_wheel("demo", "1.0", "A = 1\n");
    let event = env.event(&wheel, "demo", "1.0");
    env.stage(&event, &wheel.bytes).await;

    let running = env.start();
    let outcome = env.submit(&event).await;
    running.stop().await;
    let answer = published(&outcome);
    assert_eq!(answer.sha256, hashes(&wheel.bytes).sha256);
    assert_eq!(env.file_rows("demo").await.len(), 1);
    let outcomes = env.recorder.outcomes_for(&event.upload_id);
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
}

/// Issue #12, finding 5: an event is committed only under a grant the verifier signed for
/// exactly this upload. Unsigned, forged (another key, or another key under the trusted key's
/// id), altered (the signed bytes, or the event around a genuine grant: another uploader,
/// project, filename, version, upload id, the right to create the project, the project size
/// limit) and expired events are refused before anything is read, and leave the staged bytes alone; the genuine
/// event is then published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_without_a_valid_upload_grant_are_refused_and_nothing_is_committed() {
    let env = Env::new().await;
    let wheel = build_wheel("demo", "1.0", "A = 1\n");
    let genuine = env.event(&wheel, "demo", "1.0");
    env.stage(&genuine, &wheel.bytes).await;
    let claims = |event: &FileStaged| UploadGrantClaims {
        expires_at_micros: jiff::Timestamp::now().as_microsecond() + 3_600_000_000,
        ..UploadGrantClaims::stated_by(event)
    };
    let with_grant = |grant| FileStaged {
        grant,
        ..genuine.clone()
    };
    let other_key = UploadGrantSigner::generate().expect("key");
    let forged = other_key.sign(&claims(&genuine));
    let mut forged_as_trusted = forged.clone();
    forged_as_trusted.key_id = env.grant_key.key_id().to_owned();
    let mut altered_claims = genuine.grant.clone().expect("grant");
    altered_claims.claims = UploadGrantClaims {
        user_id: "mallory".to_owned(),
        ..claims(&genuine)
    }
    .encode_to_vec();
    let expired = env.grant_key.sign(&UploadGrantClaims {
        expires_at_micros: jiff::Timestamp::now().as_microsecond() - 1,
        ..UploadGrantClaims::stated_by(&genuine)
    });
    let altered = |change: &dyn Fn(&mut FileStaged)| {
        let mut event = genuine.clone();
        change(&mut event);
        event
    };
    let cases: Vec<(&str, FileStaged)> = vec![
        ("unsigned", with_grant(None)),
        ("signed by another key", with_grant(Some(forged))),
        (
            "another key under the trusted id",
            with_grant(Some(forged_as_trusted)),
        ),
        ("altered claims", with_grant(Some(altered_claims))),
        ("expired", with_grant(Some(expired))),
        (
            "another uploader",
            altered(&|event| {
                if let Some(uploader) = event.uploader.as_mut() {
                    uploader.user_id = "someone-else".to_owned();
                }
            }),
        ),
        (
            "the right to create the project",
            altered(&|event| {
                if let Some(uploader) = event.uploader.as_mut() {
                    uploader.may_create_project = false;
                }
            }),
        ),
        (
            "another project",
            altered(&|event| {
                if let Some(metadata) = event.metadata.as_mut() {
                    metadata.name = Some("other-project".to_owned());
                }
            }),
        ),
        (
            "another version",
            altered(&|event| {
                if let Some(metadata) = event.metadata.as_mut() {
                    metadata.version = Some("6.6.6".to_owned());
                }
            }),
        ),
        (
            "another filename",
            altered(&|event| event.filename = "demo-6.6.6-py3-none-any.whl".to_owned()),
        ),
        (
            "another upload id",
            altered(&|event| event.upload_id = uuid::Uuid::new_v4().to_string()),
        ),
        (
            "a raised project size limit",
            altered(&|event| event.max_project_size = Some(u64::MAX)),
        ),
    ];
    for (what, event) in &cases {
        let error = env.worker.process(event).await.expect_err(what);
        assert!(
            matches!(error, ProcessError::Untrusted(_)),
            "{what}: {error}"
        );
        assert!(!error.is_transient(), "{what}");
    }
    env.assert_nothing_published("demo").await;
    assert!(env.staging_exists(&genuine).await, "the staged bytes stay");

    let outcome = env
        .worker
        .process(&genuine)
        .await
        .expect("the genuine event");
    assert_eq!(published(&outcome).filename, wheel.filename);
}

/// Through the bus, a refused event is terminated without an answer (the gateway that
/// staged the bytes may still be waiting for its own, genuine event), its staged bytes stay,
/// and the genuine event that follows is published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_event_on_the_bus_gets_no_answer_and_deletes_nothing() {
    let env = Env::new().await;
    let wheel = build_wheel("demo", "1.0", "A = 1\n");
    let genuine = env.event(&wheel, "demo", "1.0");
    env.stage(&genuine, &wheel.bytes).await;
    let mut forged = genuine.clone();
    if let Some(uploader) = forged.uploader.as_mut() {
        uploader.user_id = "someone-else".to_owned();
    }
    let running = env.start();
    env.bus.publish_staged(&forged).await.expect("publish");
    // The genuine event is answered; the forged one, queued before it, never was.
    let outcome = env.submit(&genuine).await;
    running.stop().await;
    assert_eq!(published(&outcome).filename, wheel.filename);
    let outcomes = env.recorder.outcomes.lock().expect("outcomes").clone();
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
}
