//! The service boundary: a fully read [`Request`], the [`Service`] trait handlers implement,
//! and the bounded body reader the server runs before any handler sees a request.
//!
//! Reading the whole body up front (through `http_body_util::Limited` and under a deadline)
//! keeps every limit in one place: handlers get `Bytes` and never deal with slow or oversized
//! clients, and a request that breaks a limit never reaches business code.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Limited};
use hyper::HeaderMap;
use hyper::body::Incoming;

use crate::http::response::{self, Response};
use crate::protocol::{ErrorCode, HubLinks, JecpError};

/// The JECP request headers, named once: a lookup by `HeaderName` skips
/// parsing and lower-casing the name text on every request.
pub mod names {
    use hyper::header::HeaderName;

    pub const X_AGENT_ID: HeaderName = HeaderName::from_static("x-agent-id");
    pub const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
    pub const X_IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("x-idempotency-key");
    pub const X_PAYMENT: HeaderName = HeaderName::from_static("x-payment");
    pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
    pub const STRIPE_SIGNATURE: HeaderName = HeaderName::from_static("stripe-signature");
}

/// Longest `X-Request-Id` echoed back; longer or odd values are ignored, not reflected.
pub const REQUEST_ID_LEN_MAX: usize = 128;

/// One HTTP request with its body already read and within limits. Its `Debug` output hides
/// credential headers and the body (which may carry an API key inside a mandate).
pub struct Request {
    pub method: hyper::Method,
    /// Path without the query string, as sent (not percent-decoded).
    pub path: String,
    /// The raw query string, without `?`.
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The TCP peer.
    pub remote: SocketAddr,
}

/// Headers whose values are credentials and never appear in `Debug` output.
const SECRET_HEADERS: &[&str] = &["x-api-key", "authorization", "x-payment", "cookie"];

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(name, value)| {
                let shown = if SECRET_HEADERS.contains(&name.as_str()) {
                    "[redacted]"
                } else {
                    value.to_str().unwrap_or("[binary]")
                };
                (name.as_str(), shown)
            })
            .collect();
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("headers", &headers)
            .field("body_len", &self.body.len())
            .field("remote", &self.remote)
            .finish()
    }
}

impl Request {
    /// A header's value when present and valid visible ASCII.
    pub fn header_str(&self, name: impl hyper::header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// The client's `X-Request-Id` when it is a short token safe to echo.
    pub fn client_request_id(&self) -> Option<&str> {
        self.header_str(names::X_REQUEST_ID)
            .filter(|id| is_safe_request_id(id))
    }
}

/// Whether a client-supplied request id may be echoed into responses and logs.
pub fn is_safe_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= REQUEST_ID_LEN_MAX
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// What the server hands requests to. Implementations must answer every request (errors are
/// responses too) and must not panic on client input.
pub trait Service: Send + Sync + 'static {
    fn call(&self, request: Request) -> impl Future<Output = Response> + Send;

    /// Renders an error the server itself raised before calling [`Service::call`] (413, 408,
    /// 400 for a broken body). The default has no public URL for links; [`crate::http::App`]
    /// overrides it with the configured one and CORS headers.
    fn edge_error(&self, error: &JecpError) -> Response {
        let links = HubLinks {
            public_url: String::new(),
            allowed_topup_usd: Vec::new(),
        };
        response::error(error, None, &links)
    }
}

/// Why a body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// More than the limit was declared or sent. `unread` is the rest of the body, so the
    /// caller can drain it and let the client read the 413 (see `server::drain_discarded_body`).
    TooLarge { unread: Incoming, limit_bytes: u64 },
    /// The client did not finish the body within the deadline.
    TimedOut { timeout_ms: u64 },
    /// The body was malformed (bad chunked encoding) or the client went away.
    Broken,
}

impl BodyError {
    /// The JECP error a client sees for this failure.
    pub fn to_jecp_error(&self) -> JecpError {
        match self {
            BodyError::TooLarge { limit_bytes, .. } => JecpError::new(
                ErrorCode::InputTooLarge,
                format!("The request body exceeds the {limit_bytes}-byte limit."),
            )
            .detail("max_body_bytes", *limit_bytes),
            BodyError::TimedOut { timeout_ms } => JecpError::new(
                ErrorCode::RequestTimeout,
                format!("The request body was not received within {timeout_ms} ms."),
            )
            .detail("body_read_timeout_ms", *timeout_ms),
            BodyError::Broken => JecpError::new(
                ErrorCode::InvalidRequest,
                "The request body could not be read (malformed framing).",
            ),
        }
    }
}

/// Reads the whole body through [`Limited`] within `timeout`. A declared `Content-Length`
/// above the limit is refused before reading a byte.
pub async fn read_body(
    mut body: Incoming,
    headers: &HeaderMap,
    limit_bytes: u64,
    timeout: Duration,
) -> Result<Bytes, BodyError> {
    let declared_len = headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.trim().parse::<u64>().ok());
    if declared_len.is_some_and(|len| len > limit_bytes) {
        return Err(BodyError::TooLarge {
            unread: body,
            limit_bytes,
        });
    }
    let limit = usize::try_from(limit_bytes).unwrap_or(usize::MAX);
    let outcome =
        tokio::time::timeout(timeout, collect_limited(&mut body, limit, declared_len)).await;
    match outcome {
        Err(_elapsed) => Err(BodyError::TimedOut {
            timeout_ms: timeout.as_millis() as u64,
        }),
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(CollectError::TooLarge)) => Err(BodyError::TooLarge {
            unread: body,
            limit_bytes,
        }),
        Ok(Err(CollectError::Broken)) => Err(BodyError::Broken),
    }
}

enum CollectError {
    TooLarge,
    Broken,
}

/// Collects data frames (trailers are ignored). Borrowing the body keeps it available for
/// draining when the limit trips.
async fn collect_limited(
    body: &mut Incoming,
    limit: usize,
    declared_len: Option<u64>,
) -> Result<Bytes, CollectError> {
    let mut limited = Limited::new(body, limit);
    // Pre-size for honest clients, but never by more than the limit allows.
    let capacity = declared_len.map_or(0, |len| usize::try_from(len).unwrap_or(0).min(limit));
    let mut collected = BytesMut::with_capacity(capacity);
    while let Some(frame) = limited.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    collected.extend_from_slice(&data);
                }
            }
            Err(error) if error.is::<http_body_util::LengthLimitError>() => {
                return Err(CollectError::TooLarge);
            }
            Err(_) => return Err(CollectError::Broken),
        }
    }
    Ok(collected.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_that_are_safe_to_echo() {
        assert!(is_safe_request_id("0191b2c4-7d5e-7000-8000-000000000000"));
        assert!(is_safe_request_id("req_1.a:b"));
        assert!(!is_safe_request_id(""));
        assert!(!is_safe_request_id("has space"));
        assert!(!is_safe_request_id("line\nbreak"));
        assert!(!is_safe_request_id(&"x".repeat(REQUEST_ID_LEN_MAX + 1)));
    }

    #[test]
    fn debug_output_hides_credentials_and_body() {
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", "hub_ak_secret".parse().unwrap());
        headers.insert("x-agent-id", "hub_ag_1".parse().unwrap());
        let request = Request {
            method: hyper::Method::POST,
            path: "/v1/invoke".into(),
            query: None,
            headers,
            body: Bytes::from_static(br#"{"mandate":{"api_key":"hub_ak_secret"}}"#),
            remote: "127.0.0.1:1".parse().unwrap(),
        };
        let debug = format!("{request:?}");
        assert!(!debug.contains("hub_ak_secret"), "{debug}");
        assert!(
            debug.contains("hub_ag_1") && debug.contains("[redacted]"),
            "{debug}"
        );
    }

    #[test]
    fn body_errors_map_to_catalog_codes() {
        let timed_out = BodyError::TimedOut { timeout_ms: 250 }.to_jecp_error();
        assert_eq!(timed_out.code, ErrorCode::RequestTimeout);
        assert_eq!(timed_out.http_status(), 408);
        assert_eq!(timed_out.details["body_read_timeout_ms"], 250);
        assert_eq!(BodyError::Broken.to_jecp_error().http_status(), 400);
    }
}
