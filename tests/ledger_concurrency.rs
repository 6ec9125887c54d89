//! No overspend under concurrency: 1,000 racing holds of 1 USDC on a wallet
//! funded with 100 USDC, through the store's writer on a tokio runtime.

use jecp_hub::ledger::{AccountId, ChargeMemo, ChargeMethod, LedgerError};
use jecp_hub::money::Micros;
use jecp_hub::records::AgentRecord;
use jecp_hub::store::{Command, Reply, Store, StoreError, StoreOptions, admin};

mod common;

const WALLET: AccountId = AccountId(AccountId::FIRST_WALLET);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exactly_100_of_1000_concurrent_holds_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let agent = AgentRecord::new("jecp_ag_race".into(), WALLET.0, "race".into(), [0; 32], 0);
    common::open_funded_wallet(&store, WALLET, agent, Micros::from_usdc(100), "fund").await;

    let tasks: Vec<_> = (0..1_000)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .execute(Command::Hold {
                        wallet: WALLET,
                        amount: Micros::from_usdc(1),
                    })
                    .await
            })
        })
        .collect();
    let mut holds = Vec::new();
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(Reply::Held(hold)) => holds.push(hold),
            Err(StoreError::Ledger(LedgerError::InsufficientFunds { .. })) => refused += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!((holds.len(), refused), (100, 900));
    assert_eq!(
        store.read_ledger(|l| l.available(WALLET)),
        Some(Micros::ZERO)
    );

    // Post half, void half, all concurrently.
    let tasks: Vec<_> = holds
        .into_iter()
        .enumerate()
        .map(|(index, hold)| {
            let store = store.clone();
            tokio::spawn(async move {
                if index % 2 == 0 {
                    let memo = ChargeMemo {
                        agent_id: "jecp_ag_race".into(),
                        capability: "text".into(),
                        action: "count".into(),
                        request_id: format!("req-{index}"),
                        method: ChargeMethod::Wallet,
                    };
                    store
                        .execute(Command::Post {
                            hold,
                            provider: AccountId::HUB_PROVIDER,
                            memo,
                            idempotency: None,
                        })
                        .await
                } else {
                    store.execute(Command::Void { hold }).await
                }
            })
        })
        .collect();
    for task in tasks {
        assert!(matches!(
            task.await.unwrap(),
            Ok(Reply::Posted(_) | Reply::Done)
        ));
    }
    let wallet = store.read_ledger(|l| l.account(WALLET).cloned()).unwrap();
    assert_eq!(
        (
            wallet.charges_posted,
            wallet.debits_posted,
            wallet.debits_pending
        ),
        (50, Micros::from_usdc(50), Micros::ZERO)
    );
    assert!(store.read_ledger(|l| l.verify()).is_empty());
    store.shutdown().await;

    let report = admin::verify(dir.path()).unwrap();
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.transfers, 1 + 50 * 3);
    assert_eq!(report.balance_sum, 0);
}
