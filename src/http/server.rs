//! The accept loop: every connection under a cap, with a header timeout, an
//! idle timeout and a graceful shutdown.
//!
//! `axum::serve` sets none of these, so a client that connects and never sends
//! a request holds its socket (and file descriptor) forever. Here each
//! connection is tracked: while no request is in flight it is *idle*, and an
//! idle connection is closed after `server.idle_timeout`, or at once when a new
//! connection arrives at `server.max_connections` and it is the one idle the
//! longest (a half-sent request head counts as idle, as in nginx). The request
//! head must arrive within `server.header_timeout` (hyper's header timer).

use crate::metrics::Metrics;
use axum::Router;
use axum::body::{Body, HttpBody};
use axum::extract::ConnectInfo;
use axum::http::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tower::ServiceExt;

/// Limits of the accept loop, from `[server]`.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

/// One open connection's state, shared with its requests.
struct Conn {
    in_flight: AtomicUsize,
    /// Milliseconds since `Tracker::epoch` when it last became idle.
    idle_since_ms: AtomicU64,
    close: Notify,
}

/// The open connections.
struct Tracker {
    epoch: Instant,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
}

impl Tracker {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Admits a new connection, closing the longest-idle one when at `cap`;
    /// `None` when every open connection is busy.
    fn admit(&self, cap: usize, metrics: &Metrics) -> Option<(u64, Arc<Conn>)> {
        let mut open = self.open.lock().expect("connection table");
        if open.len() >= cap {
            let victim = open
                .iter()
                .filter(|(_, conn)| conn.in_flight.load(Ordering::Acquire) == 0)
                .min_by_key(|(_, conn)| conn.idle_since_ms.load(Ordering::Relaxed))
                .map(|(id, _)| *id)?;
            let conn = open.remove(&victim).expect("victim is open");
            conn.close.notify_one();
            metrics.connections_evicted.fetch_add(1, Ordering::Relaxed);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(self.now_ms()),
            close: Notify::new(),
        });
        open.insert(id, conn.clone());
        Some((id, conn))
    }

    fn release(&self, id: u64) {
        self.open.lock().expect("connection table").remove(&id);
    }

    fn len(&self) -> usize {
        self.open.lock().expect("connection table").len()
    }
}

/// Marks a request in flight until dropped (with the response body; the
/// socket's writes count as activity after that, see [`TrackedIo`]).
struct InFlight {
    conn: Arc<Conn>,
    tracker: Arc<Tracker>,
}

impl InFlight {
    fn begin(conn: Arc<Conn>, tracker: Arc<Tracker>) -> InFlight {
        conn.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight { conn, tracker }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.conn
            .idle_since_ms
            .store(self.tracker.now_ms(), Ordering::Relaxed);
        self.conn.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that holds its request's [`InFlight`] until hyper has taken all of it.
struct TrackedBody {
    inner: Body,
    _in_flight: InFlight,
}

impl HttpBody for TrackedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The connection's socket, noting when bytes last went out: hyper lets go of
/// a response body once its last bytes are queued, so a slow download is
/// still sending after its request left "in flight". A connection counts as
/// idle from its last request or its last write, whichever is later; one whose
/// client stopped reading (writes stuck) goes idle too.
struct TrackedIo {
    inner: TcpStream,
    conn: Arc<Conn>,
    tracker: Arc<Tracker>,
}

impl TrackedIo {
    fn wrote(&self, written: &std::io::Result<usize>) {
        if matches!(written, Ok(n) if *n > 0) {
            self.conn
                .idle_since_ms
                .store(self.tracker.now_ms(), Ordering::Relaxed);
        }
    }
}

impl tokio::io::AsyncRead for TrackedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TrackedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(result) = &written {
            self.wrote(result);
        }
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(result) = &written {
            self.wrote(result);
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets requests
/// in flight finish (up to `drain`).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()>,
    drain: Duration,
) {
    raise_open_file_limit();
    let tracker = Arc::new(Tracker {
        epoch: Instant::now(),
        next_id: AtomicU64::new(0),
        open: Mutex::new(HashMap::new()),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors or a connection reset before accept:
                    // wait a moment rather than spin, and keep serving.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let Some((id, conn)) = tracker.admit(limits.max_connections, &metrics) else {
            metrics.connections_refused.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(refuse(stream));
            continue;
        };
        metrics
            .open_connections
            .store(tracker.len() as u64, Ordering::Relaxed);
        tokio::spawn(serve_connection(
            stream,
            peer,
            router.clone(),
            limits,
            tracker.clone(),
            id,
            conn,
            stop_rx.clone(),
            metrics.clone(),
        ));
    }
    drop(listener);
    // Only the connections' receivers may keep the drain below waiting.
    drop(stop_rx);
    let _ = stop_tx.send(true);
    // Each connection holds a receiver until it ends.
    let _ = tokio::time::timeout(drain, stop_tx.closed()).await;
}

/// Answers a connection over the cap with 503 and closes it.
async fn refuse(mut stream: TcpStream) {
    const BODY: &str =
        r#"{"error":{"code":"unavailable","message":"too many open connections; retry shortly"}}"#;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

#[allow(clippy::too_many_arguments)]
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: ConnectionLimits,
    tracker: Arc<Tracker>,
    id: u64,
    conn: Arc<Conn>,
    mut stop: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
) {
    let service = {
        let (conn, tracker) = (conn.clone(), tracker.clone());
        hyper::service::service_fn(move |mut request: Request<Incoming>| {
            let in_flight = InFlight::begin(conn.clone(), tracker.clone());
            request.extensions_mut().insert(ConnectInfo(peer));
            let router = router.clone();
            async move {
                let response = router.oneshot(request.map(Body::new)).await?;
                Ok::<_, std::convert::Infallible>(response.map(|inner| {
                    Body::new(TrackedBody {
                        inner,
                        _in_flight: in_flight,
                    })
                }))
            }
        })
    };
    // HTTP/1 only: no client of ours speaks cleartext HTTP/2, and its streams
    // could keep a connection busy (so never evicted) behind a zero window.
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let io = TrackedIo {
        inner: stream,
        conn: conn.clone(),
        tracker: tracker.clone(),
    };
    let connection = builder.serve_connection(TokioIo::new(io), service);
    let mut connection = pin!(connection);
    let mut stopping = false;
    loop {
        let idle_check = idle_deadline(&conn, &tracker, limits.idle_timeout);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(error = %err, %peer, "connection ended with an error");
                }
                break;
            }
            // Evicted to make room at the cap: it was idle, so nothing is cut short.
            () = conn.close.notified() => break,
            () = idle_check => {
                metrics.connections_idle_closed.fetch_add(1, Ordering::Relaxed);
                break;
            }
            changed = stop.changed(), if !stopping => {
                if changed.is_err() || *stop.borrow() {
                    stopping = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
    tracker.release(id);
    metrics
        .open_connections
        .store(tracker.len() as u64, Ordering::Relaxed);
}

/// Returns once the connection has had no request in flight for `timeout`.
async fn idle_deadline(conn: &Conn, tracker: &Tracker, timeout: Duration) {
    let timeout_ms = timeout.as_millis() as u64;
    loop {
        let idle_for = tracker
            .now_ms()
            .saturating_sub(conn.idle_since_ms.load(Ordering::Relaxed));
        let busy = conn.in_flight.load(Ordering::Acquire) > 0;
        if !busy && idle_for >= timeout_ms {
            return;
        }
        let wait = if busy {
            timeout_ms
        } else {
            timeout_ms - idle_for
        };
        tokio::time::sleep(Duration::from_millis(wait.max(1))).await;
    }
}

/// Lifts the soft open-file limit to the hard one, so `max_connections` is
/// what bites rather than "too many open files".
fn raise_open_file_limit() {
    #[cfg(unix)]
    // SAFETY: getrlimit/setrlimit only read and write the struct passed in.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
