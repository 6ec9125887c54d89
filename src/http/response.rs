//! Response building shared by every handler: JSON bodies, JECP error envelopes, CORS,
//! cache headers and conditional GET.
//!
//! Handlers build responses only through these helpers so that envelopes, `Retry-After`,
//! CORS exposure (spec 06 §11.2) and `ETag` handling stay identical across endpoints.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, StatusCode};
use serde_json::Value;

use crate::protocol::{HubLinks, JecpError};

/// What every handler returns.
pub type Response = hyper::Response<Full<Bytes>>;

/// `Content-Type` of every JSON body.
pub const JSON_CONTENT_TYPE: &str = "application/json";
/// `Content-Type` of `/llms.txt`.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// Response headers a browser agent must be able to read (spec 06 §11.2: all four are MUST
/// on `/v1/invoke` and its preflight).
pub const CORS_EXPOSE_HEADERS: &str =
    "X-Payment-Response, X-Request-Id, Retry-After, WWW-Authenticate";
/// Request headers the SDK sends (CLIENT-COMPAT §9).
pub const CORS_ALLOW_HEADERS: &str =
    "X-Agent-ID, X-API-Key, X-Payment, X-Request-Id, Content-Type, Authorization";
/// How long browsers may cache a preflight answer.
pub const CORS_MAX_AGE_S: &str = "86400";

/// A JSON response with `status`.
pub fn json(status: StatusCode, value: &Value) -> Response {
    // Serializing a `Value` cannot fail: its map keys are always strings.
    let body = serde_json::to_vec(value).unwrap_or_default();
    bytes_response(status, JSON_CONTENT_TYPE, Bytes::from(body))
}

/// A response with a body and a `Content-Type`.
pub fn bytes_response(status: StatusCode, content_type: &'static str, body: Bytes) -> Response {
    let mut response = hyper::Response::new(Full::new(body));
    *response.status_mut() = status;
    // Every answer gets about half a dozen headers (type, CORS, caching,
    // request id): one allocation up front instead of regrowing the map.
    let mut headers = hyper::HeaderMap::with_capacity(RESPONSE_HEADERS_EXPECTED);
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    *response.headers_mut() = headers;
    response
}

/// Headers most responses carry; the map grows past it when needed.
const RESPONSE_HEADERS_EXPECTED: usize = 8;

/// The JECP error envelope for `error`: status from its code, `Retry-After` when set, and the
/// error's extra headers (`Allow`, `Sunset`, ...). Headers whose value is not valid header text
/// are dropped rather than failing the response.
pub fn error(error: &JecpError, request_id: Option<&str>, links: &HubLinks) -> Response {
    let status =
        StatusCode::from_u16(error.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = json(status, &error.to_envelope(request_id, links));
    let headers = response.headers_mut();
    if let Some(seconds) = error.retry_after_seconds {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    for (name, value) in &error.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.append(name, value);
        }
    }
    response
}

/// Adds `Access-Control-Allow-Origin: *` and the exposed headers. Discovery is read-only and
/// no endpoint uses cookies, so a wildcard origin grants nothing a script could not already do.
pub fn with_cors(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(CORS_EXPOSE_HEADERS),
    );
}

/// `Cache-Control: no-store` (every `/v1/invoke` response, spec 06 §11.1).
pub fn no_store(response: &mut Response) {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// The 204 answer to a CORS preflight for a path that accepts `allowed` methods.
pub fn preflight(allowed: &[Method]) -> Response {
    let mut response = hyper::Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    with_cors(&mut response);
    let headers = response.headers_mut();
    if let Ok(methods) = HeaderValue::from_str(&allow_header_value(allowed)) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, methods.clone());
        headers.insert(header::ALLOW, methods);
    }
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(CORS_ALLOW_HEADERS),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static(CORS_MAX_AGE_S),
    );
    response
}

/// `GET, HEAD, OPTIONS`-style list for `Allow` and `Access-Control-Allow-Methods`.
pub fn allow_header_value(allowed: &[Method]) -> String {
    let mut methods: Vec<&str> = allowed.iter().map(Method::as_str).collect();
    if !allowed.contains(&Method::OPTIONS) {
        methods.push("OPTIONS");
    }
    methods.join(", ")
}

/// A cacheable JSON document with a strong `ETag`; answers 304 when `If-None-Match` matches.
pub fn cacheable(
    request_headers: &HeaderMap,
    body_json: &Value,
    cache_control: &'static str,
) -> Response {
    let body = Bytes::from(serde_json::to_vec(body_json).unwrap_or_default());
    let etag = strong_etag(&body);
    cacheable_bytes(
        request_headers,
        JSON_CONTENT_TYPE,
        body,
        &etag,
        cache_control,
    )
}

/// [`cacheable`] for a pre-rendered body whose `etag` (from [`strong_etag`]) is already known,
/// so hot documents are hashed once rather than per request.
pub fn cacheable_bytes(
    request_headers: &HeaderMap,
    content_type: &'static str,
    body: Bytes,
    etag: &str,
    cache_control: &'static str,
) -> Response {
    let not_modified = if_none_match_matches(request_headers, etag);
    let mut response = if not_modified {
        let mut response = hyper::Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        bytes_response(StatusCode::OK, content_type, body)
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control),
    );
    response
}

/// A strong entity tag: the first 128 bits of SHA-256 over the exact body bytes, quoted.
pub fn strong_etag(body: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, body);
    format!("\"{}\"", hex::encode(&digest.as_ref()[..16]))
}

/// RFC 9110 §13.1.2: `If-None-Match` uses the weak comparison, so `W/"x"` matches `"x"`, and
/// `*` matches any current representation.
fn if_none_match_matches(request_headers: &HeaderMap, etag: &str) -> bool {
    let opaque = etag.trim_start_matches("W/");
    request_headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|list| {
            list.split(',')
                .map(str::trim)
                .any(|candidate| candidate == "*" || candidate.trim_start_matches("W/") == opaque)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ErrorCode;
    use http_body_util::BodyExt;
    use serde_json::json;

    fn links() -> HubLinks {
        HubLinks {
            public_url: "https://hub.example".into(),
            allowed_topup_usd: vec![5],
        }
    }

    async fn body_of(response: Response) -> Bytes {
        response
            .into_body()
            .collect()
            .await
            .map(|collected| collected.to_bytes())
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn error_carries_status_retry_after_and_extra_headers() {
        let err = JecpError::new(ErrorCode::RateLimited, "slow down")
            .retry_after(7)
            .header("X-RateLimit-Limit", "10");
        let response = error(&err, Some("r1"), &links());
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "7");
        assert_eq!(response.headers()["x-ratelimit-limit"], "10");
        assert_eq!(response.headers()[header::CONTENT_TYPE], JSON_CONTENT_TYPE);
        let body: Value = serde_json::from_slice(&body_of(response).await).unwrap();
        assert_eq!(body["error"]["code"], "RATE_LIMITED");
        assert_eq!(body["id"], "r1");
    }

    #[tokio::test]
    async fn cacheable_answers_304_on_matching_etag_only() {
        let document = json!({"a": 1});
        let first = cacheable(&HeaderMap::new(), &document, "public, max-age=60");
        assert_eq!(first.status(), StatusCode::OK);
        let etag = first.headers()[header::ETAG].to_str().unwrap().to_owned();
        assert!(etag.starts_with('"') && etag.ends_with('"'));
        assert_eq!(body_of(first).await, Bytes::from_static(br#"{"a":1}"#));

        for presented in [
            etag.clone(),
            format!("W/{etag}"),
            format!("\"other\", {etag}"),
            "*".to_owned(),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::IF_NONE_MATCH,
                HeaderValue::from_str(&presented).unwrap(),
            );
            let response = cacheable(&headers, &document, "public, max-age=60");
            assert_eq!(response.status(), StatusCode::NOT_MODIFIED, "{presented}");
            assert_eq!(response.headers()[header::ETAG], etag.as_str());
            assert!(body_of(response).await.is_empty());
        }
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"stale\""));
        assert_eq!(
            cacheable(&headers, &document, "public, max-age=60").status(),
            StatusCode::OK
        );
    }

    #[test]
    fn preflight_lists_methods_and_sdk_headers() {
        let response = preflight(&[Method::POST]);
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        assert_eq!(
            response.headers()[header::ACCESS_CONTROL_ALLOW_METHODS],
            "POST, OPTIONS"
        );
        assert_eq!(response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert_eq!(
            response.headers()[header::ACCESS_CONTROL_EXPOSE_HEADERS],
            CORS_EXPOSE_HEADERS
        );
        assert!(
            response.headers()[header::ACCESS_CONTROL_ALLOW_HEADERS]
                .to_str()
                .unwrap()
                .contains("X-Payment")
        );
    }
}
