//! The ledger: a pure, synchronous double-entry state machine (DESIGN §3–§4).
//!
//! This module owns accounts, holds (pending debits), the post/void of holds,
//! the 85/10/5 split of a charge and the balance invariants. It does no I/O,
//! no async and takes no locks: the `store` writer thread is its only mutator
//! and persists what the ledger returns. Keeping it pure is what makes it
//! sub-microsecond and lets a model-based test drive it step by step.
//!
//! Accounts follow TigerBeetle's shape: `credits_posted`, `debits_posted` and
//! `debits_pending`. A wallet may never have
//! `debits_pending + debits_posted + amount > credits_posted`, so an agent
//! never overspends however many calls race. System accounts (funding,
//! promotions) go negative by design: the sum over all accounts stays zero.
//!
//! Holds are memory-only. After a restart they are gone, which equals a void:
//! the call that held them was never acknowledged.
//!
//! For the store's group commit the ledger keeps an optional undo journal
//! ([`Ledger::begin_batch`], [`Ledger::rollback_batch`]): when a batch's
//! commit fails, the posted state returns to what is on disk.

mod verify;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

use crate::money::Micros;

pub use verify::{Violation, verify_transfers};

/// A ledger account number. Numbers below [`AccountId::FIRST_WALLET`] are
/// system and provider accounts; wallets start at `FIRST_WALLET`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountId(pub u64);

impl AccountId {
    /// Where money enters the Hub (top-ups). Goes negative by the total funded.
    pub const FUNDING: AccountId = AccountId(1);
    /// Pays for free-tier calls.
    pub const PROMOTIONS: AccountId = AccountId(2);
    /// The hub's 10 % fee.
    pub const HUB_REVENUE: AccountId = AccountId(3);
    /// The 5 % (plus rounding dust) payment-processing fee.
    pub const PAYMENT_FEES: AccountId = AccountId(4);
    /// The provider payable of the hub operator's own built-in capabilities.
    pub const HUB_PROVIDER: AccountId = AccountId(5);
    /// The first wallet number; callers choose wallet numbers from here on.
    pub const FIRST_WALLET: u64 = 1_000;
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "account {}", self.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccountKind {
    Funding,
    Promotions,
    HubRevenue,
    PaymentFees,
    Provider,
    Wallet,
}

impl AccountKind {
    /// Stable one-byte code used by the store.
    pub const fn as_u8(self) -> u8 {
        match self {
            AccountKind::Funding => 1,
            AccountKind::Promotions => 2,
            AccountKind::HubRevenue => 3,
            AccountKind::PaymentFees => 4,
            AccountKind::Provider => 5,
            AccountKind::Wallet => 6,
        }
    }

    pub const fn from_u8(code: u8) -> Option<AccountKind> {
        Some(match code {
            1 => AccountKind::Funding,
            2 => AccountKind::Promotions,
            3 => AccountKind::HubRevenue,
            4 => AccountKind::PaymentFees,
            5 => AccountKind::Provider,
            6 => AccountKind::Wallet,
            _ => return None,
        })
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            AccountKind::Funding => "funding",
            AccountKind::Promotions => "promotions",
            AccountKind::HubRevenue => "hub_revenue",
            AccountKind::PaymentFees => "payment_fees",
            AccountKind::Provider => "provider",
            AccountKind::Wallet => "wallet",
        }
    }
}

/// One account's balances and counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    pub kind: AccountKind,
    pub credits_posted: Micros,
    pub debits_posted: Micros,
    /// Sum of the live holds on this account (memory only, never persisted).
    pub debits_pending: Micros,
    /// For wallets: every charged call, paid or free (= `total_calls`).
    pub charges_posted: u64,
    /// For wallets: free-tier calls consumed.
    pub free_calls_used: u64,
}

impl Account {
    fn new(id: AccountId, kind: AccountKind) -> Account {
        Account {
            id,
            kind,
            credits_posted: Micros::ZERO,
            debits_posted: Micros::ZERO,
            debits_pending: Micros::ZERO,
            charges_posted: 0,
            free_calls_used: 0,
        }
    }

    /// `credits_posted − debits_posted`, signed because system accounts go negative.
    pub fn balance(&self) -> i128 {
        i128::from(self.credits_posted.get()) - i128::from(self.debits_posted.get())
    }

    /// What a wallet can still hold: `credits_posted − debits_posted − debits_pending`, floored at zero.
    pub fn available(&self) -> Micros {
        self.credits_posted
            .saturating_sub(self.debits_posted)
            .saturating_sub(self.debits_pending)
    }
}

/// A reservation on a wallet, made before a handler runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HoldId(pub u64);

/// Time-ordered transfer id: `timestamp_ms << 64 | sequence`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TransferId(pub u128);

/// Groups the split legs of one charge. Same time-ordered layout as [`TransferId`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChargeId(pub u128);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransferKind {
    /// Funding → wallet (a top-up).
    Credit,
    /// Charge leg to the provider payable (⌊85 %⌋).
    ProviderShare,
    /// Charge leg to hub revenue (⌊10 %⌋).
    HubFee,
    /// Charge leg to payment fees (the remainder).
    PaymentFee,
}

impl TransferKind {
    pub const fn as_u8(self) -> u8 {
        match self {
            TransferKind::Credit => 1,
            TransferKind::ProviderShare => 2,
            TransferKind::HubFee => 3,
            TransferKind::PaymentFee => 4,
        }
    }

    pub const fn from_u8(code: u8) -> Option<TransferKind> {
        Some(match code {
            1 => TransferKind::Credit,
            2 => TransferKind::ProviderShare,
            3 => TransferKind::HubFee,
            4 => TransferKind::PaymentFee,
            _ => return None,
        })
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            TransferKind::Credit => "credit",
            TransferKind::ProviderShare => "provider_share",
            TransferKind::HubFee => "hub_fee",
            TransferKind::PaymentFee => "payment_fee",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChargeMethod {
    Wallet,
    Mandate,
    FreeCall,
}

impl ChargeMethod {
    pub const fn as_u8(self) -> u8 {
        match self {
            ChargeMethod::Wallet => 1,
            ChargeMethod::Mandate => 2,
            ChargeMethod::FreeCall => 3,
        }
    }

    pub const fn from_u8(code: u8) -> Option<ChargeMethod> {
        Some(match code {
            1 => ChargeMethod::Wallet,
            2 => ChargeMethod::Mandate,
            3 => ChargeMethod::FreeCall,
            _ => return None,
        })
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            ChargeMethod::Wallet => "wallet",
            ChargeMethod::Mandate => "mandate",
            ChargeMethod::FreeCall => "free_call",
        }
    }
}

/// What a charge paid for. Carried by the first (non-zero) leg of a charge;
/// the other legs share its [`ChargeId`] and carry no memo, which keeps a
/// post to one set of string allocations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChargeMemo {
    pub agent_id: String,
    pub capability: String,
    pub action: String,
    pub request_id: String,
    pub method: ChargeMethod,
}

/// An immutable movement of money between two accounts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    pub id: TransferId,
    pub debit: AccountId,
    pub credit: AccountId,
    pub amount: Micros,
    pub kind: TransferKind,
    pub charge: Option<ChargeId>,
    pub timestamp_ms: i64,
    /// The external reference of a credit (unique across credits).
    pub reference: Option<String>,
    pub memo: Option<ChargeMemo>,
}

/// The result of posting a charge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Posted {
    pub charge: ChargeId,
    pub cost: Micros,
    /// The split legs, zero-amount legs omitted.
    pub transfers: Vec<Transfer>,
    /// The wallet's posted balance after the charge (for a free call: unchanged).
    pub wallet_balance_after: Micros,
    pub provider_share: Micros,
    pub hub_fee: Micros,
    pub payment_fee: Micros,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LedgerError {
    UnknownAccount(AccountId),
    AccountExists(AccountId),
    NotAWallet(AccountId),
    InsufficientFunds {
        required: Micros,
        available: Micros,
    },
    UnknownHold(HoldId),
    /// The credit's external reference was already used.
    DuplicateReference,
    FreeCallsExhausted,
    ZeroAmount,
    Overflow,
}

impl fmt::Display for LedgerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LedgerError::UnknownAccount(id) => write!(f, "{id} does not exist"),
            LedgerError::AccountExists(id) => write!(f, "{id} already exists"),
            LedgerError::NotAWallet(id) => write!(f, "{id} is not a wallet"),
            LedgerError::InsufficientFunds {
                required,
                available,
            } => {
                write!(
                    f,
                    "insufficient funds: {required} USDC required, {available} USDC available"
                )
            }
            LedgerError::UnknownHold(hold) => write!(f, "hold {} does not exist", hold.0),
            LedgerError::DuplicateReference => f.write_str("credit reference already used"),
            LedgerError::FreeCallsExhausted => f.write_str("free-tier calls exhausted"),
            LedgerError::ZeroAmount => f.write_str("amount must be greater than zero"),
            LedgerError::Overflow => f.write_str("amount overflows the ledger's range"),
        }
    }
}

impl std::error::Error for LedgerError {}

/// The 85/10/5 split: (provider ⌊85 %⌋, hub ⌊10 %⌋, payment = the remainder).
pub fn split(cost: Micros) -> (Micros, Micros, Micros) {
    let raw = cost.get();
    // cost ≤ Micros::MAX < 2^50, so raw * 85 cannot overflow u64.
    let provider = raw * 85 / 100;
    let hub = raw * 10 / 100;
    let payment = raw - provider - hub;
    // Each part is ≤ cost, which is a valid Micros.
    let micros = |value: u64| Micros::new(value).unwrap_or(Micros::MAX);
    (micros(provider), micros(hub), micros(payment))
}

/// Fast hasher for integer keys (account and hold numbers). Keys are not
/// attacker-chosen (the Hub assigns them), so no DoS-resistant hash is needed
/// on the hot path.
#[derive(Default, Clone, Copy, Debug)]
struct IntHasher(u64);

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 =
                (self.0.rotate_left(5) ^ u64::from(byte)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0.rotate_left(5) ^ value).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

type IntMap<K, V> = HashMap<K, V, BuildHasherDefault<IntHasher>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Hold {
    wallet: AccountId,
    amount: Micros,
}

/// Undo information for one store batch (see the module doc).
#[derive(Debug, Default)]
struct Journal {
    /// First-touch snapshot of each account touched by the batch; `None` = opened in the batch.
    accounts: IntMap<AccountId, Option<Account>>,
    /// Touch order, so the store can write account rows deterministically.
    touched: Vec<AccountId>,
    holds_created: Vec<HoldId>,
    references_added: Vec<String>,
}

/// The in-memory ledger. See the module doc.
#[derive(Debug)]
pub struct Ledger {
    accounts: IntMap<AccountId, Account>,
    holds: IntMap<HoldId, Hold>,
    next_hold: u64,
    /// Credit references already used (idempotency of top-ups).
    references: HashSet<String>,
    last_id_ms: i64,
    last_id_seq: u64,
    journal: Option<Journal>,
}

impl Default for Ledger {
    fn default() -> Self {
        Ledger::new()
    }
}

impl Ledger {
    /// A ledger with the system accounts 1..=5 open.
    pub fn new() -> Ledger {
        let mut accounts = IntMap::default();
        for (id, kind) in [
            (AccountId::FUNDING, AccountKind::Funding),
            (AccountId::PROMOTIONS, AccountKind::Promotions),
            (AccountId::HUB_REVENUE, AccountKind::HubRevenue),
            (AccountId::PAYMENT_FEES, AccountKind::PaymentFees),
            (AccountId::HUB_PROVIDER, AccountKind::Provider),
        ] {
            accounts.insert(id, Account::new(id, kind));
        }
        Ledger {
            accounts,
            holds: IntMap::default(),
            next_hold: 1,
            references: HashSet::new(),
            last_id_ms: 0,
            last_id_seq: 0,
            journal: None,
        }
    }

    pub fn open_wallet(&mut self, id: AccountId) -> Result<(), LedgerError> {
        self.open(id, AccountKind::Wallet)
    }

    pub fn open_provider(&mut self, id: AccountId) -> Result<(), LedgerError> {
        self.open(id, AccountKind::Provider)
    }

    fn open(&mut self, id: AccountId, kind: AccountKind) -> Result<(), LedgerError> {
        if self.accounts.contains_key(&id) {
            return Err(LedgerError::AccountExists(id));
        }
        if let Some(journal) = &mut self.journal
            && journal.accounts.insert(id, None).is_none()
        {
            journal.touched.push(id);
        }
        self.accounts.insert(id, Account::new(id, kind));
        Ok(())
    }

    /// Moves `amount` from funding into `wallet`, once per external `reference`.
    pub fn credit(
        &mut self,
        wallet: AccountId,
        amount: Micros,
        reference: &str,
        now_ms: i64,
    ) -> Result<Transfer, LedgerError> {
        if amount.is_zero() {
            return Err(LedgerError::ZeroAmount);
        }
        let account = self.wallet(wallet)?;
        let credits_after = account
            .credits_posted
            .checked_add(amount)
            .ok_or(LedgerError::Overflow)?;
        let funding_debits_after = self.accounts[&AccountId::FUNDING]
            .debits_posted
            .checked_add(amount)
            .ok_or(LedgerError::Overflow)?;
        if self.references.contains(reference) {
            return Err(LedgerError::DuplicateReference);
        }
        self.touch(wallet);
        self.touch(AccountId::FUNDING);
        if let Some(journal) = &mut self.journal {
            journal.references_added.push(reference.to_owned());
        }
        self.references.insert(reference.to_owned());
        self.account_mut(wallet).credits_posted = credits_after;
        self.account_mut(AccountId::FUNDING).debits_posted = funding_debits_after;
        let (id, timestamp_ms) = self.next_id(now_ms);
        Ok(Transfer {
            id: TransferId(id),
            debit: AccountId::FUNDING,
            credit: wallet,
            amount,
            kind: TransferKind::Credit,
            charge: None,
            timestamp_ms,
            reference: Some(reference.to_owned()),
            memo: None,
        })
    }

    /// Reserves `amount` on `wallet`; refused when it would exceed the posted balance.
    pub fn hold(&mut self, wallet: AccountId, amount: Micros) -> Result<HoldId, LedgerError> {
        if amount.is_zero() {
            return Err(LedgerError::ZeroAmount);
        }
        let account = self.wallet(wallet)?;
        let available = account.available();
        if amount > available {
            return Err(LedgerError::InsufficientFunds {
                required: amount,
                available,
            });
        }
        // available ≥ amount implies pending + amount ≤ credits ≤ MAX.
        let pending_after = account
            .debits_pending
            .checked_add(amount)
            .ok_or(LedgerError::Overflow)?;
        self.touch(wallet);
        self.account_mut(wallet).debits_pending = pending_after;
        let hold = HoldId(self.next_hold);
        self.next_hold += 1;
        self.holds.insert(hold, Hold { wallet, amount });
        if let Some(journal) = &mut self.journal {
            journal.holds_created.push(hold);
        }
        Ok(hold)
    }

    /// Releases a hold; the wallet is not charged.
    pub fn void(&mut self, hold: HoldId) -> Result<(), LedgerError> {
        let Hold { wallet, amount } = self
            .holds
            .remove(&hold)
            .ok_or(LedgerError::UnknownHold(hold))?;
        self.touch(wallet);
        let account = self.account_mut(wallet);
        account.debits_pending = account.debits_pending.saturating_sub(amount);
        Ok(())
    }

    /// Charges a hold: wallet → provider / hub revenue / payment fees.
    pub fn post(
        &mut self,
        hold: HoldId,
        provider: AccountId,
        memo: ChargeMemo,
        now_ms: i64,
    ) -> Result<Posted, LedgerError> {
        let Hold { wallet, amount } = *self
            .holds
            .get(&hold)
            .ok_or(LedgerError::UnknownHold(hold))?;
        self.check_provider(provider)?;
        self.holds.remove(&hold);
        self.touch(wallet);
        let account = self.account_mut(wallet);
        account.debits_pending = account.debits_pending.saturating_sub(amount);
        // The hold guaranteed debits_posted + amount ≤ credits_posted ≤ MAX.
        account.debits_posted = account
            .debits_posted
            .checked_add(amount)
            .unwrap_or(Micros::MAX);
        account.charges_posted += 1;
        let wallet_balance_after = account.credits_posted.saturating_sub(account.debits_posted);
        let mut posted = self.book_split(wallet, provider, amount, memo, now_ms);
        posted.wallet_balance_after = wallet_balance_after;
        Ok(posted)
    }

    /// A free-tier call: promotions pays the split; the wallet's counters move, its money does not.
    pub fn charge_free(
        &mut self,
        wallet: AccountId,
        cost: Micros,
        provider: AccountId,
        free_allowance: u64,
        memo: ChargeMemo,
        now_ms: i64,
    ) -> Result<Posted, LedgerError> {
        let account = self.wallet(wallet)?;
        if account.free_calls_used >= free_allowance {
            return Err(LedgerError::FreeCallsExhausted);
        }
        let wallet_balance_after = account.credits_posted.saturating_sub(account.debits_posted);
        self.check_provider(provider)?;
        let promotions_after = self.accounts[&AccountId::PROMOTIONS]
            .debits_posted
            .checked_add(cost)
            .ok_or(LedgerError::Overflow)?;
        self.touch(wallet);
        self.touch(AccountId::PROMOTIONS);
        let account = self.account_mut(wallet);
        account.free_calls_used += 1;
        account.charges_posted += 1;
        self.account_mut(AccountId::PROMOTIONS).debits_posted = promotions_after;
        let mut posted = self.book_split(AccountId::PROMOTIONS, provider, cost, memo, now_ms);
        posted.wallet_balance_after = wallet_balance_after;
        Ok(posted)
    }

    /// Credits the three split legs (the payer's debit is already booked by
    /// the caller) and builds the transfers debited to `payer`.
    fn book_split(
        &mut self,
        payer: AccountId,
        provider: AccountId,
        cost: Micros,
        memo: ChargeMemo,
        now_ms: i64,
    ) -> Posted {
        let (provider_share, hub_fee, payment_fee) = split(cost);
        let (charge_raw, timestamp_ms) = self.next_id(now_ms);
        let charge = ChargeId(charge_raw);
        let mut transfers = Vec::with_capacity(3);
        let mut memo = Some(memo);
        for (kind, credit, amount) in [
            (TransferKind::ProviderShare, provider, provider_share),
            (TransferKind::HubFee, AccountId::HUB_REVENUE, hub_fee),
            (
                TransferKind::PaymentFee,
                AccountId::PAYMENT_FEES,
                payment_fee,
            ),
        ] {
            if amount.is_zero() {
                continue;
            }
            self.touch(credit);
            let account = self.account_mut(credit);
            // Legs sum to cost, which the payer's debit already bounded.
            account.credits_posted = account
                .credits_posted
                .checked_add(amount)
                .unwrap_or(Micros::MAX);
            let (id, _) = self.next_id(timestamp_ms);
            transfers.push(Transfer {
                id: TransferId(id),
                debit: payer,
                credit,
                amount,
                kind,
                charge: Some(charge),
                timestamp_ms,
                reference: None,
                memo: memo.take(),
            });
        }
        Posted {
            charge,
            cost,
            transfers,
            wallet_balance_after: Micros::ZERO,
            provider_share,
            hub_fee,
            payment_fee,
        }
    }

    pub fn account(&self, id: AccountId) -> Option<&Account> {
        self.accounts.get(&id)
    }

    /// Every account, in no particular order.
    pub fn accounts(&self) -> impl Iterator<Item = &Account> {
        self.accounts.values()
    }

    /// What a wallet can still hold: credits_posted − debits_posted − debits_pending.
    pub fn available(&self, wallet: AccountId) -> Option<Micros> {
        self.accounts.get(&wallet).map(Account::available)
    }

    /// The number of live holds (for health and tests).
    pub fn pending_holds(&self) -> usize {
        self.holds.len()
    }

    /// Checks the balance invariants; empty means ok.
    pub fn verify(&self) -> Vec<Violation> {
        let mut violations = Vec::new();
        let mut sum: i128 = 0;
        let mut pending_by_wallet: IntMap<AccountId, u128> = IntMap::default();
        for hold in self.holds.values() {
            *pending_by_wallet.entry(hold.wallet).or_default() += u128::from(hold.amount.get());
        }
        let mut ids: Vec<&AccountId> = self.accounts.keys().collect();
        ids.sort();
        for id in ids {
            let account = &self.accounts[id];
            sum += account.balance();
            let pending = pending_by_wallet.get(id).copied().unwrap_or(0);
            if u128::from(account.debits_pending.get()) != pending {
                violations.push(Violation::PendingMismatch {
                    account: *id,
                    recorded: account.debits_pending,
                    holds: pending,
                });
            }
            if account.kind == AccountKind::Wallet {
                let exposure = i128::from(account.debits_pending.get())
                    + i128::from(account.debits_posted.get());
                if account.balance() < 0 || exposure > i128::from(account.credits_posted.get()) {
                    violations.push(Violation::WalletOverdrawn {
                        account: *id,
                        credits_posted: account.credits_posted,
                        debits_posted: account.debits_posted,
                        debits_pending: account.debits_pending,
                    });
                }
            }
        }
        if sum != 0 {
            violations.push(Violation::SumNotZero { sum });
        }
        violations
    }

    // ----- rebuild from the store -------------------------------------------------

    /// Restores an account row at start-up: kind and counters. Balances start
    /// at zero and are rebuilt by [`Ledger::replay_transfer`]. System accounts
    /// already exist; their counters are overwritten.
    pub fn restore_account(
        &mut self,
        id: AccountId,
        kind: AccountKind,
        charges_posted: u64,
        free_calls_used: u64,
    ) {
        let account = self
            .accounts
            .entry(id)
            .or_insert_with(|| Account::new(id, kind));
        account.kind = kind;
        account.charges_posted = charges_posted;
        account.free_calls_used = free_calls_used;
    }

    /// Applies a stored transfer's posted effect (no balance checks: the log is
    /// the truth; `verify` judges it afterwards). Restores the credit
    /// reference and keeps new ids after the replayed one.
    pub fn replay_transfer(&mut self, transfer: &Transfer) -> Result<(), LedgerError> {
        if !self.accounts.contains_key(&transfer.debit) {
            return Err(LedgerError::UnknownAccount(transfer.debit));
        }
        if !self.accounts.contains_key(&transfer.credit) {
            return Err(LedgerError::UnknownAccount(transfer.credit));
        }
        let debit = self.account_mut(transfer.debit);
        debit.debits_posted = debit
            .debits_posted
            .checked_add(transfer.amount)
            .ok_or(LedgerError::Overflow)?;
        let credit = self.account_mut(transfer.credit);
        credit.credits_posted = credit
            .credits_posted
            .checked_add(transfer.amount)
            .ok_or(LedgerError::Overflow)?;
        if let Some(reference) = &transfer.reference {
            self.references.insert(reference.clone());
        }
        self.observe_id(transfer.id.0);
        if let Some(charge) = transfer.charge {
            self.observe_id(charge.0);
        }
        Ok(())
    }

    /// Whether a credit reference has been used.
    pub fn has_reference(&self, reference: &str) -> bool {
        self.references.contains(reference)
    }

    // ----- group-commit journal ---------------------------------------------------

    /// Starts recording undo information for a store batch.
    pub fn begin_batch(&mut self) {
        self.journal = Some(Journal::default());
    }

    /// Ends the batch, keeping its effects. Returns the accounts it touched, in
    /// first-touch order (the rows the store must write).
    pub fn commit_batch(&mut self) -> Vec<AccountId> {
        self.journal
            .take()
            .map(|journal| journal.touched)
            .unwrap_or_default()
    }

    /// Accounts touched by the current batch so far.
    pub fn batch_touched(&self) -> &[AccountId] {
        self.journal
            .as_ref()
            .map(|journal| journal.touched.as_slice())
            .unwrap_or(&[])
    }

    /// Undoes the posted effects of the current batch: posted balances and
    /// counters return to their pre-batch values, accounts opened in the batch
    /// disappear, credit references added are forgotten, and holds created in
    /// the batch are dropped (their callers' later post gets `UnknownHold`).
    /// Holds posted or voided in the batch stay gone: their callers were told
    /// the call failed, so keeping the reservation would only leak funds.
    pub fn rollback_batch(&mut self) {
        let Some(journal) = self.journal.take() else {
            return;
        };
        for hold in &journal.holds_created {
            if let Some(Hold { wallet, amount }) = self.holds.remove(hold)
                && let Some(account) = self.accounts.get_mut(&wallet)
            {
                account.debits_pending = account.debits_pending.saturating_sub(amount);
            }
        }
        for (id, snapshot) in journal.accounts {
            match snapshot {
                None => {
                    self.accounts.remove(&id);
                    self.holds.retain(|_, hold| hold.wallet != id);
                }
                Some(before) => {
                    if let Some(account) = self.accounts.get_mut(&id) {
                        // debits_pending keeps its current value: it already
                        // reflects the holds that survive (see above).
                        account.credits_posted = before.credits_posted;
                        account.debits_posted = before.debits_posted;
                        account.charges_posted = before.charges_posted;
                        account.free_calls_used = before.free_calls_used;
                    }
                }
            }
        }
        for reference in journal.references_added {
            self.references.remove(&reference);
        }
    }

    // ----- internals --------------------------------------------------------------

    fn wallet(&self, id: AccountId) -> Result<&Account, LedgerError> {
        let account = self
            .accounts
            .get(&id)
            .ok_or(LedgerError::UnknownAccount(id))?;
        if account.kind != AccountKind::Wallet {
            return Err(LedgerError::NotAWallet(id));
        }
        Ok(account)
    }

    fn check_provider(&self, id: AccountId) -> Result<(), LedgerError> {
        match self.accounts.get(&id) {
            None => Err(LedgerError::UnknownAccount(id)),
            Some(account) if account.kind == AccountKind::Provider => Ok(()),
            // A charge may only pay a provider payable; anything else would
            // let a bad catalog entry move money into a wallet.
            Some(_) => Err(LedgerError::UnknownAccount(id)),
        }
    }

    fn account_mut(&mut self, id: AccountId) -> &mut Account {
        // Callers check existence first; a missing account here is a bug in this module.
        self.accounts
            .get_mut(&id)
            .expect("ledger account checked before mutation")
    }

    /// Records the pre-batch snapshot of an account on its first touch.
    fn touch(&mut self, id: AccountId) {
        let Some(journal) = &mut self.journal else {
            return;
        };
        if journal.accounts.contains_key(&id) {
            return;
        }
        let snapshot = self.accounts.get(&id).cloned();
        journal.accounts.insert(id, snapshot);
        journal.touched.push(id);
    }

    /// The next time-ordered id: `ms << 64 | seq`, strictly increasing even if
    /// the clock steps back (the id then reuses the last millisecond).
    fn next_id(&mut self, now_ms: i64) -> (u128, i64) {
        if now_ms > self.last_id_ms {
            self.last_id_ms = now_ms;
            self.last_id_seq = 0;
        } else {
            self.last_id_seq += 1;
        }
        let id = (u128::from(self.last_id_ms.max(0) as u64) << 64) | u128::from(self.last_id_seq);
        (id, self.last_id_ms)
    }

    fn observe_id(&mut self, id: u128) {
        let ms = (id >> 64) as u64 as i64;
        let seq = id as u64;
        if ms > self.last_id_ms || (ms == self.last_id_ms && seq > self.last_id_seq) {
            self.last_id_ms = ms;
            self.last_id_seq = seq;
        }
    }
}

#[cfg(test)]
mod tests;
