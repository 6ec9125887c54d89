//! Server limits and lifecycle over real TCP: body limit (413), header and body stalls,
//! connection cap, keep-alive, HTTP/2, and graceful shutdown with its hard deadline.

mod http_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use http_support::{
    IO_TIMEOUT, RawResponse, TestServer, exchange, fast_limits, parse_response, read_one_response,
    read_to_close, request_bytes,
};
use hyper::StatusCode;
use jecp_hub::http::response;
use jecp_hub::http::{Request, Response, ServerLimits, Service};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Echoes what the service boundary received, after an optional delay.
#[derive(Default)]
struct EchoService {
    delay: Duration,
    calls: AtomicUsize,
}

impl Service for EchoService {
    async fn call(&self, request: Request) -> Response {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        response::json(
            StatusCode::OK,
            &json!({
                "method": request.method.as_str(),
                "path": request.path,
                "query": request.query,
                "body_len": request.body.len(),
                "remote_ip": request.remote.ip().to_string(),
                "content_type": request.header_str("content-type"),
            }),
        )
    }
}

fn echo(delay_ms: u64) -> Arc<EchoService> {
    Arc::new(EchoService {
        delay: Duration::from_millis(delay_ms),
        calls: AtomicUsize::new(0),
    })
}

#[tokio::test]
async fn the_service_receives_method_path_query_body_and_peer() {
    let server = TestServer::start(echo(0), fast_limits()).await;
    let request = request_bytes(
        "POST",
        "/v1/invoke?x=1&y=2",
        &["Content-Type: application/json"],
        b"{\"a\":1}",
    );
    let response = exchange(server.addr, &request).await;
    assert_eq!(response.status, 200);
    let body = response.json();
    assert_eq!(body["method"], "POST");
    assert_eq!(body["path"], "/v1/invoke");
    assert_eq!(body["query"], "x=1&y=2");
    assert_eq!(body["body_len"], 7);
    assert_eq!(body["remote_ip"], "127.0.0.1");
    assert_eq!(body["content_type"], "application/json");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn an_11_mb_body_gets_413_with_the_envelope() {
    let service = echo(0);
    let server = TestServer::start(service.clone(), fast_limits()).await;
    let body_len = 11 * 1024 * 1024;
    let head =
        format!("POST /v1/invoke HTTP/1.1\r\nHost: hub.test\r\nContent-Length: {body_len}\r\n\r\n");
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    // Upload concurrently: the server answers before reading the body.
    let upload = tokio::spawn(async move {
        let _ = writer.write_all(head.as_bytes()).await;
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..(body_len / chunk.len()) {
            if writer.write_all(&chunk).await.is_err() {
                break;
            }
        }
    });
    let mut received = Vec::new();
    let mut buffer = [0u8; 8192];
    let response = loop {
        use tokio::io::AsyncReadExt;
        let read = tokio::time::timeout(IO_TIMEOUT, reader.read(&mut buffer))
            .await
            .expect("413 in time")
            .unwrap_or(0);
        received.extend_from_slice(&buffer[..read]);
        if let Some((response, _)) = parse_response(&received) {
            break response;
        }
        assert!(
            read > 0,
            "closed without a full response: {:?}",
            String::from_utf8_lossy(&received)
        );
    };
    assert_eq!(response.status, 413);
    assert_eq!(response.header("connection"), Some("close"));
    let body = response.json();
    assert_eq!(body["status"], "failed");
    assert_eq!(body["error"]["code"], "INPUT_TOO_LARGE");
    assert_eq!(body["error"]["details"]["max_body_bytes"], 10 * 1024 * 1024);
    assert_eq!(
        service.calls.load(Ordering::SeqCst),
        0,
        "the service must not see an oversized request"
    );
    upload.abort();
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_gets_413() {
    let limits = ServerLimits {
        max_body_bytes: 1_000,
        ..fast_limits()
    };
    let server = TestServer::start(echo(0), limits).await;
    let mut request =
        b"POST /v1/invoke HTTP/1.1\r\nHost: hub.test\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    for _ in 0..3 {
        request.extend_from_slice(format!("{:x}\r\n", 600).as_bytes());
        request.extend_from_slice(&[b'y'; 600]);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let response = exchange(server.addr, &request).await;
    assert_eq!(response.status, 413);
    assert_eq!(response.json()["error"]["code"], "INPUT_TOO_LARGE");

    // A body exactly at the limit is accepted.
    let response = exchange(
        server.addr,
        &request_bytes("POST", "/x", &[], &[b'z'; 1_000]),
    )
    .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["body_len"], 1_000);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_client_stalling_in_its_headers_is_disconnected() {
    let server = TestServer::start(echo(0), fast_limits()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: hub.test\r\nX-Slow: ")
        .await
        .unwrap();
    let started = Instant::now();
    let received = read_to_close(&mut stream).await;
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "closed too early: {:?}",
        started.elapsed()
    );
    let answered_200 =
        parse_response(&received).is_some_and(|(response, _)| response.status == 200);
    assert!(!answered_200, "a stalled request must not be served");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_client_that_sends_nothing_is_disconnected() {
    let server = TestServer::start(echo(0), fast_limits()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let received = read_to_close(&mut stream).await;
    assert!(received.is_empty());
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_client_stalling_in_its_body_gets_408() {
    let service = echo(0);
    let server = TestServer::start(service.clone(), fast_limits()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(b"POST /v1/invoke HTTP/1.1\r\nHost: hub.test\r\nContent-Length: 100\r\n\r\n{\"partial\":").await.unwrap();
    let received = read_to_close(&mut stream).await;
    let (response, _) = parse_response(&received).expect("a 408 response before the close");
    assert_eq!(response.status, 408);
    assert_eq!(response.header("connection"), Some("close"));
    let body = response.json();
    assert_eq!(body["error"]["code"], "REQUEST_TIMEOUT");
    assert_eq!(body["error"]["details"]["body_read_timeout_ms"], 400);
    assert_eq!(service.calls.load(Ordering::SeqCst), 0);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn keep_alive_serves_several_requests_on_one_connection() {
    let server = TestServer::start(echo(0), fast_limits()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    for index in 0..3 {
        let path = format!("/r{index}");
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: hub.test\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let response = read_one_response(&mut stream).await;
        assert_eq!(response.status, 200);
        assert_eq!(response.json()["path"], path);
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn http2_with_prior_knowledge_is_served() {
    let server = TestServer::start(echo(0), fast_limits()).await;
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("h2 handshake");
    let driver = tokio::spawn(connection);
    let request = hyper::Request::post(format!("http://{}/h2/path?q=1", server.addr))
        .body(Full::new(Bytes::from_static(b"hello")))
        .unwrap();
    let response = sender.send_request(request).await.expect("h2 response");
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), hyper::Version::HTTP_2);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["path"], "/h2/path");
    assert_eq!(body["query"], "q=1");
    assert_eq!(body["body_len"], 5);
    drop(sender);
    driver.abort();
    server.stop().await.unwrap();
}

#[tokio::test]
async fn the_connection_cap_holds_extra_clients_until_a_slot_frees() {
    let limits = ServerLimits {
        max_connections: 1,
        header_read_timeout_ms: 10_000,
        ..fast_limits()
    };
    let server = TestServer::start(echo(0), limits).await;
    // The first client takes the only slot and idles inside its request head.
    let mut first = TcpStream::connect(server.addr).await.unwrap();
    first
        .write_all(b"GET /first HTTP/1.1\r\nHost: hub.test\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let second_addr = server.addr;
    let second = tokio::spawn(async move {
        exchange(second_addr, &request_bytes("GET", "/second", &[], b"")).await
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        !second.is_finished(),
        "the second client was served while the cap was reached"
    );

    drop(first);
    let response: RawResponse = tokio::time::timeout(IO_TIMEOUT, second)
        .await
        .expect("served once a slot frees")
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["path"], "/second");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_request_finish_and_stops_accepting() {
    let service = echo(600);
    let mut server = TestServer::start(service.clone(), fast_limits()).await;
    let addr = server.addr;
    let in_flight =
        tokio::spawn(async move { exchange(addr, &request_bytes("GET", "/slow", &[], b"")).await });
    // Wait until the request is inside the service, then shut down.
    let deadline = Instant::now() + IO_TIMEOUT;
    while service.calls.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "request never reached the service"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the listener must close at once"
    );

    let response = tokio::time::timeout(IO_TIMEOUT, in_flight)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["path"], "/slow");
    let started = Instant::now();
    server.stop().await.expect("serve returns Ok");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn shutdown_cuts_requests_that_outlive_the_grace_period() {
    let service = echo(30_000);
    let limits = ServerLimits {
        shutdown_grace_ms: 200,
        ..fast_limits()
    };
    let server = TestServer::start(service.clone(), limits).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(&request_bytes("GET", "/forever", &[], b""))
        .await
        .unwrap();
    let deadline = Instant::now() + IO_TIMEOUT;
    while service.calls.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "request never reached the service"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    let handle = server.into_handle();
    tokio::time::timeout(Duration::from_secs(5), handle)
        .await
        .expect("serve returns after the grace period")
        .unwrap()
        .expect("serve returns Ok");
    assert!(started.elapsed() >= Duration::from_millis(200));
    let received = read_to_close(&mut stream).await;
    assert!(received.is_empty(), "a cut request gets no response");
}
