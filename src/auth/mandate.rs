//! The Mandate (spec 02 §4): a per-call authorization that may carry the
//! credentials, a budget cap, an expiry and a provenance hash.
//!
//! Validation order (spec 02 §4.4) is: credentials → [`check_expiry`] →
//! provenance ([`crate::auth::provenance`]) → [`check_budget`]. The budget
//! check needs the price, so the invoke pipeline calls it once the action is
//! resolved. This module only parses and checks; it never logs a mandate
//! (its `Debug` redacts the key and the provenance hash).

use std::fmt;

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::money::Micros;
use crate::protocol::{ErrorCode, JecpError};

/// Spec 02 §4.2: `budget_usdc` is at most 1000.
pub const MAX_BUDGET: Micros = Micros::from_usdc(1_000);
/// Longest accepted `agent_id` / `api_key` / `expires_at` text.
pub const MAX_CREDENTIAL_CHARS: usize = 256;
/// Longest accepted `provenance_hash` (a v2 value with the longest nonce is ~350).
pub const MAX_PROVENANCE_CHARS: usize = 512;

/// The fields of a request's `mandate` object this Hub acts on.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Mandate {
    pub agent_id: Option<String>,
    pub api_key: Option<String>,
    pub budget_usdc: Option<Micros>,
    /// As sent: RFC 3339, or unix seconds (a JSON integer is kept as its decimal text).
    pub expires_at: Option<String>,
    pub provenance_hash: Option<String>,
}

impl fmt::Debug for Mandate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mandate")
            .field("agent_id", &self.agent_id)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("budget_usdc", &self.budget_usdc)
            .field("expires_at", &self.expires_at)
            .field(
                "provenance_hash",
                &self.provenance_hash.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl Mandate {
    /// Reads the `mandate` JSON value. Wrong types, bad amounts and
    /// unparseable expiries are collected into one 400 `VALIDATION_FAILED`
    /// with `details.errors[{path: "/mandate/…", reason}]`. `null` fields
    /// count as absent; unknown fields are ignored (forward compatibility).
    pub fn from_json(value: &Value) -> Result<Mandate, JecpError> {
        let Some(object) = value.as_object() else {
            return Err(validation_failed(vec![(
                "/mandate".into(),
                "must be an object".into(),
            )]));
        };
        let mut problems: Vec<(String, String)> = Vec::new();
        let mut mandate = Mandate::default();
        let text_field = |name: &str,
                          max_chars: usize,
                          problems: &mut Vec<(String, String)>|
         -> Option<String> {
            match object.get(name) {
                None | Some(Value::Null) => None,
                Some(Value::String(text)) if text.chars().count() <= max_chars => {
                    Some(text.clone())
                }
                Some(Value::String(_)) => {
                    problems.push((
                        format!("/mandate/{name}"),
                        format!("must be at most {max_chars} characters"),
                    ));
                    None
                }
                Some(_) => {
                    problems.push((format!("/mandate/{name}"), "must be a string".into()));
                    None
                }
            }
        };
        mandate.agent_id = text_field("agent_id", MAX_CREDENTIAL_CHARS, &mut problems);
        mandate.api_key = text_field("api_key", MAX_CREDENTIAL_CHARS, &mut problems);
        mandate.provenance_hash =
            text_field("provenance_hash", MAX_PROVENANCE_CHARS, &mut problems);
        match object.get("budget_usdc") {
            None | Some(Value::Null) => {}
            Some(raw @ (Value::Number(_) | Value::String(_))) => match Micros::from_json(raw) {
                Ok(amount) if amount <= MAX_BUDGET => mandate.budget_usdc = Some(amount),
                Ok(_) => {
                    problems.push(("/mandate/budget_usdc".into(), "must be at most 1000".into()))
                }
                Err(error) => problems.push(("/mandate/budget_usdc".into(), error.to_string())),
            },
            Some(_) => problems.push(("/mandate/budget_usdc".into(), "must be a number".into())),
        }
        match object.get("expires_at") {
            None | Some(Value::Null) => {}
            Some(Value::Number(number)) => match number.as_i64() {
                Some(seconds) => mandate.expires_at = Some(seconds.to_string()),
                None => problems.push((
                    "/mandate/expires_at".into(),
                    "must be whole unix seconds".into(),
                )),
            },
            Some(Value::String(text))
                if text.len() <= MAX_CREDENTIAL_CHARS && parse_expiry_s(text).is_some() =>
            {
                mandate.expires_at = Some(text.clone());
            }
            Some(Value::String(_)) => problems.push((
                "/mandate/expires_at".into(),
                "must be an RFC 3339 date-time such as 2026-12-31T23:59:59Z, or unix seconds"
                    .into(),
            )),
            Some(_) => problems.push(("/mandate/expires_at".into(), "must be a string".into())),
        }
        if problems.is_empty() {
            Ok(mandate)
        } else {
            Err(validation_failed(problems))
        }
    }
}

/// 401 `MANDATE_EXPIRED` (next_action `renew_mandate`) when `expires_at` is
/// before `now_s`. The instant itself is still valid (spec: `expires_at < now()`).
pub fn check_expiry(mandate: &Mandate, now_s: i64) -> Result<(), JecpError> {
    let Some(text) = mandate.expires_at.as_deref() else {
        return Ok(());
    };
    let Some(expires_at_s) = parse_expiry_s(text) else {
        return Err(validation_failed(vec![(
            "/mandate/expires_at".into(),
            "must be an RFC 3339 date-time or unix seconds".into(),
        )]));
    };
    if expires_at_s < i128::from(now_s) * 1_000_000_000 {
        let mut error = JecpError::new(
            ErrorCode::MandateExpired,
            "The mandate's expires_at is in the past; issue a new mandate.",
        )
        .detail("expires_at", text);
        if let Some(server_time) = rfc3339(now_s) {
            error = error.detail("server_time", server_time);
        }
        return Err(error);
    }
    Ok(())
}

/// 402 `INSUFFICIENT_BUDGET` when the call costs more than `budget_usdc`
/// (a per-call cap in v1.0; no budget means no cap).
pub fn check_budget(mandate: &Mandate, cost: Micros) -> Result<(), JecpError> {
    match mandate.budget_usdc {
        Some(budget) if cost > budget => Err(JecpError::new(
            ErrorCode::InsufficientBudget,
            format!("This call costs {cost} USDC but mandate.budget_usdc allows {budget} USDC."),
        )
        .detail("required_usdc", cost.to_json())
        .detail("remaining_usdc", budget.to_json())
        .detail("budget_usdc", budget.to_json())),
        _ => Ok(()),
    }
}

/// Unix nanoseconds of an RFC 3339 date-time or of decimal unix seconds.
fn parse_expiry_s(text: &str) -> Option<i128> {
    let text = text.trim();
    // Unix seconds, possibly negative (a JSON integer before 1970 is simply expired).
    let digits = text.strip_prefix('-').unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        let seconds: i64 = text.parse().ok()?;
        return Some(i128::from(seconds) * 1_000_000_000);
    }
    OffsetDateTime::parse(text, &Rfc3339)
        .ok()
        .map(OffsetDateTime::unix_timestamp_nanos)
}

/// `unix seconds` as RFC 3339 (UTC), for `details`.
pub(crate) fn rfc3339(unix_s: i64) -> Option<String> {
    OffsetDateTime::from_unix_timestamp(unix_s)
        .ok()?
        .format(&Rfc3339)
        .ok()
}

fn validation_failed(problems: Vec<(String, String)>) -> JecpError {
    let errors: Vec<Value> = problems
        .into_iter()
        .map(|(path, reason)| json!({"path": path, "reason": reason}))
        .collect();
    JecpError::new(
        ErrorCode::ValidationFailed,
        "The mandate object is invalid.",
    )
    .detail("errors", errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_fields_and_ignores_unknown_ones() {
        let mandate = Mandate::from_json(&json!({
            "agent_id": "jh_ag_x", "api_key": "jh_ak_y", "budget_usdc": 0.05,
            "expires_at": "2026-12-31T23:59:59Z", "provenance_hash": "v2:1:2:3", "callback_url": "https://x"
        }))
        .unwrap();
        assert_eq!(mandate.budget_usdc, Some(Micros::new(50_000).unwrap()));
        assert_eq!(mandate.expires_at.as_deref(), Some("2026-12-31T23:59:59Z"));
        let unix =
            Mandate::from_json(&json!({"expires_at": 1_900_000_000, "budget_usdc": null})).unwrap();
        assert_eq!(unix.expires_at.as_deref(), Some("1900000000"));
        assert_eq!(unix.budget_usdc, None);
    }

    #[test]
    fn collects_every_type_error_with_paths() {
        let error = Mandate::from_json(&json!({
            "agent_id": 5, "api_key": ["k"], "budget_usdc": -1, "expires_at": "tomorrow", "provenance_hash": {}
        }))
        .unwrap_err();
        assert_eq!(error.code, ErrorCode::ValidationFailed);
        let paths: Vec<&str> = error.details["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["path"].as_str().unwrap())
            .collect();
        assert_eq!(
            paths,
            [
                "/mandate/agent_id",
                "/mandate/api_key",
                "/mandate/provenance_hash",
                "/mandate/budget_usdc",
                "/mandate/expires_at"
            ]
        );
        assert!(Mandate::from_json(&json!({"budget_usdc": 1000.000001})).is_err());
        assert!(Mandate::from_json(&json!({"budget_usdc": 1000})).is_ok());
        assert!(Mandate::from_json(&json!("jh_ak_text")).is_err());
        assert!(
            Mandate::from_json(&json!({"api_key": "k".repeat(MAX_CREDENTIAL_CHARS + 1)})).is_err()
        );
    }

    #[test]
    fn expiry_is_strictly_before_now() {
        let at = |text: &str| Mandate {
            expires_at: Some(text.into()),
            ..Mandate::default()
        };
        let now = 1_900_000_000;
        assert!(check_expiry(&at("1900000000"), now).is_ok());
        assert!(check_expiry(&at("2030-03-17T17:46:40Z"), now).is_ok());
        assert!(check_expiry(&at("2030-03-17T17:46:39.999Z"), now).is_err());
        let error = check_expiry(&at("2030-03-17T17:46:39Z"), now).unwrap_err();
        assert_eq!(error.code, ErrorCode::MandateExpired);
        assert_eq!(error.http_status(), 401);
        assert_eq!(error.details["server_time"], "2030-03-17T17:46:40Z");
        assert!(check_expiry(&Mandate::default(), now).is_ok());
        let negative = Mandate::from_json(&json!({"expires_at": -5})).unwrap();
        assert_eq!(
            check_expiry(&negative, now).unwrap_err().code,
            ErrorCode::MandateExpired
        );
        assert_eq!(
            check_expiry(&at("garbage"), now).unwrap_err().code,
            ErrorCode::ValidationFailed
        );
    }

    #[test]
    fn budget_is_a_per_call_cap() {
        let mandate = Mandate {
            budget_usdc: Some(Micros::parse("0.01").unwrap()),
            ..Mandate::default()
        };
        assert!(check_budget(&mandate, Micros::parse("0.01").unwrap()).is_ok());
        let error = check_budget(&mandate, Micros::parse("0.010001").unwrap()).unwrap_err();
        assert_eq!(error.code, ErrorCode::InsufficientBudget);
        assert_eq!(error.http_status(), 402);
        assert_eq!(error.details["required_usdc"], json!(0.010001));
        assert_eq!(error.details["remaining_usdc"], json!(0.01));
        assert!(check_budget(&Mandate::default(), Micros::MAX).is_ok());
    }

    #[test]
    fn debug_redacts_secrets() {
        let mandate = Mandate {
            api_key: Some("jh_ak_SECRET".into()),
            provenance_hash: Some("v2:SECRET".into()),
            ..Mandate::default()
        };
        let text = format!("{mandate:?}");
        assert!(!text.contains("SECRET"), "{text}");
    }
}
