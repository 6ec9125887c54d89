//! Per-request costs of the invoke pipeline's CPU-only steps (issue 8), the
//! figures `bench/run.sh` puts in `BENCHMARKS.md`:
//!
//! - `envelope/*`: `hub::envelope::parse` (JSON parse + every envelope check).
//! - `schema/*`: compiled input-schema validation of `utility/hash`.
//! - `idempotency/*`: the request fingerprint and `IdempotencyTable::claim`
//!   answering from 100,000 stored responses (the replay path).
//! - `response/*`: serialising a representative success body and building an
//!   error envelope with `JecpError::to_envelope`.
//!
//! Key verification, provenance v2 (benches/auth.rs) and ledger hold+post
//! (benches/ledger.rs) are measured by those benches, not repeated here.
//!
//! Run: `cargo bench --bench hub_micro`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use jecp_hub::catalog::{Catalog, CatalogOverrides, Resolution};
use jecp_hub::config::Config;
use jecp_hub::hub::IdempotencyTable;
use jecp_hub::hub::idempotency::{Claim, StoredResponse};
use jecp_hub::protocol::canonical::{FingerprintParts, fingerprint};
use jecp_hub::protocol::{ErrorCode, JecpError};
use serde_json::{Value, json};

/// Stored responses in the idempotency table while measuring lookups.
const STORED_RESPONSES: usize = 100_000;
const NOW_S: i64 = 1_900_000_000;
const AGENT_ID: &str = "hub_ag_bench0000000000000000";

const ECHO_ENVELOPE: &[u8] = br#"{"jecp":"1.0","id":"bench-request-0001","capability":"utility","action":"echo","input":{"text":"hi"}}"#;

fn configure(group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    group
        .throughput(Throughput::Elements(1))
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
}

fn envelope(c: &mut Criterion) {
    let mut group = c.benchmark_group("envelope");
    configure(&mut group);
    group.bench_function("parse_valid", |b| {
        b.iter(|| black_box(jecp_hub::hub::envelope::parse(black_box(ECHO_ENVELOPE)).is_ok()))
    });
    let invalid = br#"{"jecp":"1.0","id":"x!","capability":"utility","action":"echo","input":{}}"#;
    group.bench_function("parse_invalid_id", |b| {
        b.iter(|| black_box(jecp_hub::hub::envelope::parse(black_box(invalid)).is_err()))
    });
    group.finish();
}

fn schema(c: &mut Criterion) {
    let catalog = Catalog::builtin("hub", "http://127.0.0.1:8080", &CatalogOverrides::default())
        .expect("built-in catalog");
    let Resolution::Found(utility) = catalog.resolve("utility") else {
        panic!("utility capability missing");
    };
    let hash = utility.action("hash").expect("utility/hash");
    let valid = json!({"text": "hello world", "algorithm": "sha256"});
    let invalid = json!({"unexpected": true});
    assert!(hash.validate_input(&valid).is_ok());
    assert!(hash.validate_input(&invalid).is_err());
    let mut group = c.benchmark_group("schema");
    configure(&mut group);
    group.bench_function("validate_input_valid", |b| {
        b.iter(|| black_box(hash.validate_input(black_box(&valid)).is_ok()))
    });
    group.bench_function("validate_input_invalid", |b| {
        b.iter(|| black_box(hash.validate_input(black_box(&invalid)).is_err()))
    });
    group.finish();
}

fn echo_fingerprint(input: &Value) -> [u8; 32] {
    fingerprint(FingerprintParts {
        capability: "hub/utility",
        action: "echo",
        input,
        provenance_hash: None,
        x_payment: None,
    })
}

fn stored(fingerprint: [u8; 32]) -> StoredResponse {
    StoredResponse {
        fingerprint,
        http_status: 200,
        body: Bytes::from_static(b"{\"jecp\":\"1.0\",\"status\":\"completed\"}"),
        headers: Vec::new(),
        expires_at_s: NOW_S + 86_400,
    }
}

fn idempotency(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime");
    let input = json!({"text": "hi"});
    let print = echo_fingerprint(&input);
    let table = IdempotencyTable::new();
    let keys: Vec<String> = (0..STORED_RESPONSES)
        .map(|i| format!("req-{i:08}"))
        .collect();
    runtime.block_on(async {
        for key in &keys {
            match table
                .claim(AGENT_ID, key, print, NOW_S, Duration::from_secs(1), true)
                .await
            {
                Ok(Claim::Leader(guard)) => guard.finish(&stored(print)),
                other => panic!("fresh key not granted: {other:?}"),
            }
        }
    });
    assert_eq!(table.len(), STORED_RESPONSES);

    let mut group = c.benchmark_group("idempotency");
    configure(&mut group);
    group.bench_function("fingerprint_echo_input", |b| {
        b.iter(|| black_box(echo_fingerprint(black_box(&input))))
    });
    let mut next = 0usize;
    group.bench_function("claim_replay_100k_stored", |b| {
        b.iter_custom(|iterations| {
            runtime.block_on(async {
                let started = Instant::now();
                for _ in 0..iterations {
                    let key = &keys[next % STORED_RESPONSES];
                    next = next.wrapping_add(7_919);
                    let claim = table
                        .claim(AGENT_ID, key, print, NOW_S, Duration::from_secs(1), true)
                        .await;
                    assert!(matches!(claim, Ok(Claim::Replay(_))));
                }
                started.elapsed()
            })
        })
    });
    group.finish();
}

fn response(c: &mut Criterion) {
    let links = Config::default().hub_links();
    // The shape `Hub::invoke` answers a billed echo with.
    let body = json!({
        "jecp": "1.0",
        "id": "bench-request-0001",
        "status": "completed",
        "result": {"text": "hi"},
        "provider": {"namespace": "hub", "capability": "hub/utility", "version": "1.0.0"},
        "billing": {
            "charged": true,
            "amount_usdc": 0.001,
            "cost_usdc": 0.001,
            "method": "wallet",
            "balance_after": 99.999,
            "transaction_id": "0193a3f0-8b4e-7c1d-9a2b-3c4d5e6f7a8b",
            "provider_share_usdc": 0.00085,
            "hub_fee_usdc": 0.0001,
            "payment_fee_usdc": 0.00005
        },
        "wallet_balance_after": 99.999,
        "execution": {"duration_ms": 0, "engine": "jecp-hub", "provider": "hub", "trust_tier": "bronze"}
    });
    let mut group = c.benchmark_group("response");
    configure(&mut group);
    group.bench_function("serialize_success_body", |b| {
        b.iter(|| black_box(serde_json::to_vec(black_box(&body)).map(|bytes| bytes.len())))
    });
    group.bench_function("error_envelope", |b| {
        b.iter(|| {
            let error = JecpError::new(
                ErrorCode::CapabilityNotFound,
                "capability `hub/nothing` is not offered by this Hub",
            )
            .detail("capability", "hub/nothing");
            let envelope = error.to_envelope(Some("bench-request-0001"), &links);
            black_box(serde_json::to_vec(&envelope).map(|bytes| bytes.len()))
        })
    });
    group.finish();
}

criterion_group!(benches, envelope, schema, idempotency, response);
criterion_main!(benches);
