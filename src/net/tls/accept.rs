//! TLS connections for tonic: a task accepts guarded TCP connections (the same
//! [`accept`](crate::net::accept) as the plain port: `max_connections` slots, accept errors
//! ridden out) and hands each to a task of its own for the handshake, so a slow or silent
//! client never holds the accept loop. A handshake must finish within the first-request
//! deadline (`header_read`), inside the connection's slot; a failed one is counted in
//! `sluice_tls_handshake_errors_total`, logged at most once a second, and closed. Finished
//! handshakes reach tonic through a channel; when tonic drops the stream (shutdown) the
//! accept task ends and the listener closes.
//!
//! [`TlsConn`] carries the connection's [`Activity`](crate::net::Activity) out as tonic's
//! connect info ([`Tracker`]), so request tracking and the idle deadline work as on the
//! plain port: the deadlines live in the [`Guarded`] under the TLS layer.

use super::LiveTls;
use crate::meter::Meter;
use crate::net::track::Tracker;
use crate::net::{accept, ConnMetrics, Guarded, Timeouts};
use parking_lot::Mutex;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// Finished handshakes waiting for tonic to take them. Tonic takes each at once; a full
/// queue only makes handshake tasks wait (each inside its connection slot).
const READY_QUEUE: usize = 64;

/// A TLS connection over a guarded TCP connection, as tonic serves it.
pub struct TlsConn {
    /// The TLS session; the [`Guarded`] under it enforces the connection deadlines.
    inner: TlsStream<Guarded<TcpStream>>,
}

impl TlsConn {
    /// The TLS session (negotiated protocol, peer certificates).
    pub fn session(&self) -> &rustls::ServerConnection {
        self.inner.get_ref().1
    }
}

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = Tracker;
    fn connect_info(&self) -> Tracker {
        Tracker(self.inner.get_ref().0.activity())
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// What every handshake task shares.
#[derive(Clone)]
struct Handshakes {
    /// The current TLS configuration (reloaded certificates).
    tls: Arc<LiveTls>,
    /// The deadline of a handshake, from accept (the first-request deadline).
    deadline: Duration,
    /// `sluice_tls_handshake_errors_total`.
    errors: metrics::Counter,
    /// When a failure was last logged (one line a second at most, however many fail).
    last_log: Arc<Mutex<Option<Instant>>>,
}

impl Handshakes {
    /// Runs one handshake; `None` (counted, maybe logged) if it fails or times out.
    async fn run(&self, conn: Guarded<TcpStream>, peer: SocketAddr) -> Option<TlsConn> {
        let acceptor = TlsAcceptor::from(self.tls.config());
        let error = match tokio::time::timeout(self.deadline, acceptor.accept(conn)).await {
            Ok(Ok(inner)) => return Some(TlsConn { inner }),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("not finished within {:?}", self.deadline),
        };
        self.errors.increment(1);
        let now = Instant::now();
        let mut last = self.last_log.lock();
        if last.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1)) {
            *last = Some(now);
            drop(last);
            tracing::warn!(%peer, %error, "TLS handshake failed on the gRPC port (logged at most once a second; see sluice_tls_handshake_errors_total)");
        }
        None
    }
}

/// The gRPC port's TLS connections for `serve_with_incoming`: an endless stream (errors are
/// handled here, never yielded). Spawns the accept task: call it inside the runtime.
pub fn tls_incoming(
    listener: TcpListener,
    timeouts: Timeouts,
    metrics: ConnMetrics,
    tls: Arc<LiveTls>,
    meter: &Meter,
) -> impl futures_util::Stream<Item = io::Result<TlsConn>> + Send + 'static {
    let handshakes = Handshakes {
        tls,
        deadline: timeouts.header_read,
        errors: meter.record(|| metrics::counter!("sluice_tls_handshake_errors_total")),
        last_log: Arc::new(Mutex::new(None)),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<TlsConn>(READY_QUEUE);
    tokio::spawn(async move {
        let mut last_log = None;
        loop {
            let (conn, peer) = tokio::select! {
                accepted = accept(&listener, &mut last_log, timeouts, &metrics) => accepted,
                // tonic dropped the stream: stop accepting, close the listener.
                () = tx.closed() => return,
            };
            let handshakes = handshakes.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                if let Some(conn) = handshakes.run(conn, peer).await {
                    // Fails only once tonic has stopped: the connection just closes.
                    let _ = tx.send(conn).await;
                }
            });
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move {
        let conn = rx.recv().await?;
        Some((Ok(conn), rx))
    })
}
