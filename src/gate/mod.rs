//! The gate: trust tiers from `total_calls` ([`tier`]), the per-agent
//! sliding-window rate limiter ([`rate_limit`]), and the two errors the gate
//! answers with (`RATE_LIMITED`, `INSUFFICIENT_TRUST`) in the shapes the spec
//! and the SDK read.

pub mod rate_limit;
pub mod tier;

pub use rate_limit::{RateDecision, RateLimiter, client_ip_key};
pub use tier::Tier;

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::protocol::{ErrorCode, JecpError, NextAction};

/// 429 `RATE_LIMITED` for a denied [`RateDecision`]: integer `Retry-After`
/// in 1..=600 (mirrored in `details.retry_after_seconds`, which the SDK
/// reads), `X-RateLimit-Limit/Remaining/Reset`, and `details.tier`,
/// `limit_rpm`, `reset_at` (RFC 3339).
pub fn rate_limited_error(decision: &RateDecision, tier_label: &str, now_s: i64) -> JecpError {
    let retry_after_s = decision.retry_after_s.clamp(1, 600);
    let mut error = JecpError::new(
        ErrorCode::RateLimited,
        format!(
            "Rate limit of {} requests per minute exceeded; retry in {retry_after_s} s.",
            decision.limit
        ),
    )
    .detail("tier", tier_label)
    .detail("limit_rpm", decision.limit)
    .retry_after(retry_after_s);
    let reset_s = now_s.saturating_add(
        i64::try_from(decision.reset_after_s.max(retry_after_s)).unwrap_or(i64::MAX),
    );
    if let Some(reset_at) = OffsetDateTime::from_unix_timestamp(reset_s)
        .ok()
        .and_then(|at| at.format(&Rfc3339).ok())
    {
        error = error.detail("reset_at", reset_at);
    }
    for (name, value) in decision.headers() {
        error = error.header(name, value);
    }
    error
}

/// 403 `INSUFFICIENT_TRUST` (spec 02 §6.4) with `details.required/current`
/// and `next_action: earn_trust` listing lower-tier alternatives.
pub fn trust_error(required: Tier, current: Tier, alternatives: Vec<String>) -> JecpError {
    JecpError::new(
        ErrorCode::InsufficientTrust,
        format!("This capability requires the {required} trust tier; the agent is {current}."),
    )
    .detail("required", required.as_str())
    .detail("current", current.as_str())
    .detail("required_calls", required.min_calls())
    .next_action(
        NextAction::new(
            "earn_trust",
            format!(
                "Complete more successful calls on capabilities open to {current} to reach {required} ({} calls).",
                required.min_calls()
            ),
        )
        .with("current_tier", current.as_str())
        .with("required_tier", required.as_str())
        .with("fallback", json!({ "alternative_capabilities": alternatives.into_iter().map(Value::from).collect::<Vec<_>>() })),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::HubLinks;

    #[test]
    fn rate_limited_error_has_headers_details_and_retry_after() {
        let decision = RateDecision {
            allowed: false,
            limit: 10,
            remaining: 0,
            reset_after_s: 41,
            retry_after_s: 41,
        };
        let error = rate_limited_error(&decision, "bronze", 1_900_000_000);
        assert_eq!(error.http_status(), 429);
        assert_eq!(error.retry_after_seconds, Some(41));
        assert_eq!(error.details["retry_after_seconds"], 41);
        assert_eq!(error.details["tier"], "bronze");
        assert_eq!(error.details["limit_rpm"], 10);
        assert_eq!(error.details["reset_at"], "2030-03-17T17:47:21Z");
        assert!(error.headers.contains(&("X-RateLimit-Limit", "10".into())));
        assert!(
            error
                .headers
                .contains(&("X-RateLimit-Remaining", "0".into()))
        );
        assert!(error.headers.contains(&("X-RateLimit-Reset", "41".into())));
        let clamped = RateDecision {
            retry_after_s: 0,
            reset_after_s: 0,
            ..decision
        };
        assert_eq!(
            rate_limited_error(&clamped, "bronze", 0).retry_after_seconds,
            Some(1)
        );
    }

    #[test]
    fn trust_error_matches_spec_shape() {
        let error = trust_error(Tier::Platinum, Tier::Bronze, vec!["content-factory".into()]);
        let links = HubLinks {
            public_url: "https://hub.example".into(),
            allowed_topup_usd: vec![5],
        };
        let body = error.to_envelope(None, &links);
        assert_eq!(error.http_status(), 403);
        assert_eq!(body["error"]["code"], "INSUFFICIENT_TRUST");
        assert_eq!(body["error"]["details"]["required"], "platinum");
        assert_eq!(body["error"]["details"]["current"], "bronze");
        assert_eq!(body["next_action"]["type"], "earn_trust");
        assert_eq!(body["next_action"]["current_tier"], "bronze");
        assert_eq!(body["next_action"]["required_tier"], "platinum");
        assert_eq!(
            body["next_action"]["fallback"]["alternative_capabilities"],
            json!(["content-factory"])
        );
    }
}
