//! Authentication hot-path costs with 10,000 registered agents:
//! key verification (`Directory::authenticate`), provenance v2 verification,
//! the replay store's check-and-insert, and a rate-limiter check.
//!
//! Run: `cargo bench --bench auth`.
//!
//! Measured 2026-11-25 on the shared 2-core dev machine (other builds
//! running), `--warm-up-time 1 --measurement-time 3`, median [95% CI]:
//!
//! | benchmark | time |
//! |---|---|
//! | authenticate, valid key, 10k agents | 386 ns [371, 403] |
//! | authenticate, wrong key, 10k agents | 379 ns [369, 391] |
//! | provenance v2 verify | 647 ns [626, 671] |
//! | replay check_and_insert, fresh nonce | 0.66–3.1 µs (map growth, noisy) |
//! | rate limiter check, 10k keys | 111 ns [107, 116] |
//!
//! So key check + provenance + replay + rate limit is ~2 µs per request.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use jecp_hub::auth::{
    Directory, RegisterRequest, ReplayStore, ServerSecret, compute_v2, verify_v2,
};
use jecp_hub::gate::RateLimiter;

const AGENTS: usize = 10_000;
const NOW: i64 = 1_900_000_000;

fn registered_directory() -> (Directory, Vec<(String, String)>) {
    let directory = Directory::new(ServerSecret::from_bytes([42u8; 32]), Vec::new());
    let credentials = (0..AGENTS)
        .map(|i| {
            let request = RegisterRequest {
                name: format!("bench agent {i}"),
                ..RegisterRequest::default()
            };
            let registered = directory
                .register(&request, i as u64, "jh", NOW)
                .expect("registration");
            (registered.record.agent_id, registered.api_key)
        })
        .collect();
    (directory, credentials)
}

fn auth_benches(c: &mut Criterion) {
    let (directory, credentials) = registered_directory();
    assert_eq!(directory.len(), AGENTS);

    let mut next = 0usize;
    c.bench_function("authenticate/valid_key_10k_agents", |b| {
        b.iter(|| {
            let (agent_id, api_key) = &credentials[next % AGENTS];
            next = next.wrapping_add(7_919);
            black_box(
                directory
                    .authenticate(black_box(agent_id), black_box(api_key), NOW)
                    .is_ok(),
            )
        })
    });
    c.bench_function("authenticate/wrong_key_10k_agents", |b| {
        b.iter(|| {
            let (agent_id, _) = &credentials[next % AGENTS];
            next = next.wrapping_add(7_919);
            black_box(
                directory
                    .authenticate(
                        black_box(agent_id),
                        "jh_ak_wrongwrongwrongwrongwrongwrongwrongwrongwrong",
                        NOW,
                    )
                    .is_err(),
            )
        })
    });

    let (agent_id, api_key) = &credentials[0];
    let wire = compute_v2(agent_id, api_key, NOW, "0123456789abcdef0123456789abcdef");
    c.bench_function("provenance/verify_v2", |b| {
        b.iter(|| black_box(verify_v2(black_box(&wire), agent_id, api_key, NOW).is_ok()))
    });

    let store = ReplayStore::new(10_000_000);
    let mut counter = 0u64;
    c.bench_function("replay/check_and_insert_fresh_nonce", |b| {
        b.iter_batched(
            || {
                counter += 1;
                format!("{counter:032x}")
            },
            |nonce| black_box(store.check_and_insert(agent_id, &nonce, NOW).is_ok()),
            BatchSize::SmallInput,
        )
    });

    let limiter = RateLimiter::new(60_000);
    let mut now_ms = 0u64;
    c.bench_function("rate_limit/check_10k_keys", |b| {
        b.iter(|| {
            now_ms += 1;
            let (agent_id, _) = &credentials[(now_ms as usize) % AGENTS];
            black_box(limiter.check(agent_id, 500, now_ms).allowed)
        })
    });
}

criterion_group!(benches, auth_benches);
criterion_main!(benches);
