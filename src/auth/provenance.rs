//! Provenance v2 (spec 02 §5.2): `v2:<unix_seconds>:<nonce_hex>:<hmac_hex>`
//! where the tag is `HMAC-SHA256(key = api_key, msg = agent_id:ts:nonce)`.
//!
//! [`verify_v2`] runs the checks in the order the spec and the official SDK
//! use (CLIENT-COMPAT §11): wire shape → clock skew (±300 s, inclusive) →
//! constant-time HMAC compare. Nonce replay is the job of
//! [`crate::auth::replay::ReplayStore`], called after this succeeds.
//!
//! v1 hashes (64 lowercase hex, SHA-256 over a key prefix) were sunset on
//! 2026-11-01 and are rejected with `v1_legacy_mismatch`.
//!
//! Callers must only run this after the agent's key was authenticated: a
//! subcause is an oracle otherwise (spec 03 §3.1 emission policy). The key
//! used as the HMAC key is the caller's authenticated plaintext key.

use ring::hmac;

use crate::protocol::{ErrorCode, JecpError};

/// The clock-skew window; the spec forbids widening it.
pub const MAX_CLOCK_SKEW_S: i64 = 300;
/// The shortest nonce the wire format allows.
pub const MIN_NONCE_HEX_CHARS: usize = 16;
/// The longest nonce accepted. The spec's regex has no upper bound; ours
/// keeps replay-store entries small (the SDK sends 32, vectors go to 64).
pub const MAX_NONCE_HEX_CHARS: usize = 256;
/// Unix seconds need at most 19 digits to fit an `i64`.
const MAX_TIMESTAMP_DIGITS: usize = 19;
const TAG_HEX_CHARS: usize = 64;

/// Why a provenance hash was refused: the closed registry of spec 03 §3.1,
/// plus one Hub-internal condition that is not a mismatch at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subcause {
    WireMalformed,
    /// `drift_seconds = now − timestamp` (signed).
    ClockSkew {
        drift_seconds: i64,
    },
    HmacMismatch,
    NonceReplay,
    V1LegacyMismatch,
    /// Not a wire subcause: the replay store is at its memory bound and
    /// refuses new nonces rather than grow. [`mismatch_error`] turns this into
    /// 503 `SERVICE_DEGRADED`, never into `PROVENANCE_MISMATCH`.
    ReplayStoreFull,
}

impl Subcause {
    /// The `details.subcause` string, or `None` for the Hub-internal condition.
    pub fn wire_name(&self) -> Option<&'static str> {
        Some(match self {
            Subcause::WireMalformed => "wire_malformed",
            Subcause::ClockSkew { .. } => "clock_skew",
            Subcause::HmacMismatch => "hmac_mismatch",
            Subcause::NonceReplay => "nonce_replay",
            Subcause::V1LegacyMismatch => "v1_legacy_mismatch",
            Subcause::ReplayStoreFull => return None,
        })
    }
}

/// A verified provenance hash: what the replay store needs next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProvenanceV2 {
    pub timestamp_s: i64,
    /// The nonce in lowercase, the form the replay store keys on (spec 02 §5.2.1).
    pub nonce_lower: String,
}

/// Verifies a v2 wire string for an authenticated `(agent_id, api_key)`.
pub fn verify_v2(
    wire: &str,
    agent_id: &str,
    api_key: &str,
    now_s: i64,
) -> Result<ProvenanceV2, Subcause> {
    let Some(rest) = wire.strip_prefix("v2:") else {
        return Err(if is_v1_shaped(wire) {
            Subcause::V1LegacyMismatch
        } else {
            Subcause::WireMalformed
        });
    };
    let mut parts = rest.split(':');
    let (Some(timestamp_text), Some(nonce), Some(tag_hex), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Subcause::WireMalformed);
    };
    if timestamp_text.is_empty()
        || timestamp_text.len() > MAX_TIMESTAMP_DIGITS
        || !timestamp_text.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(Subcause::WireMalformed);
    }
    let timestamp_s: i64 = timestamp_text
        .parse()
        .map_err(|_| Subcause::WireMalformed)?;
    if !(MIN_NONCE_HEX_CHARS..=MAX_NONCE_HEX_CHARS).contains(&nonce.len())
        || !nonce.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(Subcause::WireMalformed);
    }
    // The spec's regex takes the tag in lowercase only (`[0-9a-f]{64}`).
    if tag_hex.len() != TAG_HEX_CHARS
        || !tag_hex
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(Subcause::WireMalformed);
    }
    let drift_seconds = now_s.saturating_sub(timestamp_s);
    if drift_seconds.unsigned_abs() > MAX_CLOCK_SKEW_S.unsigned_abs() {
        return Err(Subcause::ClockSkew { drift_seconds });
    }
    let mut tag = [0u8; 32];
    hex::decode_to_slice(tag_hex, &mut tag).map_err(|_| Subcause::WireMalformed)?;
    // The message uses the parsed integer timestamp and the nonce exactly as
    // sent, as the SDK's verifier does. `hmac::verify` compares in constant time.
    let key = hmac::Key::new(hmac::HMAC_SHA256, api_key.as_bytes());
    let message = signing_message(agent_id, timestamp_s, nonce);
    hmac::verify(&key, message.as_bytes(), &tag).map_err(|_| Subcause::HmacMismatch)?;
    Ok(ProvenanceV2 {
        timestamp_s,
        nonce_lower: nonce.to_ascii_lowercase(),
    })
}

/// The wire string a client sends: `v2:<ts>:<nonce>:<lowercase hex tag>`.
pub fn compute_v2(agent_id: &str, api_key: &str, timestamp_s: i64, nonce: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, api_key.as_bytes());
    let tag = hmac::sign(
        &key,
        signing_message(agent_id, timestamp_s, nonce).as_bytes(),
    );
    format!("v2:{timestamp_s}:{nonce}:{}", hex::encode(tag.as_ref()))
}

/// 403 `PROVENANCE_MISMATCH` with `details.subcause` (and `drift_seconds`
/// for clock skew). [`Subcause::ReplayStoreFull`] becomes 503 instead.
pub fn mismatch_error(subcause: &Subcause) -> JecpError {
    let message = match subcause {
        Subcause::WireMalformed => {
            "mandate.provenance_hash is not a v2 value of the form v2:<unix_seconds>:<nonce_hex>:<hmac_hex>."
        }
        Subcause::ClockSkew { .. } => {
            "mandate.provenance_hash timestamp is more than 300 s away from the Hub's clock; sync NTP."
        }
        Subcause::HmacMismatch => {
            "mandate.provenance_hash HMAC does not match the one computed with the authenticated api_key."
        }
        Subcause::NonceReplay => {
            "mandate.provenance_hash nonce was already used in the last 600 s; use a fresh nonce per request."
        }
        Subcause::V1LegacyMismatch => {
            "Provenance v1 hashes are no longer accepted (sunset 2026-11-01); send a v2 provenance_hash."
        }
        Subcause::ReplayStoreFull => {
            return JecpError::degraded(
                "The Hub cannot record new provenance nonces right now; retry shortly.",
                5,
            );
        }
    };
    let mut error = JecpError::new(ErrorCode::ProvenanceMismatch, message);
    if let Some(name) = subcause.wire_name() {
        error = error.detail("subcause", name);
    }
    if let Subcause::ClockSkew { drift_seconds } = subcause {
        error = error.detail("drift_seconds", *drift_seconds);
    }
    error
}

fn signing_message(agent_id: &str, timestamp_s: i64, nonce: &str) -> String {
    format!("{agent_id}:{timestamp_s}:{nonce}")
}

fn is_v1_shaped(wire: &str) -> bool {
    wire.len() == 64 && wire.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGENT: &str = "jh_ag_0123456789abcdefABCDEFGH";
    const KEY: &str = "jh_ak_secretsecretsecretsecretsecretsecretsecret12";
    const NOW: i64 = 1_900_000_000;

    #[test]
    fn round_trip_and_lowercased_nonce() {
        let wire = compute_v2(AGENT, KEY, NOW, "DEADBEEF00112233");
        let verified = verify_v2(&wire, AGENT, KEY, NOW).unwrap();
        assert_eq!(
            verified,
            ProvenanceV2 {
                timestamp_s: NOW,
                nonce_lower: "deadbeef00112233".into()
            }
        );
    }

    #[test]
    fn another_key_or_agent_is_an_hmac_mismatch() {
        let wire = compute_v2(AGENT, KEY, NOW, "00112233445566778899");
        assert_eq!(
            verify_v2(&wire, AGENT, "jh_ak_other", NOW),
            Err(Subcause::HmacMismatch)
        );
        assert_eq!(
            verify_v2(&wire, "jh_ag_other", KEY, NOW),
            Err(Subcause::HmacMismatch)
        );
    }

    #[test]
    fn malformed_shapes() {
        let tag = "0".repeat(64);
        for wire in [
            String::new(),
            "v2:".into(),
            format!("v2::0123456789abcdef:{tag}"),
            format!("v2:-5:0123456789abcdef:{tag}"),
            format!("v2:+5:0123456789abcdef:{tag}"),
            format!("v2:99999999999999999999:0123456789abcdef:{tag}"),
            format!("v2:{NOW}:0123456789abcdef:{}", "A".repeat(64)),
            format!("v2:{NOW}:0123456789abcdef:{tag}:extra"),
            format!("v2:{NOW}:{}:{tag}", "a".repeat(MAX_NONCE_HEX_CHARS + 1)),
            "V2:1:0123456789abcdef:".to_string() + &tag,
            "0".repeat(63),
            "G".repeat(64),
        ] {
            assert_eq!(
                verify_v2(&wire, AGENT, KEY, NOW),
                Err(Subcause::WireMalformed),
                "{wire}"
            );
        }
    }

    #[test]
    fn v1_hashes_are_sunset() {
        assert_eq!(
            verify_v2(&"ab".repeat(32), AGENT, KEY, NOW),
            Err(Subcause::V1LegacyMismatch)
        );
    }

    #[test]
    fn skew_is_signed_now_minus_timestamp() {
        let wire = compute_v2(AGENT, KEY, NOW - 301, "0123456789abcdef");
        assert_eq!(
            verify_v2(&wire, AGENT, KEY, NOW),
            Err(Subcause::ClockSkew { drift_seconds: 301 })
        );
        let wire = compute_v2(AGENT, KEY, NOW + 301, "0123456789abcdef");
        assert_eq!(
            verify_v2(&wire, AGENT, KEY, NOW),
            Err(Subcause::ClockSkew {
                drift_seconds: -301
            })
        );
        let wire = compute_v2(AGENT, KEY, NOW - 300, "0123456789abcdef");
        assert!(verify_v2(&wire, AGENT, KEY, NOW).is_ok());
        // Extreme values saturate instead of overflowing.
        let wire = compute_v2(AGENT, KEY, i64::MAX, "0123456789abcdef");
        assert!(matches!(
            verify_v2(&wire, AGENT, KEY, i64::MIN),
            Err(Subcause::ClockSkew { .. })
        ));
    }

    #[test]
    fn errors_carry_subcause_and_drift() {
        let error = mismatch_error(&Subcause::ClockSkew {
            drift_seconds: -400,
        });
        assert_eq!(error.code, ErrorCode::ProvenanceMismatch);
        assert_eq!(error.http_status(), 403);
        assert_eq!(error.details["subcause"], "clock_skew");
        assert_eq!(error.details["drift_seconds"], -400);
        assert_eq!(
            mismatch_error(&Subcause::NonceReplay).details["subcause"],
            "nonce_replay"
        );
        let full = mismatch_error(&Subcause::ReplayStoreFull);
        assert_eq!(full.code, ErrorCode::ServiceDegraded);
        assert!(full.details.get("subcause").is_none());
    }
}
