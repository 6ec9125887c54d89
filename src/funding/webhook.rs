//! Webhook signatures and events.
//!
//! Incoming, from Stripe: [`verify_webhook`] checks the `Stripe-Signature`
//! header (`t=<unix>,v1=<hex>[,v1=<hex>…]`, HMAC-SHA256 over `"{t}.{raw
//! body}"` keyed with the `whsec_…` secret's UTF-8 bytes, constant-time, with
//! a replay window), and [`parse_webhook_event`] turns a verified body into
//! the one event that moves money, a completed Checkout Session.
//!
//! Outgoing, from the Hub: [`sign_jecp_webhook`] produces the JECP header
//! value (`v1=<base64 HMAC>`, key = base64-decoded secret, CLIENT-COMPAT §7),
//! which is a different scheme built on the same HMAC.

use std::fmt;

use base64::Engine as _;
use ring::hmac;
use serde_json::Value;
use subtle::ConstantTimeEq;

use crate::money::Micros;

/// Stripe's default replay window: five minutes either side of now.
pub const DEFAULT_WEBHOOK_TOLERANCE_S: i64 = 300;
/// Longest `Stripe-Signature` header parsed; real ones are ~150 bytes.
pub const SIGNATURE_HEADER_BYTES_MAX: usize = 4096;
/// Most `v1` signatures considered (Stripe sends one per active secret).
pub const SIGNATURES_MAX: usize = 8;
/// Longest event, session or agent id accepted from an event.
pub const EVENT_ID_CHARS_MAX: usize = 255;
/// Micro-USDC per US cent.
const MICROS_PER_CENT: u64 = 10_000;
/// SHA-256 output length, the only `v1` length that can match.
const HMAC_SHA256_BYTES: usize = 32;

/// Why a webhook delivery is refused (the route answers 400 for all three).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookError {
    /// The header is missing parts or is not in `t=…,v1=…` form.
    Malformed,
    /// Authentic, but `t` is outside the tolerance; `age_s` is `now - t`
    /// (negative for a timestamp in the future).
    Stale { age_s: i64 },
    /// No `v1` value matches the body under this secret.
    Mismatch,
}

impl fmt::Display for WebhookError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WebhookError::Malformed => formatter.write_str("malformed Stripe-Signature header"),
            WebhookError::Stale { age_s } => {
                write!(
                    formatter,
                    "webhook timestamp is {age_s} s from now, outside the replay window"
                )
            }
            WebhookError::Mismatch => formatter.write_str("webhook signature does not match"),
        }
    }
}

impl std::error::Error for WebhookError {}

/// The parsed `Stripe-Signature` header: the timestamp and every well-formed
/// `v1` signature. Other schemes (`v0`, future ones) are ignored.
struct SignatureHeader {
    timestamp_s: i64,
    v1_signatures: Vec<[u8; HMAC_SHA256_BYTES]>,
}

fn parse_signature_header(header: &str) -> Result<SignatureHeader, WebhookError> {
    if header.len() > SIGNATURE_HEADER_BYTES_MAX {
        return Err(WebhookError::Malformed);
    }
    let mut timestamp_s = None;
    let mut v1_signatures = Vec::new();
    let mut saw_v1 = false;
    for item in header.split(',') {
        let (key, value) = item.trim().split_once('=').ok_or(WebhookError::Malformed)?;
        match key.trim() {
            "t" => {
                // Exactly one timestamp: two would make "which one was signed" ambiguous.
                if timestamp_s.is_some() {
                    return Err(WebhookError::Malformed);
                }
                let value = value.trim();
                if value.is_empty()
                    || value.len() > 19
                    || !value.bytes().all(|byte| byte.is_ascii_digit())
                {
                    return Err(WebhookError::Malformed);
                }
                timestamp_s = Some(value.parse::<i64>().map_err(|_| WebhookError::Malformed)?);
            }
            "v1" => {
                saw_v1 = true;
                // A v1 that is not 64 hex digits can never match; skip it
                // like Stripe's libraries do, but keep looking at the others.
                let mut signature = [0_u8; HMAC_SHA256_BYTES];
                if hex::decode_to_slice(value.trim(), &mut signature).is_ok()
                    && v1_signatures.len() < SIGNATURES_MAX
                {
                    v1_signatures.push(signature);
                }
            }
            _ => {}
        }
    }
    match timestamp_s {
        Some(timestamp_s) if saw_v1 => Ok(SignatureHeader {
            timestamp_s,
            v1_signatures,
        }),
        _ => Err(WebhookError::Malformed),
    }
}

/// Verifies a Stripe webhook delivery.
///
/// The signature is checked first, so a forged request is always
/// `Mismatch`; `Stale` means an authentic delivery outside
/// `|now_s - t| <= tolerance_s` (a replay or a badly skewed clock).
pub fn verify_webhook(
    signature_header: &str,
    raw_body: &[u8],
    webhook_secret: &str,
    now_s: i64,
    tolerance_s: i64,
) -> Result<(), WebhookError> {
    let header = parse_signature_header(signature_header)?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, webhook_secret.as_bytes());
    let mut context = hmac::Context::with_key(&key);
    context.update(header.timestamp_s.to_string().as_bytes());
    context.update(b".");
    context.update(raw_body);
    let expected = context.sign();
    // Compare against every candidate without stopping early, in constant time.
    let matched = header
        .v1_signatures
        .iter()
        .fold(subtle::Choice::from(0), |matched, candidate| {
            matched | candidate.ct_eq(expected.as_ref())
        });
    if !bool::from(matched) {
        return Err(WebhookError::Mismatch);
    }
    let age_s = now_s.saturating_sub(header.timestamp_s);
    if age_s.unsigned_abs() > tolerance_s.max(0).unsigned_abs() {
        return Err(WebhookError::Stale { age_s });
    }
    Ok(())
}

/// A paid (or not yet paid) Checkout Session, read from a verified event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompletedCheckout {
    /// `evt_…`; Stripe redelivers an event under the same id.
    pub event_id: String,
    /// `cs_…`; the key for crediting exactly once.
    pub session_id: String,
    /// From `metadata.agent_id`, else `client_reference_id`.
    pub agent_id: String,
    /// `amount_total` in cents, converted exactly to micro-USDC.
    pub amount_micros: Micros,
    /// `payment_status == "paid"`; credit only when true.
    pub paid: bool,
}

impl CompletedCheckout {
    /// The ledger credit reference, `stripe:<session_id>`. Every delivery
    /// and every event naming this session maps to the same reference, so
    /// the ledger credits it at most once.
    pub fn credit_reference(&self) -> String {
        format!("stripe:{}", self.session_id)
    }
}

/// What a verified webhook body asks the Hub to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WebhookEvent {
    /// `checkout.session.completed`, or `checkout.session.async_payment_succeeded`
    /// (the same session once a delayed payment method settles).
    CheckoutCompleted(CompletedCheckout),
    /// Any other event type: acknowledge with 200 and do nothing.
    Ignored { event_type: String },
}

/// Event types that carry a Checkout Session whose payment may now be settled.
const CHECKOUT_EVENT_TYPES: [&str; 2] = [
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
];

/// Parses a verified Stripe event body. Errors describe what is wrong with
/// the body (safe to log: it holds no secrets).
pub fn parse_webhook_event(raw_body: &[u8]) -> Result<WebhookEvent, String> {
    let event: Value = serde_json::from_slice(raw_body)
        .map_err(|error| format!("event body is not JSON: {error}"))?;
    let event_id = bounded_id(&event, "/id", "event id")?;
    let event_type = event
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| "event has no \"type\" string".to_owned())?;
    if !CHECKOUT_EVENT_TYPES.contains(&event_type) {
        return Ok(WebhookEvent::Ignored {
            event_type: truncate(event_type),
        });
    }
    let session = event
        .pointer("/data/object")
        .ok_or_else(|| "event has no data.object".to_owned())?;
    if let Some(object) = session.get("object").and_then(Value::as_str)
        && object != "checkout.session"
    {
        return Err(format!(
            "data.object is a {:?}, not a checkout.session",
            truncate(object)
        ));
    }
    let session_id = bounded_id(session, "/id", "session id")?;
    let agent_id = agent_id(session)?;
    let currency = session
        .get("currency")
        .and_then(Value::as_str)
        .unwrap_or("usd");
    if !currency.eq_ignore_ascii_case("usd") {
        return Err(format!(
            "session currency is {:?}; only usd can be credited",
            truncate(currency)
        ));
    }
    let amount_cents = session
        .get("amount_total")
        .and_then(Value::as_u64)
        .ok_or_else(|| "session has no non-negative integer amount_total".to_owned())?;
    let amount_micros = amount_cents
        .checked_mul(MICROS_PER_CENT)
        .and_then(Micros::new)
        .ok_or_else(|| {
            format!("amount_total {amount_cents} cents is beyond the largest representable amount")
        })?;
    let paid = session.get("payment_status").and_then(Value::as_str) == Some("paid");
    Ok(WebhookEvent::CheckoutCompleted(CompletedCheckout {
        event_id,
        session_id,
        agent_id,
        amount_micros,
        paid,
    }))
}

/// The agent named by the session: `metadata.agent_id`, falling back to
/// `client_reference_id`. The Hub sets both to the same value; if both are
/// present and disagree the event is refused rather than guessing.
fn agent_id(session: &Value) -> Result<String, String> {
    let from_metadata = non_empty_str(session.pointer("/metadata/agent_id"));
    let from_reference = non_empty_str(session.get("client_reference_id"));
    let agent_id = match (from_metadata, from_reference) {
        (Some(metadata), Some(reference)) if metadata != reference => {
            return Err(
                "metadata.agent_id and client_reference_id name different agents".to_owned(),
            );
        }
        (Some(agent_id), _) | (None, Some(agent_id)) => agent_id,
        (None, None) => {
            return Err(
                "session names no agent (metadata.agent_id / client_reference_id)".to_owned(),
            );
        }
    };
    if agent_id.chars().count() > EVENT_ID_CHARS_MAX || agent_id.chars().any(char::is_control) {
        return Err("agent id is too long or contains control characters".to_owned());
    }
    Ok(agent_id.to_owned())
}

fn non_empty_str(value: Option<&Value>) -> Option<&str> {
    value
        .and_then(Value::as_str)
        .filter(|text| !text.is_empty())
}

fn bounded_id(value: &Value, pointer: &str, what: &str) -> Result<String, String> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .filter(|id| {
            !id.is_empty()
                && id.len() <= EVENT_ID_CHARS_MAX
                && id.bytes().all(|byte| byte.is_ascii_graphic())
        })
        .map(str::to_owned)
        .ok_or_else(|| {
            format!(
                "{what} is missing or not a printable string of at most {EVENT_ID_CHARS_MAX} bytes"
            )
        })
}

/// Keeps untrusted strings short in error messages and logs.
fn truncate(text: &str) -> String {
    text.chars().take(EVENT_ID_CHARS_MAX).collect()
}

/// Signs one outgoing JECP webhook (CLIENT-COMPAT §7): returns the
/// `X-JECP-Webhook-Signature` value `v1=<standard base64 of HMAC-SHA256(key,
/// "{ts}.{body}")>`, where `key` is `secret_b64` decoded the way the SDK's
/// Node `Buffer.from(secret, 'base64')` does, so both sides agree on the key
/// bytes even for an imperfectly padded secret.
pub fn sign_jecp_webhook(secret_b64: &str, ts: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, &decode_base64_like_node(secret_b64));
    let mut context = hmac::Context::with_key(&key);
    context.update(ts.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    format!(
        "v1={}",
        base64::engine::general_purpose::STANDARD.encode(context.sign().as_ref())
    )
}

/// Node's lenient base64 decoder: accepts the standard and URL-safe
/// alphabets, skips characters outside them, stops at the first `=`, and
/// drops a trailing lone sextet. It cannot fail, matching `Buffer.from`.
fn decode_base64_like_node(text: &str) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(text.len() / 4 * 3 + 2);
    let mut accumulator: u32 = 0;
    let mut bit_count = 0;
    for byte in text.bytes() {
        let sextet = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            _ => continue,
        };
        accumulator = (accumulator << 6) | u32::from(sextet);
        bit_count += 6;
        if bit_count >= 8 {
            bit_count -= 8;
            bytes.push((accumulator >> bit_count) as u8);
            accumulator &= (1 << bit_count) - 1;
        }
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn header_parsing_collects_every_v1_and_ignores_other_schemes() {
        let good = "a".repeat(64);
        let header = format!("t=12,v0=ff,v1=zz,v1={good},v1={good},scheme2=x");
        let parsed = parse_signature_header(&header).expect("well-formed");
        assert_eq!(parsed.timestamp_s, 12);
        assert_eq!(parsed.v1_signatures.len(), 2);
    }

    #[test]
    fn header_parsing_rejects_shapes_that_are_not_stripe_signatures() {
        let sig = "a".repeat(64);
        for header in [
            String::new(),
            "t=12".to_owned(),
            format!("v1={sig}"),
            format!("t=,v1={sig}"),
            format!("t=-5,v1={sig}"),
            format!("t=12,t=13,v1={sig}"),
            format!("t=12;v1={sig}"),
            format!("t=99999999999999999999,v1={sig}"),
            format!("t=12,v1={sig},garbage"),
            format!("t=12,{}", "v1=00,".repeat(SIGNATURE_HEADER_BYTES_MAX / 4)),
        ] {
            assert!(
                matches!(
                    parse_signature_header(&header),
                    Err(WebhookError::Malformed)
                ),
                "{header:?}"
            );
        }
    }

    #[test]
    fn node_base64_decoding_matches_the_standard_decoder_on_valid_input() {
        let secret = "amVjcC13ZWJob29rLXRlc3Qtc2VjcmV0LTMyYnl0ZXMh";
        assert_eq!(
            decode_base64_like_node(secret),
            b"jecp-webhook-test-secret-32bytes!"
        );
        // Unpadded, URL-safe and whitespace-laden spellings decode to the same bytes.
        assert_eq!(decode_base64_like_node("YWI"), b"ab");
        assert_eq!(decode_base64_like_node("-_8="), [0xfb, 0xff]);
        assert_eq!(decode_base64_like_node("YW\nJj"), b"abc");
        assert_eq!(decode_base64_like_node("YQ==YWJj"), b"a");
    }

    proptest! {
        #[test]
        fn node_decoding_round_trips_standard_encoding(
            bytes in proptest::collection::vec(any::<u8>(), 0..96),
        ) {
            let encoded = base64::engine::general_purpose::STANDARD.encode(&bytes);
            prop_assert_eq!(decode_base64_like_node(&encoded), bytes);
        }

        #[test]
        fn arbitrary_headers_never_panic(
            header in ".{0,200}",
            now in any::<i64>(),
            tolerance in any::<i64>(),
        ) {
            let outcome = verify_webhook(&header, b"{}", "whsec_x", now, tolerance);
            prop_assert!(outcome.is_err());
        }
    }
}
