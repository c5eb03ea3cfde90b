//! The in-process bus of the embedded mode: channels instead of a broker.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::{
    Backlog, BusError, Delivery, FileStaged, OutcomeWatch, PublicEvent, Settle, UploadBus,
    UploadOutcome,
};

type Queued = (FileStaged, u32);

/// A bus inside one process. Not durable: the embedded mode makes up for it by answering
/// clients only after the commit, and by clearing stale staging at start-up.
#[derive(Debug, Clone)]
pub struct InProcessBus {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    queue: mpsc::UnboundedSender<Queued>,
    receiver: tokio::sync::Mutex<mpsc::UnboundedReceiver<Queued>>,
    waiters: Mutex<HashMap<String, oneshot::Sender<UploadOutcome>>>,
    events: broadcast::Sender<PublicEvent>,
    /// Uploads in the queue.
    queued: AtomicU64,
    /// Deliveries handed out and not settled yet (including retries waiting for their delay).
    in_hand: AtomicU64,
    /// Of those, redeliveries.
    redelivered_in_hand: AtomicU64,
}

impl Inner {
    fn enqueue(&self, message: Queued) {
        self.queued.fetch_add(1, Ordering::Relaxed);
        if self.queue.send(message).is_err() {
            // The bus is closed; nothing will ever take it.
            self.queued.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn handed_out(&self, delivery_count: u32) {
        self.queued.fetch_sub(1, Ordering::Relaxed);
        self.in_hand.fetch_add(1, Ordering::Relaxed);
        if delivery_count > 1 {
            self.redelivered_in_hand.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn settled(&self, delivery_count: u32) {
        self.in_hand.fetch_sub(1, Ordering::Relaxed);
        if delivery_count > 1 {
            self.redelivered_in_hand.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Default for InProcessBus {
    fn default() -> Self {
        InProcessBus::new()
    }
}

impl InProcessBus {
    /// A new, empty bus.
    pub fn new() -> InProcessBus {
        let (queue, receiver) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(1024);
        InProcessBus {
            inner: Arc::new(Inner {
                queue,
                receiver: tokio::sync::Mutex::new(receiver),
                waiters: Mutex::new(HashMap::new()),
                events,
                queued: AtomicU64::new(0),
                in_hand: AtomicU64::new(0),
                redelivered_in_hand: AtomicU64::new(0),
            }),
        }
    }

    /// Receives the public events published from now on.
    pub fn subscribe_events(&self) -> broadcast::Receiver<PublicEvent> {
        self.inner.events.subscribe()
    }
}

#[async_trait]
impl UploadBus for InProcessBus {
    async fn backlog(&self) -> Result<Backlog, BusError> {
        Ok(Backlog {
            pending: self.inner.queued.load(Ordering::Relaxed),
            ack_pending: self.inner.in_hand.load(Ordering::Relaxed),
            redelivered: self.inner.redelivered_in_hand.load(Ordering::Relaxed),
        })
    }

    async fn ping(&self) -> Result<(), BusError> {
        if self.inner.queue.is_closed() {
            return Err(BusError::Closed);
        }
        Ok(())
    }

    async fn watch_outcome(&self, upload_id: &str) -> Result<OutcomeWatch, BusError> {
        let (sender, receiver) = oneshot::channel();
        lock(&self.inner.waiters).insert(upload_id.to_owned(), sender);
        let inner = Arc::clone(&self.inner);
        let upload_id = upload_id.to_owned();
        Ok(OutcomeWatch::new(Box::pin(async move {
            let _forget = ForgetWaiter { inner, upload_id };
            receiver.await.map_err(|_| BusError::Closed)
        })))
    }

    async fn publish_staged(&self, event: &FileStaged) -> Result<(), BusError> {
        if self.inner.queue.is_closed() {
            return Err(BusError::Closed);
        }
        self.inner.enqueue((event.clone(), 1));
        Ok(())
    }

    async fn publish_outcome(&self, outcome: &UploadOutcome) -> Result<(), BusError> {
        if let Some(waiter) = lock(&self.inner.waiters).remove(&outcome.upload_id) {
            // The gateway may have given up waiting; then nobody needs the answer.
            let _ = waiter.send(outcome.clone());
        }
        Ok(())
    }

    async fn publish_event(&self, event: PublicEvent) -> Result<(), BusError> {
        // No subscriber is fine: public events are fire-and-forget in process.
        let _ = self.inner.events.send(event);
        Ok(())
    }

    async fn staged_deliveries(&self) -> Result<BoxStream<'static, Delivery>, BusError> {
        let inner = Arc::clone(&self.inner);
        let stream = futures::stream::unfold(inner, |inner| async move {
            let next = inner.receiver.lock().await.recv().await;
            next.map(|(event, delivery_count)| {
                inner.handed_out(delivery_count);
                let settle = InProcessSettle {
                    inner: Arc::clone(&inner),
                    message: Some((event.clone(), delivery_count)),
                };
                (
                    Delivery::new(event, delivery_count, Box::new(settle)),
                    inner,
                )
            })
        });
        Ok(stream.boxed())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Removes a waiter whose gateway stopped waiting (timeout or client gone).
struct ForgetWaiter {
    inner: Arc<Inner>,
    upload_id: String,
}

impl Drop for ForgetWaiter {
    fn drop(&mut self) {
        lock(&self.inner.waiters).remove(&self.upload_id);
    }
}

/// Settles an in-process delivery; an unsettled one is queued again when dropped, as a
/// broker would redeliver it after its ack deadline.
struct InProcessSettle {
    inner: Arc<Inner>,
    message: Option<Queued>,
}

impl InProcessSettle {
    /// Settles for good (ack or reject).
    fn finish(&mut self) {
        if let Some((_, count)) = self.message.take() {
            self.inner.settled(count);
        }
    }
}

impl Drop for InProcessSettle {
    fn drop(&mut self) {
        if let Some((event, count)) = self.message.take() {
            self.inner.settled(count);
            self.inner.enqueue((event, count + 1));
        }
    }
}

#[async_trait]
impl Settle for InProcessSettle {
    async fn ack(mut self: Box<Self>) -> Result<(), BusError> {
        self.finish();
        Ok(())
    }

    async fn retry_later(mut self: Box<Self>, delay: Duration) -> Result<(), BusError> {
        if let Some((event, count)) = self.message.take() {
            let inner = Arc::clone(&self.inner);
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                inner.settled(count);
                inner.enqueue((event, count + 1));
            });
        }
        Ok(())
    }

    async fn reject(mut self: Box<Self>) -> Result<(), BusError> {
        self.finish();
        Ok(())
    }

    async fn in_progress(&self) -> Result<(), BusError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_proto::v1::upload_outcome::Result as OutcomeResult;
    use wharf_proto::v1::{ErrorCode, Refusal};

    fn staged(upload_id: &str) -> FileStaged {
        FileStaged {
            upload_id: upload_id.to_owned(),
            ..FileStaged::default()
        }
    }

    #[tokio::test]
    async fn outcome_reaches_the_waiting_gateway() {
        let bus = InProcessBus::new();
        let watch = bus.watch_outcome("u1").await.expect("watch");
        bus.publish_staged(&staged("u1")).await.expect("publish");
        let mut deliveries = bus.staged_deliveries().await.expect("deliveries");
        let delivery = deliveries.next().await.expect("delivery");
        assert_eq!(delivery.event.upload_id, "u1");
        assert_eq!(delivery.delivery_count, 1);
        let (_, _, settle) = delivery.into_parts();
        let outcome = UploadOutcome {
            upload_id: "u1".to_owned(),
            result: Some(OutcomeResult::Rejected(Refusal {
                code: ErrorCode::InvalidRequest.into(),
                message: "no".to_owned(),
                retry_after_seconds: 0,
            })),
            trace_context: Default::default(),
        };
        bus.publish_outcome(&outcome).await.expect("outcome");
        settle.ack().await.expect("ack");
        assert_eq!(
            watch.wait(Duration::from_secs(1)).await.expect("wait"),
            outcome
        );
    }

    #[tokio::test]
    async fn backlog_counts_queued_and_unsettled_uploads() {
        let bus = InProcessBus::new();
        let backlog = |pending, ack_pending, redelivered| Backlog {
            pending,
            ack_pending,
            redelivered,
        };
        assert_eq!(bus.backlog().await.expect("backlog"), backlog(0, 0, 0));
        bus.publish_staged(&staged("a")).await.expect("publish");
        bus.publish_staged(&staged("b")).await.expect("publish");
        assert_eq!(bus.backlog().await.expect("backlog"), backlog(2, 0, 0));
        let mut deliveries = bus.staged_deliveries().await.expect("deliveries");
        let first = deliveries.next().await.expect("a");
        assert_eq!(bus.backlog().await.expect("backlog"), backlog(1, 1, 0));
        drop(first);
        assert_eq!(bus.backlog().await.expect("backlog"), backlog(2, 0, 0));
        let second = deliveries.next().await.expect("b");
        let again = deliveries.next().await.expect("a again");
        assert_eq!(again.delivery_count, 2);
        assert_eq!(bus.backlog().await.expect("backlog"), backlog(0, 2, 1));
        let (_, _, settle) = again.into_parts();
        settle.ack().await.expect("ack");
        let (_, _, settle) = second.into_parts();
        settle.reject().await.expect("reject");
        assert_eq!(bus.backlog().await.expect("backlog"), backlog(0, 0, 0));
    }

    #[tokio::test]
    async fn unsettled_and_retried_deliveries_come_back() {
        let bus = InProcessBus::new();
        bus.publish_staged(&staged("u2")).await.expect("publish");
        let mut deliveries = bus.staged_deliveries().await.expect("deliveries");
        drop(deliveries.next().await.expect("first"));
        let second = deliveries.next().await.expect("redelivered");
        assert_eq!(second.delivery_count, 2);
        let (_, _, settle) = second.into_parts();
        settle
            .retry_later(Duration::from_millis(1))
            .await
            .expect("retry");
        let third = deliveries.next().await.expect("retried");
        assert_eq!(third.delivery_count, 3);
        let (_, _, settle) = third.into_parts();
        settle.ack().await.expect("ack");
    }

    #[tokio::test]
    async fn a_wait_times_out_and_forgets_its_waiter() {
        let bus = InProcessBus::new();
        let watch = bus.watch_outcome("u3").await.expect("watch");
        assert!(matches!(
            watch.wait(Duration::from_millis(5)).await,
            Err(BusError::Timeout)
        ));
        assert!(lock(&bus.inner.waiters).is_empty());
    }
}
