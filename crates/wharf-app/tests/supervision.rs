//! One supervisor for a process's tasks: the first task that ends on its own ends the run with
//! an error naming it; a shutdown stops every task in order. Proven on the real embedded
//! [`App`] (its storage worker fed by a bus that fails) and on the [`Supervisor`] alone.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use tokio_util::sync::CancellationToken;
use wharf_app::{Supervisor, TestApp};
use wharf_bus::{
    Backlog, BusError, Delivery, FileStaged, InProcessBus, OutcomeWatch, PublicEvent, UploadBus,
    UploadOutcome,
};

/// What the test bus's worker-facing side does.
#[derive(Debug, Clone, Copy)]
enum Deliveries {
    /// `staged_deliveries` fails (the worker cannot subscribe).
    Fail,
    /// The delivery stream ends at once (the consumer went away).
    End,
}

/// The in-process bus, except for the worker's deliveries.
#[derive(Debug)]
struct BrokenBus {
    inner: InProcessBus,
    deliveries: Deliveries,
}

#[async_trait]
impl UploadBus for BrokenBus {
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
        self.inner.publish_outcome(outcome).await
    }
    async fn publish_event(&self, event: PublicEvent) -> Result<(), BusError> {
        self.inner.publish_event(event).await
    }
    async fn staged_deliveries(&self) -> Result<BoxStream<'static, Delivery>, BusError> {
        match self.deliveries {
            Deliveries::Fail => Err(BusError::Closed),
            Deliveries::End => Ok(Box::pin(futures::stream::empty())),
        }
    }
    async fn backlog(&self) -> Result<Backlog, BusError> {
        self.inner.backlog().await
    }
}

/// Runs the embedded App on `bus` until it ends by itself; its error.
async fn run_until_it_fails(deliveries: Deliveries) -> anyhow::Error {
    let bus = Arc::new(BrokenBus {
        inner: InProcessBus::new(),
        deliveries,
    });
    let (app, _resources) = TestApp::builder()
        .bus(bus)
        .build_app()
        .await
        .expect("the app builds");
    let never = std::future::pending::<()>();
    let ended = tokio::time::timeout(Duration::from_secs(60), app.run(never))
        .await
        .expect("the run ends by itself, without a signal");
    ended.expect_err("a dead worker fails the run")
}

#[tokio::test]
async fn a_worker_that_fails_early_ends_the_embedded_run_with_its_error() {
    let error = run_until_it_fails(Deliveries::Fail).await;
    let text = format!("{error:#}");
    assert!(
        text.starts_with("task `storage worker` failed: "),
        "the error names the task: {text}"
    );
    assert!(
        error
            .chain()
            .any(|cause| matches!(cause.downcast_ref::<BusError>(), Some(BusError::Closed))),
        "the bus error is kept as the cause: {text}"
    );
}

#[tokio::test]
async fn a_worker_whose_deliveries_end_ends_the_embedded_run() {
    let error = run_until_it_fails(Deliveries::End).await;
    assert_eq!(
        format!("{error:#}"),
        "task `storage worker` exited unexpectedly"
    );
}

#[tokio::test]
async fn a_task_added_to_the_app_that_fails_ends_the_run_naming_it() {
    let (mut app, _resources) = TestApp::builder()
        .build_app()
        .await
        .expect("the app builds");
    let address = app.local_addr();
    app.add_task("doomed", |_stop| async { anyhow::bail!("out of luck") });
    let result = tokio::time::timeout(
        Duration::from_secs(60),
        app.run(std::future::pending::<()>()),
    )
    .await
    .expect("the run ends by itself");
    let error = result.expect_err("the failing task fails the run");
    assert_eq!(format!("{error:#}"), "task `doomed` failed: out of luck");
    // The gateway was stopped with the rest: its port no longer accepts connections.
    assert!(
        tokio::net::TcpStream::connect(address).await.is_err(),
        "the gateway still listens on {address}"
    );
}

#[tokio::test]
async fn shutdown_stops_the_tasks_in_the_order_they_were_added() {
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut supervisor = Supervisor::new();
    for name in ["first", "second", "third"] {
        let order = Arc::clone(&order);
        supervisor.add(
            name,
            Duration::from_secs(10),
            "late",
            move |stop: CancellationToken| async move {
                stop.cancelled().await;
                order.lock().expect("the order lock").push(name);
                Ok(())
            },
        );
    }
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(supervisor.run(shutdown.clone().cancelled_owned(), None));
    shutdown.cancel();
    run.await
        .expect("the run does not panic")
        .expect("a clean shutdown is Ok");
    assert_eq!(
        *order.lock().expect("the order lock"),
        ["first", "second", "third"]
    );
}

#[tokio::test]
async fn a_task_that_ignores_its_stop_is_aborted_after_its_grace() {
    let mut supervisor = Supervisor::new();
    let (dropped_tx, dropped_rx) = tokio::sync::oneshot::channel::<()>();
    supervisor.add(
        "stubborn",
        Duration::from_millis(50),
        "late",
        move |_stop| async move {
            // Dropped (and so the sender with it) only when the task is aborted.
            let _guard = dropped_tx;
            std::future::pending::<anyhow::Result<()>>().await
        },
    );
    supervisor
        .run(std::future::ready(()), None)
        .await
        .expect("a shutdown is Ok even when a task is aborted");
    assert!(
        dropped_rx.await.is_err(),
        "the stubborn task was aborted, dropping its sender"
    );
}

#[tokio::test]
async fn a_task_that_panics_ends_the_run_naming_it_and_stops_the_others() {
    let mut supervisor = Supervisor::new();
    let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel();
    supervisor.add(
        "patient",
        Duration::from_secs(10),
        "late",
        |stop: CancellationToken| async move {
            stop.cancelled().await;
            let _ = stopped_tx.send(());
            Ok(())
        },
    );
    supervisor.add("fragile", Duration::from_secs(10), "late", |_stop| async {
        panic!("broken invariant")
    });
    let error = supervisor
        .run(std::future::pending::<()>(), None)
        .await
        .expect_err("a panic fails the run");
    assert_eq!(format!("{error:#}"), "task `fragile` failed: panicked");
    stopped_rx
        .await
        .expect("the other task was asked to stop and finished");
}
