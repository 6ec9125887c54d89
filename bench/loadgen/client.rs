//! The HTTP client: hyper-util's pooled keep-alive client (HTTP/1.1, no
//! Nagle), with a timeout on every request including reading the body.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::scenario::{Method, PlannedRequest};

/// Idle keep-alive connections are closed after this long.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest response body read; the Hub's answers here are a few KiB.
const RESPONSE_BYTES_MAX: usize = 1 << 20;

/// A response: status and body.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
}

/// Why no response came back.
#[derive(Clone, Debug, PartialEq)]
pub enum SendError {
    Timeout,
    /// Connection refused or reset, malformed response, body too large.
    Transport(String),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Timeout => f.write_str("timed out"),
            SendError::Transport(message) => f.write_str(message),
        }
    }
}

#[derive(Clone, Debug)]
pub struct HttpClient {
    inner: Client<HttpConnector, Full<Bytes>>,
    base_url: String,
    timeout: Duration,
}

impl HttpClient {
    /// `base_url` without a trailing `/`; `pool_size` keep-alive connections.
    pub fn new(base_url: &str, pool_size: usize, timeout: Duration) -> HttpClient {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        let inner = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(pool_size)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(connector);
        HttpClient {
            inner,
            base_url: base_url.trim_end_matches('/').to_owned(),
            timeout,
        }
    }

    /// Sends a planned scenario request.
    pub async fn send(&self, planned: &PlannedRequest) -> Result<Answer, SendError> {
        let mut headers: Vec<(&str, &str)> = Vec::with_capacity(3);
        if let Some(content_type) = planned.content_type {
            headers.push(("content-type", content_type));
        }
        if let Some((agent_id, api_key)) = &planned.credentials {
            headers.push(("x-agent-id", agent_id));
            headers.push(("x-api-key", api_key));
        }
        let method = match planned.method {
            Method::Get => hyper::Method::GET,
            Method::Post => hyper::Method::POST,
        };
        self.send_raw(method, planned.path, &headers, planned.body.clone())
            .await
    }

    /// Sends any request to `base_url + path`.
    pub async fn send_raw(
        &self,
        method: hyper::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Answer, SendError> {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base_url));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder
            .body(Full::new(body))
            .map_err(|error| SendError::Transport(format!("bad request: {error}")))?;
        let exchange = async {
            let response = self
                .inner
                .request(request)
                .await
                .map_err(|error| SendError::Transport(error.to_string()))?;
            let status = response.status().as_u16();
            let limited = http_body_util::Limited::new(response.into_body(), RESPONSE_BYTES_MAX);
            let body = limited
                .collect()
                .await
                .map_err(|error| SendError::Transport(format!("reading the body: {error}")))?
                .to_bytes();
            Ok(Answer { status, body })
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(SendError::Timeout),
        }
    }
}
