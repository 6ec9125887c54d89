//! The Stripe client against a fake Stripe server on loopback: real HTTP
//! over hyper, asserting exactly what the Hub sends and how it reads
//! every kind of answer (success, rejections, garbage, slowness, refusal).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use jecp_hub::funding::{
    CheckoutRequest, CheckoutSession, StripeClient, StripeConfig, StripeError,
};
use jecp_hub::protocol::ErrorCode;
use tokio::net::TcpListener;

const SECRET_KEY: &str = "sk_test_fake_0123456789";
const SESSION_JSON: &str = r#"{"id":"cs_test_a1","object":"checkout.session","url":"https://checkout.stripe.com/c/pay/cs_test_a1"}"#;

/// One request as the fake server saw it.
#[derive(Clone, Debug)]
struct Recorded {
    method: String,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

/// How the fake answers every request.
#[derive(Clone)]
struct Reply {
    status: u16,
    body: Bytes,
    delay: Duration,
}

impl Reply {
    fn json(status: u16, body: &str) -> Reply {
        Reply {
            status,
            body: Bytes::copy_from_slice(body.as_bytes()),
            delay: Duration::ZERO,
        }
    }
}

struct FakeStripe {
    address: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    connections: Arc<AtomicUsize>,
    server: tokio::task::JoinHandle<()>,
}

impl FakeStripe {
    async fn start(reply: Reply) -> FakeStripe {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let server = {
            let requests = Arc::clone(&requests);
            let connections = Arc::clone(&connections);
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    connections.fetch_add(1, Ordering::SeqCst);
                    let requests = Arc::clone(&requests);
                    let reply = reply.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |request: Request<Incoming>| {
                            let requests = Arc::clone(&requests);
                            let reply = reply.clone();
                            async move {
                                let (parts, body) = request.into_parts();
                                let body = body
                                    .collect()
                                    .await
                                    .map(|body| body.to_bytes())
                                    .unwrap_or_default();
                                requests.lock().unwrap().push(Recorded {
                                    method: parts.method.to_string(),
                                    path: parts.uri.path().to_owned(),
                                    headers: parts.headers,
                                    body,
                                });
                                tokio::time::sleep(reply.delay).await;
                                let response = Response::builder()
                                    .status(reply.status)
                                    .header("content-type", "application/json")
                                    .body(Full::new(reply.body))
                                    .unwrap();
                                Ok::<_, Infallible>(response)
                            }
                        });
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            })
        };
        FakeStripe {
            address,
            requests,
            connections,
            server,
        }
    }

    fn client(&self, request_timeout_ms: u64) -> StripeClient {
        let mut config = StripeConfig::new(
            SECRET_KEY,
            "whsec_fake",
            "https://hub.example/agent/topup/success?session_id={CHECKOUT_SESSION_ID}",
            "https://hub.example/agent/topup/cancel",
        );
        config.api_base = format!("http://{}", self.address);
        config.request_timeout_ms = request_timeout_ms;
        StripeClient::new(config).expect("valid config")
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for FakeStripe {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn topup(amount_usd: u64, return_to: Option<&str>) -> CheckoutRequest {
    CheckoutRequest {
        agent_id: "agent_7f3a".into(),
        amount_usd,
        return_to: return_to.map(str::to_owned),
        idempotency_key: "topup:agent_7f3a:req-1".into(),
    }
}

/// Decodes `application/x-www-form-urlencoded` independently of the crate's encoder.
fn decode_form(body: &[u8]) -> BTreeMap<String, String> {
    fn decode(text: &str) -> String {
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut index = 0;
        while index < bytes.len() {
            match bytes[index] {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    index += 2;
                }
                byte => out.push(byte),
            }
            index += 1;
        }
        String::from_utf8(out).unwrap()
    }
    let text = std::str::from_utf8(body).unwrap();
    let mut fields = BTreeMap::new();
    for pair in text.split('&') {
        let (key, value) = pair.split_once('=').unwrap();
        let previous = fields.insert(decode(key), decode(value));
        assert!(previous.is_none(), "duplicate form key {key}");
    }
    fields
}

#[tokio::test]
async fn creates_a_checkout_session_with_the_exact_request_stripe_expects() {
    let fake = FakeStripe::start(Reply::json(200, SESSION_JSON)).await;
    let client = fake.client(5_000);

    let session = client
        .create_checkout_session(&topup(20, Some("https://agent.example/done?step=2&x=é")))
        .await
        .expect("session");
    assert_eq!(
        session,
        CheckoutSession {
            id: "cs_test_a1".into(),
            url: "https://checkout.stripe.com/c/pay/cs_test_a1".into()
        }
    );

    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/v1/checkout/sessions");
    let header = |name: &str| {
        request
            .headers
            .get(name)
            .map(|value| value.to_str().unwrap().to_owned())
    };
    assert_eq!(
        header("authorization"),
        Some(format!("Bearer {SECRET_KEY}"))
    );
    assert_eq!(
        header("idempotency-key").as_deref(),
        Some("topup:agent_7f3a:req-1")
    );
    assert_eq!(
        header("content-type").as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        header("content-length"),
        Some(request.body.len().to_string())
    );

    let form = decode_form(&request.body);
    let expected: BTreeMap<String, String> = [
        ("mode", "payment"),
        (
            "success_url",
            "https://hub.example/agent/topup/success?session_id={CHECKOUT_SESSION_ID}\
             &return_to=https%3A%2F%2Fagent.example%2Fdone%3Fstep%3D2%26x%3D%C3%A9",
        ),
        ("cancel_url", "https://hub.example/agent/topup/cancel"),
        ("client_reference_id", "agent_7f3a"),
        ("metadata[agent_id]", "agent_7f3a"),
        ("metadata[amount_usd]", "20"),
        ("line_items[0][price_data][currency]", "usd"),
        ("line_items[0][price_data][unit_amount]", "2000"),
        (
            "line_items[0][price_data][product_data][name]",
            "JECP wallet top-up",
        ),
        ("line_items[0][quantity]", "1"),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value.to_owned()))
    .collect();
    assert_eq!(form, expected);
}

#[tokio::test]
async fn without_return_to_the_success_url_is_sent_unchanged_and_cents_are_exact() {
    let fake = FakeStripe::start(Reply::json(200, SESSION_JSON)).await;
    let client = fake.client(5_000);
    for amount_usd in [5, 100] {
        client
            .create_checkout_session(&topup(amount_usd, None))
            .await
            .expect("session");
    }
    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    let amounts: Vec<(String, String)> = requests
        .iter()
        .map(|request| {
            let form = decode_form(&request.body);
            assert_eq!(
                form["success_url"],
                "https://hub.example/agent/topup/success?session_id={CHECKOUT_SESSION_ID}"
            );
            (
                form["line_items[0][price_data][unit_amount]"].clone(),
                form["metadata[amount_usd]"].clone(),
            )
        })
        .collect();
    assert_eq!(
        amounts,
        vec![("500".into(), "5".into()), ("10000".into(), "100".into())]
    );
}

#[tokio::test]
async fn sequential_and_cloned_calls_reuse_one_pooled_connection() {
    let fake = FakeStripe::start(Reply::json(200, SESSION_JSON)).await;
    let client = fake.client(5_000);
    let clone = client.clone();
    client
        .create_checkout_session(&topup(5, None))
        .await
        .expect("first");
    clone
        .create_checkout_session(&topup(5, None))
        .await
        .expect("second through the clone");
    client
        .create_checkout_session(&topup(5, None))
        .await
        .expect("third");
    assert_eq!(fake.requests().len(), 3);
    assert_eq!(
        fake.connections.load(Ordering::SeqCst),
        1,
        "keep-alive connection must be reused"
    );
}

#[tokio::test]
async fn a_stripe_error_status_is_rejected_with_a_scrubbed_message() {
    let body = format!(
        r#"{{"error":{{"type":"invalid_request_error","message":"Invalid API Key provided: {SECRET_KEY}"}}}}"#
    );
    let fake = FakeStripe::start(Reply::json(401, &body)).await;
    let error = fake
        .client(5_000)
        .create_checkout_session(&topup(5, None))
        .await
        .expect_err("401");
    let StripeError::Rejected { status, message } = &error else {
        panic!("expected Rejected, got {error:?}")
    };
    assert_eq!(*status, 401);
    assert!(
        message.starts_with("Invalid API Key provided:"),
        "{message}"
    );
    assert!(
        !message.contains(SECRET_KEY) && !error.to_string().contains(SECRET_KEY),
        "{error}"
    );

    let jecp = error.to_jecp();
    assert_eq!(
        (jecp.code, jecp.http_status()),
        (ErrorCode::ProviderUnreachable, 502)
    );
    assert!(!jecp.message.contains(SECRET_KEY));
}

#[tokio::test]
async fn stripe_server_errors_and_rate_limits_become_retryable_503s() {
    for (status, retry_after_s) in [(500, 5), (429, 2)] {
        let fake = FakeStripe::start(Reply::json(status, "upstream trouble")).await;
        let error = fake
            .client(5_000)
            .create_checkout_session(&topup(5, None))
            .await
            .expect_err("error status");
        assert_eq!(
            error,
            StripeError::Rejected {
                status,
                message: format!("HTTP {status} without a Stripe error body")
            }
        );
        let jecp = error.to_jecp();
        assert_eq!(
            (jecp.code, jecp.http_status()),
            (ErrorCode::ServiceDegraded, 503)
        );
        assert_eq!(jecp.retry_after_seconds, Some(retry_after_s));
    }
}

#[tokio::test]
async fn a_slow_stripe_times_out_within_the_deadline() {
    let reply = Reply {
        delay: Duration::from_secs(3),
        ..Reply::json(200, SESSION_JSON)
    };
    let fake = FakeStripe::start(reply).await;
    let started = Instant::now();
    let error = fake
        .client(200)
        .create_checkout_session(&topup(5, None))
        .await
        .expect_err("timeout");
    assert_eq!(error, StripeError::Timeout);
    assert!(
        started.elapsed() < Duration::from_millis(1_500),
        "took {:?}",
        started.elapsed()
    );
    let jecp = error.to_jecp();
    assert_eq!(
        (jecp.code, jecp.retry_after_seconds),
        (ErrorCode::ServiceDegraded, Some(5))
    );
}

#[tokio::test]
async fn a_refused_connection_is_unreachable() {
    // Bind then drop a listener so the port is known to be closed.
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut config = StripeConfig::new(
        SECRET_KEY,
        "whsec_fake",
        "https://hub.example/ok",
        "https://hub.example/no",
    );
    config.api_base = format!("http://127.0.0.1:{closed_port}");
    config.request_timeout_ms = 5_000;
    let client = StripeClient::new(config).unwrap();
    let error = client
        .create_checkout_session(&topup(5, None))
        .await
        .expect_err("refused");
    let StripeError::Unreachable(reason) = &error else {
        panic!("expected Unreachable, got {error:?}")
    };
    assert!(reason.starts_with("connect failed"), "{reason}");
    assert!(!error.to_string().contains(SECRET_KEY));
    let jecp = error.to_jecp();
    assert_eq!(
        (jecp.code, jecp.http_status()),
        (ErrorCode::ProviderUnreachable, 502)
    );
}

#[tokio::test]
async fn unusable_success_answers_are_bad_responses() {
    let oversized = format!(
        r#"{{"id":"cs_1","url":"https://x.example","pad":"{}"}}"#,
        "x".repeat(1024 * 1024)
    );
    for body in [
        "<html>not json</html>",
        r#"{"id":"cs_1"}"#,
        r#"{"id":42,"url":"https://x.example"}"#,
        &oversized,
    ] {
        let fake = FakeStripe::start(Reply::json(200, body)).await;
        let error = fake
            .client(5_000)
            .create_checkout_session(&topup(5, None))
            .await
            .expect_err("bad body");
        assert!(
            matches!(error, StripeError::BadResponse(_)),
            "{error:?} for a {}-byte body",
            body.len()
        );
        assert_eq!(error.to_jecp().code, ErrorCode::ProviderUnreachable);
    }
}

#[tokio::test]
async fn invalid_requests_are_refused_before_anything_is_sent() {
    let fake = FakeStripe::start(Reply::json(200, SESSION_JSON)).await;
    let client = fake.client(5_000);
    let long_return_to = format!("https://agent.example/{}", "a".repeat(2048));
    let bad_requests = [
        topup(5, Some("javascript:alert(1)")),
        topup(5, Some(&long_return_to)),
        topup(0, None),
        CheckoutRequest {
            idempotency_key: String::new(),
            ..topup(5, None)
        },
        CheckoutRequest {
            agent_id: String::new(),
            ..topup(5, None)
        },
    ];
    for request in &bad_requests {
        let error = client
            .create_checkout_session(request)
            .await
            .expect_err("invalid");
        assert!(matches!(error, StripeError::InvalidRequest(_)), "{error:?}");
        assert_eq!(error.to_jecp().http_status(), 400);
    }
    assert!(fake.requests().is_empty(), "nothing may reach Stripe");
}

#[test]
fn client_and_config_debug_output_hide_both_secrets() {
    let config = StripeConfig::new(
        SECRET_KEY,
        "whsec_do_not_log",
        "https://hub.example/ok",
        "https://hub.example/no",
    );
    let client = StripeClient::new(config.clone()).unwrap();
    for shown in [format!("{config:?}"), format!("{client:?}")] {
        assert!(
            !shown.contains(SECRET_KEY) && !shown.contains("whsec_do_not_log"),
            "{shown}"
        );
    }
}

#[test]
fn construction_refuses_plain_http_to_a_remote_host() {
    let mut config = StripeConfig::new(
        SECRET_KEY,
        "whsec_x",
        "https://hub.example/ok",
        "https://hub.example/no",
    );
    config.api_base = "http://api.stripe.com".into();
    let error = StripeClient::new(config).expect_err("plain http off loopback");
    assert!(error.contains("https"), "{error}");
    assert!(!error.contains(SECRET_KEY));
}

#[tokio::test]
async fn https_goes_through_rustls_and_a_failed_handshake_is_unreachable() {
    // A plain-HTTP server cannot complete a TLS handshake: the request must
    // fail as Unreachable (not panic over a missing crypto provider) and
    // never deliver the request in clear text.
    let fake = FakeStripe::start(Reply::json(200, SESSION_JSON)).await;
    let mut config = StripeConfig::new(
        SECRET_KEY,
        "whsec_fake",
        "https://hub.example/ok",
        "https://hub.example/no",
    );
    config.api_base = format!("https://{}", fake.address);
    config.request_timeout_ms = 5_000;
    let client = StripeClient::new(config).unwrap();
    let error = client
        .create_checkout_session(&topup(5, None))
        .await
        .expect_err("no TLS on the other side");
    assert!(matches!(error, StripeError::Unreachable(_)), "{error:?}");
    assert!(
        fake.requests().is_empty(),
        "no request may be parsed by a plain-HTTP peer"
    );
}
