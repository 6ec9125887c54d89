//! Unit tests and the model-based property test of the ledger.

use std::collections::HashMap;

use proptest::prelude::*;

use super::*;

fn usdc(value: u64) -> Micros {
    Micros::from_usdc(value)
}

fn memo(method: ChargeMethod) -> ChargeMemo {
    ChargeMemo {
        agent_id: "jecp_ag_test".into(),
        capability: "text".into(),
        action: "count".into(),
        request_id: "req-1".into(),
        method,
    }
}

const WALLET: AccountId = AccountId(AccountId::FIRST_WALLET);

#[test]
fn split_is_85_10_5_with_dust_to_payment() {
    assert_eq!(
        split(Micros::new(5_000).unwrap()),
        (
            Micros::new(4_250).unwrap(),
            Micros::new(500).unwrap(),
            Micros::new(250).unwrap()
        )
    );
    // 7 µ: provider ⌊5.95⌋ = 5, hub ⌊0.7⌋ = 0, payment takes the dust 2.
    assert_eq!(
        split(Micros::new(7).unwrap()),
        (
            Micros::new(5).unwrap(),
            Micros::ZERO,
            Micros::new(2).unwrap()
        )
    );
    let (p, h, f) = split(Micros::MAX);
    assert_eq!(p.get() + h.get() + f.get(), Micros::MAX.get());
}

#[test]
fn hold_post_books_split_and_counts_the_call() {
    let mut ledger = Ledger::new();
    ledger.open_wallet(WALLET).unwrap();
    ledger.credit(WALLET, usdc(1), "topup-1", 10).unwrap();
    let hold = ledger.hold(WALLET, Micros::new(5_000).unwrap()).unwrap();
    assert_eq!(ledger.available(WALLET), Micros::new(995_000));
    let posted = ledger
        .post(
            hold,
            AccountId::HUB_PROVIDER,
            memo(ChargeMethod::Wallet),
            20,
        )
        .unwrap();
    assert_eq!(posted.transfers.len(), 3);
    assert_eq!(posted.wallet_balance_after, Micros::new(995_000).unwrap());
    assert_eq!(posted.provider_share.get(), 4_250);
    assert!(posted.transfers[0].memo.is_some());
    assert!(
        posted
            .transfers
            .iter()
            .all(|t| t.charge == Some(posted.charge) && t.debit == WALLET)
    );
    let wallet = ledger.account(WALLET).unwrap();
    assert_eq!(wallet.charges_posted, 1);
    assert_eq!(wallet.debits_pending, Micros::ZERO);
    assert_eq!(
        ledger
            .account(AccountId::HUB_REVENUE)
            .unwrap()
            .credits_posted
            .get(),
        500
    );
    assert!(ledger.verify().is_empty());
    assert_eq!(
        ledger.post(
            hold,
            AccountId::HUB_PROVIDER,
            memo(ChargeMethod::Wallet),
            30
        ),
        Err(LedgerError::UnknownHold(hold))
    );
}

#[test]
fn hold_refuses_overspend_and_void_releases() {
    let mut ledger = Ledger::new();
    ledger.open_wallet(WALLET).unwrap();
    ledger.credit(WALLET, usdc(2), "r", 1).unwrap();
    let first = ledger.hold(WALLET, usdc(2)).unwrap();
    assert_eq!(
        ledger.hold(WALLET, Micros::new(1).unwrap()),
        Err(LedgerError::InsufficientFunds {
            required: Micros::new(1).unwrap(),
            available: Micros::ZERO
        })
    );
    ledger.void(first).unwrap();
    assert_eq!(ledger.void(first), Err(LedgerError::UnknownHold(first)));
    assert_eq!(ledger.available(WALLET), Some(usdc(2)));
    assert_eq!(
        ledger.hold(WALLET, Micros::ZERO),
        Err(LedgerError::ZeroAmount)
    );
}

#[test]
fn credit_is_idempotent_on_reference_and_checks_kind() {
    let mut ledger = Ledger::new();
    ledger.open_wallet(WALLET).unwrap();
    assert_eq!(
        ledger.open_wallet(WALLET),
        Err(LedgerError::AccountExists(WALLET))
    );
    ledger.credit(WALLET, usdc(5), "stripe:pi_1", 1).unwrap();
    assert_eq!(
        ledger.credit(WALLET, usdc(5), "stripe:pi_1", 2),
        Err(LedgerError::DuplicateReference)
    );
    assert_eq!(
        ledger.credit(AccountId::HUB_PROVIDER, usdc(5), "x", 2),
        Err(LedgerError::NotAWallet(AccountId::HUB_PROVIDER))
    );
    assert_eq!(
        ledger.credit(AccountId(9_999), usdc(5), "y", 2),
        Err(LedgerError::UnknownAccount(AccountId(9_999)))
    );
    assert_eq!(
        ledger.credit(WALLET, Micros::MAX, "z", 2),
        Err(LedgerError::Overflow)
    );
    assert_eq!(
        ledger.account(AccountId::FUNDING).unwrap().balance(),
        -5_000_000
    );
}

#[test]
fn free_calls_are_paid_by_promotions_until_the_allowance() {
    let mut ledger = Ledger::new();
    ledger.open_wallet(WALLET).unwrap();
    let posted = ledger
        .charge_free(
            WALLET,
            Micros::new(5_000).unwrap(),
            AccountId::HUB_PROVIDER,
            1,
            memo(ChargeMethod::FreeCall),
            5,
        )
        .unwrap();
    assert!(
        posted
            .transfers
            .iter()
            .all(|t| t.debit == AccountId::PROMOTIONS)
    );
    assert_eq!(posted.wallet_balance_after, Micros::ZERO);
    let wallet = ledger.account(WALLET).unwrap();
    assert_eq!((wallet.free_calls_used, wallet.charges_posted), (1, 1));
    assert_eq!(
        ledger.charge_free(
            WALLET,
            Micros::new(5_000).unwrap(),
            AccountId::HUB_PROVIDER,
            1,
            memo(ChargeMethod::FreeCall),
            6
        ),
        Err(LedgerError::FreeCallsExhausted)
    );
    assert!(ledger.verify().is_empty());
}

#[test]
fn transfer_ids_are_unique_and_time_ordered_even_if_the_clock_steps_back() {
    let mut ledger = Ledger::new();
    ledger.open_wallet(WALLET).unwrap();
    let a = ledger.credit(WALLET, usdc(1), "a", 100).unwrap();
    let b = ledger.credit(WALLET, usdc(1), "b", 50).unwrap();
    let c = ledger.credit(WALLET, usdc(1), "c", 200).unwrap();
    assert!(a.id < b.id && b.id < c.id);
    assert_eq!(c.id.0 >> 64, 200);
}

#[test]
fn replay_rebuilds_balances_and_references() {
    let mut original = Ledger::new();
    original.open_wallet(WALLET).unwrap();
    original.open_provider(AccountId(500)).unwrap();
    let mut log = vec![original.credit(WALLET, usdc(3), "r1", 1).unwrap()];
    let hold = original
        .hold(WALLET, Micros::new(123_457).unwrap())
        .unwrap();
    log.extend(
        original
            .post(hold, AccountId(500), memo(ChargeMethod::Wallet), 2)
            .unwrap()
            .transfers,
    );
    let mut rebuilt = Ledger::new();
    rebuilt.restore_account(WALLET, AccountKind::Wallet, 1, 0);
    rebuilt.restore_account(AccountId(500), AccountKind::Provider, 0, 0);
    for transfer in &log {
        rebuilt.replay_transfer(transfer).unwrap();
    }
    for account in original.accounts() {
        assert_eq!(rebuilt.account(account.id), Some(account));
    }
    assert!(rebuilt.has_reference("r1"));
    assert!(verify_transfers(&log).is_empty());
    // A new id after replay sorts after every replayed one.
    let next = rebuilt.credit(WALLET, usdc(1), "r2", 0).unwrap();
    assert!(log.iter().all(|t| t.id < next.id));
}

#[test]
fn verify_transfers_reports_a_bad_split() {
    let mut ledger = Ledger::new();
    ledger.open_wallet(WALLET).unwrap();
    ledger.credit(WALLET, usdc(1), "r", 1).unwrap();
    let hold = ledger.hold(WALLET, Micros::new(1_000).unwrap()).unwrap();
    let mut legs = ledger
        .post(hold, AccountId::HUB_PROVIDER, memo(ChargeMethod::Wallet), 2)
        .unwrap()
        .transfers;
    legs[0].amount = Micros::new(800).unwrap();
    legs[1].amount = Micros::new(150).unwrap();
    let violations = verify_transfers(&legs);
    assert_eq!(violations.len(), 1);
    assert!(
        violations[0].to_string().contains("not the 85/10/5 split"),
        "{}",
        violations[0]
    );
}

#[test]
fn rollback_restores_posted_state_and_drops_batch_holds() {
    let mut ledger = Ledger::new();
    ledger.open_wallet(WALLET).unwrap();
    ledger.credit(WALLET, usdc(10), "r0", 1).unwrap();
    let survivor = ledger.hold(WALLET, usdc(1)).unwrap();
    let posted_in_batch = ledger.hold(WALLET, usdc(1)).unwrap();
    let before: Vec<Account> = {
        let mut all: Vec<Account> = ledger.accounts().cloned().collect();
        all.sort_by_key(|a| a.id);
        all
    };
    ledger.begin_batch();
    ledger.open_wallet(AccountId(2_000)).unwrap();
    ledger.credit(AccountId(2_000), usdc(1), "r1", 2).unwrap();
    ledger.credit(WALLET, usdc(1), "r2", 2).unwrap();
    let created = ledger.hold(WALLET, usdc(2)).unwrap();
    ledger
        .post(
            posted_in_batch,
            AccountId::HUB_PROVIDER,
            memo(ChargeMethod::Wallet),
            3,
        )
        .unwrap();
    ledger.rollback_batch();
    assert!(ledger.account(AccountId(2_000)).is_none());
    assert!(!ledger.has_reference("r1") && !ledger.has_reference("r2"));
    assert_eq!(ledger.void(created), Err(LedgerError::UnknownHold(created)));
    assert_eq!(
        ledger.void(posted_in_batch),
        Err(LedgerError::UnknownHold(posted_in_batch))
    );
    let wallet = ledger.account(WALLET).unwrap();
    let wallet_before = before.iter().find(|a| a.id == WALLET).unwrap();
    assert_eq!(wallet.credits_posted, wallet_before.credits_posted);
    assert_eq!(wallet.debits_posted, wallet_before.debits_posted);
    assert_eq!(wallet.charges_posted, 0);
    assert_eq!(wallet.debits_pending, usdc(1));
    assert!(ledger.verify().is_empty(), "{:?}", ledger.verify());
    ledger.void(survivor).unwrap();
}

// ----- model-based property test --------------------------------------------------

/// The plain model: balances in a HashMap, holds in another, no cleverness.
#[derive(Default)]
struct Model {
    credits: HashMap<u64, u64>,
    debits: HashMap<u64, u64>,
    pending: HashMap<u64, u64>,
    charges: HashMap<u64, u64>,
    free_used: HashMap<u64, u64>,
    holds: HashMap<u64, (u64, u64)>,
    references: std::collections::HashSet<String>,
    wallets: std::collections::HashSet<u64>,
    next_hold: u64,
}

#[derive(Clone, Debug)]
enum Op {
    Open(u64),
    Credit(u64, u64, u8),
    Hold(u64, u64),
    Void(u64),
    Post(u64, bool),
    Free(u64, u64, u64),
}

fn op_strategy() -> impl Strategy<Value = Op> {
    // Few wallets and references so that collisions (duplicates, unknowns) happen often.
    let wallet = 1_000u64..1_004;
    prop_oneof![
        wallet.clone().prop_map(Op::Open),
        (wallet.clone(), 1u64..5_000_000, 0u8..12).prop_map(|(w, a, r)| Op::Credit(w, a, r)),
        (wallet.clone(), 0u64..3_000_000).prop_map(|(w, a)| Op::Hold(w, a)),
        (0u64..12).prop_map(Op::Void),
        (0u64..12, any::<bool>()).prop_map(|(h, hub)| Op::Post(h, hub)),
        (wallet, 0u64..100_000, 0u64..3).prop_map(|(w, c, a)| Op::Free(w, c, a)),
    ]
}

fn model_split(cost: u64) -> (u64, u64, u64) {
    let provider = cost * 85 / 100;
    let hub = cost * 10 / 100;
    (provider, hub, cost - provider - hub)
}

fn add(map: &mut HashMap<u64, u64>, key: u64, amount: u64) {
    *map.entry(key).or_default() += amount;
}

impl Model {
    fn available(&self, wallet: u64) -> u64 {
        let get = |map: &HashMap<u64, u64>| map.get(&wallet).copied().unwrap_or(0);
        get(&self.credits) - get(&self.debits) - get(&self.pending)
    }

    fn book_split(&mut self, payer: u64, provider: u64, cost: u64) {
        let (p, h, f) = model_split(cost);
        add(&mut self.debits, payer, cost);
        add(&mut self.credits, provider, p);
        add(&mut self.credits, 3, h);
        add(&mut self.credits, 4, f);
    }
}

const PROVIDER: u64 = 700;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn ledger_agrees_with_a_hashmap_model(ops in proptest::collection::vec(op_strategy(), 1..80)) {
        let mut ledger = Ledger::new();
        ledger.open_provider(AccountId(PROVIDER)).unwrap();
        let mut model = Model { next_hold: 1, ..Model::default() };
        let mut hold_ids: Vec<HoldId> = Vec::new();
        for (step, op) in ops.iter().enumerate() {
            let now = step as i64;
            match op.clone() {
                Op::Open(w) => {
                    let result = ledger.open_wallet(AccountId(w));
                    prop_assert_eq!(result.is_ok(), model.wallets.insert(w));
                }
                Op::Credit(w, amount, r) => {
                    let reference = format!("ref-{r}");
                    let result = ledger.credit(AccountId(w), Micros::new(amount).unwrap(), &reference, now);
                    let expect_ok = model.wallets.contains(&w) && !model.references.contains(&reference);
                    prop_assert_eq!(result.is_ok(), expect_ok, "{:?} {:?}", op, result);
                    if expect_ok {
                        model.references.insert(reference);
                        add(&mut model.credits, w, amount);
                        add(&mut model.debits, 1, amount);
                    }
                }
                Op::Hold(w, amount) => {
                    let result = ledger.hold(AccountId(w), Micros::new(amount).unwrap());
                    let expect_ok = model.wallets.contains(&w) && amount > 0 && amount <= model.available(w);
                    prop_assert_eq!(result.is_ok(), expect_ok, "{:?} {:?}", op, result);
                    if let Ok(id) = result {
                        prop_assert_eq!(id.0, model.next_hold);
                        model.holds.insert(model.next_hold, (w, amount));
                        model.next_hold += 1;
                        add(&mut model.pending, w, amount);
                        hold_ids.push(id);
                    }
                }
                Op::Void(h) => {
                    let result = ledger.void(HoldId(h));
                    let model_hold = model.holds.remove(&h);
                    prop_assert_eq!(result.is_ok(), model_hold.is_some());
                    if let Some((w, amount)) = model_hold {
                        *model.pending.get_mut(&w).unwrap() -= amount;
                    }
                }
                Op::Post(h, hub) => {
                    let provider = if hub { AccountId::HUB_PROVIDER } else { AccountId(PROVIDER) };
                    let result = ledger.post(HoldId(h), provider, memo(ChargeMethod::Wallet), now);
                    let model_hold = model.holds.remove(&h);
                    prop_assert_eq!(result.is_ok(), model_hold.is_some());
                    if let (Some((w, amount)), Ok(posted)) = (model_hold, result) {
                        *model.pending.get_mut(&w).unwrap() -= amount;
                        model.book_split(w, provider.0, amount);
                        add(&mut model.charges, w, 1);
                        prop_assert_eq!(posted.cost.get(), amount);
                        prop_assert_eq!(posted.transfers.iter().map(|t| t.amount.get()).sum::<u64>(), amount);
                        prop_assert_eq!(posted.wallet_balance_after.get(), model.credits[&w] - model.debits[&w]);
                    }
                }
                Op::Free(w, cost, allowance) => {
                    let result = ledger.charge_free(AccountId(w), Micros::new(cost).unwrap(), AccountId::HUB_PROVIDER, allowance, memo(ChargeMethod::FreeCall), now);
                    let used = model.free_used.get(&w).copied().unwrap_or(0);
                    let expect_ok = model.wallets.contains(&w) && used < allowance;
                    prop_assert_eq!(result.is_ok(), expect_ok, "{:?} {:?}", op, result);
                    if expect_ok {
                        model.book_split(2, AccountId::HUB_PROVIDER.0, cost);
                        add(&mut model.free_used, w, 1);
                        add(&mut model.charges, w, 1);
                    }
                }
            }
            // After every step: every account agrees with the model and the invariants hold.
            for account in ledger.accounts() {
                let id = account.id.0;
                let get = |map: &HashMap<u64, u64>| map.get(&id).copied().unwrap_or(0);
                prop_assert_eq!(account.credits_posted.get(), get(&model.credits), "credits of {} after {:?}", id, op);
                prop_assert_eq!(account.debits_posted.get(), get(&model.debits), "debits of {} after {:?}", id, op);
                prop_assert_eq!(account.debits_pending.get(), get(&model.pending), "pending of {} after {:?}", id, op);
                prop_assert_eq!(account.charges_posted, get(&model.charges));
                prop_assert_eq!(account.free_calls_used, get(&model.free_used));
                if account.kind == AccountKind::Wallet {
                    prop_assert_eq!(ledger.available(account.id).unwrap().get(), model.available(id));
                }
            }
            prop_assert_eq!(ledger.accounts().filter(|a| a.kind == AccountKind::Wallet).count(), model.wallets.len());
            let violations = ledger.verify();
            prop_assert!(violations.is_empty(), "{:?}", violations);
        }
    }

    #[test]
    fn rollback_returns_to_the_pre_batch_posted_state(ops in proptest::collection::vec(op_strategy(), 1..40)) {
        let mut ledger = Ledger::new();
        ledger.open_wallet(WALLET).unwrap();
        ledger.credit(WALLET, usdc(5), "seed", 0).unwrap();
        let snapshot = |ledger: &Ledger| {
            let mut all: Vec<(u64, u64, u64, u64, u64)> = ledger
                .accounts()
                .map(|a| (a.id.0, a.credits_posted.get(), a.debits_posted.get(), a.charges_posted, a.free_calls_used))
                .collect();
            all.sort();
            all
        };
        let before = snapshot(&ledger);
        ledger.begin_batch();
        for (step, op) in ops.iter().enumerate() {
            let _ = match op.clone() {
                Op::Open(w) => ledger.open_wallet(AccountId(w)).map(|_| ()),
                Op::Credit(w, a, r) => ledger.credit(AccountId(w), Micros::new(a).unwrap(), &format!("ref-{r}"), step as i64).map(|_| ()),
                Op::Hold(w, a) => ledger.hold(AccountId(w), Micros::new(a).unwrap()).map(|_| ()),
                Op::Void(h) => ledger.void(HoldId(h)),
                Op::Post(h, _) => ledger.post(HoldId(h), AccountId::HUB_PROVIDER, memo(ChargeMethod::Wallet), step as i64).map(|_| ()),
                Op::Free(w, c, a) => ledger.charge_free(AccountId(w), Micros::new(c).unwrap(), AccountId::HUB_PROVIDER, a, memo(ChargeMethod::FreeCall), step as i64).map(|_| ()),
            };
        }
        ledger.rollback_batch();
        prop_assert_eq!(snapshot(&ledger), before);
        prop_assert_eq!(ledger.pending_holds(), 0);
        prop_assert!(ledger.verify().is_empty());
        prop_assert!(!ledger.has_reference("ref-0"));
    }
}
