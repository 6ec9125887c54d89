//! Injected disk failures: a failed commit fails its waiters, leaves the
//! ledger equal to the file, and the store recovers once the disk does.

use jecp_hub::ledger::{Account, AccountId, ChargeMemo, ChargeMethod, HoldId, LedgerError};
use jecp_hub::money::Micros;
use jecp_hub::records::AgentRecord;
use jecp_hub::store::{Command, FaultSwitch, Reply, Store, StoreError, StoreOptions, admin};

mod common;

const WALLET: AccountId = AccountId(AccountId::FIRST_WALLET);

fn agent() -> AgentRecord {
    AgentRecord::new("jecp_ag_fault".into(), WALLET.0, "fault".into(), [0; 32], 0)
}

fn memo(request: &str) -> ChargeMemo {
    ChargeMemo {
        agent_id: "jecp_ag_fault".into(),
        capability: "text".into(),
        action: "count".into(),
        request_id: request.into(),
        method: ChargeMethod::Wallet,
    }
}

async fn hold(store: &Store, micros: u64) -> HoldId {
    match store
        .execute(Command::Hold {
            wallet: WALLET,
            amount: Micros::new(micros).unwrap(),
        })
        .await
    {
        Ok(Reply::Held(hold)) => hold,
        other => panic!("hold failed: {other:?}"),
    }
}

/// Opens a store in `dir` with one wallet holding 1 USDC (credit reference `t1`).
async fn open_funded(dir: &std::path::Path, options: StoreOptions) -> Store {
    let (store, _) = Store::open(dir, options).unwrap();
    common::open_funded_wallet(&store, WALLET, agent(), Micros::from_usdc(1), "t1").await;
    store
}

fn posted_state(account: &Account) -> (Micros, Micros, u64) {
    (
        account.credits_posted,
        account.debits_posted,
        account.charges_posted,
    )
}

#[tokio::test]
async fn a_failed_commit_fails_the_batch_and_memory_equals_disk() {
    let dir = tempfile::tempdir().unwrap();
    let switch = FaultSwitch::new();
    let options = StoreOptions {
        fault: Some(switch.clone()),
        ..StoreOptions::default()
    };
    let store = open_funded(dir.path(), options.clone()).await;
    let doomed = hold(&store, 10_000).await;
    let snapshot = |store: &Store| {
        store.read_ledger(|l| {
            l.accounts()
                .map(|a| (a.id, posted_state(a)))
                .collect::<std::collections::BTreeMap<_, _>>()
        })
    };
    let before = snapshot(&store);

    switch.arm();
    let result = store
        .execute(Command::Post {
            hold: doomed,
            provider: AccountId::HUB_PROVIDER,
            memo: memo("doomed"),
            idempotency: None,
        })
        .await;
    assert!(
        matches!(&result, Err(StoreError::Degraded(message)) if message.contains("No space left")),
        "{result:?}"
    );
    assert!(switch.injected_failures() > 0);
    assert_eq!(
        snapshot(&store),
        before,
        "posted state must equal the file after a failed commit"
    );
    let health = store.health();
    assert!(
        !health.ok && health.failed_commits >= 1 && health.last_error.is_some(),
        "{health:?}"
    );
    let jecp = result.unwrap_err().to_jecp();
    assert_eq!(
        (jecp.code.http_status(), jecp.retry_after_seconds.is_some()),
        (503, true)
    );
    // The failed post consumed its hold (its caller was told it failed): the
    // reservation is released rather than leaked.
    assert_eq!(
        store.read_ledger(|l| l.available(WALLET)),
        Some(Micros::from_usdc(1))
    );
    // A credit during the outage fails too, and is not applied.
    let credit = store
        .execute(Command::Credit {
            wallet: WALLET,
            amount: Micros::from_usdc(5),
            reference: "t2".into(),
        })
        .await;
    assert!(matches!(credit, Err(StoreError::Degraded(_))), "{credit:?}");
    assert_eq!(snapshot(&store), before);

    switch.disarm();
    let survivor = hold(&store, 20_000).await;
    let posted = store
        .execute(Command::Post {
            hold: survivor,
            provider: AccountId::HUB_PROVIDER,
            memo: memo("ok"),
            idempotency: None,
        })
        .await;
    assert!(
        matches!(posted, Ok(Reply::Posted(ref p)) if p.cost.get() == 20_000),
        "{posted:?}"
    );
    assert!(store.health().ok);
    // The failed credit's reference was rolled back: it can be retried.
    assert!(matches!(
        store
            .execute(Command::Credit {
                wallet: WALLET,
                amount: Micros::from_usdc(5),
                reference: "t2".into()
            })
            .await,
        Ok(Reply::Credited(_))
    ));
    assert_eq!(
        store
            .execute(Command::Post {
                hold: doomed,
                provider: AccountId::HUB_PROVIDER,
                memo: memo("again"),
                idempotency: None
            })
            .await,
        Err(StoreError::Ledger(LedgerError::UnknownHold(doomed)))
    );
    let after = store.read_ledger(|l| l.account(WALLET).cloned()).unwrap();
    store.shutdown().await;

    // Reopen: exactly the committed state (1 + 5 USDC in, one 0.02 charge).
    let report = admin::verify(dir.path()).unwrap();
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.transfers, 2 + 3);
    let (store, _) = Store::open(dir.path(), options).unwrap();
    let reopened = store.read_ledger(|l| l.account(WALLET).cloned()).unwrap();
    assert_eq!(posted_state(&reopened), posted_state(&after));
    assert_eq!(reopened.charges_posted, 1);
    assert_eq!(reopened.credits_posted, Micros::from_usdc(6));
    store.shutdown().await;
}

#[tokio::test]
async fn batched_mode_reloads_memory_from_disk_when_the_interval_fsync_fails() {
    let dir = tempfile::tempdir().unwrap();
    // Session 1: a durable baseline of 1 USDC (shutdown makes a durable commit).
    let store = open_funded(dir.path(), StoreOptions::default()).await;
    store.shutdown().await;

    // Session 2: batched mode acknowledges a credit before its fsync; the
    // disk then fails, so that credit is inside the documented loss window.
    let switch = FaultSwitch::new();
    let options = StoreOptions {
        durability: jecp_hub::store::Durability::Batched {
            fsync_interval_ms: 300,
        },
        fault: Some(switch.clone()),
        ..StoreOptions::default()
    };
    let (store, _) = Store::open(dir.path(), options).unwrap();
    let credited = store
        .execute(Command::Credit {
            wallet: WALLET,
            amount: Micros::from_usdc(2),
            reference: "t2".into(),
        })
        .await;
    assert!(matches!(credited, Ok(Reply::Credited(_))));
    switch.arm();
    let mut waited_ms = 0;
    while store.health().failed_commits == 0 && waited_ms < 5_000 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        waited_ms += 20;
    }
    let health = store.health();
    assert!(
        !health.ok && health.failed_commits >= 1 && health.loss_window_ms == 300,
        "{health:?}"
    );
    switch.disarm();
    // The next command reopens the file and rebuilds memory from it: the
    // unsynced credit is gone from memory exactly as from disk.
    let refused = store
        .execute(Command::Hold {
            wallet: WALLET,
            amount: Micros::from_usdc(2),
        })
        .await;
    assert!(
        matches!(refused, Err(StoreError::Ledger(LedgerError::InsufficientFunds { available, .. })) if available == Micros::from_usdc(1)),
        "{refused:?}"
    );
    assert!(!store.read_ledger(|l| l.has_reference("t2")));
    assert!(matches!(
        store
            .execute(Command::Credit {
                wallet: WALLET,
                amount: Micros::from_usdc(2),
                reference: "t2".into()
            })
            .await,
        Ok(Reply::Credited(_))
    ));
    store.shutdown().await;
    let report = admin::verify(dir.path()).unwrap();
    assert!(report.is_ok() && report.transfers == 2, "{report}");
}

/// Waits up to 5 s for `done` to hold of the store's health.
async fn wait_for_health(store: &Store, done: impl Fn(&jecp_hub::store::StoreHealth) -> bool) {
    for _ in 0..250 {
        if done(&store.health()) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!(
        "health never reached the expected state: {:?}",
        store.health()
    );
}

#[tokio::test]
async fn failed_checkpoints_lose_no_acknowledged_charge_and_the_store_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let switch = FaultSwitch::new();
    // Tiny journal files: a hand-off to the checkpoint thread every few charges.
    let options = StoreOptions {
        checkpoint_bytes: 2 * 1024,
        fault: Some(switch.clone()),
        ..StoreOptions::default()
    };
    let store = open_funded(dir.path(), options.clone()).await;

    // redb's fsync fails; the journal does not.
    switch.arm_with(jecp_hub::store::FaultKind::DatabaseSyncError);
    let mut acknowledged = 0u64;
    for i in 0..120 {
        // Holds are memory-only and taken directly, as the Hub does.
        let held = store.hold(WALLET, Micros::new(1_000).unwrap()).unwrap();
        match store
            .execute(Command::Post {
                hold: held,
                provider: AccountId::HUB_PROVIDER,
                memo: memo(&format!("c{i}")),
                idempotency: None,
            })
            .await
        {
            Ok(Reply::Posted(_)) => acknowledged += 1,
            // Once a checkpoint has failed, redb must be reopened before the
            // next batch; until it can be, calls are refused and not charged.
            Err(StoreError::Degraded(_)) => {
                let _ = store.void(held);
            }
            other => panic!("unexpected post result: {other:?}"),
        }
    }
    assert!(
        switch.injected_failures() > 0,
        "no checkpoint was attempted"
    );
    assert!(acknowledged > 0, "the journal kept no commit going");
    wait_for_health(&store, |health| health.failed_commits >= 1).await;
    assert_eq!(
        store.read_ledger(|l| l.account(WALLET).map(|a| a.charges_posted)),
        Some(acknowledged)
    );

    // Once redb syncs again the probe checkpoints the held-back batches.
    switch.disarm();
    wait_for_health(&store, |health| health.ok).await;
    let held = store.hold(WALLET, Micros::new(1_000).unwrap()).unwrap();
    assert!(matches!(
        store
            .execute(Command::Post {
                hold: held,
                provider: AccountId::HUB_PROVIDER,
                memo: memo("after"),
                idempotency: None,
            })
            .await,
        Ok(Reply::Posted(_))
    ));
    store.shutdown().await;

    let report = admin::verify(dir.path()).unwrap();
    assert!(report.is_ok(), "{report}");
    // The credit, then three legs per acknowledged charge; nothing else.
    assert_eq!(report.transfers, 1 + 3 * (acknowledged + 1));
    let (store, _) = Store::open(dir.path(), options).unwrap();
    assert_eq!(
        store.read_ledger(|l| l.account(WALLET).map(|a| a.charges_posted)),
        Some(acknowledged + 1)
    );
    store.shutdown().await;
}
