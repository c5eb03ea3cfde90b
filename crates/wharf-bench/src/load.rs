//! Closed-loop load: N connections each sending the next request as soon as its last one is
//! answered, and the summary of what came back.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

/// How many failures a summary describes.
const FAILURES_SHOWN: usize = 5;

/// What a load run measured.
#[derive(Debug, Serialize)]
pub(crate) struct Summary {
    pub(crate) requests: usize,
    pub(crate) concurrency: usize,
    pub(crate) ok: usize,
    pub(crate) errors: usize,
    pub(crate) wall_s: f64,
    pub(crate) latency: Latency,
    /// The first few failures, as `request: error`.
    pub(crate) failures: Vec<String>,
}

/// Sends requests `0..count` over `concurrency` connections; `request(index)` makes one
/// request and returns its error, if any, as text.
pub(crate) async fn drive<F, Fut>(
    count: usize,
    concurrency: usize,
    request: F,
) -> anyhow::Result<Summary>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let request = Arc::new(request);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut connections = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (request, next) = (Arc::clone(&request), Arc::clone(&next));
        connections.spawn(async move {
            let mut outcomes = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= count {
                    break;
                }
                let began = Instant::now();
                let failure = request(index).await.err();
                outcomes.push((began.elapsed(), failure));
            }
            outcomes
        });
    }
    let mut outcomes = Vec::new();
    while let Some(joined) = connections.join_next().await {
        outcomes.extend(joined.context("a connection task panicked")?);
    }
    let wall_s = started.elapsed().as_secs_f64();
    let failures: Vec<String> = outcomes
        .iter()
        .filter_map(|(_, failure)| failure.clone())
        .collect();
    Ok(Summary {
        requests: outcomes.len(),
        concurrency,
        ok: outcomes.len() - failures.len(),
        errors: failures.len(),
        wall_s,
        latency: Latency::of(outcomes.into_iter().map(|(elapsed, _)| elapsed).collect()),
        failures: failures.into_iter().take(FAILURES_SHOWN).collect(),
    })
}

/// Percentiles of a set of request latencies, in milliseconds.
#[derive(Debug, Serialize)]
pub(crate) struct Latency {
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
}

impl Latency {
    /// Nearest-rank percentiles of `samples` (all zero when empty).
    pub(crate) fn of(mut samples: Vec<Duration>) -> Latency {
        samples.sort_unstable();
        let rank = |percent: usize| -> f64 {
            if samples.is_empty() {
                return 0.0;
            }
            let index = (samples.len() * percent).div_ceil(100).saturating_sub(1);
            samples[index.min(samples.len() - 1)].as_secs_f64() * 1e3
        };
        Latency {
            p50_ms: rank(50),
            p99_ms: rank(99),
            max_ms: rank(100),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples = (1..=200).map(Duration::from_millis).collect();
        let latency = Latency::of(samples);
        assert_eq!(latency.p50_ms, 100.0);
        assert_eq!(latency.p99_ms, 198.0);
        assert_eq!(latency.max_ms, 200.0);
        assert_eq!(Latency::of(Vec::new()).p99_ms, 0.0);
    }
}
