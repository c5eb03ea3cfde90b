//! What bounds the connections of a listener (issue #12, finding 2): how many are served at
//! once (so the process keeps file descriptors for its database, its store and its health
//! answers), how long one may wait for its request headers, and how long one may stay open
//! with no request in flight (HTTP/1 keep-alive and HTTP/2 alike).

use std::future::{Future, Ready};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use axum_server::ConnectionShutdown;
use axum_server::accept::Accept;
use futures::future::Either;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// HTTP/2 connections are pinged this often while open, so a peer that vanished is noticed.
pub(crate) const HTTP2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);
/// An HTTP/2 ping not answered in this long closes the connection.
pub(crate) const HTTP2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// File descriptors kept out of reach of connections at the least (the database pool, the
/// store's files, staging, logs, the listener itself).
const FILE_RESERVE: u64 = 128;
/// The highest soft file limit asked for when the hard limit is unlimited.
const FILE_LIMIT_CEILING: u64 = 1 << 20;

/// The limits on one listener's connections.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionLimits {
    /// A connection whose request headers are not complete after this long is closed, and
    /// so is one with no request in flight for as long.
    pub(crate) header_read_timeout: Duration,
    /// Connections served at once; one accepted beyond them closes the oldest.
    pub(crate) max_connections: usize,
}

impl ConnectionLimits {
    /// Limits with `max_connections` as the operator set it, else derived from the file
    /// limit (raised to the hard limit first).
    pub(crate) fn new(
        header_read_timeout: Duration,
        max_connections: Option<usize>,
    ) -> ConnectionLimits {
        let files = raise_file_limit();
        let derived = default_max_connections(files);
        let max_connections = match max_connections {
            Some(max) => {
                if max as u64 > derived {
                    tracing::warn!(
                        max_connections = max,
                        file_limit = files,
                        "--max-connections leaves fewer than {FILE_RESERVE} file descriptors for \
                         the database, the store and the logs; raise the file limit (ulimit -n, \
                         LimitNOFILE=) or lower it"
                    );
                }
                max
            }
            None => usize::try_from(derived).unwrap_or(usize::MAX),
        };
        tracing::info!(file_limit = files, max_connections, "connection limits");
        ConnectionLimits {
            header_read_timeout,
            max_connections,
        }
    }
}

/// Raises the soft limit on open files to the hard limit, as servers commonly do (the usual
/// soft default of 1,024 exists for `select()`), and answers the soft limit now in force.
pub(crate) fn raise_file_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 1024;
    };
    let wanted = hard.min(FILE_LIMIT_CEILING).max(soft);
    if wanted > soft {
        match setrlimit(Resource::RLIMIT_NOFILE, wanted, hard) {
            Ok(()) => return wanted,
            Err(error) => tracing::warn!(error = %error, soft, "cannot raise the file limit"),
        }
    }
    soft
}

/// Connections a process with `files` file descriptors serves at once: all but a reserve
/// of an eighth (at least [`FILE_RESERVE`]), and at least half.
fn default_max_connections(files: u64) -> u64 {
    let reserve = FILE_RESERVE.max(files / 8);
    files.saturating_sub(reserve).max(files / 2).max(1)
}

/// An acceptor that keeps at most `max_connections` connections: when one more arrives, the
/// oldest connection with no request in flight is closed, or the oldest of all when every one
/// is busy (a flood of held sockets then churns through the oldest, slowest connections
/// instead of locking fresh clients out, and an upload under way outlives idle sockets), and
/// beyond a small overshoot of
/// closings still under way the new one is closed at once. Each connection is also closed
/// once it has had no request in flight for the idle timeout (see [`IdleService`]).
#[derive(Debug, Clone)]
pub(crate) struct LimitedAcceptor<A> {
    inner: A,
    slots: Arc<Slots>,
    idle_timeout: Duration,
}

impl<A> LimitedAcceptor<A> {
    pub(crate) fn new(inner: A, limits: ConnectionLimits) -> LimitedAcceptor<A> {
        LimitedAcceptor {
            inner,
            slots: Arc::new(Slots {
                max: limits.max_connections.max(1),
                open: Mutex::new(OpenConnections::default()),
            }),
            idle_timeout: limits.header_read_timeout,
        }
    }
}

impl<S, A> Accept<TcpStream, S> for LimitedAcceptor<A>
where
    A: Accept<Evictable<TcpStream>, IdleService<S>>,
{
    type Stream = A::Stream;
    type Service = A::Service;
    type Future = Either<A::Future, Ready<io::Result<(A::Stream, A::Service)>>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let Some(slot) = Slots::take(&self.slots) else {
            // Dropping the stream closes it and frees its file descriptor now.
            drop(stream);
            return Either::Right(std::future::ready(Err(io::Error::other(
                "connection limit reached",
            ))));
        };
        // TCP_NODELAY: a response is written as headers, then body chunks; with Nagle's
        // algorithm the second write waits for the client's delayed ACK.
        if let Err(error) = stream.set_nodelay(true) {
            return Either::Right(std::future::ready(Err(error)));
        }
        let in_flight = Arc::clone(&slot.eviction.in_flight);
        let stream = Evictable {
            inner: stream,
            slot,
        };
        Either::Left(self.inner.accept(
            stream,
            IdleService::tracked(service, self.idle_timeout, in_flight),
        ))
    }
}

/// The connections of one listener, oldest first.
#[derive(Debug)]
struct Slots {
    max: usize,
    open: Mutex<OpenConnections>,
}

#[derive(Debug, Default)]
struct OpenConnections {
    next_id: u64,
    by_age: std::collections::BTreeMap<u64, Arc<Eviction>>,
    /// Connections told to close that have not closed yet.
    evicting: usize,
}

/// Tells one connection's stream to fail, waking its task.
#[derive(Debug, Default)]
struct Eviction {
    evicted: std::sync::atomic::AtomicBool,
    waker: futures::task::AtomicWaker,
    /// The connection's requests in flight (its [`Activity`]'s): idle ones are closed first.
    in_flight: Arc<AtomicUsize>,
}

impl Slots {
    /// A place for a new connection, closing the oldest idle one (else the oldest) if all are
    /// taken; `None` when too many closings are still under way.
    fn take(slots: &Arc<Slots>) -> Option<Slot> {
        let mut open = slots.open.lock().unwrap_or_else(PoisonError::into_inner);
        let live = open.by_age.len() - open.evicting;
        if live >= slots.max {
            if open.evicting >= (slots.max / 16).max(1) {
                tracing::debug!("connection limit reached: closing a new connection");
                return None;
            }
            let mut candidates = open
                .by_age
                .values()
                .filter(|eviction| !eviction.evicted.load(Ordering::Acquire));
            let oldest_idle = candidates
                .clone()
                .find(|eviction| eviction.in_flight.load(Ordering::Acquire) == 0);
            let oldest = oldest_idle.or_else(|| candidates.next()).cloned()?;
            oldest.evicted.store(true, Ordering::Release);
            oldest.waker.wake();
            open.evicting += 1;
            tracing::debug!("connection limit reached: closing an older connection");
        }
        let id = open.next_id;
        open.next_id += 1;
        let eviction = Arc::new(Eviction::default());
        open.by_age.insert(id, Arc::clone(&eviction));
        Some(Slot {
            slots: Arc::clone(slots),
            id,
            eviction,
        })
    }
}

/// One connection's place under the limit, given back when its stream is dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    slots: Arc<Slots>,
    id: u64,
    eviction: Arc<Eviction>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self
            .slots
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        open.by_age.remove(&self.id);
        if self.eviction.evicted.load(Ordering::Acquire) {
            open.evicting -= 1;
        }
    }
}

/// A connection's stream that fails (and so ends the connection) once it is evicted.
#[derive(Debug)]
pub(crate) struct Evictable<S> {
    inner: S,
    slot: Slot,
}

impl<S> Evictable<S> {
    /// The error once evicted, else registers the task to be woken by an eviction.
    fn check(&self, cx: &Context<'_>) -> io::Result<()> {
        let eviction = &self.slot.eviction;
        eviction.waker.register(cx.waker());
        if eviction.evicted.load(Ordering::Acquire) {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "closed to make room for a new connection",
            ));
        }
        Ok(())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Evictable<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Evictable<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// What a connection's service and its idle watcher share.
#[derive(Debug)]
struct Activity {
    /// Requests whose response has not been produced yet (shared with the connection's
    /// [`Eviction`]).
    in_flight: Arc<AtomicUsize>,
    /// When the last request in flight was answered (or the connection's first arrived).
    idle_since: Mutex<Instant>,
    /// Whether the idle watcher runs (started by the first request, which carries the
    /// connection's shutdown handle).
    watching: Mutex<bool>,
    idle_timeout: Duration,
}

/// The per-connection service: counts the requests in flight and, from the first request on,
/// closes the connection (gracefully: a response being sent still finishes) once none has
/// been in flight for the idle timeout.
#[derive(Debug, Clone)]
pub(crate) struct IdleService<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> IdleService<S> {
    fn tracked(inner: S, idle_timeout: Duration, in_flight: Arc<AtomicUsize>) -> IdleService<S> {
        IdleService {
            inner,
            activity: Arc::new(Activity {
                in_flight,
                idle_since: Mutex::new(Instant::now()),
                watching: Mutex::new(false),
                idle_timeout,
            }),
        }
    }
}

/// One request in flight; dropped when its response is produced (or the request abandoned).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            *self
                .0
                .idle_since
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Instant::now();
        }
    }
}

/// Closes the connection once it has been idle for the timeout; ends with the connection.
async fn watch_idle(activity: Weak<Activity>, shutdown: ConnectionShutdown) {
    loop {
        let deadline = {
            let Some(activity) = activity.upgrade() else {
                return;
            };
            let idle_since = *activity
                .idle_since
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let deadline = idle_since + activity.idle_timeout;
            let busy = activity.in_flight.load(Ordering::Acquire) > 0;
            if !busy && Instant::now() >= deadline {
                tracing::debug!("closing an idle connection");
                shutdown.graceful_shutdown();
                return;
            }
            if busy {
                Instant::now() + activity.idle_timeout
            } else {
                deadline
            }
        };
        tokio::time::sleep_until(deadline).await;
    }
}

impl<S, B> tower::Service<http::Request<B>> for IdleService<S>
where
    S: tower::Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let activity = &self.activity;
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        let guard = InFlight(Arc::clone(activity));
        let mut watching = activity
            .watching
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !*watching && let Some(shutdown) = request.extensions().get::<ConnectionShutdown>() {
            *watching = true;
            tokio::spawn(watch_idle(Arc::downgrade(activity), shutdown.clone()));
        }
        drop(watching);
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await;
            drop(guard);
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_leaves_a_reserve_of_file_descriptors() {
        assert_eq!(default_max_connections(1024), 896);
        assert_eq!(default_max_connections(256), 128);
        assert_eq!(default_max_connections(1 << 20), (1 << 20) - (1 << 17));
        assert_eq!(default_max_connections(100), 50);
    }

    #[test]
    fn a_connection_over_the_cap_closes_the_oldest() {
        let slots = Arc::new(Slots {
            max: 2,
            open: Mutex::new(OpenConnections::default()),
        });
        let evicted = |slot: &Slot| slot.eviction.evicted.load(Ordering::Acquire);
        let first = Slots::take(&slots).expect("room");
        let second = Slots::take(&slots).expect("room");
        let third = Slots::take(&slots).expect("room, made by closing the oldest");
        assert!(evicted(&first) && !evicted(&second) && !evicted(&third));
        // While the oldest is still closing, no more closings pile up: a new one is refused.
        assert!(Slots::take(&slots).is_none());
        drop(first);
        let fourth = Slots::take(&slots).expect("room, made by closing the next oldest");
        assert!(evicted(&second) && !evicted(&third) && !evicted(&fourth));
        drop((second, third, fourth));
        let open = slots.open.lock().unwrap();
        assert_eq!((open.by_age.len(), open.evicting), (0, 0));
    }

    #[test]
    fn a_connection_over_the_cap_closes_an_idle_one_before_a_busy_one() {
        let slots = Arc::new(Slots {
            max: 2,
            open: Mutex::new(OpenConnections::default()),
        });
        let evicted = |slot: &Slot| slot.eviction.evicted.load(Ordering::Acquire);
        let upload = Slots::take(&slots).expect("room");
        upload.eviction.in_flight.store(1, Ordering::Release);
        let idle = Slots::take(&slots).expect("room");
        let newcomer = Slots::take(&slots).expect("room, made by closing the idle one");
        assert!(!evicted(&upload) && evicted(&idle) && !evicted(&newcomer));
        drop(idle);
        // Every open connection busy: the oldest goes.
        newcomer.eviction.in_flight.store(1, Ordering::Release);
        let last = Slots::take(&slots).expect("room, made by closing the oldest");
        assert!(evicted(&upload) && !evicted(&newcomer) && !evicted(&last));
    }
}
