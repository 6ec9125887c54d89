//! Agent lifecycle through the public API: registration, authentication
//! (unknown id vs wrong key), restart from persisted records, rotation with
//! grace / revoke / the 24 h cap, credential resolution, and the mandate
//! checks in spec order.

use std::time::{Duration, Instant};

use jecp_hub::auth::{
    Directory, Mandate, RegisterRequest, ReplayStore, RotateRequest, ServerSecret, check_budget,
    check_expiry, compute_v2, mismatch_error, resolve_credentials, verify_v2,
};
use jecp_hub::money::Micros;
use jecp_hub::protocol::{ErrorCode, HubLinks, JecpError};
use serde_json::json;

const NOW: i64 = 1_900_000_000;

fn links() -> HubLinks {
    HubLinks {
        public_url: "https://hub.example".into(),
        allowed_topup_usd: vec![5, 20, 100],
    }
}

fn envelope(error: &JecpError) -> String {
    serde_json::to_string(&error.to_envelope(Some("req-1"), &links())).unwrap()
}

fn register(directory: &Directory, name: &str) -> (String, String) {
    let request = RegisterRequest {
        name: name.into(),
        ..RegisterRequest::default()
    };
    let registered = directory.register(&request, 1, "jh", NOW).unwrap();
    (registered.record.agent_id, registered.api_key)
}

#[test]
fn unknown_agent_and_wrong_key_are_indistinguishable() {
    let directory = Directory::new(ServerSecret::from_bytes([9u8; 32]), Vec::new());
    let (agent_id, api_key) = register(&directory, "Known");
    let wrong_key = directory
        .authenticate(
            &agent_id,
            "jh_ak_wrongwrongwrongwrongwrongwrongwrongwrongwrong",
            NOW,
        )
        .unwrap_err();
    let unknown_id = directory
        .authenticate("jh_ag_000000000000000000000000", &api_key, NOW)
        .unwrap_err();
    let oversized = directory
        .authenticate(&agent_id, &"k".repeat(10_000), NOW)
        .unwrap_err();
    assert_eq!(wrong_key.code, ErrorCode::InvalidApiKey);
    assert_eq!(wrong_key.http_status(), 401);
    assert_eq!(envelope(&wrong_key), envelope(&unknown_id));
    assert_eq!(envelope(&wrong_key), envelope(&oversized));
    let body = wrong_key.to_envelope(None, &links());
    assert_eq!(body["next_action"]["type"], "register");
    assert!(
        !envelope(&wrong_key).contains(&agent_id),
        "the error does not echo the id"
    );
}

/// Both failure paths do one HMAC and one constant-time compare, so their
/// timing is the same up to noise. Interleaved medians keep the comparison
/// robust on a busy machine; the bound is loose on purpose (it catches an
/// early return that skips the hash, which is ~10× faster, not nanoseconds).
#[test]
fn unknown_agent_and_wrong_key_take_comparable_time() {
    let directory = Directory::new(ServerSecret::from_bytes([9u8; 32]), Vec::new());
    for i in 0..1_000 {
        register(&directory, &format!("agent {i}"));
    }
    let (agent_id, _) = register(&directory, "Target");
    let wrong_key = "jh_ak_wrongwrongwrongwrongwrongwrongwrongwrongwrong";
    let mut known_ns = Vec::new();
    let mut unknown_ns = Vec::new();
    let time = |agent: &str| {
        let start = Instant::now();
        for _ in 0..20 {
            assert!(directory.authenticate(agent, wrong_key, NOW).is_err());
        }
        start.elapsed()
    };
    for _ in 0..300 {
        known_ns.push(time(&agent_id));
        unknown_ns.push(time("jh_ag_000000000000000000000000"));
    }
    let median = |samples: &mut Vec<Duration>| {
        samples.sort();
        samples[samples.len() / 2].as_nanos() as f64
    };
    let (known, unknown) = (median(&mut known_ns), median(&mut unknown_ns));
    let ratio = known.max(unknown) / known.min(unknown);
    assert!(
        ratio < 3.0,
        "known-id median {known} ns vs unknown-id median {unknown} ns"
    );
}

#[test]
fn restart_from_persisted_records_and_the_same_secret() {
    let data_dir = tempfile::tempdir().unwrap();
    let secret = ServerSecret::load_or_create(data_dir.path()).unwrap();
    let directory = Directory::new(secret, Vec::new());
    let (agent_id, api_key) = register(&directory, "Persisted");
    let records = directory.list(None, 100);
    drop(directory);
    let restarted = Directory::new(
        ServerSecret::load_or_create(data_dir.path()).unwrap(),
        records,
    );
    assert_eq!(
        restarted
            .authenticate(&agent_id, &api_key, NOW)
            .unwrap()
            .name,
        "Persisted"
    );
    // The name stays reserved after the restart.
    let duplicate = RegisterRequest {
        name: "PERSISTED".into(),
        ..RegisterRequest::default()
    };
    assert_eq!(
        restarted
            .register(&duplicate, 2, "jh", NOW)
            .unwrap_err()
            .to_string(),
        "An agent with this name already exists; choose another name."
    );
    // A different secret cannot verify the stored hashes.
    let other = Directory::new(
        ServerSecret::from_bytes([1u8; 32]),
        restarted.list(None, 100),
    );
    assert_eq!(
        other
            .authenticate(&agent_id, &api_key, NOW)
            .unwrap_err()
            .code,
        ErrorCode::InvalidApiKey
    );
}

#[test]
fn old_key_works_during_grace_and_fails_after() {
    let directory = Directory::new(ServerSecret::from_bytes([2u8; 32]), Vec::new());
    let (agent_id, old_key) = register(&directory, "Rotator");
    let rotated = directory
        .rotate(
            &agent_id,
            &RotateRequest {
                grace_seconds: Some(120),
                revoke_old: None,
            },
            NOW,
        )
        .unwrap();
    assert_eq!(rotated.grace_seconds, 120);
    assert_eq!(rotated.previous_key_valid_until_s, Some(NOW + 120));
    assert_eq!(rotated.rotations_in_last_24h, 1);
    assert_eq!(
        rotated.previous.key_hash,
        rotated.record.previous_key_hash.unwrap()
    );
    assert_ne!(rotated.api_key, old_key);
    assert!(
        directory
            .authenticate(&agent_id, &rotated.api_key, NOW)
            .is_ok()
    );
    assert!(
        directory
            .authenticate(&agent_id, &old_key, NOW + 119)
            .is_ok()
    );
    assert_eq!(
        directory
            .authenticate(&agent_id, &old_key, NOW + 120)
            .unwrap_err()
            .code,
        ErrorCode::InvalidApiKey
    );
    assert!(
        directory
            .authenticate(&agent_id, &rotated.api_key, NOW + 10_000)
            .is_ok()
    );
    // Rolling back (persisting failed) restores the old key only, and only
    // while the rotation being undone is still the current state.
    let later = directory
        .rotate(&agent_id, &RotateRequest::default(), NOW + 10)
        .unwrap();
    assert!(!directory.rollback_rotation(&rotated));
    assert!(directory.rollback_rotation(&later));
    assert!(directory.rollback_rotation(&rotated));
    assert!(
        directory
            .authenticate(&agent_id, &old_key, NOW + 10_000)
            .is_ok()
    );
    assert!(
        directory
            .authenticate(&agent_id, &rotated.api_key, NOW)
            .is_err()
    );
}

#[test]
fn revoke_old_kills_the_old_key_at_once() {
    let directory = Directory::new(ServerSecret::from_bytes([2u8; 32]), Vec::new());
    let (agent_id, old_key) = register(&directory, "Compromised");
    let rotated = directory
        .rotate(
            &agent_id,
            &RotateRequest {
                grace_seconds: Some(3_600),
                revoke_old: Some(true),
            },
            NOW,
        )
        .unwrap();
    assert_eq!(rotated.grace_seconds, 0);
    assert_eq!(rotated.previous_key_valid_until_s, None);
    assert_eq!(rotated.record.previous_key_hash, None);
    assert!(directory.authenticate(&agent_id, &old_key, NOW).is_err());
    assert!(
        directory
            .authenticate(&agent_id, &rotated.api_key, NOW)
            .is_ok()
    );
}

#[test]
fn fourth_rotation_in_24_hours_gets_429_with_next_slot() {
    let directory = Directory::new(ServerSecret::from_bytes([2u8; 32]), Vec::new());
    let (agent_id, _) = register(&directory, "Busy");
    let mut key = String::new();
    for (i, at) in [NOW, NOW + 100, NOW + 200].into_iter().enumerate() {
        let rotated = directory
            .rotate(&agent_id, &RotateRequest::default(), at)
            .unwrap();
        assert_eq!(rotated.rotations_in_last_24h as usize, i + 1);
        key = rotated.api_key;
    }
    let error = directory
        .rotate(&agent_id, &RotateRequest::default(), NOW + 300)
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::Rotation24hCap);
    assert_eq!(error.http_status(), 429);
    assert_eq!(error.details["limit_per_24h"], 3);
    assert_eq!(error.details["rotations_in_last_24h"], 3);
    // The first rotation (NOW = 2030-03-17T17:46:40Z) leaves the window 24 h later.
    assert_eq!(error.details["next_slot_at"], "2030-03-18T17:46:40Z");
    assert!(matches!(error.retry_after_seconds, Some(1..=600)));
    // The refused rotation changed nothing.
    assert!(directory.authenticate(&agent_id, &key, NOW + 300).is_ok());
    // One day after the first rotation a slot is free again.
    assert!(
        directory
            .rotate(&agent_id, &RotateRequest::default(), NOW + 86_399)
            .is_err()
    );
    assert_eq!(
        directory
            .rotate(&agent_id, &RotateRequest::default(), NOW + 86_400)
            .unwrap()
            .rotations_in_last_24h,
        3
    );
}

#[test]
fn credential_resolution_prefers_mandate_fields() {
    let mandate =
        Mandate::from_json(&json!({"agent_id": "jh_ag_mandate", "api_key": "jh_ak_mandate"}))
            .unwrap();
    let both =
        resolve_credentials(Some("jh_ag_header"), Some("jh_ak_header"), Some(&mandate)).unwrap();
    assert_eq!(
        (both.agent_id, both.api_key, both.from_mandate),
        ("jh_ag_mandate", "jh_ak_mandate", true)
    );
    let headers = resolve_credentials(Some("jh_ag_header"), Some("jh_ak_header"), None).unwrap();
    assert_eq!(
        (headers.agent_id, headers.api_key, headers.from_mandate),
        ("jh_ag_header", "jh_ak_header", false)
    );
    // Field by field: a mandate with only the key still takes the id from the header.
    let key_only = Mandate::from_json(&json!({"api_key": "jh_ak_mandate"})).unwrap();
    let mixed = resolve_credentials(Some("jh_ag_header"), None, Some(&key_only)).unwrap();
    assert_eq!(
        (mixed.agent_id, mixed.api_key),
        ("jh_ag_header", "jh_ak_mandate")
    );
    assert!(!format!("{mixed:?}").contains("jh_ak_mandate"));
    for (agent_id, api_key) in [
        (None, None),
        (Some("jh_ag_header"), None),
        (None, Some("jh_ak_header")),
        (Some(""), Some(" ")),
    ] {
        let error = resolve_credentials(agent_id, api_key, Some(&Mandate::default())).unwrap_err();
        assert_eq!(error.code, ErrorCode::AuthRequired);
        assert_eq!(error.http_status(), 401);
        assert_eq!(
            error.to_envelope(None, &links())["next_action"]["type"],
            "register"
        );
    }
}

/// The whole mandate path in spec 02 §4.4 order, as the invoke pipeline runs it.
fn validate_mandate(
    directory: &Directory,
    replay: &ReplayStore,
    mandate_json: serde_json::Value,
    cost: Micros,
    now_s: i64,
) -> Result<(), JecpError> {
    let mandate = Mandate::from_json(&mandate_json)?;
    let credentials = resolve_credentials(None, None, Some(&mandate))?;
    let agent = directory.authenticate(credentials.agent_id, credentials.api_key, now_s)?;
    check_expiry(&mandate, now_s)?;
    if let Some(wire) = mandate.provenance_hash.as_deref() {
        let verified = verify_v2(wire, &agent.agent_id, credentials.api_key, now_s)
            .map_err(|s| mismatch_error(&s))?;
        replay
            .check_and_insert(&agent.agent_id, &verified.nonce_lower, now_s)
            .map_err(|s| mismatch_error(&s))?;
    }
    check_budget(&mandate, cost)
}

#[test]
fn mandate_checks_run_in_spec_order() {
    let directory = Directory::new(ServerSecret::from_bytes([4u8; 32]), Vec::new());
    let replay = ReplayStore::new(1_000);
    let (agent_id, api_key) = register(&directory, "Mandated");
    let cost = Micros::parse("0.05").unwrap();
    let expired = "2030-03-17T17:46:39Z"; // one second before NOW
    let bad_provenance = "v2:1:short:00";
    let code = |mandate: serde_json::Value| {
        validate_mandate(&directory, &replay, mandate, cost, NOW).map_err(|e| e.code)
    };

    // Wrong key beats every other problem.
    let all_wrong = json!({"agent_id": agent_id, "api_key": "jh_ak_nope", "expires_at": expired, "provenance_hash": bad_provenance, "budget_usdc": 0.01});
    assert_eq!(code(all_wrong), Err(ErrorCode::InvalidApiKey));
    // Then expiry, then provenance, then budget.
    let expired_mandate = json!({"agent_id": agent_id, "api_key": api_key, "expires_at": expired, "provenance_hash": bad_provenance, "budget_usdc": 0.01});
    assert_eq!(code(expired_mandate), Err(ErrorCode::MandateExpired));
    let bad_hash = json!({"agent_id": agent_id, "api_key": api_key, "provenance_hash": bad_provenance, "budget_usdc": 0.01});
    assert_eq!(code(bad_hash), Err(ErrorCode::ProvenanceMismatch));
    let wire = compute_v2(&agent_id, &api_key, NOW, "0123456789abcdef0123456789abcdef");
    let low_budget = json!({"agent_id": agent_id, "api_key": api_key, "provenance_hash": wire, "budget_usdc": 0.01});
    let error = validate_mandate(&directory, &replay, low_budget, cost, NOW).unwrap_err();
    assert_eq!(error.code, ErrorCode::InsufficientBudget);
    assert_eq!(error.details["required_usdc"], json!(0.05));
    assert_eq!(error.details["remaining_usdc"], json!(0.01));
    // The nonce was consumed by that attempt: the same hash is now a replay.
    let replayed = json!({"agent_id": agent_id, "api_key": api_key, "provenance_hash": wire, "budget_usdc": 1});
    let error = validate_mandate(&directory, &replay, replayed, cost, NOW).unwrap_err();
    assert_eq!(error.details["subcause"], "nonce_replay");
    let fresh = compute_v2(&agent_id, &api_key, NOW, "fedcba9876543210fedcba9876543210");
    let good = json!({"agent_id": agent_id, "api_key": api_key, "provenance_hash": fresh, "budget_usdc": 1, "expires_at": "2030-03-17T17:46:40Z"});
    assert_eq!(code(good), Ok(()));
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn mandate_parsing_and_checks_on_arbitrary_text(text in "\\PC{0,60}", number in any::<f64>(), integer in any::<i64>()) {
            for value in [json!(text), json!(number), json!(integer), json!([text]), json!(null)] {
                let parsed = Mandate::from_json(&json!({
                    "agent_id": value, "api_key": value, "budget_usdc": value,
                    "expires_at": value, "provenance_hash": value,
                }));
                if let Ok(mandate) = parsed {
                    let _ = check_expiry(&mandate, NOW);
                    let _ = check_budget(&mandate, Micros::MAX);
                    let _ = resolve_credentials(Some(&text), Some(&text), Some(&mandate));
                }
            }
        }
    }
}
