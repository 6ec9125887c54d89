//! Provenance v2 against the cross-stack conformance vectors
//! (`jecp-spec/fixtures/provenance-v2-vectors.json`, copied into
//! `tests/fixtures/` so this runs without `../shared`), plus the replay store
//! behaviour the vectors do not cover: nonce case, replay after a restart,
//! and concurrent use of one nonce.

use std::sync::{Arc, Barrier};

use jecp_hub::auth::{ReplayStore, Subcause, compute_v2, mismatch_error, verify_v2};
use jecp_hub::protocol::{ErrorCode, HubLinks};
use serde_json::Value;

const VECTORS: &str = include_str!("fixtures/provenance-v2-vectors.json");

fn vectors() -> Value {
    serde_json::from_str(VECTORS).expect("vectors are JSON")
}

fn subcause_name(subcause: &Subcause) -> &'static str {
    subcause.wire_name().expect("a wire subcause")
}

#[test]
fn every_valid_vector_computes_and_verifies() {
    let vectors = vectors();
    let valid = vectors["valid"].as_array().unwrap();
    assert_eq!(valid.len(), 3);
    for vector in valid {
        let input = &vector["input"];
        let (api_key, agent_id) = (
            input["api_key"].as_str().unwrap(),
            input["agent_id"].as_str().unwrap(),
        );
        let (timestamp, nonce) = (
            input["timestamp"].as_i64().unwrap(),
            input["nonce"].as_str().unwrap(),
        );
        let expected = vector["expected_wire"].as_str().unwrap();
        assert_eq!(
            compute_v2(agent_id, api_key, timestamp, nonce),
            expected,
            "{}",
            vector["name"]
        );
        let verified = verify_v2(expected, agent_id, api_key, timestamp).unwrap();
        assert_eq!(verified.timestamp_s, timestamp);
        assert_eq!(verified.nonce_lower, nonce.to_ascii_lowercase());
    }
}

#[test]
fn every_invalid_vector_gets_its_subcause() {
    let vectors = vectors();
    let invalid = vectors["invalid"].as_array().unwrap();
    assert_eq!(invalid.len(), 7);
    for vector in invalid {
        let input = &vector["input"];
        let result = verify_v2(
            vector["wire"].as_str().unwrap(),
            input["agent_id"].as_str().unwrap(),
            input["api_key"].as_str().unwrap(),
            input["now"].as_i64().unwrap(),
        );
        let subcause = result.expect_err(vector["name"].as_str().unwrap());
        assert_eq!(
            subcause_name(&subcause),
            vector["expected_subcause"].as_str().unwrap(),
            "{}",
            vector["name"]
        );
        // The wire error carries the same subcause and deep-links to it.
        let error = mismatch_error(&subcause);
        assert_eq!(error.code, ErrorCode::ProvenanceMismatch);
        let links = HubLinks {
            public_url: "https://hub.example".into(),
            allowed_topup_usd: vec![5],
        };
        let body = error.to_envelope(None, &links);
        assert_eq!(
            body["error"]["details"]["subcause"],
            vector["expected_subcause"]
        );
        assert_eq!(
            body["error"]["documentation_url"],
            format!(
                "https://jecp.dev/errors/provenance_mismatch#{}",
                vector["expected_subcause"].as_str().unwrap()
            )
        );
    }
}

#[test]
fn clock_skew_offsets_behave_as_listed() {
    let vectors = vectors();
    let skews = vectors["clock_skew"].as_array().unwrap();
    assert_eq!(skews.len(), 3);
    let (agent_id, api_key, now) = (
        "jdb_ag_canonical_002",
        "jdb_ak_supersecret_canonical_test_value",
        1_900_000_000i64,
    );
    for vector in skews {
        let offset = vector["skew_offset_sec"].as_i64().unwrap();
        // The offset applies to the agent's clock, on either side of the Hub's.
        for timestamp in [now + offset, now - offset] {
            let wire = compute_v2(
                agent_id,
                api_key,
                timestamp,
                "deadbeef0123456789abcdef01234567",
            );
            let result = verify_v2(&wire, agent_id, api_key, now);
            match vector["expected_subcause"].as_str() {
                None => assert!(result.is_ok(), "{}: {result:?}", vector["name"]),
                Some(expected) => {
                    let subcause = result.unwrap_err();
                    assert_eq!(subcause_name(&subcause), expected, "{}", vector["name"]);
                    assert_eq!(
                        subcause,
                        Subcause::ClockSkew {
                            drift_seconds: now - timestamp
                        }
                    );
                    let error = mismatch_error(&subcause);
                    assert_eq!(error.details["drift_seconds"], now - timestamp);
                }
            }
        }
    }
}

#[test]
fn nonce_case_does_not_dodge_the_replay_store() {
    let (agent_id, api_key, now) = ("jh_ag_AAAAAAAAAAAAAAAAAAAAAAAA", "jh_ak_key", 1_900_000_000);
    let store = ReplayStore::new(1_000);
    let upper = verify_v2(
        &compute_v2(agent_id, api_key, now, "ABCDEF0123456789"),
        agent_id,
        api_key,
        now,
    )
    .unwrap();
    let lower = verify_v2(
        &compute_v2(agent_id, api_key, now, "abcdef0123456789"),
        agent_id,
        api_key,
        now,
    )
    .unwrap();
    assert_eq!(upper.nonce_lower, lower.nonce_lower);
    store
        .check_and_insert(agent_id, &upper.nonce_lower, now)
        .unwrap();
    assert_eq!(
        store.check_and_insert(agent_id, &lower.nonce_lower, now + 1),
        Err(Subcause::NonceReplay)
    );
}

#[test]
fn replay_within_the_ttl_is_rejected_after_a_restart() {
    let (agent_id, api_key, start) = ("jh_ag_BBBBBBBBBBBBBBBBBBBBBBBB", "jh_ak_key", 1_900_000_000);
    let wire = compute_v2(agent_id, api_key, start, "00112233445566778899aabbccddeeff");
    let mut persisted = Vec::new();
    {
        let store = ReplayStore::new(1_000);
        let verified = verify_v2(&wire, agent_id, api_key, start).unwrap();
        persisted.push(
            store
                .check_and_insert(agent_id, &verified.nonce_lower, start)
                .unwrap(),
        );
        // Other traffic that expires before the restart is not reloaded.
        persisted.push(
            store
                .check_and_insert("jh_ag_other", "ffffffffffffffff", start - 1_000)
                .unwrap(),
        );
    }
    // The Hub restarts 200 s later and rebuilds the store from the persisted records.
    let restarted_at = start + 200;
    let store = ReplayStore::new(1_000);
    store.load(persisted, restarted_at);
    assert_eq!(store.len(), 1);
    let verified = verify_v2(&wire, agent_id, api_key, restarted_at).unwrap();
    assert_eq!(
        store.check_and_insert(agent_id, &verified.nonce_lower, restarted_at),
        Err(Subcause::NonceReplay)
    );
    // Past the skew window the timestamp check takes over; the entry can then go.
    assert!(matches!(
        verify_v2(&wire, agent_id, api_key, start + 301),
        Err(Subcause::ClockSkew { .. })
    ));
    assert_eq!(store.sweep(start + ReplayStore::TTL_S + 1), 1);
}

#[test]
fn concurrent_uses_of_one_nonce_accept_exactly_one() {
    const THREADS: usize = 16;
    for round in 0..20 {
        let store = Arc::new(ReplayStore::new(10_000));
        let barrier = Arc::new(Barrier::new(THREADS));
        let nonce = format!("{round:016x}");
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let (store, barrier, nonce) =
                    (Arc::clone(&store), Arc::clone(&barrier), nonce.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    store.check_and_insert("jh_ag_CCCCCCCCCCCCCCCCCCCCCCCC", &nonce, 1_900_000_000)
                })
            })
            .collect();
        let results: Vec<_> = handles
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .collect();
        assert_eq!(
            results.iter().filter(|result| result.is_ok()).count(),
            1,
            "round {round}"
        );
        assert!(
            results
                .iter()
                .filter_map(|result| result.as_ref().err())
                .all(|error| *error == Subcause::NonceReplay)
        );
        assert_eq!(store.len(), 1);
    }
}

#[test]
fn the_store_stays_within_its_bound_under_concurrent_load() {
    let store = Arc::new(ReplayStore::new(1_000));
    let handles: Vec<_> = (0..8)
        .map(|thread| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                (0..500)
                    .filter(|i| {
                        store
                            .check_and_insert(
                                "jh_ag_DDDDDDDDDDDDDDDDDDDDDDDD",
                                &format!("{thread:08x}{i:08x}"),
                                0,
                            )
                            .is_ok()
                    })
                    .count()
            })
        })
        .collect();
    let accepted: usize = handles
        .into_iter()
        .map(|handle| handle.join().unwrap())
        .sum();
    // The count check and the insert are not one atomic step across shards,
    // so racing inserts may overshoot by at most one per thread.
    assert!((1_000..=1_008).contains(&accepted), "{accepted}");
    assert_eq!(store.len(), accepted);
    assert_eq!(
        store.check_and_insert("jh_ag_DDDDDDDDDDDDDDDDDDDDDDDD", "eeeeeeeeeeeeeeee", 10),
        Err(Subcause::ReplayStoreFull)
    );
    assert_eq!(
        mismatch_error(&Subcause::ReplayStoreFull).http_status(),
        503
    );
    assert_eq!(store.sweep(ReplayStore::TTL_S + 1), accepted);
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn verify_v2_on_arbitrary_input(wire in "\\PC{0,120}", now in any::<i64>()) {
            let _ = verify_v2(&wire, "jh_ag_x", "jh_ak_y", now);
        }

        #[test]
        fn verify_v2_on_near_valid_input(ts in "[0-9]{0,22}", nonce in "[0-9a-fA-Fg]{0,40}", tag in "[0-9a-fA-F]{60,68}", now in any::<i64>()) {
            let _ = verify_v2(&format!("v2:{ts}:{nonce}:{tag}"), "jh_ag_x", "jh_ak_y", now);
        }
    }
}
