//! Connection hygiene for both ports: every accepted TCP connection is wrapped in [`Guarded`],
//! which closes it when
//!
//! - it has not sent a complete first request within `header_read_timeout_ms` (a client that
//!   connects and sends nothing, or half an HTTP/2 preface or HTTP/1 header, is dropped);
//! - it has had no request in flight for `idle_timeout_ms` (HTTP/2 keep-alive PINGs do not
//!   count: only requests do, as the services report through [`track`]).
//!
//! Closing means the next read returns end-of-file, so hyper tears the connection down and
//! the socket is closed (no GOAWAY: a client racing a new request against the idle close sees
//! the connection drop and reconnects; the idle timeout is minutes for that reason). Half-open
//! HTTP/2 connections are also caught by keep-alive PINGs (`keepalive_ms`,
//! `keepalive_timeout_ms`, set on the gRPC server).
//!
//! Accepting never stops or spins on errors: EMFILE and friends are counted in
//! `sluice_accept_errors_total`, logged at most once a second, and retried after a short
//! back-off.
//!
//! The gRPC port may speak TLS ([`tls`]): the same guarded connections, with the handshake in
//! a task of its own under the first-request deadline; the plain path is unchanged.

pub mod tls;
pub mod track;

use crate::meter::Meter;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// How long accepting pauses after an error such as EMFILE (other connections may close).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What one port's connections share: how many may be open at once, and their counters
/// (`sluice_connections_timed_out_total`, `sluice_accept_errors_total`, registered once in the
/// server's [`Meter`]).
#[derive(Clone)]
pub struct ConnMetrics {
    /// Connections closed past a deadline.
    timed_out: metrics::Counter,
    /// Failed accepts (EMFILE and the like).
    accept_errors: metrics::Counter,
    /// One permit per open connection (`max_connections`): at the cap the port stops
    /// accepting (new clients wait in the kernel's backlog) until a connection closes.
    slots: Arc<Semaphore>,
}

impl ConnMetrics {
    /// The counters, registered in `meter`, for at most `max_connections` open connections.
    pub fn new(meter: &Meter, max_connections: usize) -> ConnMetrics {
        meter.record(|| ConnMetrics {
            timed_out: metrics::counter!("sluice_connections_timed_out_total"),
            accept_errors: metrics::counter!("sluice_accept_errors_total"),
            slots: Arc::new(Semaphore::new(max_connections.min(Semaphore::MAX_PERMITS))),
        })
    }
}

/// The two deadlines a connection is held to.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// From accept to the first complete request (its headers, as the server sees them).
    pub header_read: Duration,
    /// With no request in flight, how long a connection may stay open.
    pub idle: Duration,
}

/// What a connection is doing, shared by its [`Guarded`] IO (which enforces the deadlines)
/// and the request tracking in [`track`] (which reports requests).
#[derive(Debug)]
pub struct Activity {
    /// When the connection was accepted: the origin of `last_ms`.
    accepted: Instant,
    /// Requests started and not yet finished (response body not yet dropped).
    in_flight: AtomicUsize,
    /// Requests seen so far: 0 means the first-request deadline applies.
    requests: AtomicU64,
    /// When a request last started or finished, in ms since `accepted`.
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Arc<Activity> {
        Arc::new(Activity {
            accepted: Instant::now(),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            last_ms: AtomicU64::new(0),
        })
    }

    fn touch(&self) {
        let ms = u64::try_from(self.accepted.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Marks a request as started; it ends when the returned guard is dropped.
    pub fn begin(self: &Arc<Self>) -> RequestGuard {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.touch();
        RequestGuard(Arc::clone(self))
    }

    /// When the connection expires, or `None` while a request is in flight (it cannot expire
    /// then). Changes only when a request starts or ends.
    fn expiry(&self, t: Timeouts) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(if self.requests.load(Ordering::Relaxed) == 0 {
            self.accepted + t.header_read
        } else {
            self.accepted + Duration::from_millis(self.last_ms.load(Ordering::Relaxed)) + t.idle
        })
    }
}

/// One request in flight on a connection; dropping it ends the request.
#[derive(Debug)]
pub struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection held to [`Timeouts`]: once past a deadline, reads return end-of-file.
pub struct Guarded<IO> {
    /// The socket.
    io: IO,
    /// Shared with the request tracking.
    activity: Arc<Activity>,
    /// The deadlines.
    timeouts: Timeouts,
    /// Fires at the next deadline; polled from `poll_read`, which the server always has
    /// pending on an idle connection, so the close happens without any traffic.
    timer: Pin<Box<Sleep>>,
    /// Set once past a deadline: every later read is end-of-file.
    expired: bool,
    /// Counts the close.
    timed_out: metrics::Counter,
    /// This connection's place under `max_connections`, given back when it closes.
    _slot: OwnedSemaphorePermit,
}

impl<IO> Guarded<IO> {
    /// Wraps a freshly accepted connection.
    pub fn new(
        io: IO,
        timeouts: Timeouts,
        timed_out: metrics::Counter,
        slot: OwnedSemaphorePermit,
    ) -> Guarded<IO> {
        let activity = Activity::new();
        // The first deadline reachable: the first request's, or the idle one after a request.
        let first = activity.accepted + timeouts.header_read.min(timeouts.idle);
        let timer = Box::pin(tokio::time::sleep_until(first));
        Guarded {
            io,
            activity,
            timeouts,
            timer,
            expired: false,
            timed_out,
            _slot: slot,
        }
    }

    /// The connection's activity, for request tracking.
    pub fn activity(&self) -> Arc<Activity> {
        Arc::clone(&self.activity)
    }

    /// Whether a deadline has passed. The timer is armed no later than any deadline the
    /// connection can reach from now on (the first-request deadline, or `idle` after the
    /// latest activity), and the deadline is only recomputed when it fires: a busy connection
    /// costs no timer work per read, and an early firing just re-arms it. The timer's waker is
    /// the connection task's, so a parked idle read is woken to close.
    fn past_deadline(&mut self, cx: &mut Context<'_>) -> bool {
        while !self.expired && self.timer.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            // Activity after `now` can only set an idle deadline at or after `now + idle`.
            let soonest = now + self.timeouts.idle;
            match self.activity.expiry(self.timeouts) {
                Some(at) if now >= at => {
                    self.expired = true;
                    self.timed_out.increment(1);
                    tracing::debug!("closing a connection past its first-request or idle deadline");
                }
                Some(at) => self.timer.as_mut().reset(at.min(soonest)),
                None => self.timer.as_mut().reset(soonest),
            }
        }
        self.expired
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Guarded<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.past_deadline(cx) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Guarded<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Accepts one connection, riding out errors: a failed accept (EMFILE, ENFILE, ENOBUFS, a
/// connection reset before accept) is counted, logged at most once a second, and retried after
/// [`ACCEPT_BACKOFF`]. Never returns an error, so the serving loop never ends because of one.
/// Waits for a free place under `max_connections` first.
pub async fn accept(
    listener: &TcpListener,
    last_log: &mut Option<Instant>,
    timeouts: Timeouts,
    shared: &ConnMetrics,
) -> (Guarded<TcpStream>, std::net::SocketAddr) {
    let Ok(slot) = Arc::clone(&shared.slots).acquire_owned().await else {
        unreachable!("the connection semaphore is never closed");
    };
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                // Small responses must not wait for Nagle and delayed ACKs (40 ms stalls).
                let _ = stream.set_nodelay(true);
                let timed_out = shared.timed_out.clone();
                return (Guarded::new(stream, timeouts, timed_out, slot), addr);
            }
            Err(e) => {
                shared.accept_errors.increment(1);
                let now = Instant::now();
                if last_log.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1)) {
                    *last_log = Some(now);
                    tracing::warn!(error = %e, "accept failed; retrying shortly");
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// The gRPC port's connections: an endless stream of guarded connections (tonic's
/// `serve_with_incoming`); errors are handled in [`accept`], never yielded.
pub fn incoming(
    listener: TcpListener,
    timeouts: Timeouts,
    metrics: ConnMetrics,
) -> impl futures_util::Stream<Item = io::Result<Guarded<TcpStream>>> + Send + 'static {
    futures_util::stream::unfold(
        (listener, None, metrics),
        move |(listener, mut last_log, metrics)| async move {
            let (conn, _) = accept(&listener, &mut last_log, timeouts, &metrics).await;
            Some((Ok(conn), (listener, last_log, metrics)))
        },
    )
}

/// The HTTP port's listener for `axum::serve`: guarded connections, errors ridden out.
pub struct GuardedListener {
    /// The bound socket.
    listener: TcpListener,
    /// Applied to every connection.
    timeouts: Timeouts,
    /// When an accept error was last logged (at most one line a second).
    last_log: Option<Instant>,
    /// Accept errors and timed-out connections.
    metrics: ConnMetrics,
}

impl GuardedListener {
    /// Wraps a bound listener.
    pub fn new(listener: TcpListener, timeouts: Timeouts, metrics: ConnMetrics) -> GuardedListener {
        GuardedListener {
            listener,
            timeouts,
            last_log: None,
            metrics,
        }
    }
}

impl axum::serve::Listener for GuardedListener {
    type Io = Guarded<TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        accept(
            &self.listener,
            &mut self.last_log,
            self.timeouts,
            &self.metrics,
        )
        .await
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}
