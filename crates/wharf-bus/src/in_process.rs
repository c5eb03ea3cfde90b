//! The in-process bus of the embedded mode: channels instead of a broker.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::{
    BusError, Delivery, FileStaged, OutcomeWatch, PublicEvent, Settle, UploadBus, UploadOutcome,
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
        self.inner
            .queue
            .send((event.clone(), 1))
            .map_err(|_| BusError::Closed)
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
                let settle = InProcessSettle {
                    queue: inner.queue.clone(),
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
    queue: mpsc::UnboundedSender<Queued>,
    message: Option<Queued>,
}

impl Drop for InProcessSettle {
    fn drop(&mut self) {
        if let Some((event, count)) = self.message.take() {
            let _ = self.queue.send((event, count + 1));
        }
    }
}

#[async_trait]
impl Settle for InProcessSettle {
    async fn ack(mut self: Box<Self>) -> Result<(), BusError> {
        self.message = None;
        Ok(())
    }

    async fn retry_later(mut self: Box<Self>, delay: Duration) -> Result<(), BusError> {
        if let Some((event, count)) = self.message.take() {
            let queue = self.queue.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = queue.send((event, count + 1));
            });
        }
        Ok(())
    }

    async fn reject(mut self: Box<Self>) -> Result<(), BusError> {
        self.message = None;
        Ok(())
    }

    async fn in_progress(&self) -> Result<(), BusError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_proto::v1::UploadRejected;
    use wharf_proto::v1::upload_outcome::Result as OutcomeResult;

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
            result: Some(OutcomeResult::Rejected(UploadRejected {
                http_status: 400,
                message: "no".to_owned(),
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
