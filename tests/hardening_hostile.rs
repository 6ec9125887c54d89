//! Hostile clients against a real Hub (issue 9): slow headers, slow bodies,
//! oversized headers, idle connections, malformed HTTP, invalid UTF-8, deeply
//! nested JSON, huge numbers, duplicate keys and `X-Agent-ID` enumeration.
//! Each attack's own outcome is asserted, and one test runs them all at once
//! while a well-behaved client measures that the Hub stays responsive.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::TestHub;
use jecp_hub::money::Micros;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Short edge timeouts so slow clients are cut quickly in tests.
const HEADER_READ_TIMEOUT_MS: u64 = 800;
const BODY_READ_TIMEOUT_MS: u64 = 800;
/// How long after its timeout the server may take to actually cut a slow client.
const CUT_SLACK_MS: u64 = 2_000;
/// The well-behaved client's bar while attackers run (machines are noisy: generous).
const GOOD_SUCCESS_RATE_MIN: f64 = 0.99;
const GOOD_P99_MS_MAX: u128 = 2_000;
const ATTACK_DURATION: Duration = Duration::from_secs(6);
const IDLE_CONNECTIONS: usize = 64;

async fn hostile_hub() -> TestHub {
    TestHub::start(|config| {
        config.header_read_timeout_ms = HEADER_READ_TIMEOUT_MS;
        config.body_read_timeout_ms = BODY_READ_TIMEOUT_MS;
        config.free_calls_per_agent = 0;
        config.tier_rpm.bronze = 1_000_000;
        config.tier_rpm.silver = 1_000_000;
        config.tier_rpm.gold = 1_000_000;
        config.tier_rpm.platinum = 1_000_000;
    })
    .await
}

/// Reads until the server closes or `limit` passes; returns what arrived and whether it closed.
async fn read_until_close(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let mut received = Vec::new();
    let deadline = Instant::now() + limit;
    let mut buffer = [0u8; 4096];
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (received, true),
            Ok(Ok(read)) => received.extend_from_slice(&buffer[..read]),
            Err(_) => return (received, false),
        }
    }
}

fn status_of(response: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(response.get(..12)?).ok()?;
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

fn body_of(response: &[u8]) -> &[u8] {
    response
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map(|end| &response[end + 4..])
        .unwrap_or(&[])
}

fn raw_request(path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut request = format!("POST {path} HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

async fn exchange_raw(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("send");
    read_until_close(&mut stream, Duration::from_secs(10))
        .await
        .0
}

// ----- one attack at a time: each gets its own, specific answer --------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_after_the_header_timeout() {
    let hub = hostile_hub().await;
    let mut stream = TcpStream::connect(hub.addr()).await.unwrap();
    stream
        .write_all(b"POST /v1/invoke HTTP/1.1\r\nHost: hub\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    // One header byte every 100 ms: never completing the head.
    let closed = loop {
        if stream.write_all(b"X").await.is_err() {
            break true;
        }
        let (_, closed) = read_until_close(&mut stream, Duration::from_millis(100)).await;
        if closed {
            break true;
        }
        if started.elapsed() > Duration::from_millis(HEADER_READ_TIMEOUT_MS + CUT_SLACK_MS) {
            break false;
        }
    };
    assert!(closed, "a slowloris head was not cut");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_get_408() {
    let hub = hostile_hub().await;
    let mut stream = TcpStream::connect(hub.addr()).await.unwrap();
    stream
        .write_all(
            b"POST /v1/invoke HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{",
        )
        .await
        .unwrap();
    let (response, closed) = read_until_close(
        &mut stream,
        Duration::from_millis(BODY_READ_TIMEOUT_MS + CUT_SLACK_MS),
    )
    .await;
    assert_eq!(
        status_of(&response),
        Some(408),
        "{}",
        String::from_utf8_lossy(&response)
    );
    assert!(closed, "the connection stays open after 408");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed() {
    let hub = hostile_hub().await;
    let mut streams = Vec::new();
    for _ in 0..IDLE_CONNECTIONS {
        streams.push(TcpStream::connect(hub.addr()).await.unwrap());
    }
    // While they idle, the Hub still answers.
    assert_eq!(hub.get("/health", &[]).await.status, 200);
    for stream in &mut streams {
        let (_, closed) = read_until_close(
            stream,
            Duration::from_millis(HEADER_READ_TIMEOUT_MS + CUT_SLACK_MS),
        )
        .await;
        assert!(closed, "an idle connection was kept open");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_get_431_or_a_close_never_a_hang() {
    let hub = hostile_hub().await;
    let big = "a".repeat(jecp_hub::http::server::REQUEST_HEAD_BYTES_MAX + 1024);
    let started = Instant::now();
    let mut stream = TcpStream::connect(hub.addr()).await.unwrap();
    let request = format!("GET /health HTTP/1.1\r\nHost: hub\r\nX-Big: {big}\r\n\r\n");
    // The server may stop reading (and reset) before the whole head is sent.
    let _ = stream.write_all(request.as_bytes()).await;
    let (response, closed) = read_until_close(&mut stream, Duration::from_secs(5)).await;
    assert!(closed, "oversized head left the connection hanging");
    assert!(started.elapsed() < Duration::from_secs(5));
    if !response.is_empty() {
        assert_eq!(status_of(&response), Some(431));
    }
    // A large but legal head is still served.
    let fine = "b".repeat(16 * 1024);
    let response = exchange_raw(
        hub.addr(),
        format!("GET /health HTTP/1.1\r\nHost: hub\r\nConnection: close\r\nX-Big: {fine}\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert_eq!(status_of(&response), Some(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_http_gets_400_or_a_close() {
    let hub = hostile_hub().await;
    for garbage in [
        &b"\x00\x01\x02\x03garbage\r\n\r\n"[..],
        b"GET / HTTP/9.9\r\n\r\n",
        b"POST /v1/invoke HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
        b"POST /v1/invoke HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello",
        b"POST /v1/invoke HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /\xff\xfe HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /health HTTP/1.1\r\nBad Header Name: x\r\n\r\n",
    ] {
        let response = exchange_raw(hub.addr(), garbage).await;
        let status = status_of(&response);
        assert!(
            response.is_empty() || matches!(status, Some(400..=499)),
            "{:?} → {}",
            String::from_utf8_lossy(garbage),
            String::from_utf8_lossy(&response)
        );
    }
    assert_eq!(hub.get("/health", &[]).await.status, 200);
}

/// Body-level attacks on `/v1/invoke`: each is a 4xx JSON error, never a 5xx or a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_json_bodies_get_400() {
    let hub = hostile_hub().await;
    let agent = hub.register("json-attacker").await;
    let headers = [
        ("content-type", "application/json"),
        ("x-agent-id", agent.0.as_str()),
        ("x-api-key", agent.1.as_str()),
    ];
    let deep = format!(
        r#"{{"jecp":"1.0","id":"deep-1","capability":"utility","action":"echo","input":{}1{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let deep_objects = format!(
        r#"{{"jecp":"1.0","id":"deep-2","capability":"utility","action":"echo","input":{}1{}}}"#,
        r#"{"a":"#.repeat(5_000),
        "}".repeat(5_000)
    );
    let huge_exponent =
        r#"{"jecp":"1.0","id":"huge-1","capability":"utility","action":"echo","input":1e999999}"#
            .to_owned();
    let huge_digits = format!(
        r#"{{"jecp":"1.0","id":"huge-2","capability":"utility","action":"echo","input":{}}}"#,
        "9".repeat(100_000)
    );
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("deep arrays", deep.into_bytes(), "INVALID_REQUEST"),
        ("deep objects", deep_objects.into_bytes(), "INVALID_REQUEST"),
        ("huge exponent", huge_exponent.into_bytes(), "INVALID_REQUEST"),
        (
            "invalid UTF-8",
            b"{\"jecp\":\"1.0\",\"id\":\"utf8-1\",\"capability\":\"utility\",\"action\":\"echo\",\"input\":\"\xff\xfe\"}".to_vec(),
            "INVALID_REQUEST",
        ),
        ("lone surrogate escape", br#"{"jecp":"1.0","id":"utf8-2","capability":"utility","action":"echo","input":"\ud800"}"#.to_vec(), "INVALID_REQUEST"),
    ];
    for (name, body, code) in cases {
        let response = exchange_raw(hub.addr(), &raw_request("/v1/invoke", &headers, &body)).await;
        assert_eq!(status_of(&response), Some(400), "{name}");
        let json: Value = serde_json::from_slice(body_of(&response)).expect("JSON error");
        assert_eq!(json["error"]["code"], code, "{name}: {json}");
    }
    // 100k digits: serde_json reads it as a float (1e100000 → out of range) — a 400, not a
    // panic; if it ever parsed, the echo capability would see a finite value only.
    let response = exchange_raw(
        hub.addr(),
        &raw_request("/v1/invoke", &headers, huge_digits.as_bytes()),
    )
    .await;
    let status = status_of(&response).expect("a response");
    assert!((400..500).contains(&status), "huge digits → {status}");
    assert_eq!(hub.get("/health", &[]).await.status, 200);
}

/// Duplicate JSON keys are deterministic: the last value wins (serde_json), so the id the
/// Hub answers under, bills under and replays under is the last `id` in the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_keys_take_the_last_value() {
    let hub = hostile_hub().await;
    let agent = hub.register("dup-keys").await;
    hub.credit(&agent.0, Micros::from_usdc(1)).await;
    let body = r#"{"jecp":"1.0","id":"dup-first","id":"dup-second","capability":"utility","action":"echo","input":{"text":"one"},"input":{"text":"two"}}"#;
    let headers = [
        ("content-type", "application/json"),
        ("x-agent-id", agent.0.as_str()),
        ("x-api-key", agent.1.as_str()),
    ];
    let first = hub.post("/v1/invoke", &headers, body).await;
    assert_eq!(
        first.status,
        200,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    let json = first.json();
    assert_eq!(json["id"], "dup-second");
    assert!(json.to_string().contains("two"), "{json}");
    // The same bytes again are an idempotent replay of "dup-second".
    let again = hub.post("/v1/invoke", &headers, body).await;
    assert_eq!(again.body, first.body);
    let plain = hub
        .invoke(
            &agent,
            "dup-second",
            "utility",
            "echo",
            json!({"text": "two"}),
        )
        .await;
    assert_eq!(plain.body, first.body);
}

/// Unknown agent ids, known ids with wrong keys and malformed ids all get the same 401 body:
/// the answer reveals nothing about which ids exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_id_enumeration_learns_nothing() {
    let hub = hostile_hub().await;
    let real = hub.register("enumeration-target").await;
    let body = r#"{"jecp":"1.0","id":"enum-1","capability":"utility","action":"echo","input":{}}"#;
    let probe = |agent_id: String| {
        let hub = &hub;
        async move {
            let response = hub
                .post(
                    "/v1/invoke",
                    &[
                        ("content-type", "application/json"),
                        ("x-agent-id", agent_id.as_str()),
                        ("x-api-key", "hub_sk_wrong_key_0000000000000000"),
                    ],
                    body,
                )
                .await;
            (response.status, response.body)
        }
    };
    let (status, reference) = probe(real.0.clone()).await;
    assert_eq!(status, 401);
    let mut candidates = vec![
        format!("{}x", real.0),
        real.0.replace('a', "b"),
        "hub_ag_0000000000000000000000".to_owned(),
        "x".to_owned(),
        "hub_ag_".to_owned() + &"Z".repeat(200),
    ];
    for index in 0..40 {
        candidates.push(format!("hub_ag_{:024x}", index * 7919));
    }
    for candidate in candidates {
        let (status, body) = probe(candidate.clone()).await;
        assert_eq!(status, 401, "{candidate}");
        assert_eq!(
            body,
            reference,
            "{candidate}: 401 body differs from a real id's: {}",
            String::from_utf8_lossy(&body)
        );
    }
}

// ----- everything at once, with a well-behaved client measuring -------------------------------

/// Counters the attackers bump so the test can show they actually ran.
#[derive(Default)]
struct AttackStats {
    connections: AtomicU64,
}

async fn attack_loop(
    addr: SocketAddr,
    kind: usize,
    stop: Arc<AtomicBool>,
    stats: Arc<AttackStats>,
    agent_id: String,
) {
    let deep = format!("{}1{}", "[".repeat(50_000), "]".repeat(50_000));
    let big_header = "h".repeat(200 * 1024);
    let mut round: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        let Ok(mut stream) = TcpStream::connect(addr).await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        stats.connections.fetch_add(1, Ordering::Relaxed);
        let limit = Duration::from_millis(HEADER_READ_TIMEOUT_MS + CUT_SLACK_MS);
        match kind {
            // Slowloris head.
            0 => {
                let _ = stream
                    .write_all(b"GET /health HTTP/1.1\r\nHost: a\r\n")
                    .await;
                let started = Instant::now();
                while started.elapsed() < limit && !stop.load(Ordering::Relaxed) {
                    if stream.write_all(b"x").await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            // Slow body.
            1 => {
                let _ = stream
                    .write_all(
                        b"POST /v1/invoke HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n{",
                    )
                    .await;
                let _ = read_until_close(&mut stream, limit).await;
            }
            // Idle connection.
            2 => {
                let _ = read_until_close(&mut stream, limit).await;
            }
            // Garbage bytes.
            3 => {
                let garbage: Vec<u8> = (0..512u64)
                    .map(|i| (i.wrapping_mul(round).wrapping_mul(2_654_435_761) >> 7) as u8)
                    .collect();
                let _ = stream.write_all(&garbage).await;
                let _ = read_until_close(&mut stream, limit).await;
            }
            // Oversized header.
            4 => {
                let request =
                    format!("GET /health HTTP/1.1\r\nHost: a\r\nX-Big: {big_header}\r\n\r\n");
                let _ = stream.write_all(request.as_bytes()).await;
                let _ = read_until_close(&mut stream, limit).await;
            }
            // Invalid UTF-8, deep JSON, huge numbers, enumeration: full requests.
            _ => {
                let body: Vec<u8> = match round % 3 {
                    0 => format!(r#"{{"jecp":"1.0","id":"atk-{round}","capability":"utility","action":"echo","input":{deep}}}"#).into_bytes(),
                    1 => b"{\"jecp\":\"1.0\",\"id\":\"\xff\xff\xff\xff\"}".to_vec(),
                    _ => br#"{"jecp":"1.0","id":"atk-huge","capability":"utility","action":"echo","input":1e999999}"#.to_vec(),
                };
                let guessed = format!("{agent_id}{round}");
                let request = raw_request(
                    "/v1/invoke",
                    &[
                        ("content-type", "application/json"),
                        ("x-agent-id", guessed.as_str()),
                        ("x-api-key", "hub_sk_guess"),
                    ],
                    &body,
                );
                let _ = stream.write_all(&request).await;
                let _ = read_until_close(&mut stream, limit).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_well_behaved_client_is_served_while_attackers_run() {
    let hub = hostile_hub().await;
    let agent = hub.register("good-client").await;
    hub.credit(&agent.0, Micros::from_usdc(10)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(AttackStats::default());
    let mut attackers = Vec::new();
    // Several of each kind, plus a pool of idle connections held for the whole run.
    for kind in 0..6 {
        for _ in 0..4 {
            attackers.push(tokio::spawn(attack_loop(
                hub.addr(),
                kind,
                stop.clone(),
                stats.clone(),
                agent.0.clone(),
            )));
        }
    }
    let mut idle = Vec::new();
    for _ in 0..IDLE_CONNECTIONS {
        if let Ok(stream) = TcpStream::connect(hub.addr()).await {
            idle.push(stream);
        }
    }

    // The good client: a fresh connection per request (no pooled-connection races with the
    // server's keep-alive timeout), alternating /health and a billed echo.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http();
    let good = TestHub {
        running: hub.running,
        client,
        dir: hub.dir,
    };
    let started = Instant::now();
    let mut latencies_ms: Vec<u128> = Vec::new();
    let mut failures = Vec::new();
    let mut call: u64 = 0;
    while started.elapsed() < ATTACK_DURATION {
        call += 1;
        let sent = Instant::now();
        let response = if call.is_multiple_of(2) {
            good.get("/health", &[]).await
        } else {
            good.invoke(
                &agent,
                &format!("good-{call}"),
                "utility",
                "echo",
                json!({"text": "hi"}),
            )
            .await
        };
        latencies_ms.push(sent.elapsed().as_millis());
        if response.status != 200 {
            failures.push((call, response.status));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for attacker in attackers {
        let _ = attacker.await;
    }
    drop(idle);

    let total = latencies_ms.len();
    latencies_ms.sort_unstable();
    let p99 = latencies_ms[(total * 99 / 100).min(total - 1)];
    let success = (total - failures.len()) as f64 / total as f64;
    eprintln!(
        "good client: {total} requests, success {:.2}%, p50 {} ms, p99 {p99} ms; attacker connections {}",
        success * 100.0,
        latencies_ms[total / 2],
        stats.connections.load(Ordering::Relaxed)
    );
    assert!(
        total >= 20,
        "only {total} good requests in {ATTACK_DURATION:?}"
    );
    assert!(
        success >= GOOD_SUCCESS_RATE_MIN,
        "good client success {success}: {failures:?}"
    );
    assert!(p99 < GOOD_P99_MS_MAX, "good client p99 {p99} ms");
    assert!(stats.connections.load(Ordering::Relaxed) >= 24);
    // Billing stayed exact under attack: one charge per successful echo.
    let billed = (1..=call).filter(|c| c % 2 == 1).count() as u64
        - failures.iter().filter(|(c, _)| c % 2 == 1).count() as u64;
    let me = good
        .get(
            "/v1/agents/me",
            &[("x-agent-id", &agent.0), ("x-api-key", &agent.1)],
        )
        .await
        .json();
    assert_eq!(me["total_calls"], billed);
    assert_eq!(good.ledger_violations(), 0);
}
