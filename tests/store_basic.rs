//! Store round trips through the writer: every command, reopen, locking,
//! format checks and back-pressure.

use jecp_hub::ledger::{AccountId, ChargeMemo, ChargeMethod, LedgerError};
use jecp_hub::money::Micros;
use jecp_hub::protocol::ErrorCode;
use jecp_hub::records::{AgentRecord, IdempotencyRecord, NonceRecord};
use jecp_hub::store::{
    Command, DATABASE_FILE, Durability, IdempotencyRecorder, Reply, Store, StoreError, StoreOptions,
};

fn agent(id: &str, wallet: u64) -> AgentRecord {
    AgentRecord::new(
        id.into(),
        wallet,
        format!("agent {id}"),
        [7; 32],
        1_700_000_000,
    )
}

fn memo(request: &str, method: ChargeMethod) -> ChargeMemo {
    ChargeMemo {
        agent_id: "jecp_ag_a".into(),
        capability: "text".into(),
        action: "count".into(),
        request_id: request.into(),
        method,
    }
}

fn idempotency(key: &str, expires_at_s: i64) -> IdempotencyRecord {
    IdempotencyRecord {
        agent_id: "jecp_ag_a".into(),
        request_key: key.into(),
        fingerprint: [1; 32],
        http_status: 200,
        body: b"{\"ok\":true}".to_vec(),
        headers: vec![("Sunset".into(), "never".into())],
        created_at_s: 0,
        expires_at_s,
    }
}

const WALLET: AccountId = AccountId(AccountId::FIRST_WALLET);

async fn register_and_fund(store: &Store, usdc: u64) {
    assert_eq!(
        store
            .execute(Command::OpenWallet {
                account: WALLET,
                agent: agent("jecp_ag_a", WALLET.0)
            })
            .await,
        Ok(Reply::Done)
    );
    let credited = store
        .execute(Command::Credit {
            wallet: WALLET,
            amount: Micros::from_usdc(usdc),
            reference: "topup-1".into(),
        })
        .await
        .unwrap();
    assert!(matches!(credited, Reply::Credited(ref t) if t.amount == Micros::from_usdc(usdc)));
}

#[tokio::test]
async fn every_command_round_trips_through_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (store, loaded) = Store::open(dir.path(), StoreOptions::default()).unwrap();
    assert!(loaded.agents.is_empty());
    assert_eq!(loaded.next_wallet_account, AccountId::FIRST_WALLET);
    register_and_fund(&store, 10).await;
    // Same reference again: acknowledged, not credited twice.
    assert_eq!(
        store
            .execute(Command::Credit {
                wallet: WALLET,
                amount: Micros::from_usdc(10),
                reference: "topup-1".into()
            })
            .await,
        Ok(Reply::AlreadyCredited)
    );
    let Reply::Held(hold) = store
        .execute(Command::Hold {
            wallet: WALLET,
            amount: Micros::new(5_000).unwrap(),
        })
        .await
        .unwrap()
    else {
        panic!("hold refused")
    };
    let Reply::Posted(posted) = store
        .execute(Command::Post {
            hold,
            provider: AccountId::HUB_PROVIDER,
            memo: memo("req-1", ChargeMethod::Wallet),
            idempotency: Some(IdempotencyRecorder::fixed(idempotency("req-1", i64::MAX))),
        })
        .await
        .unwrap()
    else {
        panic!("post refused")
    };
    assert_eq!(posted.wallet_balance_after, Micros::parse("9.995").unwrap());
    // A second post of the same hold is a ledger error for that caller only.
    assert_eq!(
        store
            .execute(Command::Post {
                hold,
                provider: AccountId::HUB_PROVIDER,
                memo: memo("x", ChargeMethod::Wallet),
                idempotency: None
            })
            .await,
        Err(StoreError::Ledger(LedgerError::UnknownHold(hold)))
    );
    let Reply::Held(voided) = store
        .execute(Command::Hold {
            wallet: WALLET,
            amount: Micros::from_usdc(1),
        })
        .await
        .unwrap()
    else {
        panic!("hold refused")
    };
    assert_eq!(
        store.execute(Command::Void { hold: voided }).await,
        Ok(Reply::Done)
    );
    let free = store
        .execute(Command::ChargeFree {
            wallet: WALLET,
            cost: Micros::new(2_000).unwrap(),
            provider: AccountId::HUB_PROVIDER,
            free_allowance: 5,
            memo: memo("req-2", ChargeMethod::FreeCall),
            idempotency: Some(IdempotencyRecorder::fixed(idempotency("req-2", 100))),
        })
        .await
        .unwrap();
    assert!(matches!(free, Reply::Posted(_)));
    store
        .enqueue(Command::PutNonce(NonceRecord {
            agent_id: "jecp_ag_a".into(),
            nonce: "ab".into(),
            expires_at_s: 50,
        }))
        .unwrap();
    store
        .enqueue(Command::PutNonce(NonceRecord {
            agent_id: "jecp_ag_a".into(),
            nonce: "cd".into(),
            expires_at_s: 500,
        }))
        .unwrap();
    let mut frozen = agent("jecp_ag_a", WALLET.0);
    frozen.frozen = true;
    assert_eq!(
        store.execute(Command::PutAgent(frozen.clone())).await,
        Ok(Reply::Done)
    );
    // Expired at 200: req-2 (100) and nonce ab (50); kept: req-1 and cd.
    assert_eq!(
        store.execute(Command::Sweep { now_s: 200 }).await,
        Ok(Reply::Done)
    );
    let before = store
        .read_ledger(|ledger| ledger.account(WALLET).cloned())
        .unwrap();
    assert_eq!((before.charges_posted, before.free_calls_used), (2, 1));
    let health = store.health();
    assert!(
        health.ok
            && health.commits >= 6
            && health.durability == "immediate"
            && health.loss_window_ms == 0,
        "{health:?}"
    );
    store.shutdown().await;
    assert_eq!(
        store.execute(Command::Sweep { now_s: 0 }).await,
        Err(StoreError::Closed)
    );

    let (store, loaded) = Store::open(dir.path(), StoreOptions::default()).unwrap();
    assert_eq!(loaded.agents, vec![frozen]);
    assert_eq!(loaded.idempotency, vec![idempotency("req-1", i64::MAX)]);
    assert_eq!(
        loaded
            .nonces
            .iter()
            .map(|n| n.nonce.as_str())
            .collect::<Vec<_>>(),
        vec!["cd"]
    );
    assert_eq!(loaded.next_wallet_account, WALLET.0 + 1);
    let after = store
        .read_ledger(|ledger| ledger.account(WALLET).cloned())
        .unwrap();
    assert_eq!(after, before);
    assert_eq!(
        store.read_ledger(|l| l.available(WALLET)),
        Some(Micros::parse("9.995").unwrap())
    );
    // The reference survived the restart.
    assert_eq!(
        store
            .execute(Command::Credit {
                wallet: WALLET,
                amount: Micros::from_usdc(1),
                reference: "topup-1".into()
            })
            .await,
        Ok(Reply::AlreadyCredited)
    );
    store.shutdown().await;
}

#[tokio::test]
async fn a_second_open_of_the_same_directory_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let error = Store::open(dir.path(), StoreOptions::default()).unwrap_err();
    assert!(
        matches!(&error, StoreError::Locked(message) if message.contains("in use by another jecp-hub")),
        "{error}"
    );
    assert!(jecp_hub::store::admin::verify(dir.path()).is_err());
    store.shutdown().await;
    // Released on shutdown.
    let (store, _) = Store::open(dir.path(), StoreOptions::default()).unwrap();
    store.shutdown().await;
}

#[tokio::test]
async fn batched_mode_acknowledges_and_persists_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        durability: Durability::Batched {
            fsync_interval_ms: 20,
        },
        ..StoreOptions::default()
    };
    let (store, _) = Store::open(dir.path(), options.clone()).unwrap();
    register_and_fund(&store, 3).await;
    let health = store.health();
    assert_eq!((health.durability, health.loss_window_ms), ("batched", 20));
    for index in 0..10 {
        let Reply::Held(hold) = store
            .execute(Command::Hold {
                wallet: WALLET,
                amount: Micros::new(1_000).unwrap(),
            })
            .await
            .unwrap()
        else {
            panic!("hold refused")
        };
        let posted = store
            .execute(Command::Post {
                hold,
                provider: AccountId::HUB_PROVIDER,
                memo: memo(&format!("r{index}"), ChargeMethod::Wallet),
                idempotency: None,
            })
            .await;
        assert!(matches!(posted, Ok(Reply::Posted(_))));
    }
    // Let the interval fsync run at least once.
    tokio::time::sleep(std::time::Duration::from_millis(60)).await;
    store.shutdown().await;
    let (store, _) = Store::open(dir.path(), options).unwrap();
    assert_eq!(
        store.read_ledger(|l| l.account(WALLET).map(|a| a.charges_posted)),
        Some(10)
    );
    store.shutdown().await;
}

#[tokio::test]
async fn a_full_queue_answers_busy_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        queue_capacity: 4,
        ..StoreOptions::default()
    };
    let (store, _) = Store::open(dir.path(), options).unwrap();
    // Holding the ledger's read lock stalls the writer in its apply step, so
    // the queue cannot drain while we fill it.
    let results: Vec<Result<(), StoreError>> = store.read_ledger(|_| {
        (0..8)
            .map(|i| store.enqueue(Command::Sweep { now_s: i }))
            .collect()
    });
    let busy = results
        .iter()
        .filter(|r| matches!(r, Err(StoreError::Busy { retry_after_s: 1 })))
        .count();
    assert!(busy >= 3, "{results:?}");
    let jecp = StoreError::Busy { retry_after_s: 1 }.to_jecp();
    assert_eq!(
        (jecp.code, jecp.code.http_status(), jecp.retry_after_seconds),
        (ErrorCode::ServiceDegraded, 503, Some(1))
    );
    // The stalled work completes once the lock is released; a caller that
    // honours Retry-After gets through.
    let mut answer = store.execute(Command::Sweep { now_s: 0 }).await;
    for _ in 0..200 {
        if answer != Err(StoreError::Busy { retry_after_s: 1 }) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        answer = store.execute(Command::Sweep { now_s: 0 }).await;
    }
    assert_eq!(answer, Ok(Reply::Done));
    assert_eq!(store.health().queue_depth, 0);
    store.shutdown().await;
}

#[tokio::test]
async fn newer_or_corrupt_records_stop_start_up_with_a_precise_message() {
    use redb::{ReadableDatabase, TableDefinition};
    const AGENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("agents");
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), StoreOptions::default()).unwrap();
    register_and_fund(&store, 1).await;
    store.shutdown().await;
    let path = dir.path().join(DATABASE_FILE);
    let rewrite = |bytes: &[u8]| {
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(AGENTS)
            .unwrap()
            .insert("jecp_ag_a", bytes)
            .unwrap();
        txn.commit().unwrap();
        let _ = db.begin_read();
    };

    let mut newer = jecp_hub::store::records::encode(&agent("jecp_ag_a", WALLET.0)).unwrap();
    newer[0] = 9;
    rewrite(&newer);
    let error = Store::open(dir.path(), StoreOptions::default()).unwrap_err();
    assert_eq!(
        error,
        StoreError::NewerFormat {
            found: 9,
            supported: 1
        }
    );
    assert!(error.to_string().contains("newer jecp-hub"), "{error}");

    rewrite(&[1, 0xde, 0xad, 0xbe, 0xef]);
    let error = Store::open(dir.path(), StoreOptions::default()).unwrap_err();
    assert!(
        matches!(&error, StoreError::Corrupt(m) if m.contains("table `agents` key jecp_ag_a")),
        "{error}"
    );
}

#[tokio::test]
async fn a_provider_account_opened_through_the_store_survives_a_restart() {
    use jecp_hub::ledger::AccountKind;
    let dir = tempfile::tempdir().unwrap();
    let provider = AccountId(700);
    let (store, _) = Store::open(dir.path(), StoreOptions::default()).unwrap();
    register_and_fund(&store, 1).await;
    assert_eq!(
        store
            .execute(Command::OpenProvider { account: provider })
            .await,
        Ok(Reply::Done)
    );
    assert_eq!(
        store
            .execute(Command::OpenProvider { account: provider })
            .await,
        Err(StoreError::Ledger(LedgerError::AccountExists(provider)))
    );
    let Ok(Reply::Held(hold)) = store
        .execute(Command::Hold {
            wallet: WALLET,
            amount: Micros::new(1_000).unwrap(),
        })
        .await
    else {
        panic!("hold refused")
    };
    let posted = store
        .execute(Command::Post {
            hold,
            provider,
            memo: memo("p", ChargeMethod::Wallet),
            idempotency: None,
        })
        .await;
    assert!(
        matches!(posted, Ok(Reply::Posted(ref p)) if p.provider_share.get() == 850),
        "{posted:?}"
    );
    store.shutdown().await;
    let (store, _) = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let account = store.read_ledger(|l| l.account(provider).cloned()).unwrap();
    assert_eq!(
        (account.kind, account.credits_posted.get()),
        (AccountKind::Provider, 850)
    );
    store.shutdown().await;
}

/// Start-up keeps the bodies of only the newest stored answers within the
/// bound; the older ones come back as keys and fingerprints, and a newer
/// record under a reused key hides the older one.
#[tokio::test]
async fn start_up_loads_only_the_newest_idempotency_bodies_within_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let record = |key: &str, fill: u8| IdempotencyRecord {
        body: vec![fill; 1_000],
        headers: Vec::new(),
        ..idempotency(key, i64::MAX)
    };
    for (key, fill) in [("k1", 1), ("k2", 2), ("k3", 3), ("k1", 4), ("k5", 5)] {
        assert_eq!(
            store
                .execute(Command::PutIdempotency(record(key, fill)))
                .await,
            Ok(Reply::Done)
        );
    }
    store.shutdown().await;

    let bounded = StoreOptions {
        idempotency_bodies_bytes_max: 2_500,
        ..StoreOptions::default()
    };
    let (store, loaded) = Store::open(dir.path(), bounded).unwrap();
    // Log order k1 k2 k3 k1' k5; k1' replaces k1; the newest two fit.
    assert_eq!(loaded.idempotency, vec![record("k1", 4), record("k5", 5)]);
    // Every live key is indexed, those without a body in memory too.
    let index = store.idempotency_index();
    assert_eq!(index.len(), 4);
    for key in ["k1", "k2", "k3", "k5"] {
        assert!(index.is_live(index.key_of("jecp_ag_a", key), 0), "{key}");
    }
    // The store still answers for a key loaded without its body, body and all.
    assert_eq!(
        store
            .execute(Command::ReadIdempotency {
                agent_id: "jecp_ag_a".into(),
                request_key: "k2".into(),
            })
            .await,
        Ok(Reply::Stored(Some(record("k2", 2))))
    );
    store.shutdown().await;

    let (store, everything) = Store::open(dir.path(), StoreOptions::default()).unwrap();
    assert_eq!(everything.idempotency.len(), 4);
    assert_eq!(store.idempotency_index().len(), 4);
}
