//! The storage worker end to end on the JetStream bus: a real NATS server
//! (`WHARF_TEST_NATS_URL`, by default `nats://127.0.0.1:4222`), a temp SQLite index and a temp
//! local object store. The wheel builder is a trimmed copy of the one in `worker.rs`.

use std::io::{Cursor, Write};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use prost::Message;
use sha2::Digest;
use tokio_util::sync::CancellationToken;
use wharf_blob::BlobStore;
use wharf_bus::UploadBus;
use wharf_bus_nats::{NatsBus, NatsConfig};
use wharf_core::form::ReleaseMetadata;
use wharf_index::prelude::*;
use wharf_index_sqlite::SqliteIndex;
use wharf_proto::grant::{UploadGrantKeys, UploadGrantSigner};
use wharf_proto::v1::upload_outcome::Result as OutcomeResult;
use wharf_proto::v1::{FilePublished, FileStaged, UploadGrantClaims, Uploader};
use wharf_worker::{StorageWorker, WorkerSettings};

const START_NATS: &str = "start-stop-daemon --start --oknodo --background --exec \
     /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server \
     -l /var/log/nats-server.log";
const WAIT: Duration = Duration::from_secs(30);

fn build_wheel(name: &str, version: &str) -> (String, Vec<u8>) {
    let dist = wharf_core::name::normalize(name).replace('-', "_");
    let dist_info = format!("{dist}-{version}.dist-info");
    let metadata = format!(
        "Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: A test package\n\n"
    );
    let wheel =
        "Wheel-Version: 1.0\nGenerator: wharf-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n";
    let module = format!("{dist}/__init__.py");
    let record =
        format!("{module},,\n{dist_info}/METADATA,,\n{dist_info}/WHEEL,,\n{dist_info}/RECORD,,\n");
    let members = [
        (module, "x = 1\n".to_owned()),
        (format!("{dist_info}/METADATA"), metadata),
        (format!("{dist_info}/WHEEL"), wheel.to_owned()),
        (format!("{dist_info}/RECORD"), record),
    ];
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (path, content) in members {
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .last_modified_time(zip::DateTime::default())
            .unix_permissions(0o644);
        zip.start_file(path, options).expect("start member");
        zip.write_all(content.as_bytes()).expect("write member");
    }
    let bytes = zip.finish().expect("finish zip").into_inner();
    (format!("{dist}-{version}-py3-none-any.whl"), bytes)
}

/// Deletes the test's streams when dropped, even after a failure.
struct Streams {
    url: String,
    names: Vec<String>,
}

impl Drop for Streams {
    fn drop(&mut self) {
        let url = self.url.clone();
        let names = std::mem::take(&mut self.names);
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                if let Ok(client) = async_nats::connect(url).await {
                    let context = async_nats::jetstream::new(client);
                    for name in names {
                        let _ = context.delete_stream(name).await;
                    }
                }
            });
        })
        .join();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_on_jetstream_publishes_a_staged_wheel() {
    let url =
        std::env::var("WHARF_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let config = NatsConfig {
        url: url.clone(),
        subject_prefix: format!("ww{}", uuid::Uuid::new_v4().simple()),
        ack_wait: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(3),
        ..NatsConfig::default()
    };
    // Two processes: the gateway's bus and the worker's.
    let gateway_bus = NatsBus::connect(config.clone())
        .await
        .unwrap_or_else(|error| {
            panic!(
                "no NATS server with JetStream at {url} ({error}); start one with\n  {START_NATS}\n\
             or point WHARF_TEST_NATS_URL at one"
            )
        });
    let _streams = Streams {
        url: url.clone(),
        names: vec![
            gateway_bus.uploads_stream().to_owned(),
            gateway_bus.events_stream().to_owned(),
        ],
    };
    let worker_bus = NatsBus::connect(config).await.expect("worker bus");

    let dir = tempfile::tempdir().expect("tempdir");
    let blobs = BlobStore::local(&dir.path().join("blobs")).expect("local store");
    let index = Arc::new(
        SqliteIndex::open(&dir.path().join("index.sqlite3"))
            .await
            .expect("open index"),
    );
    let user = index
        .create_user("alice", 1_700_000_000_000_000)
        .await
        .expect("create user");
    let grant_key = UploadGrantSigner::generate().expect("grant key");
    let worker = StorageWorker::new(
        Arc::clone(&index) as Arc<dyn Index>,
        blobs.clone(),
        Arc::new(worker_bus) as Arc<dyn UploadBus>,
        WorkerSettings {
            upload_grant_keys: UploadGrantKeys::new([grant_key.public_key()]),
            ..WorkerSettings::default()
        },
    );
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(worker.run(shutdown.clone()));

    // What the gateway does: stage the bytes, watch, publish, wait.
    let (filename, bytes) = build_wheel("Demo.Pkg", "1.0");
    let upload_id = uuid::Uuid::new_v4().to_string();
    let staging_key = BlobStore::staging_key(&upload_id).expect("staging key");
    blobs
        .put(&staging_key, Bytes::copy_from_slice(&bytes))
        .await
        .expect("stage");
    let sha256 = hex::encode(sha2::Sha256::digest(&bytes));
    let metadata = ReleaseMetadata {
        metadata_version: Some("2.1".to_owned()),
        name: Some("Demo.Pkg".to_owned()),
        version: Some("1.0".to_owned()),
        ..ReleaseMetadata::default()
    };
    let mut event = FileStaged {
        upload_id: upload_id.clone(),
        staging_key: staging_key.to_string(),
        size: bytes.len() as u64,
        filename: filename.clone(),
        filetype: "bdist_wheel".to_owned(),
        pyversion: "py3".to_owned(),
        sha256_digest: sha256.clone(),
        uploaded_via: "twine/6.1.0 CPython/3.12.3".to_owned(),
        metadata: Some(metadata.into()),
        uploader: Some(Uploader {
            user_id: user.id.clone(),
            publisher_id: String::new(),
            may_create_project: true,
            user_name: user.name.clone(),
        }),
        received_at_micros: 1_700_000_000_000_000,
        max_project_size: None,
        ..FileStaged::default()
    };
    event.grant = Some(grant_key.sign(&UploadGrantClaims {
        expires_at_micros: jiff::Timestamp::now().as_microsecond() + 3_600_000_000,
        ..UploadGrantClaims::stated_by(&event)
    }));
    let watch = gateway_bus.watch_outcome(&upload_id).await.expect("watch");
    gateway_bus.publish_staged(&event).await.expect("publish");
    let outcome = watch.wait(WAIT).await.expect("outcome");

    assert_eq!(outcome.upload_id, upload_id);
    let published = match &outcome.result {
        Some(OutcomeResult::Published(published)) => published.clone(),
        other => panic!("not published: {other:?}"),
    };
    assert_eq!(published.normalized_name, "demo-pkg");
    assert_eq!(published.filename, filename);
    assert_eq!(published.sha256, sha256);
    assert!(!published.already_existed);

    let project = index
        .find_project("demo-pkg")
        .await
        .expect("find project")
        .expect("project");
    let files = index.project_files(&project.id).await.expect("files");
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].sha256_digest, sha256);

    // The public event is in the events stream; the work queue is empty (acked).
    let client = async_nats::connect(url.as_str()).await.expect("client");
    let jetstream = async_nats::jetstream::new(client);
    let events = jetstream
        .get_stream(gateway_bus.events_stream())
        .await
        .expect("events stream");
    let consumer = events
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
        .await
        .expect("ordered consumer");
    let mut messages = consumer.messages().await.expect("messages");
    // First the project's creation, then the file.
    let created = tokio::time::timeout(WAIT, messages.next())
        .await
        .expect("event in time")
        .expect("stream")
        .expect("message");
    assert!(
        created.subject.ends_with(".events.project.created"),
        "{}",
        created.subject
    );
    let message = tokio::time::timeout(WAIT, messages.next())
        .await
        .expect("event in time")
        .expect("stream")
        .expect("message");
    assert!(
        message.subject.ends_with(".events.file.published"),
        "{}",
        message.subject
    );
    assert_eq!(
        FilePublished::decode(message.payload.clone()).expect("decode"),
        published
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut uploads = jetstream
            .get_stream(gateway_bus.uploads_stream())
            .await
            .expect("uploads stream");
        if uploads.info().await.expect("info").state.messages == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never acked");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        blobs.head(&staging_key).await.expect("head").is_none(),
        "staging left behind"
    );

    shutdown.cancel();
    tokio::time::timeout(WAIT, running)
        .await
        .expect("worker stops")
        .expect("worker task")
        .expect("worker run");
}
