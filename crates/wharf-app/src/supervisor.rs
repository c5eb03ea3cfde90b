//! One supervisor for the tasks of a process: each task is named and gets its own
//! cancellation token; the first task to end on its own (with an error or not) stops the
//! others and ends the run with an error naming it. Tasks stop in the order they were added,
//! each within its grace time, so that shutdown keeps its order (e.g. HTTP before the worker
//! that answers in-flight uploads).

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::task::{AbortHandle, JoinSet};
use tokio_util::sync::CancellationToken;

/// What starts a task: given its stop token, the future that runs it.
type Start = Box<dyn FnOnce(CancellationToken) -> BoxFuture<'static, anyhow::Result<()>> + Send>;

/// A task not started yet.
struct Pending {
    name: &'static str,
    grace: Duration,
    late: &'static str,
    start: Start,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Pending")
            .field("name", &self.name)
            .field("grace", &self.grace)
            .finish_non_exhaustive()
    }
}

/// The tasks of one process, started and stopped together.
#[derive(Debug, Default)]
pub struct Supervisor {
    pending: Vec<Pending>,
}

/// A started task.
#[derive(Debug)]
struct Running {
    name: &'static str,
    grace: Duration,
    late: &'static str,
    stop: CancellationToken,
    abort: AbortHandle,
    done: bool,
}

/// How a task ended, as the join set reports it.
type Joined = Result<(tokio::task::Id, anyhow::Result<()>), tokio::task::JoinError>;

impl Supervisor {
    /// An empty supervisor.
    pub fn new() -> Supervisor {
        Supervisor::default()
    }

    /// Adds a task named `name`: `start` receives the token that asks it to stop, and the
    /// task must then finish within `grace` (else `late` is logged and it is aborted). A task
    /// that ends before it is asked to ends the whole run.
    pub fn add<F, Fut>(&mut self, name: &'static str, grace: Duration, late: &'static str, start: F)
    where
        F: FnOnce(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        self.pending.push(Pending {
            name,
            grace,
            late,
            start: Box::new(move |stop| Box::pin(start(stop))),
        });
    }

    /// Starts every task and runs them until `shutdown` resolves or one ends on its own; then
    /// stops the others in order. `stopping`, if any, is logged when `shutdown` fired. The error names
    /// the task that ended the run.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()>,
        stopping: Option<&'static str>,
    ) -> anyhow::Result<()> {
        let mut set = JoinSet::new();
        let mut running = Vec::with_capacity(self.pending.len());
        let mut by_id = HashMap::new();
        for task in self.pending {
            let stop = CancellationToken::new();
            let future = (task.start)(stop.clone());
            let abort = set.spawn(future);
            by_id.insert(abort.id(), running.len());
            running.push(Running {
                name: task.name,
                grace: task.grace,
                late: task.late,
                stop,
                abort,
                done: false,
            });
        }
        let failure = tokio::select! {
            () = shutdown => {
                if let Some(stopping) = stopping {
                    tracing::info!("{stopping}");
                }
                None
            }
            Some(joined) = set.join_next_with_id() => {
                let error = ended(&mut running, &by_id, joined)
                    .unwrap_or_else(|| anyhow::anyhow!("a task ended"));
                tracing::error!("{error:#}; stopping the other tasks");
                Some(error)
            }
        };
        for index in 0..running.len() {
            if running[index].done {
                continue;
            }
            running[index].stop.cancel();
            let deadline = tokio::time::Instant::now() + running[index].grace;
            while !running[index].done {
                match tokio::time::timeout_at(deadline, set.join_next_with_id()).await {
                    Ok(Some(joined)) => {
                        // The run is ending anyway: only worth a warning.
                        if let Some(error) = ended(&mut running, &by_id, joined) {
                            tracing::warn!("{error:#}");
                        }
                    }
                    Ok(None) => break,
                    Err(_) => {
                        tracing::warn!(task = running[index].name, "{}", running[index].late);
                        running[index].abort.abort();
                        running[index].done = true;
                    }
                }
            }
        }
        match failure {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

/// Marks the task of `joined` done and says how it ended, unless it ended cleanly after
/// being asked to stop.
fn ended(
    running: &mut [Running],
    by_id: &HashMap<tokio::task::Id, usize>,
    joined: Joined,
) -> Option<anyhow::Error> {
    let (id, result) = match joined {
        Ok((id, result)) => (id, result),
        Err(error) => {
            let what = if error.is_panic() {
                "panicked"
            } else {
                "was aborted"
            };
            (error.id(), Err(anyhow::anyhow!("{what}")))
        }
    };
    let Some(task) = by_id.get(&id).and_then(|index| running.get_mut(*index)) else {
        return Some(anyhow::anyhow!("an unknown task ended"));
    };
    task.done = true;
    let asked = task.stop.is_cancelled();
    match (result, asked) {
        (Ok(()), false) => Some(anyhow::anyhow!("task `{}` exited unexpectedly", task.name)),
        (Ok(()), true) => None,
        (Err(error), false) => Some(error.context(format!("task `{}` failed", task.name))),
        (Err(error), true) => {
            Some(error.context(format!("task `{}` stopped with an error", task.name)))
        }
    }
}
