//! Shared helpers for the HTTP integration tests: start the real server on `127.0.0.1:0`,
//! speak raw HTTP/1.1 over TCP, and test doubles for the service boundary.
//!
//! Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use jecp_hub::config::Config;
use jecp_hub::http::{self, App, DiscoveryInputs, HealthProbe, ServerLimits, Service};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Longest a test waits for any single network answer; generous for a loaded CI box.
pub const IO_TIMEOUT: Duration = Duration::from_secs(15);

/// A server running in the test's runtime.
pub struct TestServer {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    handle: JoinHandle<std::io::Result<()>>,
    /// The Hub's temporary data directory, removed when the server is dropped.
    data_dir: Option<tempfile::TempDir>,
}

impl TestServer {
    pub async fn start<S: Service>(service: Arc<S>, limits: ServerLimits) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(http::serve(listener, service, limits, async {
            let _ = shutdown_rx.await;
        }));
        TestServer {
            addr,
            shutdown: Some(shutdown_tx),
            handle,
            data_dir: None,
        }
    }

    /// Keeps `dir` alive as long as the server.
    pub fn with_data_dir(mut self, dir: tempfile::TempDir) -> TestServer {
        self.data_dir = Some(dir);
        self
    }

    /// Starts the shutdown; the returned handle resolves when `serve` returns.
    pub fn begin_shutdown(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    pub async fn stop(mut self) -> std::io::Result<()> {
        self.begin_shutdown();
        tokio::time::timeout(IO_TIMEOUT, self.handle)
            .await
            .expect("serve returns after shutdown")
            .expect("serve task")
    }

    pub fn into_handle(mut self) -> JoinHandle<std::io::Result<()>> {
        self.begin_shutdown();
        self.handle
    }
}

/// A store double whose state the test controls.
#[derive(Debug, Default)]
pub struct SwitchableProbe {
    pub down: AtomicBool,
}

impl HealthProbe for SwitchableProbe {
    fn database(&self) -> Result<(), String> {
        if self.down.load(Ordering::SeqCst) {
            Err("disk unplugged".into())
        } else {
            Ok(())
        }
    }
    fn durability(&self) -> String {
        "batched(5ms)".into()
    }
    fn loss_window_ms(&self) -> u64 {
        5
    }
}

/// Limits short enough for tests to observe timeouts quickly.
pub fn fast_limits() -> ServerLimits {
    ServerLimits {
        max_connections: 64,
        header_read_timeout_ms: 400,
        body_read_timeout_ms: 400,
        shutdown_grace_ms: 2_000,
        max_body_bytes: 10 * 1024 * 1024,
    }
}

/// The real App over a Hub opened with `config` on a fresh temporary data directory, with
/// fixed discovery facts and a controllable health probe. Must run inside a tokio runtime.
pub fn app(mut config: Config, probe: Arc<SwitchableProbe>) -> (Arc<App>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary data directory");
    config.data_dir = dir.path().to_path_buf();
    let hub = jecp_hub::hub::Hub::open(config).expect("hub opens on an empty directory");
    let inputs = DiscoveryInputs {
        supported_capabilities: serde_json::json!(["hub/echo", {"id": "hub/pdf-render", "name": "PDF"}]),
        llms_catalog: "- hub/echo: $0.001 per call".into(),
    };
    (Arc::new(App::new(hub, inputs, probe)), dir)
}

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "body is not JSON ({error}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Parses one response from `bytes` (which may hold more after it). `None` if incomplete.
pub fn parse_response(bytes: &[u8]) -> Option<(RawResponse, usize)> {
    parse_response_to(bytes, true)
}

/// [`parse_response`] for a HEAD request: `Content-Length` describes a body that is not sent.
pub fn parse_head_response(bytes: &[u8]) -> Option<(RawResponse, usize)> {
    parse_response_to(bytes, false)
}

fn parse_response_to(bytes: &[u8], body_expected: bool) -> Option<(RawResponse, usize)> {
    let head_end = bytes.windows(4).position(|window| window == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&bytes[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status = status_line.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter(|line| !line.is_empty())
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let content_length = headers
        .iter()
        .find(|(key, _)| key == "content-length")
        .and_then(|(_, value)| value.parse::<usize>().ok())
        .unwrap_or(0);
    let bodyless = !body_expected || status == 204 || status == 304;
    let body_len = if bodyless { 0 } else { content_length };
    if bytes.len() < head_end + body_len {
        return None;
    }
    let body = bytes[head_end..head_end + body_len].to_vec();
    Some((
        RawResponse {
            status,
            headers,
            body,
        },
        head_end + body_len,
    ))
}

/// Reads until the peer closes (or [`IO_TIMEOUT`]); resets count as a close.
pub async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match tokio::time::timeout(IO_TIMEOUT, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return received,
            Ok(Ok(read)) => received.extend_from_slice(&buffer[..read]),
            Err(_) => panic!(
                "peer did not close within {IO_TIMEOUT:?}; got {:?}",
                String::from_utf8_lossy(&received)
            ),
        }
    }
}

/// Reads exactly one response, leaving the connection open.
pub async fn read_one_response(stream: &mut TcpStream) -> RawResponse {
    let mut received = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    loop {
        if let Some((response, _)) = parse_response(&received) {
            return response;
        }
        let read = tokio::time::timeout(IO_TIMEOUT, stream.read(&mut buffer))
            .await
            .expect("response within timeout")
            .expect("read");
        assert!(
            read > 0,
            "connection closed before a full response: {:?}",
            String::from_utf8_lossy(&received)
        );
        received.extend_from_slice(&buffer[..read]);
    }
}

/// Sends `request` bytes on a fresh connection and parses the single response.
pub async fn exchange(addr: SocketAddr, request: &[u8]) -> RawResponse {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write request");
    let received = read_to_close(&mut stream).await;
    parse_response(&received)
        .unwrap_or_else(|| {
            panic!(
                "no complete response in {:?}",
                String::from_utf8_lossy(&received)
            )
        })
        .0
}

/// A request with `Connection: close`, `extra_headers` given as full `Name: value` lines.
pub fn request_bytes(method: &str, path: &str, extra_headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: hub.test\r\nConnection: close\r\n");
    for header in extra_headers {
        head.push_str(header);
        head.push_str("\r\n");
    }
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

pub async fn get(addr: SocketAddr, path: &str, extra_headers: &[&str]) -> RawResponse {
    exchange(addr, &request_bytes("GET", path, extra_headers, b"")).await
}

/// `../shared/jecp-spec/...` seen from the manifest dir or any ancestor (worktrees live deeper).
pub fn shared_spec_file(relative: &str) -> Option<std::path::PathBuf> {
    let manifest_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .ancestors()
        .skip(1)
        .map(|dir| dir.join("shared/jecp-spec").join(relative))
        .find(|candidate| candidate.is_file())
}
