//! The JECP error catalog (spec `03-errors.md`) and the error envelope.
//!
//! Every failure the Hub reports is a [`JecpError`]: a catalog [`ErrorCode`]
//! (which fixes the HTTP status, retry-safety and documentation URL), a
//! one-line message, code-specific `details`, and an optional `next_action`
//! telling the agent how to recover. [`JecpError::to_envelope`] renders the
//! shape CLIENT-COMPAT §6 recommends: `documentation_url` both in `error` and
//! in `error.details`, `hint` and `description` both on `next_action`.
//!
//! This module knows nothing about HTTP libraries: extra response headers are
//! plain `(name, value)` pairs that the `http` layer copies onto the response.

use serde_json::{Map, Value, json};

/// Base of the canonical error documentation (spec 03 §2).
pub const DOCUMENTATION_BASE: &str = "https://jecp.dev/errors/";

macro_rules! error_codes {
    ($( $(#[$doc:meta])* $variant:ident = ($code:literal, $status:literal, $retry_safe:literal), )*) => {
        /// Every error code this Hub can put on the wire.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ErrorCode { $( $(#[$doc])* $variant, )* }

        impl ErrorCode {
            /// Every code, in catalog order.
            pub const ALL: &'static [ErrorCode] = &[ $( ErrorCode::$variant, )* ];

            /// The `UPPER_SNAKE_CASE` code string.
            pub const fn as_str(self) -> &'static str {
                match self { $( ErrorCode::$variant => $code, )* }
            }

            /// The HTTP status the spec assigns to the code.
            pub const fn http_status(self) -> u16 {
                match self { $( ErrorCode::$variant => $status, )* }
            }

            /// Whether the spec calls a retry safe (possibly after a fix such
            /// as waiting, topping up or renewing a mandate).
            pub const fn retry_safe(self) -> bool {
                match self { $( ErrorCode::$variant => $retry_safe, )* }
            }
        }
    };
}

error_codes! {
    // §3.1 Authentication & authorization
    AuthRequired = ("AUTH_REQUIRED", 401, true),
    InvalidApiKey = ("INVALID_API_KEY", 401, false),
    /// The agent exists and the key matched, but the operator froze it or it
    /// was revoked (spec 02 §9.1). The SDK maps this code to `AuthError`.
    InvalidAgent = ("INVALID_AGENT", 401, false),
    MandateExpired = ("MANDATE_EXPIRED", 401, true),
    MandateInsufficientBudget = ("MANDATE_INSUFFICIENT_BUDGET", 402, true),
    /// The SDK's name for `MANDATE_INSUFFICIENT_BUDGET` (CLIENT-COMPAT §12.6).
    InsufficientBudget = ("INSUFFICIENT_BUDGET", 402, true),
    ProvenanceMismatch = ("PROVENANCE_MISMATCH", 403, true),
    InsufficientTrust = ("INSUFFICIENT_TRUST", 403, false),
    AgentNotFound = ("AGENT_NOT_FOUND", 404, false),
    // §3.2 Validation
    InvalidRequest = ("INVALID_REQUEST", 400, false),
    UnsupportedVersion = ("UNSUPPORTED_VERSION", 400, false),
    ValidationFailed = ("VALIDATION_FAILED", 400, false),
    InputSchemaViolation = ("INPUT_SCHEMA_VIOLATION", 400, false),
    UnsupportedMediaType = ("UNSUPPORTED_MEDIA_TYPE", 415, true),
    InputTooLarge = ("INPUT_TOO_LARGE", 413, false),
    DuplicateRequest = ("DUPLICATE_REQUEST", 409, false),
    // §3.3 Routing
    CapabilityNotFound = ("CAPABILITY_NOT_FOUND", 404, false),
    ActionNotFound = ("ACTION_NOT_FOUND", 404, false),
    CapabilityDeprecated = ("CAPABILITY_DEPRECATED", 410, false),
    ProviderNotFound = ("PROVIDER_NOT_FOUND", 404, false),
    // §3.4 Billing
    WalletInsufficientBalance = ("WALLET_INSUFFICIENT_BALANCE", 402, true),
    /// The alias the SDK types (`InsufficientBalanceError`); the Hub emits this one.
    InsufficientBalance = ("INSUFFICIENT_BALANCE", 402, true),
    PaymentRequired = ("PAYMENT_REQUIRED", 402, true),
    // §3.5 Throttling
    RateLimited = ("RATE_LIMITED", 429, true),
    // §3.5.1 Streaming
    NotStreamable = ("NOT_STREAMABLE", 406, true),
    StreamInProgress = ("STREAM_IN_PROGRESS", 409, true),
    StreamTimeout = ("STREAM_TIMEOUT", 200, true),
    StreamIncomplete = ("STREAM_INCOMPLETE", 200, true),
    ProviderDisconnect = ("PROVIDER_DISCONNECT", 200, true),
    // §3.5.2 Composites
    CompositeStepFailed = ("COMPOSITE_STEP_FAILED", 502, false),
    CompositeBindError = ("COMPOSITE_BIND_ERROR", 422, false),
    CompositeDepthExceeded = ("COMPOSITE_DEPTH_EXCEEDED", 422, false),
    CompositeTimeout = ("COMPOSITE_TIMEOUT", 504, true),
    CompositeRefundFailed = ("COMPOSITE_REFUND_FAILED", 502, false),
    // §3.6 Providers
    ProviderError = ("PROVIDER_ERROR", 502, false),
    ProviderUnavailable = ("PROVIDER_UNAVAILABLE", 503, true),
    /// Non-streaming provider timeout (§3.6). The streaming variant of the
    /// same code is an SSE `cancelled` event, not an HTTP status.
    ProviderTimeout = ("PROVIDER_TIMEOUT", 504, true),
    /// The SDK's `ProviderError` code for a Provider the Hub could not reach.
    ProviderUnreachable = ("PROVIDER_UNREACHABLE", 502, true),
    UrlBlockedSsrf = ("URL_BLOCKED_SSRF", 422, false),
    // §3.7 Hub
    InternalError = ("INTERNAL_ERROR", 500, true),
    ServiceDegraded = ("SERVICE_DEGRADED", 503, true),
    ExecutionFailed = ("EXECUTION_FAILED", 500, false),
    OutputInvalid = ("OUTPUT_INVALID", 502, false),
    // §3.8 x402
    X402PaymentInvalid = ("X402_PAYMENT_INVALID", 422, true),
    X402NotAccepted = ("X402_NOT_ACCEPTED", 422, false),
    X402SettlementTimeout = ("X402_SETTLEMENT_TIMEOUT", 504, true),
    X402FacilitatorUnreachable = ("X402_FACILITATOR_UNREACHABLE", 502, true),
    X402SettlementReused = ("X402_SETTLEMENT_REUSED", 409, false),
    // §3.9 Provider self-service (also used for agent key rotation)
    DnsVerificationFailed = ("DNS_VERIFICATION_FAILED", 422, true),
    Rotation24hCap = ("ROTATION_24H_CAP", 429, true),
    RotationRace = ("ROTATION_RACE", 409, true),
    // Hub-level codes outside the spec's tables (HTTP plumbing and operator surface).
    /// No route at this path.
    NotFound = ("NOT_FOUND", 404, false),
    /// Known path, wrong method; the response carries `Allow`.
    MethodNotAllowed = ("METHOD_NOT_ALLOWED", 405, false),
    /// The client took too long to send its request.
    RequestTimeout = ("REQUEST_TIMEOUT", 408, true),
    /// A resource the caller named (a transaction, an agent on the operator API) does not exist.
    ResourceNotFound = ("RESOURCE_NOT_FOUND", 404, false),
    /// A state conflict outside idempotency (for example a duplicate agent name).
    Conflict = ("CONFLICT", 409, false),
    /// The operator API is disabled or the admin token did not match.
    OperatorAuthFailed = ("OPERATOR_AUTH_FAILED", 401, false),
    /// Wallet top-up is not configured on this Hub.
    TopupUnavailable = ("TOPUP_UNAVAILABLE", 503, false),
}

impl ErrorCode {
    /// `https://jecp.dev/errors/<lowercase-code>`.
    pub fn documentation_url(self) -> String {
        format!("{DOCUMENTATION_BASE}{}", self.as_str().to_ascii_lowercase())
    }

    /// Looks a code up by its wire string.
    pub fn from_code_str(code: &str) -> Option<ErrorCode> {
        ErrorCode::ALL
            .iter()
            .copied()
            .find(|candidate| candidate.as_str() == code)
    }
}

/// A machine-readable recovery hint (spec 03 §4). `kind` is the `type`
/// string; `fields` are the code-specific members (`ui`, `api`, …).
#[derive(Clone, Debug, PartialEq)]
pub struct NextAction {
    pub kind: &'static str,
    pub hint: String,
    pub fields: Map<String, Value>,
}

impl NextAction {
    pub fn new(kind: &'static str, hint: impl Into<String>) -> NextAction {
        NextAction {
            kind,
            hint: hint.into(),
            fields: Map::new(),
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> NextAction {
        self.fields.insert(key.to_owned(), value.into());
        self
    }

    /// `type`, the fields, then `hint` and `description` carrying the same
    /// text (the SDK reads `hint`, the spec writes `description`).
    pub fn to_json(&self) -> Value {
        let mut object = Map::new();
        object.insert("type".into(), Value::from(self.kind));
        for (key, value) in &self.fields {
            object.insert(key.clone(), value.clone());
        }
        object.insert("hint".into(), Value::from(self.hint.clone()));
        object.insert("description".into(), Value::from(self.hint.clone()));
        Value::Object(object)
    }
}

/// The few facts about this Hub that recovery hints point at.
#[derive(Clone, Debug)]
pub struct HubLinks {
    /// Public base URL without a trailing slash, e.g. `https://hub.example`.
    pub public_url: String,
    /// Top-up amounts the Hub accepts, in whole USD.
    pub allowed_topup_usd: Vec<u64>,
}

impl HubLinks {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.public_url, path)
    }
}

/// One error, ready to be rendered as a JECP envelope.
#[derive(Clone, Debug, PartialEq)]
pub struct JecpError {
    pub code: ErrorCode,
    pub message: String,
    pub details: Map<String, Value>,
    /// `None` means "use the code's default hint", see [`JecpError::without_next_action`].
    pub next_action: Option<NextAction>,
    pub suppress_default_next_action: bool,
    /// Integer seconds for the `Retry-After` header (and `details.retry_after_seconds`).
    pub retry_after_seconds: Option<u32>,
    /// Extra response headers (`Sunset`, `Link`, `X-RateLimit-*`, `Allow`, …).
    pub headers: Vec<(&'static str, String)>,
    /// The x402 challenge, a sibling of `error` (spec 03 §3.4).
    pub payment: Option<Value>,
}

impl JecpError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> JecpError {
        JecpError {
            code,
            message: message.into(),
            details: Map::new(),
            next_action: None,
            suppress_default_next_action: false,
            retry_after_seconds: None,
            headers: Vec::new(),
            payment: None,
        }
    }

    pub fn detail(mut self, key: &str, value: impl Into<Value>) -> JecpError {
        self.details.insert(key.to_owned(), value.into());
        self
    }

    pub fn next_action(mut self, action: NextAction) -> JecpError {
        self.next_action = Some(action);
        self
    }

    /// Sends no `next_action` even where the code has a default.
    pub fn without_next_action(mut self) -> JecpError {
        self.next_action = None;
        self.suppress_default_next_action = true;
        self
    }

    /// Sets `Retry-After` (clamped to the spec's `[1, 600]`) and mirrors it in
    /// `details.retry_after_seconds`.
    pub fn retry_after(mut self, seconds: u64) -> JecpError {
        let seconds = seconds.clamp(1, 600) as u32;
        self.retry_after_seconds = Some(seconds);
        self.details
            .insert("retry_after_seconds".into(), Value::from(seconds));
        self
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> JecpError {
        self.headers.push((name, value.into()));
        self
    }

    pub fn http_status(&self) -> u16 {
        self.code.http_status()
    }

    /// Shorthand for a 500 that hides the cause from the client (spec 03
    /// §3.7: no internal text in `details`). Log the cause before calling.
    pub fn internal() -> JecpError {
        JecpError::new(
            ErrorCode::InternalError,
            "The Hub hit an unexpected condition; the request had no effect.",
        )
    }

    /// The store could not take the write (queue full, disk fault).
    pub fn degraded(message: impl Into<String>, retry_after_seconds: u64) -> JecpError {
        JecpError::new(ErrorCode::ServiceDegraded, message).retry_after(retry_after_seconds)
    }

    /// The full envelope for `/v1/...` endpoints.
    pub fn to_envelope(&self, request_id: Option<&str>, links: &HubLinks) -> Value {
        let documentation_url = self.documentation_url();
        let mut details = self.details.clone();
        details.insert(
            "documentation_url".into(),
            Value::from(documentation_url.clone()),
        );
        let mut envelope = Map::new();
        envelope.insert("jecp".into(), Value::from("1.0"));
        if let Some(id) = request_id {
            envelope.insert("id".into(), Value::from(id));
        }
        envelope.insert("status".into(), Value::from("failed"));
        envelope.insert(
            "error".into(),
            json!({
                "code": self.code.as_str(),
                "message": self.message,
                "details": details,
                "documentation_url": documentation_url,
            }),
        );
        if let Some(action) = self.effective_next_action(links) {
            envelope.insert("next_action".into(), action.to_json());
        }
        if let Some(payment) = &self.payment {
            envelope.insert("payment".into(), payment.clone());
        }
        Value::Object(envelope)
    }

    /// Deep link: `…/errors/<code>#<subcause>` when a subcause is present.
    fn documentation_url(&self) -> String {
        let base = self.code.documentation_url();
        match self.details.get("subcause").and_then(Value::as_str) {
            Some(subcause) => format!("{base}#{subcause}"),
            None => base,
        }
    }

    fn effective_next_action(&self, links: &HubLinks) -> Option<NextAction> {
        if let Some(action) = &self.next_action {
            return Some(action.clone());
        }
        if self.suppress_default_next_action {
            return None;
        }
        default_next_action(self, links)
    }
}

/// The recovery hint a code gets when the caller did not set one.
fn default_next_action(error: &JecpError, links: &HubLinks) -> Option<NextAction> {
    use ErrorCode::*;
    let action = match error.code {
        AuthRequired | InvalidApiKey => NextAction::new(
            "register",
            "Register an agent to receive an agent_id and api_key, then send them as X-Agent-ID and X-API-Key.",
        )
        .with("ui", links.url("/register"))
        .with("api", links.url("/api/agents/register"))
        .with("method", "POST")
        .with("body_example", json!({"name": "My Agent", "agent_type": "automation"})),
        WalletInsufficientBalance | InsufficientBalance | PaymentRequired => topup_action(links),
        MandateExpired => NextAction::new("renew_mandate", "Issue a new mandate with a future expires_at and retry."),
        MandateInsufficientBudget | InsufficientBudget => {
            NextAction::new("increase_mandate", "Raise mandate.budget_usdc to at least the action's price and retry.")
        }
        RateLimited | ServiceDegraded | RequestTimeout => {
            let seconds = error.retry_after_seconds.unwrap_or(1);
            NextAction::new("retry_after", format!("Wait {seconds} s, then retry with the same id."))
                .with("retry_after_seconds", seconds)
        }
        ValidationFailed | InvalidRequest | UnsupportedVersion => NextAction::new(
            "lookup_schema",
            "Fix the request envelope; the invoke request shape is described in the agent guide.",
        )
        .with("schema_url", links.url("/.well-known/agent-guide.json")),
        ActionNotFound | InputSchemaViolation => {
            let schema_url = error
                .details
                .get("schema_url")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| links.url("/v1/capabilities"));
            NextAction::new("lookup_schema", "Fetch the capability to see its actions and input schema.")
                .with("schema_url", schema_url)
        }
        CapabilityNotFound | ProviderNotFound => NextAction::new("discover", "List capabilities to find one that exists.")
            .with("api", links.url("/v1/capabilities")),
        ProvenanceMismatch => NextAction::new(
            "refresh_mandate",
            "Compute a fresh v2 provenance_hash with a new nonce and the current time.",
        ),
        TopupUnavailable => NextAction::new(
            "contact_operator",
            "This Hub has no card top-up configured; ask the Hub operator to credit the wallet.",
        )
        .with("ui", links.url("/.well-known/agent.json")),
        _ => return None,
    };
    Some(action)
}

/// `next_action: topup` with the fields spec 03 §4.3 shows.
pub fn topup_action(links: &HubLinks) -> NextAction {
    NextAction::new("topup", "Top up the wallet, then retry with the same id.")
        .with("ui", links.url("/agent/topup"))
        .with("api", links.url("/api/agents/topup"))
        .with("method", "POST")
        .with("headers", json!(["X-Agent-ID", "X-API-Key"]))
        .with(
            "body_example",
            json!({"amount": links.allowed_topup_usd.first().copied().unwrap_or(5)}),
        )
        .with("allowed_amounts_usd", json!(links.allowed_topup_usd))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links() -> HubLinks {
        HubLinks {
            public_url: "https://hub.example".into(),
            allowed_topup_usd: vec![5, 20, 100],
        }
    }

    /// Pins every code to the status in spec 03's tables (and CLIENT-COMPAT
    /// for the SDK aliases). A change here is a wire-breaking change.
    #[test]
    fn every_code_has_the_spec_status() {
        let expected: &[(&str, u16)] = &[
            ("AUTH_REQUIRED", 401),
            ("INVALID_API_KEY", 401),
            ("INVALID_AGENT", 401),
            ("MANDATE_EXPIRED", 401),
            ("MANDATE_INSUFFICIENT_BUDGET", 402),
            ("INSUFFICIENT_BUDGET", 402),
            ("PROVENANCE_MISMATCH", 403),
            ("INSUFFICIENT_TRUST", 403),
            ("AGENT_NOT_FOUND", 404),
            ("INVALID_REQUEST", 400),
            ("UNSUPPORTED_VERSION", 400),
            ("VALIDATION_FAILED", 400),
            ("INPUT_SCHEMA_VIOLATION", 400),
            ("UNSUPPORTED_MEDIA_TYPE", 415),
            ("INPUT_TOO_LARGE", 413),
            ("DUPLICATE_REQUEST", 409),
            ("CAPABILITY_NOT_FOUND", 404),
            ("ACTION_NOT_FOUND", 404),
            ("CAPABILITY_DEPRECATED", 410),
            ("PROVIDER_NOT_FOUND", 404),
            ("WALLET_INSUFFICIENT_BALANCE", 402),
            ("INSUFFICIENT_BALANCE", 402),
            ("PAYMENT_REQUIRED", 402),
            ("RATE_LIMITED", 429),
            ("NOT_STREAMABLE", 406),
            ("STREAM_IN_PROGRESS", 409),
            ("STREAM_TIMEOUT", 200),
            ("STREAM_INCOMPLETE", 200),
            ("PROVIDER_DISCONNECT", 200),
            ("COMPOSITE_STEP_FAILED", 502),
            ("COMPOSITE_BIND_ERROR", 422),
            ("COMPOSITE_DEPTH_EXCEEDED", 422),
            ("COMPOSITE_TIMEOUT", 504),
            ("COMPOSITE_REFUND_FAILED", 502),
            ("PROVIDER_ERROR", 502),
            ("PROVIDER_UNAVAILABLE", 503),
            ("PROVIDER_TIMEOUT", 504),
            ("PROVIDER_UNREACHABLE", 502),
            ("URL_BLOCKED_SSRF", 422),
            ("INTERNAL_ERROR", 500),
            ("SERVICE_DEGRADED", 503),
            ("EXECUTION_FAILED", 500),
            ("OUTPUT_INVALID", 502),
            ("X402_PAYMENT_INVALID", 422),
            ("X402_NOT_ACCEPTED", 422),
            ("X402_SETTLEMENT_TIMEOUT", 504),
            ("X402_FACILITATOR_UNREACHABLE", 502),
            ("X402_SETTLEMENT_REUSED", 409),
            ("DNS_VERIFICATION_FAILED", 422),
            ("ROTATION_24H_CAP", 429),
            ("ROTATION_RACE", 409),
            ("NOT_FOUND", 404),
            ("METHOD_NOT_ALLOWED", 405),
            ("REQUEST_TIMEOUT", 408),
            ("RESOURCE_NOT_FOUND", 404),
            ("CONFLICT", 409),
            ("OPERATOR_AUTH_FAILED", 401),
            ("TOPUP_UNAVAILABLE", 503),
        ];
        assert_eq!(
            expected.len(),
            ErrorCode::ALL.len(),
            "a code was added without pinning its status"
        );
        for (code, status) in expected {
            let parsed = ErrorCode::from_code_str(code).unwrap_or_else(|| panic!("{code} missing"));
            assert_eq!(parsed.http_status(), *status, "{code}");
            assert_eq!(parsed.as_str(), *code);
        }
    }

    #[test]
    fn envelope_has_documentation_url_twice_and_hint_with_description() {
        let error = JecpError::new(ErrorCode::RateLimited, "slow down").retry_after(27);
        let body = error.to_envelope(Some("req-1"), &links());
        assert_eq!(body["jecp"], "1.0");
        assert_eq!(body["id"], "req-1");
        assert_eq!(body["status"], "failed");
        assert_eq!(body["error"]["code"], "RATE_LIMITED");
        assert_eq!(
            body["error"]["documentation_url"],
            "https://jecp.dev/errors/rate_limited"
        );
        assert_eq!(
            body["error"]["details"]["documentation_url"],
            "https://jecp.dev/errors/rate_limited"
        );
        assert_eq!(body["error"]["details"]["retry_after_seconds"], 27);
        assert_eq!(body["next_action"]["type"], "retry_after");
        assert_eq!(
            body["next_action"]["hint"],
            body["next_action"]["description"]
        );
        assert_eq!(error.retry_after_seconds, Some(27));
    }

    #[test]
    fn retry_after_is_clamped_to_spec_range() {
        assert_eq!(
            JecpError::new(ErrorCode::RateLimited, "x")
                .retry_after(0)
                .retry_after_seconds,
            Some(1)
        );
        assert_eq!(
            JecpError::new(ErrorCode::RateLimited, "x")
                .retry_after(9_999)
                .retry_after_seconds,
            Some(600)
        );
    }

    #[test]
    fn default_hints_point_at_recovery() {
        let body = JecpError::new(ErrorCode::AuthRequired, "x").to_envelope(None, &links());
        assert_eq!(body["next_action"]["type"], "register");
        assert_eq!(
            body["next_action"]["api"],
            "https://hub.example/api/agents/register"
        );
        assert!(body.get("id").is_none());
        let body = JecpError::new(ErrorCode::InsufficientBalance, "x").to_envelope(None, &links());
        assert_eq!(body["next_action"]["type"], "topup");
        assert_eq!(
            body["next_action"]["allowed_amounts_usd"],
            json!([5, 20, 100])
        );
        let body = JecpError::new(ErrorCode::MandateExpired, "x").to_envelope(None, &links());
        assert_eq!(body["next_action"]["type"], "renew_mandate");
        let body = JecpError::new(ErrorCode::InternalError, "x").to_envelope(None, &links());
        assert!(body.get("next_action").is_none());
        let body = JecpError::new(ErrorCode::AuthRequired, "x")
            .without_next_action()
            .to_envelope(None, &links());
        assert!(body.get("next_action").is_none());
    }

    #[test]
    fn subcause_deep_links() {
        let body = JecpError::new(ErrorCode::ProvenanceMismatch, "x")
            .detail("subcause", "nonce_replay")
            .to_envelope(None, &links());
        assert_eq!(
            body["error"]["documentation_url"],
            "https://jecp.dev/errors/provenance_mismatch#nonce_replay"
        );
    }
}
