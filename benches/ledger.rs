//! Ledger and store benchmarks (figures go to BENCHMARKS.md; every durable
//! figure names its durability mode).
//!
//! - `ledger_in_memory/hold_post`: one hold + post on the pure ledger (target ≥ 1M/s on one core).
//! - `store_durable/{immediate,batched_2ms}/{1,16,256,4096}`: committed charges (hold + post
//!   through `Store::execute`) with that many concurrent submitters (target ≥ 100k/s at 4,096).
//! - `disk/fdatasync_4k`: raw `fdatasync` of a 4 KiB write on the same disk, to set beside
//!   `store_durable/immediate/1` (target: single-charge p50 ≤ 1.5 × fdatasync p50).
//!
//! Run: `cargo bench --bench ledger` (sample sizes are small so it finishes in minutes).

use std::io::{Seek, SeekFrom, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use jecp_hub::ledger::{AccountId, ChargeMemo, ChargeMethod, Ledger};
use jecp_hub::money::Micros;
use jecp_hub::records::AgentRecord;
use jecp_hub::store::{Command, Durability, Reply, Store, StoreOptions};

const WALLET: AccountId = AccountId(AccountId::FIRST_WALLET);

fn memo(request_id: String) -> ChargeMemo {
    ChargeMemo {
        agent_id: "jecp_ag_bench0000000000000000".into(),
        capability: "text".into(),
        action: "count".into(),
        request_id,
        method: ChargeMethod::Wallet,
    }
}

fn in_memory(c: &mut Criterion) {
    let mut group = c.benchmark_group("ledger_in_memory");
    group.throughput(Throughput::Elements(1));
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3));
    let mut ledger = Ledger::new();
    ledger.open_wallet(WALLET).unwrap();
    ledger
        .credit(WALLET, Micros::from_usdc(900_000_000), "fund", 0)
        .unwrap();
    let template = memo("req".into());
    let mut now_ms = 1_700_000_000_000i64;
    group.bench_function("hold_post", |b| {
        b.iter(|| {
            now_ms += 1;
            let hold = ledger.hold(WALLET, Micros::new(5).unwrap()).unwrap();
            std::hint::black_box(
                ledger
                    .post(hold, AccountId::HUB_PROVIDER, template.clone(), now_ms)
                    .unwrap(),
            );
        })
    });
    group.finish();
}

fn open_funded_store(
    durability: Durability,
) -> (tempfile::TempDir, Store, tokio::runtime::Runtime) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir =
        tempfile::tempdir_in(std::env::var_os("BENCH_DIR").unwrap_or_else(|| ".".into())).unwrap();
    let options = StoreOptions {
        durability,
        ..StoreOptions::default()
    };
    let (store, _) = Store::open(dir.path(), options).unwrap();
    runtime.block_on(async {
        let agent = AgentRecord::new(
            "jecp_ag_bench0000000000000000".into(),
            WALLET.0,
            "bench".into(),
            [0; 32],
            0,
        );
        store
            .execute(Command::OpenWallet {
                account: WALLET,
                agent,
            })
            .await
            .unwrap();
        store
            .execute(Command::Credit {
                wallet: WALLET,
                amount: Micros::from_usdc(900_000_000),
                reference: "fund".into(),
            })
            .await
            .unwrap();
    });
    (dir, store, runtime)
}

/// `total` charges (hold + post) from `submitters` concurrent tasks; returns the wall time.
fn run_charges(
    runtime: &tokio::runtime::Runtime,
    store: &Store,
    submitters: u64,
    total: u64,
) -> Duration {
    let submitters = submitters.min(total).max(1);
    let sequence = Arc::new(AtomicU64::new(0));
    runtime.block_on(async {
        let started = Instant::now();
        let tasks: Vec<_> = (0..submitters)
            .map(|task| {
                let store = store.clone();
                let sequence = Arc::clone(&sequence);
                let share = total / submitters + u64::from(task < total % submitters);
                tokio::spawn(async move {
                    for _ in 0..share {
                        // As the Hub does: the hold is taken in memory, the
                        // post is the durable commit.
                        let hold = store
                            .hold(WALLET, Micros::new(5).unwrap())
                            .expect("hold refused");
                        let request = format!("req-{}", sequence.fetch_add(1, Ordering::Relaxed));
                        let posted = store
                            .execute(Command::Post {
                                hold,
                                provider: AccountId::HUB_PROVIDER,
                                memo: memo(request),
                                idempotency: None,
                            })
                            .await;
                        assert!(matches!(posted, Ok(Reply::Posted(_))));
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        started.elapsed()
    })
}

fn durable(c: &mut Criterion) {
    for (label, durability) in [
        ("immediate", Durability::Immediate),
        (
            "batched_2ms",
            Durability::Batched {
                fsync_interval_ms: 2,
            },
        ),
    ] {
        let (_dir, store, runtime) = open_funded_store(durability);
        let mut group = c.benchmark_group(format!("store_durable/{label}"));
        group.throughput(Throughput::Elements(1));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3));
        for submitters in [1u64, 16, 256, 4_096] {
            group.bench_with_input(
                BenchmarkId::from_parameter(submitters),
                &submitters,
                |b, &submitters| {
                    b.iter_custom(|iters| run_charges(&runtime, &store, submitters, iters))
                },
            );
        }
        group.finish();
        runtime.block_on(store.shutdown());
    }
}

fn fdatasync(c: &mut Criterion) {
    let mut group = c.benchmark_group("disk");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3));
    let mut file =
        tempfile::tempfile_in(std::env::var_os("BENCH_DIR").unwrap_or_else(|| ".".into())).unwrap();
    let page = [0x5au8; 4_096];
    group.bench_function("fdatasync_4k", |b| {
        b.iter(|| {
            file.seek(SeekFrom::Start(0)).unwrap();
            file.write_all(&page).unwrap();
            file.sync_data().unwrap();
        })
    });
    group.finish();
}

criterion_group!(benches, in_memory, durable, fdatasync);
criterion_main!(benches);
