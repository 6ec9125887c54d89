//! The Hub's outgoing HTTP(S) connection pool.
//!
//! One hyper-util legacy `Client` over a rustls connector: the ring crypto
//! provider (no aws-lc, no OpenSSL) and the bundled Mozilla roots from
//! `webpki-roots`, so outgoing TLS works the same on a bare container with no
//! system certificate store. Plain `http://` is allowed by the connector so
//! tests can point the client at a loopback fake; callers decide which URLs
//! they accept (see `StripeConfig` validation).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// The pooled client type: request bodies are fully buffered (`Full<Bytes>`).
pub type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// How long an idle pooled connection is kept before it is closed.
pub const POOL_IDLE_TIMEOUT_S: u64 = 60;
/// Idle connections kept per host; Stripe calls are rare, a few suffice.
pub const POOL_MAX_IDLE_PER_HOST: usize = 8;

/// Builds the pooled HTTPS-or-HTTP client. `connect_timeout_ms` bounds the
/// TCP connect only; callers bound the whole exchange themselves.
pub fn build_client(connect_timeout_ms: u64) -> Result<HttpsClient, String> {
    let mut tcp = HttpConnector::new();
    // The TLS wrapper needs the inner connector to accept `https://` URIs.
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(Some(Duration::from_millis(connect_timeout_ms.max(1))));
    let connector = HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
        .map_err(|error| format!("TLS configuration failed: {error}"))?
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp);
    Ok(Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(POOL_IDLE_TIMEOUT_S))
        .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
        .build(connector))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_client_builds_with_the_ring_provider() {
        let client = build_client(1_000).expect("rustls with ring and webpki roots must configure");
        // A clone shares the pool; this is what `StripeClient: Clone` relies on.
        let _shared = client.clone();
    }
}
