//! Stripe Checkout Sessions: configuration, the pooled client, and errors.
//!
//! The Hub never handles card data: a top-up creates a Checkout Session on
//! Stripe's REST API (`POST /v1/checkout/sessions`, form-encoded) and hands
//! the agent the session's hosted `url`. The money arrives later through the
//! `checkout.session.completed` webhook (see [`super::webhook`]).
//!
//! Every call is bounded (one deadline over connect, send and body read; a
//! response size cap) and carries an `Idempotency-Key`, so a retried top-up
//! returns the same session instead of creating a second one. The secret key
//! is never part of a `Debug`, `Display` or error message.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, USER_AGENT};
use hyper::{Method, Request, Uri};
use serde_json::Value;

use super::form;
use super::https::{HttpsClient, build_client};
use crate::protocol::{ErrorCode, JecpError, NextAction};

/// Stripe's production API origin.
pub const DEFAULT_STRIPE_API_BASE: &str = "https://api.stripe.com";
/// The only currency the Hub charges in: wallets hold USD(C) micros, and a
/// different currency would need an exchange rate the Hub does not have.
pub const SUPPORTED_CURRENCY: &str = "usd";
/// Default deadline for one Stripe call (connect + request + response body).
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 10_000;
/// Upper bound for `request_timeout_ms`, so a typo cannot park a request for hours.
pub const REQUEST_TIMEOUT_MS_MAX: u64 = 120_000;
/// Largest Stripe response body read; a Checkout Session is a few KiB.
pub const RESPONSE_BYTES_MAX: usize = 1024 * 1024;
/// Longest `returnTo` accepted from a client (CLIENT-COMPAT A8).
pub const RETURN_TO_CHARS_MAX: usize = 2048;
/// Longest configured URL (success/cancel/API base).
pub const CONFIG_URL_CHARS_MAX: usize = 2048;
/// Stripe's own limit on `Idempotency-Key`.
pub const IDEMPOTENCY_KEY_CHARS_MAX: usize = 255;
/// Longest agent id sent to Stripe (Stripe caps metadata values at 500 and
/// `client_reference_id` at 200).
pub const AGENT_ID_CHARS_MAX: usize = 200;
/// Largest single top-up in whole USD; larger amounts are refused before
/// any network call (the Hub's configured set is far below this).
pub const TOPUP_USD_MAX: u64 = 100_000;
/// Longest session id / URL accepted back from Stripe.
const SESSION_ID_CHARS_MAX: usize = 255;
const SESSION_URL_CHARS_MAX: usize = 8192;
/// Longest upstream error text kept in a [`StripeError`].
const UPSTREAM_MESSAGE_CHARS_MAX: usize = 300;
/// The product name shown on Stripe's hosted checkout page.
const PRODUCT_NAME: &str = "JECP wallet top-up";

/// Everything the Hub needs to talk to Stripe. `Debug` redacts both secrets.
#[derive(Clone)]
pub struct StripeConfig {
    /// `sk_live_…` / `sk_test_…` (or a restricted `rk_…` key).
    pub secret_key: String,
    /// `whsec_…`, used as raw UTF-8 bytes for the webhook HMAC.
    pub webhook_secret: String,
    /// Where Stripe sends the payer after paying; `returnTo` is appended as
    /// the `return_to` query parameter.
    pub success_url: String,
    /// Where Stripe sends the payer after abandoning checkout.
    pub cancel_url: String,
    /// `https://api.stripe.com` in production; tests use a loopback
    /// `http://127.0.0.1:<port>` fake. Plain http is refused for any other host.
    pub api_base: String,
    /// Must be `"usd"` (see [`SUPPORTED_CURRENCY`]).
    pub currency: String,
    /// Deadline for one call, connect through the end of the response body.
    pub request_timeout_ms: u64,
}

impl StripeConfig {
    /// A production config with the default API base, currency and timeout.
    pub fn new(
        secret_key: impl Into<String>,
        webhook_secret: impl Into<String>,
        success_url: impl Into<String>,
        cancel_url: impl Into<String>,
    ) -> StripeConfig {
        StripeConfig {
            secret_key: secret_key.into(),
            webhook_secret: webhook_secret.into(),
            success_url: success_url.into(),
            cancel_url: cancel_url.into(),
            api_base: DEFAULT_STRIPE_API_BASE.to_owned(),
            currency: SUPPORTED_CURRENCY.to_owned(),
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
        }
    }

    /// Checks every field; the message names the field, never a secret.
    pub fn validate(&self) -> Result<(), String> {
        validate_secret("secret_key", &self.secret_key)?;
        validate_secret("webhook_secret", &self.webhook_secret)?;
        validate_http_url(&self.success_url, CONFIG_URL_CHARS_MAX)
            .map_err(|reason| format!("stripe success_url: {reason}"))?;
        validate_http_url(&self.cancel_url, CONFIG_URL_CHARS_MAX)
            .map_err(|reason| format!("stripe cancel_url: {reason}"))?;
        validate_api_base(&self.api_base)?;
        if self.currency != SUPPORTED_CURRENCY {
            return Err(format!(
                "stripe currency must be \"{SUPPORTED_CURRENCY}\" (wallets are denominated in USD), got {:?}",
                self.currency
            ));
        }
        if self.request_timeout_ms == 0 || self.request_timeout_ms > REQUEST_TIMEOUT_MS_MAX {
            return Err(format!(
                "stripe request_timeout_ms must be in 1..={REQUEST_TIMEOUT_MS_MAX}, got {}",
                self.request_timeout_ms
            ));
        }
        Ok(())
    }
}

impl fmt::Debug for StripeConfig {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("StripeConfig")
            .field("secret_key", &"<redacted>")
            .field("webhook_secret", &"<redacted>")
            .field("success_url", &self.success_url)
            .field("cancel_url", &self.cancel_url)
            .field("api_base", &self.api_base)
            .field("currency", &self.currency)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .finish()
    }
}

fn validate_secret(field: &str, secret: &str) -> Result<(), String> {
    if secret.is_empty() {
        return Err(format!("stripe {field} is empty"));
    }
    if secret.len() > 1024 {
        return Err(format!("stripe {field} is longer than 1024 bytes"));
    }
    // It goes into an HTTP header (secret_key) or is compared byte-wise with
    // what Stripe signed (webhook_secret): printable ASCII only.
    if !secret.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err(format!(
            "stripe {field} contains whitespace or non-ASCII characters"
        ));
    }
    Ok(())
}

fn validate_api_base(api_base: &str) -> Result<(), String> {
    validate_http_url(api_base, CONFIG_URL_CHARS_MAX)
        .map_err(|reason| format!("stripe api_base: {reason}"))?;
    let uri: Uri = api_base
        .parse()
        .map_err(|_| "stripe api_base is not a valid URI".to_owned())?;
    if uri.query().is_some() || api_base.contains('#') {
        return Err("stripe api_base must not carry a query or fragment".to_owned());
    }
    // The secret key travels in a header: never in clear text over a network.
    if uri.scheme_str() == Some("http") && !is_loopback_host(uri.host().unwrap_or_default()) {
        return Err(
            "stripe api_base must use https (plain http is only allowed for loopback test servers)"
                .to_owned(),
        );
    }
    Ok(())
}

fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .map(|address| address.is_loopback())
            .unwrap_or(false)
}

/// Checks an absolute `http(s)://host…` URL: bounded length, a non-empty
/// host, no credentials, no whitespace or control characters.
fn validate_http_url(url: &str, chars_max: usize) -> Result<(), String> {
    if url.chars().count() > chars_max {
        return Err(format!("longer than {chars_max} characters"));
    }
    let rest = if let Some(rest) = url.strip_prefix("https://") {
        rest
    } else if let Some(rest) = url.strip_prefix("http://") {
        rest
    } else {
        return Err("must start with http:// or https://".to_owned());
    };
    if url
        .chars()
        .any(|character| character.is_whitespace() || character.is_control())
    {
        return Err("contains whitespace or control characters".to_owned());
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() {
        return Err("has no host".to_owned());
    }
    if authority.contains('@') {
        return Err("must not contain credentials".to_owned());
    }
    Ok(())
}

/// Validates a client's `returnTo` (CLIENT-COMPAT A8): an absolute http(s)
/// URL of at most [`RETURN_TO_CHARS_MAX`] characters. The routes call this to
/// answer 400 before any Stripe call; the client checks again.
pub fn validate_return_to(return_to: &str) -> Result<(), String> {
    validate_http_url(return_to, RETURN_TO_CHARS_MAX).map_err(|reason| format!("returnTo {reason}"))
}

/// Appends `return_to=<encoded>` to `success_url`'s query, before any fragment.
fn success_url_with_return_to(success_url: &str, return_to: &str) -> String {
    let (base, fragment) = match success_url.split_once('#') {
        Some((base, fragment)) => (base, Some(fragment)),
        None => (success_url, None),
    };
    let mut url = String::with_capacity(success_url.len() + return_to.len() * 3 + 12);
    url.push_str(base);
    url.push(if base.contains('?') { '&' } else { '?' });
    url.push_str("return_to=");
    form::push_encoded(&mut url, return_to);
    if let Some(fragment) = fragment {
        url.push('#');
        url.push_str(fragment);
    }
    url
}

/// One top-up the Hub asks Stripe to collect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckoutRequest {
    /// The agent to credit; sent as `client_reference_id` and `metadata[agent_id]`.
    pub agent_id: String,
    /// Whole USD; the route has already checked it is in the allowed set.
    pub amount_usd: u64,
    /// The client's `returnTo`, appended to the success URL.
    pub return_to: Option<String>,
    /// Sent as `Idempotency-Key`: the same key returns the same session.
    pub idempotency_key: String,
}

impl CheckoutRequest {
    fn validate(&self) -> Result<(), String> {
        if self.agent_id.is_empty() || self.agent_id.chars().count() > AGENT_ID_CHARS_MAX {
            return Err(format!(
                "agent_id must be 1..={AGENT_ID_CHARS_MAX} characters"
            ));
        }
        if self.agent_id.chars().any(char::is_control) {
            return Err("agent_id contains control characters".to_owned());
        }
        if self.amount_usd == 0 || self.amount_usd > TOPUP_USD_MAX {
            return Err(format!("amount must be 1..={TOPUP_USD_MAX} USD"));
        }
        if let Some(return_to) = &self.return_to {
            validate_return_to(return_to)?;
        }
        if self.idempotency_key.is_empty()
            || self.idempotency_key.len() > IDEMPOTENCY_KEY_CHARS_MAX
            || !self
                .idempotency_key
                .bytes()
                .all(|byte| byte.is_ascii_graphic())
        {
            return Err(format!(
                "idempotency_key must be 1..={IDEMPOTENCY_KEY_CHARS_MAX} printable ASCII characters"
            ));
        }
        Ok(())
    }
}

/// What the agent gets back: `{url, sessionId}` on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckoutSession {
    /// `cs_…`; the webhook names the same id.
    pub id: String,
    /// Stripe's hosted checkout page.
    pub url: String,
}

impl CheckoutSession {
    /// The top-up response body the SDK reads (CLIENT-COMPAT A8), camelCase:
    /// `{"url": …, "sessionId": …}`.
    pub fn to_json(&self) -> Value {
        serde_json::json!({ "url": self.url, "sessionId": self.id })
    }
}

/// Why a Checkout Session could not be created. `Display` is safe to log:
/// it never contains the secret key (upstream text is scrubbed of key-like
/// tokens and truncated).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StripeError {
    /// No complete answer within `request_timeout_ms`.
    Timeout,
    /// Could not connect, or the connection broke before an answer.
    Unreachable(String),
    /// Stripe answered with a non-2xx status; `message` is Stripe's
    /// `error.message` (scrubbed) or the status line.
    Rejected { status: u16, message: String },
    /// A 2xx answer that is not a usable Checkout Session.
    BadResponse(String),
    /// The request itself is invalid (e.g. a bad `returnTo`); nothing was sent.
    InvalidRequest(String),
}

impl fmt::Display for StripeError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StripeError::Timeout => formatter.write_str("Stripe did not answer in time"),
            StripeError::Unreachable(reason) => {
                write!(formatter, "Stripe is unreachable: {}", scrub(reason))
            }
            StripeError::Rejected { status, message } => {
                write!(
                    formatter,
                    "Stripe rejected the request with HTTP {status}: {}",
                    scrub(message)
                )
            }
            StripeError::BadResponse(reason) => write!(
                formatter,
                "Stripe sent an unusable response: {}",
                scrub(reason)
            ),
            StripeError::InvalidRequest(reason) => {
                write!(formatter, "invalid top-up request: {}", scrub(reason))
            }
        }
    }
}

impl std::error::Error for StripeError {}

/// Seconds an agent should wait before retrying a transient Stripe failure.
const RETRY_AFTER_TIMEOUT_S: u64 = 5;
const RETRY_AFTER_UNREACHABLE_S: u64 = 10;
const RETRY_AFTER_RATE_LIMITED_S: u64 = 2;
const RETRY_AFTER_UPSTREAM_5XX_S: u64 = 5;

/// Agent-facing messages; Stripe's own text stays in the operator's log.
const MESSAGE_BUSY: &str = "The payment provider is busy; retry the top-up shortly.";
const MESSAGE_REJECTED: &str = "The payment provider refused to create a checkout session; \
     the Hub operator must check the Stripe configuration.";
const MESSAGE_BAD_RESPONSE: &str = "The payment provider sent an unusable answer; \
     the Hub operator must check the Stripe configuration.";

impl StripeError {
    /// The JECP error the top-up route answers with. Stripe's own text is
    /// not forwarded to agents (it is about the operator's account); the
    /// route should log `Display` for the operator.
    ///
    /// - transient (timeout, Stripe 409/429/5xx): 503 `SERVICE_DEGRADED` + `Retry-After`;
    /// - unreachable: 502 `PROVIDER_UNREACHABLE` + `Retry-After`;
    /// - other Stripe rejections and unusable answers: 502 `PROVIDER_UNREACHABLE`,
    ///   no retry hint (the operator's Stripe setup needs fixing);
    /// - invalid request: 400 `VALIDATION_FAILED`.
    pub fn to_jecp(&self) -> JecpError {
        match self {
            StripeError::Timeout => JecpError::degraded(
                "The payment provider did not answer in time; retry the top-up shortly.",
                RETRY_AFTER_TIMEOUT_S,
            )
            .detail("upstream", "stripe")
            .detail("subcause", "stripe_timeout"),
            StripeError::Unreachable(_) => unreachable_error(
                "The payment provider could not be reached; retry the top-up shortly.",
                "stripe_unreachable",
            )
            .retry_after(RETRY_AFTER_UNREACHABLE_S)
            .next_action(retry_action(RETRY_AFTER_UNREACHABLE_S)),
            StripeError::Rejected { status, .. } if is_transient_status(*status) => {
                let seconds = if *status == 429 {
                    RETRY_AFTER_RATE_LIMITED_S
                } else {
                    RETRY_AFTER_UPSTREAM_5XX_S
                };
                JecpError::degraded(MESSAGE_BUSY, seconds)
                    .detail("upstream", "stripe")
                    .detail("upstream_status", *status)
                    .detail("subcause", "stripe_unavailable")
            }
            StripeError::Rejected { status, .. } => {
                unreachable_error(MESSAGE_REJECTED, "stripe_rejected")
                    .detail("upstream_status", *status)
                    .next_action(operator_action())
            }
            StripeError::BadResponse(_) => {
                unreachable_error(MESSAGE_BAD_RESPONSE, "stripe_bad_response")
                    .next_action(operator_action())
            }
            StripeError::InvalidRequest(reason) => JecpError::new(
                ErrorCode::ValidationFailed,
                format!("Invalid top-up request: {}", scrub(reason)),
            )
            .detail("subcause", "topup_invalid"),
        }
    }
}

fn unreachable_error(message: &str, subcause: &str) -> JecpError {
    JecpError::new(ErrorCode::ProviderUnreachable, message)
        .detail("upstream", "stripe")
        .detail("subcause", subcause)
}

fn retry_action(seconds: u64) -> NextAction {
    NextAction::new(
        "retry_after",
        format!("Wait {seconds} s, then retry the top-up."),
    )
    .with("retry_after_seconds", seconds)
}

fn operator_action() -> NextAction {
    NextAction::new(
        "contact_operator",
        "Card top-up is failing on this Hub; ask the Hub operator to check its Stripe setup.",
    )
}

/// Stripe statuses worth retrying: idempotency-key in use (409), rate
/// limit (429), and Stripe's own faults (5xx).
fn is_transient_status(status: u16) -> bool {
    status == 409 || status == 429 || status >= 500
}

/// Prefixes of Stripe secrets: secret keys, restricted keys, webhook secrets.
const SECRET_PREFIXES: [&str; 3] = ["sk_", "rk_", "whsec_"];

/// Truncates text and replaces every identifier-like token (a run of ASCII
/// letters, digits and `_`) that starts like a Stripe secret, wherever it
/// sits (`key:sk_live_…`, `'rk_…'`), so upstream messages are safe to log.
fn scrub(text: &str) -> String {
    let is_token_char = |character: char| character.is_ascii_alphanumeric() || character == '_';
    let mut out = String::with_capacity(text.len().min(UPSTREAM_MESSAGE_CHARS_MAX));
    let mut rest = text;
    while let Some(first) = rest.chars().next() {
        if !is_token_char(first) {
            out.push(first);
            rest = &rest[first.len_utf8()..];
            continue;
        }
        let token_len = rest
            .find(|character: char| !is_token_char(character))
            .unwrap_or(rest.len());
        let token = &rest[..token_len];
        if SECRET_PREFIXES
            .iter()
            .any(|prefix| token.starts_with(prefix))
        {
            out.push_str("<redacted>");
        } else {
            out.push_str(token);
        }
        rest = &rest[token_len..];
    }
    truncate_chars(&out, UPSTREAM_MESSAGE_CHARS_MAX)
}

fn truncate_chars(text: &str, chars_max: usize) -> String {
    match text.char_indices().nth(chars_max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// The pooled Stripe client. Cloning is cheap and shares the pool.
#[derive(Clone)]
pub struct StripeClient {
    config: StripeConfig,
    sessions_uri: Uri,
    authorization: String,
    http: HttpsClient,
}

impl fmt::Debug for StripeClient {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("StripeClient")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl StripeClient {
    /// Validates `config` and builds the connection pool. Needs no network.
    pub fn new(config: StripeConfig) -> Result<StripeClient, String> {
        config.validate()?;
        let api_base = config.api_base.trim_end_matches('/');
        let sessions_uri: Uri = format!("{api_base}/v1/checkout/sessions")
            .parse()
            .map_err(|_| "stripe api_base does not form a valid URI".to_owned())?;
        let http = build_client(config.request_timeout_ms)?;
        let authorization = format!("Bearer {}", config.secret_key);
        Ok(StripeClient {
            config,
            sessions_uri,
            authorization,
            http,
        })
    }

    pub fn config(&self) -> &StripeConfig {
        &self.config
    }

    /// Creates a Checkout Session for `request` and returns its id and URL.
    pub async fn create_checkout_session(
        &self,
        request: &CheckoutRequest,
    ) -> Result<CheckoutSession, StripeError> {
        request.validate().map_err(StripeError::InvalidRequest)?;
        let body = self.checkout_form(request);
        let http_request = Request::builder()
            .method(Method::POST)
            .uri(self.sessions_uri.clone())
            .header(AUTHORIZATION, &self.authorization)
            .header("Idempotency-Key", &request.idempotency_key)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(CONTENT_LENGTH, body.len())
            .header(USER_AGENT, concat!("jecp-hub/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(Bytes::from(body)))
            .map_err(|error| {
                StripeError::InvalidRequest(format!("could not build the request: {error}"))
            })?;
        let deadline = Duration::from_millis(self.config.request_timeout_ms);
        let (status, body) = tokio::time::timeout(deadline, self.exchange(http_request))
            .await
            .map_err(|_| StripeError::Timeout)??;
        if !(200..300).contains(&status) {
            return Err(StripeError::Rejected {
                status,
                message: upstream_error_message(status, &body),
            });
        }
        parse_session(&body)
    }

    /// Sends the request and reads the whole (size-capped) response body.
    async fn exchange(&self, request: Request<Full<Bytes>>) -> Result<(u16, Bytes), StripeError> {
        let response = self.http.request(request).await.map_err(|error| {
            let kind = if error.is_connect() {
                "connect failed"
            } else {
                "connection failed"
            };
            StripeError::Unreachable(format!("{kind}: {}", error_chain(&error)))
        })?;
        let status = response.status().as_u16();
        let collected = Limited::new(response.into_body(), RESPONSE_BYTES_MAX)
            .collect()
            .await
            .map_err(|error| {
                if error.is::<http_body_util::LengthLimitError>() {
                    StripeError::BadResponse(format!(
                        "response body larger than {RESPONSE_BYTES_MAX} bytes"
                    ))
                } else {
                    StripeError::Unreachable(format!("reading the response failed: {error}"))
                }
            })?;
        Ok((status, collected.to_bytes()))
    }

    /// The form body, in Stripe's bracket notation.
    fn checkout_form(&self, request: &CheckoutRequest) -> String {
        let success_url = match &request.return_to {
            Some(return_to) => success_url_with_return_to(&self.config.success_url, return_to),
            None => self.config.success_url.clone(),
        };
        // TOPUP_USD_MAX keeps this far from overflow.
        let unit_amount_cents = (request.amount_usd * 100).to_string();
        let amount_usd = request.amount_usd.to_string();
        form::encode_pairs([
            ("mode", "payment"),
            ("success_url", success_url.as_str()),
            ("cancel_url", self.config.cancel_url.as_str()),
            ("client_reference_id", request.agent_id.as_str()),
            ("metadata[agent_id]", request.agent_id.as_str()),
            ("metadata[amount_usd]", amount_usd.as_str()),
            (
                "line_items[0][price_data][currency]",
                self.config.currency.as_str(),
            ),
            (
                "line_items[0][price_data][unit_amount]",
                unit_amount_cents.as_str(),
            ),
            (
                "line_items[0][price_data][product_data][name]",
                PRODUCT_NAME,
            ),
            ("line_items[0][quantity]", "1"),
        ])
    }
}

/// `error: source: source…`, which for hyper-util names the OS error
/// (e.g. "Connection refused") without any request data.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    truncate_chars(&text, UPSTREAM_MESSAGE_CHARS_MAX)
}

/// Stripe's `{"error":{"message":…}}`, else the status code alone.
fn upstream_error_message(status: u16, body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|value| {
            value
                .pointer("/error/message")
                .and_then(Value::as_str)
                .map(scrub)
        })
        .unwrap_or_else(|| format!("HTTP {status} without a Stripe error body"))
}

fn parse_session(body: &[u8]) -> Result<CheckoutSession, StripeError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| StripeError::BadResponse("the body is not JSON".to_owned()))?;
    let id = value
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| {
            !id.is_empty()
                && id.len() <= SESSION_ID_CHARS_MAX
                && id.bytes().all(|byte| byte.is_ascii_graphic())
        })
        .ok_or_else(|| StripeError::BadResponse("no usable session \"id\"".to_owned()))?;
    let url = value
        .get("url")
        .and_then(Value::as_str)
        .filter(|url| validate_http_url(url, SESSION_URL_CHARS_MAX).is_ok())
        .ok_or_else(|| StripeError::BadResponse("no usable session \"url\"".to_owned()))?;
    Ok(CheckoutSession {
        id: id.to_owned(),
        url: url.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> StripeConfig {
        StripeConfig::new(
            "sk_test_secret",
            "whsec_secret",
            "https://hub.example/topup/ok",
            "https://hub.example/topup/cancel",
        )
    }

    #[test]
    fn the_default_config_is_valid_and_debug_redacts_secrets() {
        let config = config();
        assert_eq!(config.validate(), Ok(()));
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("sk_test_secret") && !debug.contains("whsec_secret"),
            "{debug}"
        );
        assert!(debug.contains("<redacted>"));
    }

    #[test]
    fn config_validation_names_the_bad_field() {
        type Mutation = fn(&mut StripeConfig);
        let cases: [(Mutation, &str); 9] = [
            (|c| c.secret_key.clear(), "secret_key"),
            (|c| c.webhook_secret = "whsec x".into(), "webhook_secret"),
            (|c| c.success_url = "ftp://x".into(), "success_url"),
            (|c| c.cancel_url = "https://".into(), "cancel_url"),
            (|c| c.api_base = "http://api.stripe.com".into(), "https"),
            (
                |c| c.api_base = "https://api.stripe.com?x=1".into(),
                "query",
            ),
            (|c| c.currency = "eur".into(), "currency"),
            (|c| c.request_timeout_ms = 0, "request_timeout_ms"),
            (
                |c| c.request_timeout_ms = REQUEST_TIMEOUT_MS_MAX + 1,
                "request_timeout_ms",
            ),
        ];
        for (mutate, expected) in cases {
            let mut config = config();
            mutate(&mut config);
            let error = config.validate().expect_err(expected);
            assert!(
                error.contains(expected),
                "{error} should mention {expected}"
            );
            assert!(!error.contains("sk_test_secret"));
        }
    }

    #[test]
    fn plain_http_is_allowed_only_for_loopback() {
        for base in [
            "http://127.0.0.1:4242",
            "http://localhost:1",
            "http://[::1]:8080/",
        ] {
            let mut config = config();
            config.api_base = base.into();
            assert_eq!(config.validate(), Ok(()), "{base}");
        }
        let mut config = config();
        config.api_base = "http://10.0.0.1".into();
        assert!(config.validate().is_err());
    }

    #[test]
    fn return_to_must_be_a_bounded_http_url() {
        assert_eq!(validate_return_to("https://agent.example/done?x=1"), Ok(()));
        assert_eq!(validate_return_to("http://localhost:3000"), Ok(()));
        for bad in [
            "javascript:alert(1)",
            "https://",
            "//evil.example",
            "https://a b",
            "https://user:pw@evil.example/",
        ] {
            assert!(validate_return_to(bad).is_err(), "{bad}");
        }
        let long = format!("https://a.example/{}", "x".repeat(RETURN_TO_CHARS_MAX));
        assert!(validate_return_to(&long).is_err());
        let exact = format!(
            "https://a.example/{}",
            "x".repeat(RETURN_TO_CHARS_MAX - "https://a.example/".len())
        );
        assert_eq!(validate_return_to(&exact), Ok(()));
    }

    #[test]
    fn return_to_is_added_as_a_query_parameter_before_the_fragment() {
        assert_eq!(
            success_url_with_return_to("https://hub.example/ok", "https://a.example/x?y=1&z=2"),
            "https://hub.example/ok?return_to=https%3A%2F%2Fa.example%2Fx%3Fy%3D1%26z%3D2"
        );
        assert_eq!(
            success_url_with_return_to(
                "https://hub.example/ok?s={CHECKOUT_SESSION_ID}#top",
                "https://a.example"
            ),
            "https://hub.example/ok?s={CHECKOUT_SESSION_ID}&return_to=https%3A%2F%2Fa.example#top"
        );
    }

    #[test]
    fn scrub_removes_key_like_tokens_and_truncates() {
        let scrubbed =
            scrub("Invalid API Key provided: sk_test_abc123 (also 'rk_live_x', key:whsec_y)");
        assert!(
            !scrubbed.contains("sk_test_abc123")
                && !scrubbed.contains("rk_live_x")
                && !scrubbed.contains("whsec_y")
        );
        assert_eq!(
            scrubbed,
            "Invalid API Key provided: <redacted> (also '<redacted>', key:<redacted>)"
        );
        // Masked keys as Stripe prints them lose their prefix; task_id-like words stay.
        assert_eq!(
            scrub("sk_test_****1234 in task_sk_1"),
            "<redacted>****1234 in task_sk_1"
        );
        let long = scrub(&"é".repeat(UPSTREAM_MESSAGE_CHARS_MAX + 10));
        assert_eq!(long.chars().count(), UPSTREAM_MESSAGE_CHARS_MAX + 1);
    }

    #[test]
    fn errors_map_onto_the_catalog() {
        let timeout = StripeError::Timeout.to_jecp();
        assert_eq!(
            (
                timeout.code,
                timeout.http_status(),
                timeout.retry_after_seconds
            ),
            (ErrorCode::ServiceDegraded, 503, Some(5))
        );

        let unreachable = StripeError::Unreachable("connect failed".into()).to_jecp();
        assert_eq!(
            (unreachable.code, unreachable.http_status()),
            (ErrorCode::ProviderUnreachable, 502)
        );
        assert_eq!(unreachable.retry_after_seconds, Some(10));

        let busy = StripeError::Rejected {
            status: 429,
            message: "slow down".into(),
        }
        .to_jecp();
        assert_eq!(
            (busy.code, busy.retry_after_seconds),
            (ErrorCode::ServiceDegraded, Some(2))
        );
        let down = StripeError::Rejected {
            status: 503,
            message: "down".into(),
        }
        .to_jecp();
        assert_eq!(
            (down.code, down.retry_after_seconds),
            (ErrorCode::ServiceDegraded, Some(5))
        );

        let refused = StripeError::Rejected {
            status: 401,
            message: "Invalid API Key provided: sk_test_x".into(),
        }
        .to_jecp();
        assert_eq!(
            (refused.code, refused.retry_after_seconds),
            (ErrorCode::ProviderUnreachable, None)
        );
        assert_eq!(
            refused.details.get("upstream_status"),
            Some(&Value::from(401))
        );
        assert!(!refused.message.contains("sk_test_x"));
        assert_eq!(
            refused.next_action.as_ref().map(|action| action.kind),
            Some("contact_operator")
        );

        let bad = StripeError::BadResponse("no id".into()).to_jecp();
        assert_eq!(bad.code, ErrorCode::ProviderUnreachable);

        let invalid = StripeError::InvalidRequest("returnTo has no host".into()).to_jecp();
        assert_eq!(
            (invalid.code, invalid.http_status()),
            (ErrorCode::ValidationFailed, 400)
        );
    }

    #[test]
    fn display_never_shows_a_secret_key() {
        let error = StripeError::Rejected {
            status: 401,
            message: "Invalid API Key provided: sk_live_123".into(),
        };
        let shown = error.to_string();
        assert!(
            shown.contains("HTTP 401") && !shown.contains("sk_live_123"),
            "{shown}"
        );
    }

    #[test]
    fn session_parsing_requires_id_and_url() {
        let body = br#"{"id":"cs_test_1","object":"checkout.session",
            "url":"https://checkout.stripe.com/c/pay/cs_test_1"}"#;
        let session = parse_session(body);
        assert_eq!(
            session,
            Ok(CheckoutSession {
                id: "cs_test_1".into(),
                url: "https://checkout.stripe.com/c/pay/cs_test_1".into()
            })
        );
        for body in [
            &b"not json"[..],
            br#"{"url":"https://x.example"}"#,
            br#"{"id":"cs_1","url":null}"#,
            br#"{"id":"","url":"https://x.example"}"#,
        ] {
            assert!(
                matches!(parse_session(body), Err(StripeError::BadResponse(_))),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn the_topup_response_uses_the_sdk_field_names() {
        let session = CheckoutSession {
            id: "cs_test_9".into(),
            url: "https://checkout.stripe.com/c/pay/cs_test_9".into(),
        };
        assert_eq!(
            session.to_json(),
            serde_json::json!({
                "url": "https://checkout.stripe.com/c/pay/cs_test_9",
                "sessionId": "cs_test_9",
            })
        );
    }

    #[test]
    fn checkout_request_validation_rejects_bad_fields() {
        let good = CheckoutRequest {
            agent_id: "agent-1".into(),
            amount_usd: 20,
            return_to: Some("https://agent.example/done".into()),
            idempotency_key: "topup-1".into(),
        };
        assert_eq!(good.validate(), Ok(()));
        let mut bad = good.clone();
        bad.amount_usd = 0;
        assert!(bad.validate().is_err());
        let mut bad = good.clone();
        bad.agent_id.clear();
        assert!(bad.validate().is_err());
        let mut bad = good.clone();
        bad.idempotency_key = "has space".into();
        assert!(bad.validate().is_err());
        let mut bad = good;
        bad.return_to = Some("mailto:x@y".into());
        assert!(bad.validate().is_err());
    }
}
