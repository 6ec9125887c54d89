//! The sliding-window rate limiter against a naive reference model, under
//! concurrency, and the 429 it produces.

use std::sync::{Arc, Barrier};

use jecp_hub::gate::{RateLimiter, Tier, rate_limited_error};
use jecp_hub::protocol::{ErrorCode, HubLinks};
use proptest::prelude::*;

const WINDOW_MS: u64 = 60_000;

/// The obviously-correct model: keep every allowed hit, count those in
/// `(now − window, now]`.
fn model_allows(allowed_hits: &[u64], limit: u32, now_ms: u64) -> bool {
    let in_window = allowed_hits
        .iter()
        .filter(|&&at| at + WINDOW_MS > now_ms)
        .count();
    in_window < limit as usize
}

proptest! {
    #[test]
    fn matches_the_naive_model(limit in 1u32..12, steps in prop::collection::vec(0u64..9_000, 1..200)) {
        let limiter = RateLimiter::new(WINDOW_MS);
        let mut now_ms = 0u64;
        let mut allowed_hits = Vec::new();
        for step in steps {
            now_ms += step;
            let expected = model_allows(&allowed_hits, limit, now_ms);
            let decision = limiter.check("agent", limit, now_ms);
            prop_assert_eq!(decision.allowed, expected, "at {} ms", now_ms);
            if decision.allowed {
                allowed_hits.push(now_ms);
                let in_window = allowed_hits.iter().filter(|&&at| at + WINDOW_MS > now_ms).count() as u32;
                prop_assert_eq!(decision.remaining, limit - in_window);
            } else {
                prop_assert!((1..=600).contains(&decision.retry_after_s));
                // Waiting exactly retry_after frees a slot; waiting a second less does not.
                let retry_at = now_ms + decision.retry_after_s * 1_000;
                prop_assert!(model_allows(&allowed_hits, limit, retry_at));
                if decision.retry_after_s > 1 {
                    prop_assert!(!model_allows(&allowed_hits, limit, retry_at - 1_000));
                }
            }
        }
    }
}

#[test]
fn limit_n_allows_exactly_n_then_slides() {
    let limiter = RateLimiter::new(WINDOW_MS);
    let allowed = (0..15)
        .filter(|i| limiter.check("k", 10, 1_000 + i * 100).allowed)
        .count();
    assert_eq!(allowed, 10);
    let denied = limiter.check("k", 10, 2_500);
    assert!(!denied.allowed);
    assert_eq!(denied.remaining, 0);
    // The first hit was at 1.000 s: it leaves at 61.000 s, 58.5 s from now.
    assert_eq!(denied.retry_after_s, 59);
    assert!(!limiter.check("k", 10, 60_999).allowed);
    assert!(limiter.check("k", 10, 61_000).allowed);
    assert!(!limiter.check("k", 10, 61_050).allowed);
    assert!(limiter.check("k", 10, 61_100).allowed);
}

#[test]
fn concurrent_hits_on_one_key_allow_exactly_the_limit() {
    const THREADS: usize = 8;
    let limiter = Arc::new(RateLimiter::new(WINDOW_MS));
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let (limiter, barrier) = (Arc::clone(&limiter), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                (0..100)
                    .filter(|_| limiter.check("hot", 250, 5_000).allowed)
                    .count()
            })
        })
        .collect();
    let allowed: usize = handles
        .into_iter()
        .map(|handle| handle.join().unwrap())
        .sum();
    assert_eq!(allowed, 250);
}

#[test]
fn a_denied_decision_becomes_a_spec_shaped_429() {
    let limiter = RateLimiter::new(WINDOW_MS);
    let limit = 10;
    for i in 0..limit {
        assert!(limiter.check("agent", limit, u64::from(i) * 1_000).allowed);
    }
    let now_s = 1_900_000_000;
    let decision = limiter.check("agent", limit, 30_000);
    let error = rate_limited_error(&decision, Tier::Bronze.as_str(), now_s);
    assert_eq!(error.code, ErrorCode::RateLimited);
    assert_eq!(error.retry_after_seconds, Some(30));
    let links = HubLinks {
        public_url: "https://hub.example".into(),
        allowed_topup_usd: vec![5],
    };
    let body = error.to_envelope(None, &links);
    assert_eq!(body["error"]["details"]["retry_after_seconds"], 30);
    assert_eq!(body["error"]["details"]["limit_rpm"], 10);
    assert_eq!(body["error"]["details"]["tier"], "bronze");
    assert_eq!(body["error"]["details"]["reset_at"], "2030-03-17T17:47:10Z");
    assert_eq!(body["next_action"]["type"], "retry_after");
    assert!(
        error
            .headers
            .contains(&("X-RateLimit-Remaining", "0".to_string()))
    );
}
