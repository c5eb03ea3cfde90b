//! The JetStream bus against a real NATS server (`WHARF_TEST_NATS_URL`, by default
//! `nats://127.0.0.1:4222`, started with JetStream enabled). Each test uses its own random
//! subject prefix, so its own streams, and deletes them when it ends.

use std::collections::{HashMap, HashSet};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use async_nats::jetstream::consumer::pull::OrderedConfig;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use prost::Message;
use wharf_bus::{
    BusError, Delivery, FileStaged, PublicEvent, SUBJECT_FILE_PUBLISHED, SUBJECT_OUTCOME_PREFIX,
    SUBJECT_STAGED, UploadBus, UploadOutcome,
};
use wharf_bus_nats::{NatsBus, NatsConfig, sync_with_server};
use wharf_proto::v1::upload_outcome::Result as OutcomeResult;
use wharf_proto::v1::{ErrorCode, FilePublished, Refusal};

const START_NATS: &str = "start-stop-daemon --start --oknodo --background --exec \
     /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server \
     -l /var/log/nats-server.log";
const WAIT: Duration = Duration::from_secs(10);
/// How long "never comes back" is watched.
const QUIET: Duration = Duration::from_secs(3);

fn nats_url() -> String {
    std::env::var("WHARF_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// Fails (never skips) when no NATS server answers, saying how to start one.
async fn require_nats(url: &str) -> async_nats::Client {
    match tokio::time::timeout(Duration::from_secs(5), async_nats::connect(url)).await {
        Ok(Ok(client)) => client,
        outcome => panic!(
            "no NATS server with JetStream at {url} ({outcome:?}); start one with\n  {START_NATS}\n\
             or point WHARF_TEST_NATS_URL at one"
        ),
    }
}

fn test_config(url: &str, prefix: &str) -> NatsConfig {
    NatsConfig {
        url: url.to_owned(),
        subject_prefix: prefix.to_owned(),
        ack_wait: Duration::from_secs(1),
        max_deliver: 3,
        backoff: Vec::new(),
        max_ack_pending: 100,
        consumer_name: "workers".to_owned(),
        pull_batch: 2,
        idle_heartbeat: Duration::from_secs(1),
        ..NatsConfig::default()
    }
}

/// A bus on a fresh prefix; its streams are deleted when it is dropped (even on a failure).
struct TestBus {
    bus: NatsBus,
    config: NatsConfig,
    client: async_nats::Client,
}

impl TestBus {
    async fn new() -> TestBus {
        TestBus::with(|_| {}).await
    }

    async fn with(adjust: impl FnOnce(&mut NatsConfig)) -> TestBus {
        let url = nats_url();
        let client = require_nats(&url).await;
        let prefix = format!("wt{}", uuid::Uuid::new_v4().simple());
        let mut config = test_config(&url, &prefix);
        adjust(&mut config);
        let bus = NatsBus::connect(config.clone()).await.expect("connect");
        TestBus {
            bus,
            config,
            client,
        }
    }

    /// Another process on the same prefix (a second gateway or worker).
    async fn sibling(&self) -> NatsBus {
        NatsBus::connect(self.config.clone())
            .await
            .expect("connect sibling")
    }

    fn jetstream(&self) -> jetstream::Context {
        jetstream::new(self.client.clone())
    }

    async fn stream_messages(&self, name: &str) -> u64 {
        let mut stream = self.jetstream().get_stream(name).await.expect("stream");
        stream.info().await.expect("stream info").state.messages
    }
}

impl Drop for TestBus {
    fn drop(&mut self) {
        let url = self.config.url.clone();
        let names = [
            self.bus.uploads_stream().to_owned(),
            self.bus.events_stream().to_owned(),
        ];
        // Best effort, on a runtime of its own: Drop cannot await.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                if let Ok(client) = async_nats::connect(url).await {
                    let context = jetstream::new(client);
                    for name in names {
                        let _ = context.delete_stream(name).await;
                    }
                }
            });
        })
        .join();
    }
}

fn staged(upload_id: &str) -> FileStaged {
    FileStaged {
        upload_id: upload_id.to_owned(),
        filename: format!("{upload_id}.whl"),
        ..FileStaged::default()
    }
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

async fn next(deliveries: &mut BoxStream<'static, Delivery>) -> Delivery {
    tokio::time::timeout(WAIT, deliveries.next())
        .await
        .expect("a delivery in time")
        .expect("the delivery stream goes on")
}

async fn assert_quiet(deliveries: &mut BoxStream<'static, Delivery>, how_long: Duration) {
    if let Ok(delivery) = tokio::time::timeout(how_long, deliveries.next()).await {
        panic!("unexpected delivery {delivery:?}");
    }
}

#[tokio::test]
async fn ping_answers() {
    let env = TestBus::new().await;
    env.bus.ping().await.expect("ping");
    assert!(env.bus.uploads_stream().ends_with("_UPLOADS"));
    assert!(env.bus.events_stream().ends_with("_EVENTS"));
}

#[tokio::test]
async fn connecting_twice_is_idempotent_and_updates_the_consumer() {
    let env = TestBus::new().await;
    let mut config = env.config.clone();
    config.ack_wait = Duration::from_secs(7);
    config.max_ack_pending = 42;
    let _again = NatsBus::connect(config).await.expect("connect again");
    let info = env
        .jetstream()
        .get_stream(env.bus.uploads_stream())
        .await
        .expect("stream")
        .consumer_info("workers")
        .await
        .expect("consumer info");
    assert_eq!(info.config.ack_wait, Duration::from_secs(7));
    assert_eq!(info.config.max_ack_pending, 42);
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable_without_credentials() {
    let port = free_port();
    let error = NatsBus::connect(NatsConfig {
        url: format!("nats://alice:s3cret@127.0.0.1:{port}"),
        connect_timeout: Duration::from_secs(1),
        ..NatsConfig::default()
    })
    .await
    .expect_err("nothing listens there");
    let message = error.to_string();
    assert!(matches!(error, BusError::Unavailable(_)), "{message}");
    assert!(!message.contains("s3cret"), "{message}");
}

#[tokio::test]
async fn outcome_round_trip() {
    let env = TestBus::new().await;
    let worker = env.sibling().await;
    let upload_id = new_id();
    let other_id = new_id();
    let watch = env.bus.watch_outcome(&upload_id).await.expect("watch");
    let other_watch = env.bus.watch_outcome(&other_id).await.expect("watch other");
    env.bus
        .publish_staged(&staged(&upload_id))
        .await
        .expect("publish");

    let mut deliveries = worker.staged_deliveries().await.expect("deliveries");
    let delivery = next(&mut deliveries).await;
    assert_eq!(delivery.event.upload_id, upload_id);
    assert_eq!(delivery.delivery_count, 1);
    let outcome = UploadOutcome {
        upload_id: upload_id.clone(),
        result: Some(OutcomeResult::Rejected(Refusal {
            code: ErrorCode::InvalidRequest.into(),
            message: "File already exists".to_owned(),
            retry_after_seconds: 0,
        })),
        trace_context: Default::default(),
    };
    worker.publish_outcome(&outcome).await.expect("outcome");
    let (_, _, settle) = delivery.into_parts();
    settle.ack().await.expect("ack");

    assert_eq!(watch.wait(WAIT).await.expect("wait"), outcome);
    assert!(matches!(
        other_watch.wait(Duration::from_millis(300)).await,
        Err(BusError::Timeout)
    ));
    // Acked on a work queue: the message is gone from the stream.
    assert_eq!(env.stream_messages(env.bus.uploads_stream()).await, 0);
}

/// The W3C trace context rides in NATS headers (where other tooling looks), not in the
/// payload, both ways; receivers get it back in the message's field.
#[tokio::test]
async fn trace_context_travels_in_nats_headers() {
    let env = TestBus::new().await;
    let worker = env.sibling().await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let context = HashMap::from([
        ("traceparent".to_owned(), traceparent.to_owned()),
        ("tracestate".to_owned(), "wharf=1".to_owned()),
    ]);
    let mut staged_wire = env
        .client
        .subscribe(env.bus.subject(SUBJECT_STAGED))
        .await
        .expect("subscribe staged");
    let mut outcome_wire = env
        .client
        .subscribe(format!("{}.>", env.bus.subject(SUBJECT_OUTCOME_PREFIX)))
        .await
        .expect("subscribe outcomes");
    // The bus publishes on connections of its own: the server must hold both subscriptions
    // before the first publish, or it drops the message (a flush alone does not ensure that).
    sync_with_server(&env.client)
        .await
        .expect("subscriptions registered");

    let upload_id = new_id();
    let watch = env.bus.watch_outcome(&upload_id).await.expect("watch");
    let mut event = staged(&upload_id);
    event.trace_context = context.clone();
    env.bus.publish_staged(&event).await.expect("publish");
    let wire = tokio::time::timeout(WAIT, staged_wire.next())
        .await
        .expect("staged message in time")
        .expect("subscription open");
    let headers = wire.headers.expect("headers");
    assert_eq!(
        headers.get("traceparent").map(|v| v.as_str()),
        Some(traceparent)
    );
    assert_eq!(
        headers.get("tracestate").map(|v| v.as_str()),
        Some("wharf=1")
    );
    assert!(
        FileStaged::decode(wire.payload)
            .expect("payload")
            .trace_context
            .is_empty()
    );

    let mut deliveries = worker.staged_deliveries().await.expect("deliveries");
    let delivery = next(&mut deliveries).await;
    assert_eq!(delivery.event.trace_context, context);

    let outcome = UploadOutcome {
        upload_id: upload_id.clone(),
        result: Some(OutcomeResult::Rejected(Refusal {
            code: ErrorCode::InvalidRequest.into(),
            message: "no".to_owned(),
            retry_after_seconds: 0,
        })),
        trace_context: HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]),
    };
    worker.publish_outcome(&outcome).await.expect("outcome");
    let (_, _, settle) = delivery.into_parts();
    settle.ack().await.expect("ack");
    let wire = tokio::time::timeout(WAIT, outcome_wire.next())
        .await
        .expect("outcome message in time")
        .expect("subscription open");
    let headers = wire.headers.expect("outcome headers");
    assert_eq!(
        headers.get("traceparent").map(|v| v.as_str()),
        Some(traceparent)
    );
    assert!(
        UploadOutcome::decode(wire.payload)
            .expect("payload")
            .trace_context
            .is_empty()
    );
    assert_eq!(watch.wait(WAIT).await.expect("wait"), outcome);
}

/// A subscription confirmed with `sync_with_server` receives a publish that another
/// connection sends right after, every time (with only a flush, the server may route the
/// publish before it has read the subscription, and drop it).
#[tokio::test]
async fn a_synced_subscription_sees_the_next_publish_from_another_connection() {
    let url = nats_url();
    let subscriber = require_nats(&url).await;
    let publisher = require_nats(&url).await;
    for round in 0..200 {
        let subject = format!("wt{}.sync", uuid::Uuid::new_v4().simple());
        let mut messages = subscriber
            .subscribe(subject.clone())
            .await
            .expect("subscribe");
        sync_with_server(&subscriber).await.expect("sync");
        publisher
            .publish(subject, Bytes::from_static(b"x"))
            .await
            .expect("publish");
        publisher.flush().await.expect("flush");
        tokio::time::timeout(WAIT, messages.next())
            .await
            .unwrap_or_else(|_| panic!("round {round}: the publish was dropped"))
            .expect("subscription open");
    }
}

#[tokio::test]
async fn backlog_reports_the_consumers_pending_and_unacked_messages() {
    let env = TestBus::new().await;
    let empty = env.bus.backlog().await.expect("backlog");
    assert_eq!((empty.pending, empty.ack_pending), (0, 0));
    for _ in 0..3 {
        env.bus
            .publish_staged(&staged(&new_id()))
            .await
            .expect("publish");
    }
    assert_eq!(env.bus.backlog().await.expect("backlog").pending, 3);
    let worker = env.sibling().await;
    let mut deliveries = worker.staged_deliveries().await.expect("deliveries");
    let delivery = next(&mut deliveries).await;
    // The pull batch (2) is handed out at once: 2 unacknowledged, 1 still pending.
    let deadline = Instant::now() + WAIT;
    let backlog = loop {
        let backlog = env.bus.backlog().await.expect("backlog");
        if backlog.ack_pending == 2 || Instant::now() > deadline {
            break backlog;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        (backlog.pending, backlog.ack_pending, backlog.redelivered),
        (1, 2, 0)
    );
    let (_, _, settle) = delivery.into_parts();
    settle.ack().await.expect("ack");
}

#[tokio::test]
async fn an_unacked_delivery_comes_back_after_ack_wait() {
    let env = TestBus::new().await;
    let upload_id = new_id();
    env.bus
        .publish_staged(&staged(&upload_id))
        .await
        .expect("publish");
    let mut deliveries = env.bus.staged_deliveries().await.expect("deliveries");
    let first = next(&mut deliveries).await;
    let dropped_at = Instant::now();
    drop(first);
    let second = next(&mut deliveries).await;
    assert!(
        dropped_at.elapsed() >= Duration::from_millis(800),
        "redelivered before ack_wait: {:?}",
        dropped_at.elapsed()
    );
    assert_eq!(second.event.upload_id, upload_id);
    assert_eq!(second.delivery_count, 2);
    let (_, _, settle) = second.into_parts();
    settle.ack().await.expect("ack");
    assert_quiet(&mut deliveries, Duration::from_millis(1500)).await;
}

#[tokio::test]
async fn in_progress_holds_off_redelivery() {
    let env = TestBus::new().await;
    env.bus
        .publish_staged(&staged(&new_id()))
        .await
        .expect("publish");
    let mut deliveries = env.bus.staged_deliveries().await.expect("deliveries");
    let (_, count, settle) = next(&mut deliveries).await.into_parts();
    assert_eq!(count, 1);
    // Three ack waits of work, reporting progress twice per ack wait.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        settle.in_progress().await.expect("progress");
    }
    if let Ok(Some(delivery)) =
        tokio::time::timeout(Duration::from_millis(10), deliveries.next()).await
    {
        panic!("redelivered while in progress: {delivery:?}");
    }
    settle.ack().await.expect("ack");
    assert_quiet(&mut deliveries, Duration::from_millis(1500)).await;
}

#[tokio::test]
async fn retry_later_comes_back_after_the_delay() {
    let env = TestBus::new().await;
    let upload_id = new_id();
    env.bus
        .publish_staged(&staged(&upload_id))
        .await
        .expect("publish");
    let mut deliveries = env.bus.staged_deliveries().await.expect("deliveries");
    let (_, count, settle) = next(&mut deliveries).await.into_parts();
    assert_eq!(count, 1);
    let delay = Duration::from_secs(2);
    let nacked_at = Instant::now();
    settle.retry_later(delay).await.expect("retry later");
    let again = next(&mut deliveries).await;
    let waited = nacked_at.elapsed();
    assert!(waited >= delay - Duration::from_millis(100), "{waited:?}");
    assert_eq!(again.event.upload_id, upload_id);
    assert_eq!(again.delivery_count, 2);
    let (_, _, settle) = again.into_parts();
    settle.ack().await.expect("ack");
}

#[tokio::test]
async fn a_rejected_delivery_never_comes_back() {
    let env = TestBus::new().await;
    let rejected_id = new_id();
    env.bus
        .publish_staged(&staged(&rejected_id))
        .await
        .expect("publish");
    let mut deliveries = env.bus.staged_deliveries().await.expect("deliveries");
    let (_, _, settle) = next(&mut deliveries).await.into_parts();
    settle.reject().await.expect("reject");
    assert_quiet(&mut deliveries, QUIET).await;
    // The queue still works after it.
    let next_id = new_id();
    env.bus
        .publish_staged(&staged(&next_id))
        .await
        .expect("publish");
    let delivery = next(&mut deliveries).await;
    assert_eq!(delivery.event.upload_id, next_id);
    let (_, _, settle) = delivery.into_parts();
    settle.ack().await.expect("ack");
}

#[tokio::test]
async fn max_deliver_is_honoured() {
    let env = TestBus::new().await;
    let upload_id = new_id();
    env.bus
        .publish_staged(&staged(&upload_id))
        .await
        .expect("publish");
    let mut deliveries = env.bus.staged_deliveries().await.expect("deliveries");
    for expected in 1..=3 {
        let delivery = next(&mut deliveries).await;
        assert_eq!(delivery.event.upload_id, upload_id);
        assert_eq!(delivery.delivery_count, expected);
        let (_, _, settle) = delivery.into_parts();
        settle
            .retry_later(Duration::from_millis(50))
            .await
            .expect("retry later");
    }
    assert_quiet(&mut deliveries, QUIET).await;
}

#[tokio::test]
async fn backoff_spaces_the_redeliveries() {
    let env = TestBus::with(|config| {
        config.backoff = vec![Duration::from_millis(500), Duration::from_secs(2)];
    })
    .await;
    env.bus
        .publish_staged(&staged(&new_id()))
        .await
        .expect("publish");
    let mut deliveries = env.bus.staged_deliveries().await.expect("deliveries");
    drop(next(&mut deliveries).await);
    let first_dropped = Instant::now();
    drop(next(&mut deliveries).await);
    let second_dropped = Instant::now();
    let first_wait = first_dropped.elapsed();
    let third = next(&mut deliveries).await;
    let second_wait = second_dropped.elapsed();
    assert_eq!(third.delivery_count, 3);
    assert!(first_wait < Duration::from_millis(1800), "{first_wait:?}");
    assert!(
        second_wait >= Duration::from_millis(1800),
        "{second_wait:?}"
    );
}

#[tokio::test]
async fn the_same_upload_id_is_queued_once() {
    let env = TestBus::new().await;
    let upload_id = new_id();
    env.bus
        .publish_staged(&staged(&upload_id))
        .await
        .expect("publish");
    // A gateway retrying after a lost publish ack.
    env.sibling()
        .await
        .publish_staged(&staged(&upload_id))
        .await
        .expect("publish again");
    assert_eq!(env.stream_messages(env.bus.uploads_stream()).await, 1);
    let mut deliveries = env.bus.staged_deliveries().await.expect("deliveries");
    let delivery = next(&mut deliveries).await;
    assert_eq!(delivery.event.upload_id, upload_id);
    let (_, _, settle) = delivery.into_parts();
    settle.ack().await.expect("ack");
    assert_quiet(&mut deliveries, Duration::from_secs(2)).await;
}

#[tokio::test]
async fn an_undecodable_message_is_terminated_and_skipped() {
    let env = TestBus::new().await;
    let staged_subject = env.bus.subject(wharf_bus::SUBJECT_STAGED);
    env.jetstream()
        .publish(staged_subject, Bytes::from_static(b"\xff\xff not protobuf"))
        .await
        .expect("publish garbage")
        .await
        .expect("stored");
    let good_id = new_id();
    env.bus
        .publish_staged(&staged(&good_id))
        .await
        .expect("publish");
    let mut deliveries = env.bus.staged_deliveries().await.expect("deliveries");
    let delivery = next(&mut deliveries).await;
    assert_eq!(delivery.event.upload_id, good_id);
    let (_, _, settle) = delivery.into_parts();
    settle.ack().await.expect("ack");
    assert_quiet(&mut deliveries, QUIET).await;
    assert_eq!(env.stream_messages(env.bus.uploads_stream()).await, 0);
}

#[tokio::test]
async fn two_workers_share_the_queue_without_duplicates() {
    const COUNT: usize = 50;
    let env = TestBus::new().await;
    let workers = [env.sibling().await, env.sibling().await];
    let mut streams = Vec::new();
    for worker in &workers {
        streams.push(worker.staged_deliveries().await.expect("deliveries"));
    }
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for (index, mut deliveries) in streams.into_iter().enumerate() {
        let sender = sender.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(delivery) = deliveries.next().await {
                let (event, _, settle) = delivery.into_parts();
                // Some work, so both workers get a share.
                tokio::time::sleep(Duration::from_millis(20)).await;
                settle.ack().await.expect("ack");
                if sender.send((index, event.upload_id)).is_err() {
                    return;
                }
            }
        }));
    }
    drop(sender);
    let ids: Vec<String> = (0..COUNT).map(|_| new_id()).collect();
    for id in &ids {
        env.bus.publish_staged(&staged(id)).await.expect("publish");
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut per_worker = [0usize; 2];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    // Everything, then an ack wait and a half more to catch redeliveries.
    while seen.len() < COUNT || tokio::time::Instant::now() < deadline {
        let wait = if seen.len() < COUNT {
            deadline.saturating_duration_since(tokio::time::Instant::now())
        } else {
            Duration::from_millis(1500)
        };
        match tokio::time::timeout(wait, receiver.recv()).await {
            Ok(Some((worker, id))) => {
                per_worker[worker] += 1;
                *seen.entry(id).or_default() += 1;
            }
            Ok(None) => panic!("a worker stream ended"),
            Err(_) if seen.len() < COUNT => panic!("only {} of {COUNT} delivered", seen.len()),
            Err(_) => break,
        }
    }
    for task in &tasks {
        task.abort();
    }
    let expected: HashSet<&String> = ids.iter().collect();
    assert_eq!(seen.keys().collect::<HashSet<_>>(), expected);
    let duplicates: Vec<_> = seen.iter().filter(|(_, count)| **count > 1).collect();
    assert!(duplicates.is_empty(), "delivered twice: {duplicates:?}");
    assert!(
        per_worker.iter().all(|count| *count > 0),
        "one worker did everything: {per_worker:?}"
    );
    assert_eq!(env.stream_messages(env.bus.uploads_stream()).await, 0);
}

#[tokio::test]
async fn public_events_are_replayable_from_the_events_stream() {
    let env = TestBus::new().await;
    let published = FilePublished {
        project: "Demo".to_owned(),
        normalized_name: "demo".to_owned(),
        version: "1.0".to_owned(),
        filename: "demo-1.0-py3-none-any.whl".to_owned(),
        serial: 7,
        ..FilePublished::default()
    };
    let event = PublicEvent {
        subject: SUBJECT_FILE_PUBLISHED.to_owned(),
        payload: Bytes::from(published.encode_to_vec()),
    };
    env.bus.publish_event(event.clone()).await.expect("event");
    // The same event again (a worker whose ack was lost) is stored once.
    env.bus.publish_event(event.clone()).await.expect("again");
    let next_event = FilePublished {
        serial: 8,
        ..published.clone()
    };
    env.bus
        .publish_event(PublicEvent {
            subject: SUBJECT_FILE_PUBLISHED.to_owned(),
            payload: Bytes::from(next_event.encode_to_vec()),
        })
        .await
        .expect("next event");
    assert!(
        env.bus
            .publish_event(PublicEvent {
                subject: "elsewhere.file.published".to_owned(),
                payload: Bytes::new(),
            })
            .await
            .is_err()
    );

    // An external reader replays the stream from the start.
    let stream = env
        .jetstream()
        .get_stream(env.bus.events_stream())
        .await
        .expect("events stream");
    let consumer = stream
        .create_consumer(OrderedConfig::default())
        .await
        .expect("ordered consumer");
    let mut messages = consumer.messages().await.expect("messages");
    let mut replayed = Vec::new();
    for _ in 0..2 {
        let message = tokio::time::timeout(WAIT, messages.next())
            .await
            .expect("event in time")
            .expect("stream")
            .expect("message");
        assert_eq!(
            message.subject.as_str(),
            format!("{}.events.file.published", env.config.subject_prefix)
        );
        replayed.push(FilePublished::decode(message.payload.clone()).expect("decode"));
    }
    assert_eq!(replayed, vec![published, next_event]);
    assert_eq!(env.stream_messages(env.bus.events_stream()).await, 2);
}

#[tokio::test]
async fn a_deleted_consumer_is_recreated_under_a_running_stream() {
    let env = TestBus::new().await;
    let mut deliveries = env.bus.staged_deliveries().await.expect("deliveries");
    let stream = env
        .jetstream()
        .get_stream(env.bus.uploads_stream())
        .await
        .expect("stream");
    stream
        .delete_consumer("workers")
        .await
        .expect("delete consumer");
    let upload_id = new_id();
    env.bus
        .publish_staged(&staged(&upload_id))
        .await
        .expect("publish");
    let delivery = tokio::time::timeout(Duration::from_secs(20), deliveries.next())
        .await
        .expect("a delivery after the rebuild")
        .expect("the stream goes on");
    assert_eq!(delivery.event.upload_id, upload_id);
    let (_, _, settle) = delivery.into_parts();
    settle.ack().await.expect("ack");
    stream
        .consumer_info("workers")
        .await
        .expect("consumer recreated");
}

#[tokio::test]
async fn close_ends_the_delivery_stream() {
    let env = TestBus::new().await;
    let bus = env.sibling().await;
    let mut deliveries = bus.staged_deliveries().await.expect("deliveries");
    bus.close().await.expect("close");
    let end = tokio::time::timeout(WAIT, deliveries.next())
        .await
        .expect("ends in time");
    assert!(end.is_none(), "{end:?}");
}

// ---------------------------------------------------------------------------------------------
// A private server, restarted under a running delivery stream
// ---------------------------------------------------------------------------------------------

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn nats_server_binary() -> String {
    std::env::var("WHARF_TEST_NATS_SERVER").unwrap_or_else(|_| {
        ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
            .into_iter()
            .find(|path| Path::new(path).exists())
            .unwrap_or("nats-server")
            .to_owned()
    })
}

struct PrivateServer {
    child: Child,
}

impl PrivateServer {
    async fn start(port: u16, store: &Path) -> PrivateServer {
        let binary = nats_server_binary();
        let child = Command::new(&binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!("cannot start {binary} ({error}); install nats-server or set WHARF_TEST_NATS_SERVER")
            });
        let deadline = Instant::now() + WAIT;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "private nats-server did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        PrivateServer { child }
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn deliveries_resume_after_a_server_restart() {
    let store = tempfile::tempdir().expect("store dir");
    let port = free_port();
    let server = PrivateServer::start(port, store.path()).await;
    let config = NatsConfig {
        url: format!("nats://127.0.0.1:{port}"),
        subject_prefix: "restart".to_owned(),
        ..test_config("", "")
    };
    let gateway = NatsBus::connect(config.clone()).await.expect("gateway");
    let worker = NatsBus::connect(config).await.expect("worker");
    let mut deliveries = worker.staged_deliveries().await.expect("deliveries");
    let before = new_id();
    gateway
        .publish_staged(&staged(&before))
        .await
        .expect("publish");
    let (event, _, settle) = next(&mut deliveries).await.into_parts();
    assert_eq!(event.upload_id, before);
    settle.ack().await.expect("ack");

    server.kill();
    assert!(
        worker.ping().await.is_err(),
        "ping while the server is down"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _server = PrivateServer::start(port, store.path()).await;

    // Publishing retries until the client has reconnected.
    let after = new_id();
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Err(error) = gateway.publish_staged(&staged(&after)).await {
        assert!(Instant::now() < deadline, "no reconnect: {error}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let delivery = tokio::time::timeout(Duration::from_secs(30), deliveries.next())
        .await
        .expect("delivery after the restart")
        .expect("the stream survived the restart");
    assert_eq!(delivery.event.upload_id, after);
    let (_, _, settle) = delivery.into_parts();
    settle.ack().await.expect("ack");
    worker.ping().await.expect("ping after the restart");
}
