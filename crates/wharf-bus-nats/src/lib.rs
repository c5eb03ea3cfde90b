//! The NATS JetStream bus of the scaled mode: an adapter of `wharf-bus`'s [`UploadBus`].
//!
//! Topology, created idempotently by [`NatsBus::connect`] (every gateway and worker may run it
//! at start-up, concurrently):
//!
//! - `<PREFIX>_UPLOADS`: a **work-queue** stream on `<prefix>.upload.staged`. Gateways publish
//!   [`FileStaged`] with `Nats-Msg-Id: <upload id>`, so a retried publish inside the duplicate
//!   window is stored once. One durable pull consumer (`consumer_name`), shared by every worker,
//!   with explicit acks, `ack_wait`, `max_deliver`, `backoff` and `max_ack_pending`.
//! - `<PREFIX>_EVENTS`: a **limits-retention** stream on `<prefix>.events.>` holding the public
//!   events, which external consumers replay at will.
//! - Outcomes travel over core NATS on `<prefix>.upload.outcome.<upload id>`: only the gateway
//!   holding the client's request cares, and only while it waits.
//!
//! `<PREFIX>` is the subject prefix upper-cased with `.` and `-` turned into `_`. The trait's
//! subjects begin with `wharf.`; that leading token is replaced by the configured prefix.
//!
//! Only stream and consumer options that a NATS 2.9 server understands are used.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::message::{AckKind, Acker};
use async_nats::jetstream::stream::{self, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, Context};
use async_nats::{Client, ConnectOptions, HeaderMap};
use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use prost::Message;
use sha2::Digest;
use tokio::sync::watch;

use wharf_bus::{
    Backlog, BusError, Delivery, FileStaged, OutcomeWatch, PublicEvent, SUBJECT_OUTCOME_PREFIX,
    SUBJECT_STAGED, Settle, UploadBus, UploadOutcome,
};

/// The leading subject token of the trait's subjects, replaced by the configured prefix.
const TRAIT_PREFIX: &str = "wharf";
/// Lifetime of one pull request; a fresh one is sent before it runs out.
const PULL_EXPIRES: Duration = Duration::from_secs(30);
/// Bound on waiting for the server in `ping`, outcome flushes and rebuilds.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest pause between two attempts to rebuild the delivery stream.
const MAX_REBUILD_DELAY: Duration = Duration::from_secs(5);

/// Settings of the JetStream bus.
#[derive(Clone)]
pub struct NatsConfig {
    /// Server URL(s), comma-separated; may carry credentials (never logged).
    pub url: String,
    /// First subject token(s) of every subject, `wharf` by default. Also names the streams.
    pub subject_prefix: String,
    /// Replicas of both streams in a cluster; `None` lets the server choose (1).
    pub stream_replicas: Option<usize>,
    /// Time a worker has to settle a delivery (or report progress) before it is redelivered.
    /// With a non-empty `backoff`, the server uses the backoff's first entry instead.
    pub ack_wait: Duration,
    /// Deliveries of one message before the server gives up on it; keep it above the
    /// worker's own limit so the worker records the failure itself.
    pub max_deliver: i64,
    /// Redelivery delays after ack-wait expiries (must be shorter than `max_deliver`).
    pub backoff: Vec<Duration>,
    /// Deliveries unsettled at once across all workers.
    pub max_ack_pending: i64,
    /// Name of the durable pull consumer shared by all workers.
    pub consumer_name: String,
    /// Window in which a repeated `Nats-Msg-Id` is stored once.
    pub duplicate_window: Duration,
    /// Messages one worker pulls per request; keep it near the worker's concurrency, since a
    /// pulled message's ack-wait runs while it waits in the local buffer.
    pub pull_batch: usize,
    /// Idle heartbeat of pull requests; a missed heartbeat rebuilds the delivery stream.
    pub idle_heartbeat: Duration,
    /// Bound on establishing the connection at start-up.
    pub connect_timeout: Duration,
    /// Credentials and TLS of the connection.
    pub security: NatsSecurity,
}

/// How a process proves itself to NATS and checks the server (issue #12, finding 5): a
/// user and password or a token, and TLS with the server checked against a CA and,
/// optionally, a client certificate. `Debug` never shows the password or the token.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct NatsSecurity {
    /// User name (with `password`).
    pub user: Option<String>,
    /// Password of `user`.
    pub password: Option<String>,
    /// Authentication token (instead of a user).
    pub token: Option<String>,
    /// Refuse to talk to the server without TLS.
    pub require_tls: bool,
    /// PEM CA bundle the server's certificate must chain to (default: the system's roots).
    pub ca_file: Option<std::path::PathBuf>,
    /// PEM client certificate and key, for a server that verifies clients.
    pub client_cert: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

impl std::fmt::Debug for NatsSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |secret: &Option<String>| secret.as_ref().map(|_| "***");
        f.debug_struct("NatsSecurity")
            .field("user", &self.user)
            .field("password", &hidden(&self.password))
            .field("token", &hidden(&self.token))
            .field("require_tls", &self.require_tls)
            .field("ca_file", &self.ca_file)
            .field("client_cert", &self.client_cert)
            .finish()
    }
}

impl NatsSecurity {
    /// The connect options these settings ask for.
    fn options(&self) -> Result<ConnectOptions, BusError> {
        let mut options = ConnectOptions::new();
        match (&self.user, &self.password, &self.token) {
            (Some(user), Some(password), None) => {
                options = options.user_and_password(user.clone(), password.clone());
            }
            (None, None, Some(token)) => options = options.token(token.clone()),
            (None, None, None) => {}
            _ => {
                return Err(BusError::Unavailable(
                    "NATS credentials: give a user with its password, or a token, not both"
                        .to_owned(),
                ));
            }
        }
        if let Some(ca) = &self.ca_file {
            options = options.add_root_certificates(ca.clone());
        }
        if let Some((cert, key)) = &self.client_cert {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        // A CA or a client certificate only means something over TLS.
        let tls = self.require_tls || self.ca_file.is_some() || self.client_cert.is_some();
        Ok(options.require_tls(tls))
    }
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            url: "nats://127.0.0.1:4222".to_owned(),
            subject_prefix: TRAIT_PREFIX.to_owned(),
            stream_replicas: None,
            ack_wait: Duration::from_secs(30),
            max_deliver: 10,
            backoff: Vec::new(),
            max_ack_pending: 256,
            consumer_name: "wharf-storage-workers".to_owned(),
            duplicate_window: Duration::from_secs(120),
            pull_batch: 4,
            idle_heartbeat: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            security: NatsSecurity::default(),
        }
    }
}

impl std::fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsConfig")
            .field("url", &redact_url(&self.url))
            .field("subject_prefix", &self.subject_prefix)
            .field("stream_replicas", &self.stream_replicas)
            .field("ack_wait", &self.ack_wait)
            .field("max_deliver", &self.max_deliver)
            .field("backoff", &self.backoff)
            .field("max_ack_pending", &self.max_ack_pending)
            .field("consumer_name", &self.consumer_name)
            .field("duplicate_window", &self.duplicate_window)
            .field("pull_batch", &self.pull_batch)
            .field("idle_heartbeat", &self.idle_heartbeat)
            .field("connect_timeout", &self.connect_timeout)
            .field("security", &self.security)
            .finish()
    }
}

/// Subjects and stream names derived from the prefix.
#[derive(Debug, Clone)]
struct Names {
    prefix: String,
    staged: String,
    outcome_prefix: String,
    events_filter: String,
    uploads_stream: String,
    events_stream: String,
}

impl Names {
    fn new(prefix: &str) -> Result<Names, BusError> {
        let valid = !prefix.is_empty()
            && prefix.split('.').all(|token| {
                !token.is_empty()
                    && token
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            });
        if !valid {
            return Err(BusError::Unavailable(format!(
                "invalid NATS subject prefix {prefix:?}: use dot-separated tokens of letters, \
                 digits, '-' and '_'"
            )));
        }
        let stream_base = prefix.to_ascii_uppercase().replace(['.', '-'], "_");
        Ok(Names {
            prefix: prefix.to_owned(),
            staged: map_subject(prefix, SUBJECT_STAGED),
            outcome_prefix: map_subject(prefix, SUBJECT_OUTCOME_PREFIX),
            events_filter: format!("{prefix}.events.>"),
            uploads_stream: format!("{stream_base}_UPLOADS"),
            events_stream: format!("{stream_base}_EVENTS"),
        })
    }

    /// The configured subject of a public event (`wharf.events.…` in the trait).
    fn event_subject(&self, subject: &str) -> Result<String, BusError> {
        let rest = subject
            .strip_prefix(TRAIT_PREFIX)
            .and_then(|rest| rest.strip_prefix(".events."))
            .filter(|rest| is_valid_subject(rest))
            .ok_or_else(|| {
                BusError::Unavailable(format!(
                    "public event subject {subject:?} is not below {TRAIT_PREFIX}.events."
                ))
            })?;
        Ok(format!("{}.events.{rest}", self.prefix))
    }

    fn outcome_subject(&self, upload_id: &str) -> Result<String, BusError> {
        if upload_id.is_empty() || !is_valid_subject(upload_id) || upload_id.contains('.') {
            return Err(BusError::Unavailable(format!(
                "upload id {upload_id:?} cannot be a NATS subject token"
            )));
        }
        Ok(format!("{}.{upload_id}", self.outcome_prefix))
    }
}

/// Replaces the leading `wharf` token of a trait subject with `prefix`.
fn map_subject(prefix: &str, subject: &str) -> String {
    match subject.strip_prefix(TRAIT_PREFIX) {
        Some(rest) if rest.starts_with('.') => format!("{prefix}{rest}"),
        _ => subject.to_owned(),
    }
}

fn is_valid_subject(subject: &str) -> bool {
    !subject.is_empty()
        && subject.split('.').all(|token| {
            !token.is_empty()
                && !token
                    .chars()
                    .any(|c| c.is_whitespace() || c == '*' || c == '>')
        })
}

/// The URL(s) with any user info replaced, for messages and logs.
fn redact_url(url: &str) -> String {
    url.split(',')
        .map(|one| {
            let (scheme, rest) = match one.split_once("://") {
                Some((scheme, rest)) => (Some(scheme), rest),
                None => (None, one),
            };
            let rest = match rest.rsplit_once('@') {
                Some((_, host)) => format!("***@{host}"),
                None => rest.to_owned(),
            };
            match scheme {
                Some(scheme) => format!("{scheme}://{rest}"),
                None => rest,
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Removes the credentials of `url` from a message that may quote it.
fn scrub(message: String, url: &str) -> String {
    url.split(',')
        .filter_map(|one| {
            let rest = one.split_once("://").map_or(one, |(_, rest)| rest);
            rest.rsplit_once('@').map(|(user_info, _)| user_info)
        })
        .filter(|user_info| !user_info.is_empty())
        .fold(message, |message, user_info| {
            message.replace(user_info, "***")
        })
}

/// Returns once the server has processed every command `client` sent before the call, such as
/// a `subscribe`, so that a message published afterwards from any connection reaches it.
///
/// `Client::flush` is not enough: it only empties the local write buffer, and under load the
/// server may route another connection's publish before it has read the subscription. The
/// server handles one connection's commands in order, so a message this connection sends to
/// a fresh inbox of its own coming back proves the earlier ones were applied.
pub async fn sync_with_server(client: &Client) -> Result<(), async_nats::Error> {
    let inbox = client.new_inbox();
    let mut echo = client.subscribe(inbox.clone()).await?;
    client.publish(inbox, bytes::Bytes::new()).await?;
    client.flush().await?;
    echo.next()
        .await
        .ok_or_else(|| "the NATS connection closed before the server answered".into())
        .map(drop)
}

/// The JetStream bus: one connection, shared by every clone.
#[derive(Clone)]
pub struct NatsBus {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    jetstream: Context,
    names: Names,
    config: NatsConfig,
    /// Flips to `true` on [`NatsBus::close`]; ends the delivery streams.
    closed: watch::Sender<bool>,
}

impl std::fmt::Debug for NatsBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsBus")
            .field("url", &redact_url(&self.inner.config.url))
            .field("subject_prefix", &self.inner.names.prefix)
            .field("consumer", &self.inner.config.consumer_name)
            .finish_non_exhaustive()
    }
}

impl NatsBus {
    /// Connects and creates the streams and the shared consumer if they are missing (the
    /// consumer's settings are updated to `config` if it exists).
    #[tracing::instrument(skip_all, fields(nats.url = %redact_url(&config.url), nats.prefix = %config.subject_prefix))]
    pub async fn connect(config: NatsConfig) -> Result<NatsBus, BusError> {
        let names = Names::new(&config.subject_prefix)?;
        if !is_valid_name(&config.consumer_name) {
            return Err(BusError::Unavailable(format!(
                "invalid JetStream consumer name {:?}",
                config.consumer_name
            )));
        }
        let client = config
            .security
            .options()?
            .name("wharf")
            .connection_timeout(config.connect_timeout)
            .connect(config.url.as_str())
            .await
            .map_err(|error| {
                let message = scrub(
                    format!(
                        "cannot connect to NATS at {}: {error}",
                        redact_url(&config.url)
                    ),
                    &config.url,
                );
                let secrets = [&config.security.password, &config.security.token];
                BusError::Unavailable(
                    secrets
                        .into_iter()
                        .flatten()
                        .fold(message, |message, secret| {
                            message.replace(secret.as_str(), "***")
                        }),
                )
            })?;
        let jetstream = jetstream::new(client.clone());
        let (closed, _) = watch::channel(false);
        let bus = NatsBus {
            inner: Arc::new(Inner {
                client,
                jetstream,
                names,
                config,
                closed,
            }),
        };
        bus.inner.ensure_streams().await?;
        bus.inner.ensure_consumer().await?;
        tracing::info!(
            uploads = %bus.inner.names.uploads_stream,
            events = %bus.inner.names.events_stream,
            consumer = %bus.inner.config.consumer_name,
            "jetstream bus ready"
        );
        Ok(bus)
    }

    /// Name of the work-queue stream of staged uploads.
    pub fn uploads_stream(&self) -> &str {
        &self.inner.names.uploads_stream
    }

    /// Name of the stream of public events.
    pub fn events_stream(&self) -> &str {
        &self.inner.names.events_stream
    }

    /// The subject a trait subject (`wharf.…`) is published on with this prefix.
    pub fn subject(&self, trait_subject: &str) -> String {
        map_subject(&self.inner.names.prefix, trait_subject)
    }

    /// Ends the delivery streams (deliveries in flight can still be settled) and drains the
    /// connection: pending publishes are flushed, then it closes.
    pub async fn close(&self) -> Result<(), BusError> {
        self.inner.closed.send_replace(true);
        self.inner.client.drain().await.map_err(|error| {
            self.inner
                .unavailable("cannot drain the NATS connection", error)
        })
    }
}

impl Inner {
    fn unavailable(&self, what: &str, error: impl std::fmt::Display) -> BusError {
        BusError::Unavailable(scrub(format!("{what}: {error}"), &self.config.url))
    }

    async fn ensure_streams(&self) -> Result<(), BusError> {
        let replicas = self.config.stream_replicas.unwrap_or(0);
        let uploads = stream::Config {
            name: self.names.uploads_stream.clone(),
            description: Some("Wharf: staged uploads waiting for a storage worker".to_owned()),
            subjects: vec![self.names.staged.clone()],
            retention: RetentionPolicy::WorkQueue,
            storage: StorageType::File,
            num_replicas: replicas,
            duplicate_window: self.config.duplicate_window,
            ..stream::Config::default()
        };
        let events = stream::Config {
            name: self.names.events_stream.clone(),
            description: Some("Wharf: public events (file published, …)".to_owned()),
            subjects: vec![self.names.events_filter.clone()],
            retention: RetentionPolicy::Limits,
            storage: StorageType::File,
            num_replicas: replicas,
            duplicate_window: self.config.duplicate_window,
            ..stream::Config::default()
        };
        for config in [uploads, events] {
            let name = config.name.clone();
            let retention = config.retention;
            let mut created =
                self.jetstream
                    .get_or_create_stream(config)
                    .await
                    .map_err(|error| {
                        self.unavailable(&format!("cannot create JetStream stream {name}"), error)
                    })?;
            let existing = created.info().await.map_err(|error| {
                self.unavailable(&format!("cannot read JetStream stream {name}"), error)
            })?;
            // An existing stream is left as the operator tuned it, except that its retention
            // decides the semantics (a work queue must be one) and cannot be changed.
            if existing.config.retention != retention {
                return Err(BusError::Unavailable(format!(
                    "JetStream stream {name} exists with retention {:?}, expected {retention:?}; \
                     delete it or use another subject prefix",
                    existing.config.retention
                )));
            }
        }
        Ok(())
    }

    fn consumer_config(&self) -> pull::Config {
        pull::Config {
            durable_name: Some(self.config.consumer_name.clone()),
            description: Some("Wharf storage workers".to_owned()),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ack_wait: self.config.ack_wait,
            max_deliver: self.config.max_deliver,
            max_ack_pending: self.config.max_ack_pending,
            backoff: self.config.backoff.clone(),
            ..pull::Config::default()
        }
    }

    /// Creates the shared consumer, or updates its settings (create-or-update is idempotent).
    async fn ensure_consumer(&self) -> Result<PullConsumer, BusError> {
        let stream = self
            .jetstream
            .get_stream_no_info(&self.names.uploads_stream)
            .await
            .map_err(|error| {
                self.unavailable(
                    &format!("cannot open JetStream stream {}", self.names.uploads_stream),
                    error,
                )
            })?;
        stream
            .create_consumer(self.consumer_config())
            .await
            .map_err(|error| {
                self.unavailable(
                    &format!(
                        "cannot create JetStream consumer {} on {}",
                        self.config.consumer_name, self.names.uploads_stream
                    ),
                    error,
                )
            })
    }

    /// A fresh pull stream on the shared consumer; recreates the topology if it vanished.
    async fn open_messages(&self) -> Result<pull::Stream, BusError> {
        let consumer = match self.ensure_consumer().await {
            Ok(consumer) => consumer,
            Err(first) => {
                // The stream itself may be gone (deleted, or a server that lost its store).
                tracing::debug!(error = %first, "recreating the jetstream topology");
                self.ensure_streams().await?;
                self.ensure_consumer().await?
            }
        };
        let heartbeat = self.config.idle_heartbeat.min(PULL_EXPIRES / 2);
        consumer
            .stream()
            .max_messages_per_batch(self.config.pull_batch.max(1))
            .expires(PULL_EXPIRES)
            .heartbeat(heartbeat)
            .messages()
            .await
            .map_err(|error| self.unavailable("cannot pull from JetStream", error))
    }

    fn closed(&self) -> bool {
        *self.closed.borrow()
    }
}

fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
}

#[async_trait]
impl UploadBus for NatsBus {
    async fn backlog(&self) -> Result<Backlog, BusError> {
        let info = tokio::time::timeout(REQUEST_TIMEOUT, async {
            let stream = self
                .inner
                .jetstream
                .get_stream_no_info(&self.inner.names.uploads_stream)
                .await
                .map_err(|error| {
                    self.inner
                        .unavailable("cannot open the uploads stream", error)
                })?;
            stream
                .consumer_info(&self.inner.config.consumer_name)
                .await
                .map_err(|error| {
                    self.inner
                        .unavailable("cannot read the consumer's state", error)
                })
        })
        .await
        .map_err(|_| BusError::Unavailable("JetStream did not answer in time".to_owned()))??;
        let count = |value: usize| u64::try_from(value).unwrap_or(u64::MAX);
        Ok(Backlog {
            pending: info.num_pending,
            ack_pending: count(info.num_ack_pending),
            redelivered: count(info.num_redelivered),
        })
    }

    async fn ping(&self) -> Result<(), BusError> {
        let state = self.inner.client.connection_state();
        if state != async_nats::connection::State::Connected {
            return Err(BusError::Unavailable(format!(
                "not connected to NATS (connection {state:?})"
            )));
        }
        // The work queue's info proves JetStream answers and the topology is in place. (Not
        // the account info: async-nats 0.51 cannot parse a 2.9 server's answer to it.)
        let uploads = &self.inner.names.uploads_stream;
        tokio::time::timeout(REQUEST_TIMEOUT, self.inner.jetstream.get_stream(uploads))
            .await
            .map_err(|_| BusError::Unavailable("JetStream did not answer in time".to_owned()))?
            .map_err(|error| {
                self.inner
                    .unavailable(&format!("JetStream stream {uploads} unavailable"), error)
            })?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(upload_id = %upload_id))]
    async fn watch_outcome(&self, upload_id: &str) -> Result<OutcomeWatch, BusError> {
        let subject = self.inner.names.outcome_subject(upload_id)?;
        let mut subscriber = self
            .inner
            .client
            .subscribe(subject)
            .await
            .map_err(|error| {
                self.inner
                    .unavailable("cannot watch the upload outcome", error)
            })?;
        // Only once the server has registered the subscription may the caller publish the
        // upload, so that even an instant answer (from any connection) is received.
        tokio::time::timeout(REQUEST_TIMEOUT, sync_with_server(&self.inner.client))
            .await
            .map_err(|_| {
                BusError::Unavailable("NATS did not confirm the watch in time".to_owned())
            })?
            .map_err(|error| {
                self.inner
                    .unavailable("cannot watch the upload outcome", error)
            })?;
        Ok(OutcomeWatch::new(Box::pin(async move {
            let message = subscriber.next().await.ok_or(BusError::Closed)?;
            // Dropping the subscriber unsubscribes.
            let mut outcome = UploadOutcome::decode(message.payload)?;
            outcome.trace_context = trace_context_from(message.headers.as_ref());
            Ok(outcome)
        })))
    }

    #[tracing::instrument(skip_all, fields(upload_id = %event.upload_id))]
    async fn publish_staged(&self, event: &FileStaged) -> Result<(), BusError> {
        if event.upload_id.is_empty() {
            return Err(BusError::Unavailable(
                "a staged upload needs an upload id".to_owned(),
            ));
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            event.upload_id.as_str(),
        );
        let mut event = event.clone();
        move_trace_context(&mut event.trace_context, &mut headers);
        headers.insert(
            async_nats::header::NATS_EXPECTED_STREAM,
            self.inner.names.uploads_stream.as_str(),
        );
        let ack = self
            .inner
            .jetstream
            .publish_with_headers(
                self.inner.names.staged.clone(),
                headers,
                event.encode_to_vec().into(),
            )
            .await
            .map_err(|error| self.inner.unavailable("cannot queue the upload", error))?
            .await
            .map_err(|error| {
                self.inner
                    .unavailable("JetStream did not store the upload", error)
            })?;
        if ack.duplicate {
            tracing::debug!(
                sequence = ack.sequence,
                "upload was already queued (duplicate id)"
            );
        }
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(upload_id = %outcome.upload_id))]
    async fn publish_outcome(&self, outcome: &UploadOutcome) -> Result<(), BusError> {
        let subject = self.inner.names.outcome_subject(&outcome.upload_id)?;
        let mut headers = HeaderMap::new();
        let mut outcome = outcome.clone();
        move_trace_context(&mut outcome.trace_context, &mut headers);
        self.inner
            .client
            .publish_with_headers(subject, headers, outcome.encode_to_vec().into())
            .await
            .map_err(|error| self.inner.unavailable("cannot publish the outcome", error))?;
        // Core NATS buffers publishes; flushing reports a connection that is down now rather
        // than letting the answer sit in a buffer while the gateway times out.
        tokio::time::timeout(REQUEST_TIMEOUT, self.inner.client.flush())
            .await
            .map_err(|_| {
                BusError::Unavailable("NATS did not confirm the outcome in time".to_owned())
            })?
            .map_err(|error| self.inner.unavailable("cannot publish the outcome", error))
    }

    #[tracing::instrument(skip_all, fields(subject = %event.subject))]
    async fn publish_event(&self, event: PublicEvent) -> Result<(), BusError> {
        let subject = self.inner.names.event_subject(&event.subject)?;
        // Events carry their own identity (a serial); identical bytes on one subject are the
        // same event, e.g. republished by a worker whose ack was lost.
        let digest = sha2::Sha256::new()
            .chain_update(subject.as_bytes())
            .chain_update([0])
            .chain_update(&event.payload)
            .finalize();
        let message_id = hex::encode(digest);
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, message_id.as_str());
        headers.insert(
            async_nats::header::NATS_EXPECTED_STREAM,
            self.inner.names.events_stream.as_str(),
        );
        self.inner
            .jetstream
            .publish_with_headers(subject, headers, event.payload)
            .await
            .map_err(|error| self.inner.unavailable("cannot publish the event", error))?
            .await
            .map_err(|error| {
                self.inner
                    .unavailable("JetStream did not store the event", error)
            })?;
        Ok(())
    }

    async fn staged_deliveries(&self) -> Result<BoxStream<'static, Delivery>, BusError> {
        // The first pull is opened eagerly so a misconfiguration fails the caller at start-up;
        // later failures are retried inside the stream, which ends only on `close`.
        let messages = self.inner.open_messages().await?;
        let pump = Pump {
            inner: Arc::clone(&self.inner),
            closed: self.inner.closed.subscribe(),
            messages: Some(messages),
            failures: 0,
        };
        Ok(futures::stream::unfold(pump, |mut pump| async move {
            let delivery = pump.next_delivery().await?;
            Some((delivery, pump))
        })
        .boxed())
    }
}

/// Feeds deliveries from the pull stream, rebuilding it after any error.
struct Pump {
    inner: Arc<Inner>,
    closed: watch::Receiver<bool>,
    messages: Option<pull::Stream>,
    /// Consecutive failures, for the rebuild delay.
    failures: u32,
}

impl Pump {
    /// The next decodable delivery, or `None` once the bus is closed.
    async fn next_delivery(&mut self) -> Option<Delivery> {
        loop {
            if self.inner.closed() {
                return None;
            }
            let Some(messages) = self.messages.as_mut() else {
                if self.failures > 0 && !self.pause().await {
                    return None;
                }
                match self.inner.open_messages().await {
                    Ok(messages) => {
                        tracing::info!("jetstream delivery stream rebuilt");
                        self.messages = Some(messages);
                    }
                    Err(error) => {
                        self.failures += 1;
                        tracing::warn!(error = %error, failures = self.failures, "cannot rebuild the jetstream delivery stream");
                    }
                }
                continue;
            };
            let next = tokio::select! {
                next = messages.next() => next,
                _ = self.closed.wait_for(|closed| *closed) => return None,
            };
            match next {
                Some(Ok(message)) => {
                    self.failures = 0;
                    if let Some(delivery) = into_delivery(message).await {
                        return Some(delivery);
                    }
                }
                Some(Err(error)) => {
                    // Server restart, leader change, missed heartbeats, deleted consumer: pull
                    // again on a fresh stream (pitfall: a stalled pull never recovers).
                    self.failures += 1;
                    tracing::warn!(error = %error, kind = ?error.kind(), "jetstream delivery stream failed, rebuilding");
                    self.messages = None;
                }
                None => {
                    self.failures += 1;
                    tracing::warn!("jetstream delivery stream ended, rebuilding");
                    self.messages = None;
                }
            }
        }
    }

    /// Waits before a rebuild; `false` when the bus was closed meanwhile.
    async fn pause(&mut self) -> bool {
        let exponent = self.failures.saturating_sub(1).min(6);
        let delay = (Duration::from_millis(100) * 2u32.pow(exponent)).min(MAX_REBUILD_DELAY);
        tokio::select! {
            _ = tokio::time::sleep(delay) => true,
            _ = self.closed.wait_for(|closed| *closed) => false,
        }
    }
}

/// The W3C trace-context fields a message may carry.
const TRACE_HEADERS: [&str; 2] = ["traceparent", "tracestate"];

/// Moves a message's trace context (`traceparent`, `tracestate`) from its protobuf field to
/// NATS headers, where the W3C convention and other NATS tooling look for it.
fn move_trace_context(context: &mut HashMap<String, String>, headers: &mut HeaderMap) {
    for name in TRACE_HEADERS {
        if let Some(value) = context.remove(name) {
            headers.insert(name, value.as_str());
        }
    }
    context.clear();
}

/// The trace context a received message carries in its headers.
fn trace_context_from(headers: Option<&HeaderMap>) -> HashMap<String, String> {
    let Some(headers) = headers else {
        return HashMap::new();
    };
    TRACE_HEADERS
        .into_iter()
        .filter_map(|name| {
            let value = headers.get(name)?.as_str();
            Some((name.to_owned(), value.to_owned()))
        })
        .collect()
}

/// Decodes a pulled message; an undecodable one is terminated (it can never succeed).
async fn into_delivery(message: jetstream::Message) -> Option<Delivery> {
    let delivered = match message.info() {
        Ok(info) => info.delivered,
        Err(error) => {
            tracing::error!(error = %error, subject = %message.subject, "jetstream message without delivery info, skipped");
            return None;
        }
    };
    let delivery_count = u32::try_from(delivered.max(1)).unwrap_or(u32::MAX);
    let (message, acker) = message.split();
    match FileStaged::decode(message.payload) {
        Ok(mut event) => {
            event.trace_context = trace_context_from(message.headers.as_ref());
            let settle = NatsSettle { acker };
            Some(Delivery::new(event, delivery_count, Box::new(settle)))
        }
        Err(error) => {
            tracing::error!(error = %error, subject = %message.subject, delivery_count, "undecodable staged upload, terminated");
            if let Err(error) = acker.ack_with(AckKind::Term).await {
                tracing::warn!(error = %error, "cannot terminate the undecodable message");
            }
            None
        }
    }
}

/// Settles one JetStream delivery. Dropped unsettled, the server redelivers it after the
/// ack wait.
struct NatsSettle {
    acker: Acker,
}

fn settle_error(what: &str, error: async_nats::Error) -> BusError {
    BusError::Unavailable(format!("{what}: {error}"))
}

#[async_trait]
impl Settle for NatsSettle {
    async fn ack(self: Box<Self>) -> Result<(), BusError> {
        // Confirmed by the server, so a lost ack is reported instead of causing a silent
        // redelivery.
        self.acker
            .double_ack()
            .await
            .map_err(|error| settle_error("cannot acknowledge the delivery", error))
    }

    async fn retry_later(self: Box<Self>, delay: Duration) -> Result<(), BusError> {
        let kind = AckKind::Nak((!delay.is_zero()).then_some(delay));
        self.acker
            .ack_with(kind)
            .await
            .map_err(|error| settle_error("cannot schedule the redelivery", error))
    }

    async fn reject(self: Box<Self>) -> Result<(), BusError> {
        self.acker
            .double_ack_with(AckKind::Term)
            .await
            .map_err(|error| settle_error("cannot terminate the delivery", error))
    }

    async fn in_progress(&self) -> Result<(), BusError> {
        self.acker
            .ack_with(AckKind::Progress)
            .await
            .map_err(|error| settle_error("cannot extend the ack deadline", error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_prefix() {
        let names = Names::new("acme.wharf-prod").expect("names");
        assert_eq!(names.uploads_stream, "ACME_WHARF_PROD_UPLOADS");
        assert_eq!(names.events_stream, "ACME_WHARF_PROD_EVENTS");
        assert_eq!(names.staged, "acme.wharf-prod.upload.staged");
        assert_eq!(names.events_filter, "acme.wharf-prod.events.>");
        assert_eq!(
            names.outcome_subject("u-1").expect("outcome"),
            "acme.wharf-prod.upload.outcome.u-1"
        );
        assert_eq!(
            names
                .event_subject("wharf.events.file.published")
                .expect("event"),
            "acme.wharf-prod.events.file.published"
        );
        assert!(names.event_subject("wharf.upload.staged").is_err());
        assert!(names.event_subject("wharf.events.").is_err());
        assert!(names.outcome_subject("a.b").is_err());
        assert!(names.outcome_subject("a*").is_err());
    }

    #[test]
    fn bad_prefixes_are_refused() {
        for prefix in ["", "a..b", "a.*", "a b", ">", ".a"] {
            assert!(Names::new(prefix).is_err(), "{prefix:?}");
        }
    }

    #[test]
    fn credentials_never_show() {
        let url = "nats://alice:s3cret@nats-1:4222,tls://tok3n@nats-2:4222,nats://nats-3";
        assert_eq!(
            redact_url(url),
            "nats://***@nats-1:4222,tls://***@nats-2:4222,nats://nats-3"
        );
        let message = scrub("failed for alice:s3cret and tok3n".to_owned(), url);
        assert_eq!(message, "failed for *** and ***");
        let config = NatsConfig {
            url: url.to_owned(),
            ..NatsConfig::default()
        };
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("s3cret") && !debug.contains("tok3n"),
            "{debug}"
        );
    }
}
