//! The HTTP client: hyper-util's pooled keep-alive client (HTTP/1.1, no
//! Nagle), with a timeout on every request including reading the body.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::http::uri::{Authority, PathAndQuery, Scheme, Uri};
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

const X_AGENT_ID: HeaderName = HeaderName::from_static("x-agent-id");
const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

#[derive(Clone, Debug)]
pub struct HttpClient {
    inner: Client<HttpConnector, Full<Bytes>>,
    base_url: String,
    /// `base_url` parsed once: a scenario request only adds its static path.
    origin: Option<(Scheme, Authority)>,
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
        let base_url = base_url.trim_end_matches('/').to_owned();
        let origin = base_url.parse::<Uri>().ok().and_then(|uri| {
            let parts = uri.into_parts();
            // Only a bare origin: a base URL with a path goes the slow way.
            let bare = parts
                .path_and_query
                .as_ref()
                .is_none_or(|path| path.as_str() == "/");
            if !bare {
                return None;
            }
            Some((parts.scheme?, parts.authority?))
        });
        HttpClient {
            inner,
            base_url,
            origin,
            timeout,
        }
    }

    /// Sends a planned scenario request. The URI and headers are assembled
    /// from parts parsed once, not from text on every request: the load
    /// generator shares the machine with the Hub it measures.
    pub async fn send(&self, planned: &PlannedRequest) -> Result<Answer, SendError> {
        let uri = match &self.origin {
            Some((scheme, authority)) => Uri::builder()
                .scheme(scheme.clone())
                .authority(authority.clone())
                .path_and_query(PathAndQuery::from_static(planned.path))
                .build()
                .map_err(|error| SendError::Transport(format!("bad request: {error}")))?,
            None => format!("{}{}", self.base_url, planned.path)
                .parse()
                .map_err(|error| SendError::Transport(format!("bad request: {error}")))?,
        };
        let mut request = Request::new(Full::new(planned.body.clone()));
        *request.method_mut() = match planned.method {
            Method::Get => hyper::Method::GET,
            Method::Post => hyper::Method::POST,
        };
        *request.uri_mut() = uri;
        let headers = request.headers_mut();
        if let Some(content_type) = planned.content_type {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        }
        if let Some((agent_id, api_key)) = &planned.credentials {
            headers.insert(X_AGENT_ID, agent_id.clone());
            headers.insert(X_API_KEY, api_key.clone());
        }
        self.exchange(request).await
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
        self.exchange(request).await
    }

    /// Sends `request` and reads the whole answer within the timeout.
    async fn exchange(&self, request: Request<Full<Bytes>>) -> Result<Answer, SendError> {
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
