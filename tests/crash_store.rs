//! Crash test: a child process applies operations through the writer and
//! logs each acknowledgment only after it arrives; the parent SIGKILLs it at
//! random moments, reopens the store and checks that every acknowledged
//! operation is present, nothing beyond the in-flight ones is, and that
//! `ledger verify` passes.
//!
//! The child is this same test binary re-invoked with `CRASH_CHILD_DIR` set
//! (so no helper binary ships with the Hub).

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jecp_hub::ledger::{AccountId, ChargeMemo, ChargeMethod};
use jecp_hub::money::Micros;
use jecp_hub::records::AgentRecord;
use jecp_hub::store::admin::{self, ExportFormat};
use jecp_hub::store::{Command, Reply, Store, StoreOptions};

const CHILD_DIR_ENV: &str = "CRASH_CHILD_DIR";
const CHILD_ROUND_ENV: &str = "CRASH_CHILD_ROUND";
mod common;

const WALLET: AccountId = AccountId(AccountId::FIRST_WALLET);
/// Concurrent submitters in the child: also the bound on in-flight operations.
const SUBMITTERS: u64 = 16;
const ROUNDS: u64 = 20;

fn ack_log(dir: &Path, round: u64) -> PathBuf {
    dir.join(format!("acks-{round}.log"))
}

/// Child: submits forever until killed. Writes `B <op>` before submitting
/// and `A <op>` only after the acknowledgment (one unbuffered write each, so
/// a SIGKILL cannot lose a logged line: it is in the kernel already).
fn run_child(dir: PathBuf, round: u64) -> ! {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        // A small hand-off size: the kill lands while journal files switch and
        // background checkpoints run, not only between them.
        let options = StoreOptions {
            checkpoint_bytes: 32 * 1024,
            ..StoreOptions::default()
        };
        let (store, _) = Store::open(&dir, options).unwrap();
        let log = Arc::new(Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(ack_log(&dir, round))
                .unwrap(),
        ));
        let counter = Arc::new(AtomicU64::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..SUBMITTERS {
            let (store, log, counter) = (store.clone(), Arc::clone(&log), Arc::clone(&counter));
            tasks.spawn(async move {
                loop {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let op = format!("r{round}-{n}");
                    log.lock()
                        .unwrap()
                        .write_all(format!("B {op}\n").as_bytes())
                        .unwrap();
                    if n % 3 == 0 {
                        let reply = store
                            .execute(Command::Credit {
                                wallet: WALLET,
                                amount: Micros::new(1).unwrap(),
                                reference: op.clone(),
                            })
                            .await;
                        assert!(matches!(reply, Ok(Reply::Credited(_))), "{reply:?}");
                    } else {
                        let Ok(Reply::Held(hold)) = store
                            .execute(Command::Hold {
                                wallet: WALLET,
                                amount: Micros::new(1_000).unwrap(),
                            })
                            .await
                        else {
                            panic!("hold refused")
                        };
                        let memo = ChargeMemo {
                            agent_id: "jecp_ag_crash".into(),
                            capability: "text".into(),
                            action: "count".into(),
                            request_id: op.clone(),
                            method: ChargeMethod::Wallet,
                        };
                        let reply = store
                            .execute(Command::Post {
                                hold,
                                provider: AccountId::HUB_PROVIDER,
                                memo,
                                idempotency: None,
                            })
                            .await;
                        assert!(matches!(reply, Ok(Reply::Posted(_))), "{reply:?}");
                    }
                    log.lock()
                        .unwrap()
                        .write_all(format!("A {op}\n").as_bytes())
                        .unwrap();
                }
            });
        }
        // The tasks loop until killed; only a failed assertion ends one early.
        if let Some(Err(error)) = tasks.join_next().await {
            eprintln!("crash child task failed: {error}");
            std::process::exit(3);
        }
    });
    std::process::exit(4)
}

/// xorshift64*: enough randomness for kill timings without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

async fn setup(dir: &Path) {
    let (store, _) = Store::open(dir, StoreOptions::default()).unwrap();
    let agent = AgentRecord::new("jecp_ag_crash".into(), WALLET.0, "crash".into(), [0; 32], 0);
    common::open_funded_wallet(&store, WALLET, agent, Micros::from_usdc(100_000), "fund").await;
    store.shutdown().await;
}

/// Operation ids of a round found in the store: credit references and charge memos.
fn stored_ops(dir: &Path, round: u64) -> HashSet<String> {
    let mut jsonl = Vec::new();
    admin::export(dir, ExportFormat::Jsonl, &mut jsonl).unwrap();
    let prefix = format!("r{round}-");
    String::from_utf8(jsonl)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter_map(|row| {
            let op = row["reference"]
                .as_str()
                .or(row["request_id"].as_str())?
                .to_owned();
            op.starts_with(&prefix).then_some(op)
        })
        .collect()
}

#[test]
fn sigkill_at_random_moments_loses_no_acknowledged_operation() {
    if let Ok(dir) = std::env::var(CHILD_DIR_ENV) {
        let round = std::env::var(CHILD_ROUND_ENV).unwrap().parse().unwrap();
        run_child(PathBuf::from(dir), round);
    }
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(setup(dir.path()));
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("crash test seed {seed}");
    let mut rng = Rng(seed);
    let mut total_acked = 0usize;
    let mut total_replayed = 0usize;
    for round in 0..ROUNDS {
        let mut child = Process::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "sigkill_at_random_moments_loses_no_acknowledged_operation",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR_ENV, dir.path())
            .env(CHILD_ROUND_ENV, round.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(150 + rng.next() % 350));
        assert!(
            child.try_wait().unwrap().is_none(),
            "round {round}: the child died on its own (seed {seed})"
        );
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let log = std::fs::read_to_string(ack_log(dir.path(), round)).unwrap_or_default();
        let mut begun = HashSet::new();
        let mut acked = HashSet::new();
        for line in log.lines() {
            // The kill may cut the last line short; a partial line counts as nothing.
            match line.split_once(' ') {
                Some(("B", op)) => {
                    begun.insert(op.to_owned());
                }
                Some(("A", op)) => {
                    acked.insert(op.to_owned());
                }
                _ => {}
            }
        }
        // Acknowledged batches reach redb in checkpoints; the ones after the
        // last checkpoint survive the kill only in the journal, which
        // `ledger verify` replays first, as a start would.
        let report = admin::verify(dir.path()).unwrap();
        assert!(report.is_ok(), "round {round}: {report} (seed {seed})");
        total_replayed += report.journal_replayed;
        // Reopening runs redb recovery and the store's invariant checks.
        let (store, _) = Store::open(dir.path(), StoreOptions::default())
            .unwrap_or_else(|error| panic!("round {round}: reopen failed: {error} (seed {seed})"));
        runtime.block_on(store.shutdown());
        let stored = stored_ops(dir.path(), round);
        let lost: Vec<&String> = acked.difference(&stored).collect();
        assert!(
            lost.is_empty(),
            "round {round}: acknowledged but missing: {lost:?} (seed {seed})"
        );
        let unexplained: Vec<&String> = stored.difference(&begun).collect();
        assert!(
            unexplained.is_empty(),
            "round {round}: stored but never submitted: {unexplained:?} (seed {seed})"
        );
        let in_flight = stored.difference(&acked).count() as u64;
        assert!(
            in_flight <= SUBMITTERS,
            "round {round}: {in_flight} unacknowledged ops stored (seed {seed})"
        );
        let report = admin::verify(dir.path()).unwrap();
        assert!(report.is_ok(), "round {round}: {report} (seed {seed})");
        total_acked += acked.len();
    }
    assert!(
        total_acked as u64 >= ROUNDS,
        "the child acknowledged only {total_acked} operations in {ROUNDS} rounds"
    );
    assert!(
        total_replayed > 0,
        "no round left batches in the journal: the replay path went untested"
    );
    eprintln!(
        "crash test: {ROUNDS} rounds, {total_acked} acknowledged operations, {total_replayed} journal records replayed, {:?}",
        started.elapsed()
    );
}
