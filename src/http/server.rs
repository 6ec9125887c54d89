//! The accept loop: hyper 1.x connections (HTTP/1.1 keep-alive, and HTTP/2 with prior
//! knowledge), every limit the edge enforces, and graceful shutdown.
//!
//! The protocol is told from the connection's first bytes (the HTTP/2 preface or not) before
//! hyper sees it, and the connection goes straight to hyper's HTTP/1 or HTTP/2 server. That
//! is what hyper-util's `auto` builder does too, but it does it after reading those bytes
//! itself, so every later read of an HTTP/1 connection would pass through its rewind buffer
//! and its two-protocol state machine: measurable per request on the hot path (session 16).
//!
//! Limits, and why each exists:
//! - a [`TokioTimer`] is installed, without which hyper's header-read timeout silently does
//!   nothing; a client that stalls inside its request head (or idles between keep-alive
//!   requests) is disconnected after `header_read_timeout_ms`;
//! - before hyper sees a connection, its first bytes must arrive within the same timeout
//!   (they tell the protocol), so a silent client cannot hold a connection slot forever;
//! - the body is read in full before the service runs, through `Limited` (413) and under
//!   `body_read_timeout_ms` (408, then the connection is closed);
//! - an HTTP/1 request head (request line + headers) larger than [`REQUEST_HEAD_BYTES_MAX`]
//!   is answered 431 and the connection closed (HTTP/2: the same cap on the header list):
//!   hyper's default (~400 KB) would let every connection pin that much memory;
//! - at most `max_connections` connections are served; the accept loop waits for a free slot,
//!   leaving further clients in the kernel backlog instead of exhausting file descriptors;
//! - on shutdown the listener closes at once, in-flight requests finish (connections close
//!   after their current response), and after `shutdown_grace_ms` remaining connections are cut.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{CONNECTION, HeaderValue};
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::config::Config;
use crate::http::request::{self, BodyError, Request, Service};
use crate::http::response::Response;

/// Largest HTTP/1 request head (request line and headers) hyper accepts, and its read buffer
/// cap; beyond it: 431.
pub const REQUEST_HEAD_BYTES_MAX: usize = 64 * 1024;
/// The HTTP/2 connection preface; a client that starts with it speaks h2 (prior knowledge).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Poll step while a client trickles a partial HTTP/2 preface (rare; bounded by the timeout).
const PREFACE_POLL_MS: u64 = 5;
/// After a 413, the rest of the body is read and discarded for at most this long / this many
/// bytes, so the client is reading our answer rather than getting a TCP reset mid-upload.
const DRAIN_TIME_MS_MAX: u64 = 2_000;
const DRAIN_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// Concurrent HTTP/2 streams per connection.
const H2_MAX_CONCURRENT_STREAMS: u32 = 256;
/// HTTP/2 keep-alive pings find dead peers, which hold a connection slot otherwise.
const H2_KEEP_ALIVE_INTERVAL_S: u64 = 30;
const H2_KEEP_ALIVE_TIMEOUT_S: u64 = 10;
/// Pause after an accept error such as EMFILE, so the loop does not spin.
const ACCEPT_ERROR_BACKOFF_MS: u64 = 50;

/// Every limit the server enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    pub max_connections: usize,
    pub header_read_timeout_ms: u64,
    pub body_read_timeout_ms: u64,
    pub shutdown_grace_ms: u64,
    pub max_body_bytes: u64,
}

impl ServerLimits {
    pub fn from_config(config: &Config) -> ServerLimits {
        ServerLimits {
            max_connections: config.max_connections,
            header_read_timeout_ms: config.header_read_timeout_ms,
            body_read_timeout_ms: config.body_read_timeout_ms,
            shutdown_grace_ms: config.shutdown_grace_ms,
            max_body_bytes: config.max_body_bytes,
        }
    }
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits::from_config(&Config::default())
    }
}

/// Serves `service` on `listener` until `shutdown` completes, then drains gracefully.
/// Returns once every connection has closed or the grace period has cut them.
pub async fn serve<S: Service>(
    listener: TcpListener,
    service: Arc<S>,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let builders = connection_builders(&limits);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let (stopping_tx, stopping_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);

    loop {
        let slot = tokio::select! {
            biased;
            () = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_closed) => break,
            },
        };
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Per-connection failures (reset before accept, fd exhaustion) must not stop
                // the server; back off briefly and keep accepting.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(ACCEPT_ERROR_BACKOFF_MS)).await;
                continue;
            }
        };
        // Reap finished connection tasks so the set stays as small as the live connections.
        while connections.try_join_next().is_some() {}
        let connection = serve_connection(
            builders.clone(),
            stream,
            remote,
            service.clone(),
            limits,
            graceful.watcher(),
            stopping_rx.clone(),
        );
        connections.spawn(async move {
            connection.await;
            drop(slot);
        });
    }

    drop(listener);
    tracing::info!(
        connections = graceful.count(),
        "shutting down: listener closed, draining connections"
    );
    // Connections still sniffing their protocol have no request in flight: end them now.
    let _ = stopping_tx.send(true);
    let grace = Duration::from_millis(limits.shutdown_grace_ms);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_ms = limits.shutdown_grace_ms,
            "shutdown grace elapsed; cutting remaining connections"
        );
        connections.abort_all();
    }
    while connections.join_next().await.is_some() {}
    tracing::info!("every connection has ended");
    Ok(())
}

/// One server configuration per protocol; a connection uses the one its first bytes name.
#[derive(Clone)]
struct ConnectionBuilders {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
}

fn connection_builders(limits: &ServerLimits) -> ConnectionBuilders {
    let mut http1 = http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(limits.header_read_timeout_ms))
        // The head cap is enforced as the head is parsed: the read buffer cap alone is only
        // checked when a read leaves the buffer full, so a head that arrives in one large read
        // would get through.
        .max_header_size(REQUEST_HEAD_BYTES_MAX)
        .max_buf_size(REQUEST_HEAD_BYTES_MAX)
        .keep_alive(true);
    let mut http2 = http2::Builder::new(TokioExecutor::new());
    http2
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
        .max_header_list_size(REQUEST_HEAD_BYTES_MAX as u32)
        .keep_alive_interval(Duration::from_secs(H2_KEEP_ALIVE_INTERVAL_S))
        .keep_alive_timeout(Duration::from_secs(H2_KEEP_ALIVE_TIMEOUT_S));
    ConnectionBuilders { http1, http2 }
}

/// What a connection's first bytes say it speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    Http1,
    Http2,
}

async fn serve_connection<S: Service>(
    builders: ConnectionBuilders,
    stream: TcpStream,
    remote: SocketAddr,
    service: Arc<S>,
    limits: ServerLimits,
    watcher: Watcher,
    mut stopping: watch::Receiver<bool>,
) {
    // Responses are small and latency matters more than packet count.
    let _ = stream.set_nodelay(true);
    let protocol = tokio::select! {
        sniffed = sniff_protocol(&stream, Duration::from_millis(limits.header_read_timeout_ms)) => sniffed,
        _ = stopping.wait_for(|stopping| *stopping) => None,
    };
    let Some(protocol) = protocol else {
        return;
    };
    let hyper_service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let service = service.clone();
        async move {
            Ok::<Response, Infallible>(handle(service.as_ref(), request, remote, limits).await)
        }
    });
    let io = TokioIo::new(stream);
    let served = match protocol {
        Protocol::Http1 => {
            let connection = builders.http1.serve_connection(io, hyper_service);
            watcher.watch(connection).await
        }
        Protocol::Http2 => {
            let connection = builders.http2.serve_connection(io, hyper_service);
            watcher.watch(connection).await
        }
    };
    if let Err(error) = served {
        // Client resets, header timeouts and protocol errors end up here; they are routine.
        tracing::debug!(%remote, error = %error, "connection ended with an error");
    }
}

/// Waits (without consuming anything) until the connection has sent enough bytes to tell
/// HTTP/1 from HTTP/2: any byte that diverges from the h2 preface, or the full preface.
/// Returns `None` on EOF, error or timeout.
async fn sniff_protocol(stream: &TcpStream, timeout: Duration) -> Option<Protocol> {
    let sniff = async {
        let mut buffer = [0u8; H2_PREFACE.len()];
        loop {
            let seen = match stream.peek(&mut buffer).await {
                Ok(0) | Err(_) => return None,
                Ok(seen) => seen,
            };
            if buffer[..seen] != H2_PREFACE[..seen] {
                return Some(Protocol::Http1);
            }
            if seen >= H2_PREFACE.len() {
                return Some(Protocol::Http2);
            }
            // A partial h2 preface: peek returns at once while data is pending, so poll.
            tokio::time::sleep(Duration::from_millis(PREFACE_POLL_MS)).await;
        }
    };
    tokio::time::timeout(timeout, sniff).await.ok().flatten()
}

/// Reads the body within limits, then calls the service; body failures are answered here.
async fn handle<S: Service>(
    service: &S,
    request: hyper::Request<Incoming>,
    remote: SocketAddr,
    limits: ServerLimits,
) -> Response {
    let (parts, body) = request.into_parts();
    let timeout = Duration::from_millis(limits.body_read_timeout_ms);
    match request::read_body(body, &parts.headers, limits.max_body_bytes, timeout).await {
        Ok(body) => {
            let request = Request {
                method: parts.method,
                path: parts.uri.path().to_owned(),
                query: parts.uri.query().map(str::to_owned),
                headers: parts.headers,
                body,
                remote,
            };
            service.call(request).await
        }
        Err(error) => {
            let mut response = service.edge_error(&error.to_jecp_error());
            tracing::debug!(%remote, path = parts.uri.path(), status = response.status().as_u16(), "request body refused");
            if parts.version <= hyper::Version::HTTP_11 {
                // The request stream is out of sync or abusive: do not reuse the connection.
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            if let BodyError::TooLarge { unread, .. } = error {
                tokio::spawn(drain_discarded_body(unread));
            }
            response
        }
    }
}

/// Reads and discards what is left of a refused body, within [`DRAIN_TIME_MS_MAX`] and
/// [`DRAIN_BYTES_MAX`]. Closing a socket with unread input makes the kernel send a reset,
/// which can destroy the 413 before the client reads it; draining lets the close be clean.
async fn drain_discarded_body(mut body: Incoming) {
    use http_body_util::BodyExt;
    let drain = async {
        let mut drained: u64 = 0;
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                drained += data.len() as u64;
                if drained > DRAIN_BYTES_MAX {
                    break;
                }
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(DRAIN_TIME_MS_MAX), drain).await;
}
