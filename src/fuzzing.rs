//! Check functions shared by the `fuzz/` targets (cargo-fuzz, libFuzzer) and
//! `tests/fuzz_corpus.rs`, which replays every committed corpus file on stable
//! Rust so CI exercises the same properties without a fuzzer.
//!
//! Each `check_*` takes arbitrary bytes and panics only when a property of the
//! code under test is broken: a parser that panics, accepts what it must
//! refuse, or does not round-trip; a ledger that disagrees with a plain
//! hash-map model. Arbitrary input that is merely invalid is never a failure.
//!
//! This module is part of the library (not a dev-only crate) because the
//! fuzz crate links the library as an ordinary dependency; it is hidden from
//! the docs and has no runtime callers.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use crate::auth::provenance::{self, Subcause};
use crate::hub::envelope;
use crate::ledger::{AccountId, AccountKind, ChargeMemo, ChargeMethod, HoldId, Ledger};
use crate::money::Micros;
use crate::protocol::canonical::{FingerprintParts, canonical_json, fingerprint};
use crate::protocol::{ErrorCode, HubLinks};

/// The codes an envelope parse may answer with; anything else is a bug.
const ENVELOPE_CODES: &[ErrorCode] = &[
    ErrorCode::InvalidRequest,
    ErrorCode::ValidationFailed,
    ErrorCode::UnsupportedVersion,
    ErrorCode::InputTooLarge,
];

/// Invoke envelope parse + validation: never panics, answers only with
/// envelope-level codes, renders a JSON error envelope, is deterministic, and
/// what it accepts satisfies the spec's patterns.
pub fn check_envelope(data: &[u8]) {
    // The first line doubles as a Content-Type header value.
    if let Some(split) = data.iter().position(|&b| b == b'\n')
        && let Ok(content_type) = std::str::from_utf8(&data[..split])
    {
        let _ = envelope::check_content_type(Some(content_type));
    }
    let first = envelope::parse(data);
    let second = envelope::parse(data);
    let links = HubLinks {
        public_url: "https://hub.example".to_owned(),
        allowed_topup_usd: vec![10],
    };
    // The well-formed fast path and the general parse agree on every body.
    match (&first, &envelope::parse_general(data)) {
        (Ok(fast), Ok(general)) => assert_eq!(
            (
                &fast.id,
                &fast.capability,
                &fast.action,
                &fast.input,
                &fast.mandate,
                &fast.metadata
            ),
            (
                &general.id,
                &general.capability,
                &general.action,
                &general.input,
                &general.mandate,
                &general.metadata
            ),
            "the envelope fast path read a body differently"
        ),
        (Err((fast, fast_id)), Err((general, general_id))) => assert_eq!(
            fast.to_envelope(fast_id.as_deref(), &links),
            general.to_envelope(general_id.as_deref(), &links),
            "the envelope fast path answered a body differently"
        ),
        (fast, general) => panic!(
            "the envelope fast path and the general parse disagree: {:?} vs {:?}",
            fast.is_ok(),
            general.is_ok()
        ),
    }
    match (&first, &second) {
        (Ok(a), Ok(b)) => {
            assert_eq!(
                (&a.id, &a.capability, &a.action, &a.input),
                (&b.id, &b.capability, &b.action, &b.input)
            );
            assert!(
                envelope::is_valid_request_id(&a.id),
                "accepted id {:?}",
                a.id
            );
            assert!(!a.capability.is_empty() && !a.action.is_empty());
            assert!(
                a.capability.bytes().all(|b| b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || b == b'-'
                    || b == b'/')
            );
            assert!(a.mandate.as_ref().is_none_or(Value::is_object));
            assert!(a.metadata.as_ref().is_none_or(Value::is_object));
        }
        (Err((error_a, id_a)), Err((error_b, id_b))) => {
            assert_eq!(error_a.code, error_b.code);
            assert_eq!(id_a, id_b);
            assert!(
                ENVELOPE_CODES.contains(&error_a.code),
                "unexpected code {:?}",
                error_a.code
            );
            assert!((400..500).contains(&error_a.http_status()));
            if let Some(id) = id_a {
                assert!(envelope::is_valid_request_id(id));
            }
            let rendered = error_a.to_envelope(id_a.as_deref(), &links);
            assert!(serde_json::to_vec(&rendered).is_ok());
        }
        _ => panic!("envelope::parse is not deterministic"),
    }
}

/// The agent and key the provenance target verifies against.
const FUZZ_AGENT_ID: &str = "jecp_ag_fuzz";
const FUZZ_API_KEY: &str = "jecp_sk_fuzz_key";
/// A fixed "now" so corpus replays are reproducible.
const FUZZ_NOW_S: i64 = 1_790_000_000;

/// Provenance v2 wire parse: never panics; only a correctly signed,
/// well-shaped, in-window string verifies; a string the Hub computes for
/// fuzzer-chosen timestamp and nonce verifies iff the nonce and skew are legal.
pub fn check_provenance(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match provenance::verify_v2(&text, FUZZ_AGENT_ID, FUZZ_API_KEY, FUZZ_NOW_S) {
        Ok(verified) => {
            // Success means the string is exactly what the signer produces.
            let mut parts = text.split(':');
            assert_eq!(parts.next(), Some("v2"));
            let timestamp_text = parts.next().unwrap_or_default();
            let nonce = parts.next().unwrap_or_default();
            assert_eq!(
                timestamp_text.parse::<i64>().ok(),
                Some(verified.timestamp_s)
            );
            assert_eq!(nonce.to_ascii_lowercase(), verified.nonce_lower);
            assert!(
                (verified.timestamp_s - FUZZ_NOW_S).abs() <= provenance::MAX_CLOCK_SKEW_S,
                "skew window widened"
            );
            let recomputed =
                provenance::compute_v2(FUZZ_AGENT_ID, FUZZ_API_KEY, verified.timestamp_s, nonce);
            assert_eq!(
                recomputed.rsplit(':').next(),
                text.rsplit(':').next(),
                "a tag other than the signer's verified"
            );
        }
        Err(Subcause::ReplayStoreFull) => panic!("verify_v2 must not report a store condition"),
        Err(_) => {}
    }

    // Sign-then-verify with a fuzzer-chosen timestamp offset and nonce.
    if data.len() >= 2 {
        let offset_s = i64::from(i16::from_le_bytes([data[0], data[1]]));
        let nonce: String = hex::encode(&data[2..]);
        let timestamp_s = FUZZ_NOW_S + offset_s;
        let wire = provenance::compute_v2(FUZZ_AGENT_ID, FUZZ_API_KEY, timestamp_s, &nonce);
        let nonce_ok = (provenance::MIN_NONCE_HEX_CHARS..=provenance::MAX_NONCE_HEX_CHARS)
            .contains(&nonce.len());
        let skew_ok = offset_s.abs() <= provenance::MAX_CLOCK_SKEW_S;
        let result = provenance::verify_v2(&wire, FUZZ_AGENT_ID, FUZZ_API_KEY, FUZZ_NOW_S);
        match (nonce_ok, skew_ok, result) {
            (true, true, Ok(verified)) => assert_eq!(verified.timestamp_s, timestamp_s),
            (false, _, Err(Subcause::WireMalformed)) => {}
            (true, false, Err(Subcause::ClockSkew { drift_seconds })) => {
                assert_eq!(drift_seconds, -offset_s)
            }
            (nonce_ok, skew_ok, result) => {
                panic!("signed wire: nonce_ok={nonce_ok} skew_ok={skew_ok} got {result:?}")
            }
        }
        // The same wire under another key must never verify.
        assert!(provenance::verify_v2(&wire, FUZZ_AGENT_ID, "other-key", FUZZ_NOW_S).is_err());
    }
}

/// Money parse: never panics; what parses renders back to the same amount;
/// JSON numbers and strings agree with the text parser.
pub fn check_money(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(amount) = Micros::parse(&text) {
        assert!(amount <= Micros::MAX);
        let rendered = amount.to_string();
        assert_eq!(Micros::parse(&rendered), Ok(amount), "{rendered:?}");
        assert_eq!(Micros::parse(&format!("${rendered}")), Ok(amount));
        let json = amount.to_json();
        assert_eq!(Micros::from_json(&json), Ok(amount), "{json}");
        assert_eq!(
            Micros::from_json(&Value::String(text.to_string())),
            Ok(amount)
        );
    }
    // The same bytes as a JSON document: a number or string must not panic,
    // and a plain decimal number must agree with the text parser.
    if let Ok(value) = serde_json::from_slice::<Value>(data) {
        let from_json = Micros::from_json(&value);
        if let Value::Number(number) = &value
            && let Some(unsigned) = number.as_u64()
            && unsigned < 1_000_000_000
        {
            assert_eq!(from_json, Micros::parse(&unsigned.to_string()));
        }
    }
}

/// Canonical JSON and the idempotency fingerprint: canonical bytes parse back
/// to the same value, canonicalising is idempotent, and the fingerprint of a
/// value equals that of its canonical re-parse (member order and whitespace
/// never change a fingerprint) while a different action always does.
pub fn check_canonical(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let canonical = canonical_json(&value);
    let reparsed: Value = serde_json::from_slice(&canonical).expect("canonical JSON must parse");
    assert_eq!(reparsed, value, "canonical form changed the value");
    assert_eq!(canonical_json(&reparsed), canonical, "not idempotent");
    let parts = |input| FingerprintParts {
        capability: "hub/utility",
        action: "echo",
        input,
        provenance_hash: None,
        x_payment: Some(data),
    };
    assert_eq!(fingerprint(parts(&value)), fingerprint(parts(&reparsed)));
    let other_action = FingerprintParts {
        action: "echo2",
        ..parts(&value)
    };
    assert_ne!(fingerprint(parts(&value)), fingerprint(other_action));
    // Pretty-printing (whitespace, the same member order) keeps the fingerprint.
    if let Ok(pretty) = serde_json::to_vec_pretty(&value)
        && let Ok(pretty_value) = serde_json::from_slice::<Value>(&pretty)
    {
        assert_eq!(canonical_json(&pretty_value), canonical);
    }
}

/// A byte cursor that yields zeros once the input runs out.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&first, rest)) => {
                self.0 = rest;
                first
            }
            None => 0,
        }
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
}

/// A handful of wallet ids so collisions (duplicate opens, unknown wallets) are common.
const MODEL_WALLET_FIRST: u64 = AccountId::FIRST_WALLET;
const MODEL_WALLETS: u64 = 4;
const MODEL_PROVIDER: u64 = 700;
/// Operation sequences longer than this are cut: long inputs add time, not coverage.
const MODEL_OPS_MAX: usize = 400;

/// The posted part of the model: what a batch rollback restores.
#[derive(Clone, Default)]
struct PostedModel {
    credits: HashMap<u64, u64>,
    debits: HashMap<u64, u64>,
    charges: HashMap<u64, u64>,
    free_used: HashMap<u64, u64>,
    references: HashSet<u32>,
    wallets: HashSet<u64>,
}

#[derive(Default)]
struct LedgerModel {
    posted: PostedModel,
    /// hold id → (wallet, amount)
    holds: HashMap<u64, (u64, u64)>,
    next_hold: u64,
    /// The posted state when the current batch began, and the holds it created.
    batch: Option<(PostedModel, HashSet<u64>)>,
}

fn get(map: &HashMap<u64, u64>, key: u64) -> u64 {
    map.get(&key).copied().unwrap_or(0)
}

fn add(map: &mut HashMap<u64, u64>, key: u64, amount: u64) {
    *map.entry(key).or_default() += amount;
}

impl LedgerModel {
    fn pending(&self, wallet: u64) -> u64 {
        self.holds
            .values()
            .filter(|(owner, _)| *owner == wallet)
            .map(|(_, amount)| amount)
            .sum()
    }

    fn available(&self, wallet: u64) -> u64 {
        get(&self.posted.credits, wallet) - get(&self.posted.debits, wallet) - self.pending(wallet)
    }

    fn book_split(&mut self, payer: u64, provider: u64, cost: u64) {
        let provider_share = cost * 85 / 100;
        let hub_fee = cost * 10 / 100;
        let posted = &mut self.posted;
        add(&mut posted.debits, payer, cost);
        add(&mut posted.credits, provider, provider_share);
        add(&mut posted.credits, AccountId::HUB_REVENUE.0, hub_fee);
        add(
            &mut posted.credits,
            AccountId::PAYMENT_FEES.0,
            cost - provider_share - hub_fee,
        );
    }
}

fn fuzz_memo(method: ChargeMethod) -> ChargeMemo {
    ChargeMemo {
        agent_id: "jecp_ag_fuzz".into(),
        capability: "hub/utility".into(),
        action: "echo".into(),
        request_id: "fuzz-req".into(),
        method,
    }
}

/// An amount from the input: usually small, sometimes zero or near the ceiling
/// so the overflow and zero-amount paths are reached.
fn model_amount(bytes: &mut Bytes<'_>) -> u64 {
    match bytes.u8() % 16 {
        0 => 0,
        1 => Micros::MAX.get() - u64::from(bytes.u8()),
        _ => u64::from(bytes.u32() % 5_000_000),
    }
}

/// The ledger state machine against a hash-map model: arbitrary sequences of
/// open / credit / hold / void / post / free-call / batch begin-commit-rollback.
/// After every step every account, the availability of every wallet and the
/// ledger's own `verify` must agree with the model.
pub fn check_ledger(data: &[u8]) {
    let mut bytes = Bytes(data);
    let mut ledger = Ledger::new();
    ledger
        .open_provider(AccountId(MODEL_PROVIDER))
        .expect("a fresh ledger has no account 700");
    let mut model = LedgerModel {
        next_hold: 1,
        ..LedgerModel::default()
    };
    for step in 0..MODEL_OPS_MAX {
        if bytes.0.is_empty() {
            break;
        }
        let now_ms = step as i64;
        let wallet_of = |byte: u8| MODEL_WALLET_FIRST + u64::from(byte) % MODEL_WALLETS;
        match bytes.u8() % 9 {
            0 => {
                let wallet = wallet_of(bytes.u8());
                let result = ledger.open_wallet(AccountId(wallet));
                assert_eq!(result.is_ok(), model.posted.wallets.insert(wallet));
            }
            1 => {
                let wallet = wallet_of(bytes.u8());
                let amount = model_amount(&mut bytes);
                let reference = u32::from(bytes.u8() % 16);
                let result = ledger.credit(
                    AccountId(wallet),
                    Micros::new(amount).expect("model amounts stay below MAX"),
                    &format!("ref-{reference}"),
                    now_ms,
                );
                let posted = &model.posted;
                let expect_ok = amount > 0
                    && posted.wallets.contains(&wallet)
                    && !posted.references.contains(&reference)
                    && get(&posted.credits, wallet) + amount <= Micros::MAX.get()
                    && get(&posted.debits, AccountId::FUNDING.0) + amount <= Micros::MAX.get();
                assert_eq!(result.is_ok(), expect_ok, "credit {amount} → {result:?}");
                if expect_ok {
                    model.posted.references.insert(reference);
                    add(&mut model.posted.credits, wallet, amount);
                    add(&mut model.posted.debits, AccountId::FUNDING.0, amount);
                }
            }
            2 => {
                let wallet = wallet_of(bytes.u8());
                let amount = model_amount(&mut bytes);
                let result = ledger.hold(
                    AccountId(wallet),
                    Micros::new(amount).expect("model amounts stay below MAX"),
                );
                let expect_ok = amount > 0
                    && model.posted.wallets.contains(&wallet)
                    && amount <= model.available(wallet);
                assert_eq!(result.is_ok(), expect_ok, "hold {amount} → {result:?}");
                if let Ok(hold) = result {
                    assert_eq!(hold.0, model.next_hold);
                    model.holds.insert(hold.0, (wallet, amount));
                    if let Some((_, created)) = &mut model.batch {
                        created.insert(hold.0);
                    }
                    model.next_hold += 1;
                }
            }
            3 => {
                let hold = u64::from(bytes.u8() % 16);
                let result = ledger.void(HoldId(hold));
                assert_eq!(result.is_ok(), model.holds.remove(&hold).is_some());
            }
            4 => {
                let hold = u64::from(bytes.u8() % 16);
                let to_hub = bytes.u8() % 2 == 0;
                let provider = if to_hub {
                    AccountId::HUB_PROVIDER
                } else {
                    AccountId(MODEL_PROVIDER)
                };
                let result = ledger.post(
                    HoldId(hold),
                    provider,
                    fuzz_memo(ChargeMethod::Wallet),
                    now_ms,
                );
                let model_hold = model.holds.remove(&hold);
                assert_eq!(result.is_ok(), model_hold.is_some(), "{result:?}");
                if let (Some((wallet, amount)), Ok(posted)) = (model_hold, result) {
                    model.book_split(wallet, provider.0, amount);
                    add(&mut model.posted.charges, wallet, 1);
                    assert_eq!(posted.cost.get(), amount);
                    let legs: u64 = posted.transfers.iter().map(|t| t.amount.get()).sum();
                    assert_eq!(legs, amount);
                    assert_eq!(
                        posted.wallet_balance_after.get(),
                        get(&model.posted.credits, wallet) - get(&model.posted.debits, wallet)
                    );
                }
            }
            5 => {
                let wallet = wallet_of(bytes.u8());
                let cost = u64::from(bytes.u32() % 200_000);
                let allowance = u64::from(bytes.u8() % 4);
                let result = ledger.charge_free(
                    AccountId(wallet),
                    Micros::new(cost).expect("small"),
                    AccountId::HUB_PROVIDER,
                    allowance,
                    fuzz_memo(ChargeMethod::FreeCall),
                    now_ms,
                );
                let expect_ok = model.posted.wallets.contains(&wallet)
                    && get(&model.posted.free_used, wallet) < allowance;
                assert_eq!(result.is_ok(), expect_ok, "free {cost} → {result:?}");
                if expect_ok {
                    model.book_split(AccountId::PROMOTIONS.0, AccountId::HUB_PROVIDER.0, cost);
                    add(&mut model.posted.free_used, wallet, 1);
                    add(&mut model.posted.charges, wallet, 1);
                }
            }
            6 => {
                ledger.begin_batch();
                model.batch = Some((model.posted.clone(), HashSet::new()));
            }
            7 => {
                ledger.commit_batch();
                model.batch = None;
            }
            _ => {
                ledger.rollback_batch();
                if let Some((before, created)) = model.batch.take() {
                    model.holds.retain(|id, (wallet, _)| {
                        !created.contains(id) && before.wallets.contains(wallet)
                    });
                    model.posted = before;
                }
            }
        }
        assert_ledger_matches(&ledger, &model);
    }
}

fn assert_ledger_matches(ledger: &Ledger, model: &LedgerModel) {
    for account in ledger.accounts() {
        let id = account.id.0;
        let posted = &model.posted;
        assert_eq!(
            account.credits_posted.get(),
            get(&posted.credits, id),
            "credits of {id}"
        );
        assert_eq!(
            account.debits_posted.get(),
            get(&posted.debits, id),
            "debits of {id}"
        );
        assert_eq!(
            account.debits_pending.get(),
            model.pending(id),
            "pending of {id}"
        );
        assert_eq!(
            account.charges_posted,
            get(&posted.charges, id),
            "charges of {id}"
        );
        assert_eq!(account.free_calls_used, get(&posted.free_used, id));
        if account.kind == AccountKind::Wallet {
            assert!(model.posted.wallets.contains(&id), "unexpected wallet {id}");
            assert_eq!(
                ledger.available(account.id).map(Micros::get),
                Some(model.available(id))
            );
        }
    }
    let wallets = ledger
        .accounts()
        .filter(|account| account.kind == AccountKind::Wallet)
        .count();
    assert_eq!(wallets, model.posted.wallets.len());
    assert_eq!(ledger.pending_holds(), model.holds.len());
    for reference in 0..16u32 {
        assert_eq!(
            ledger.has_reference(&format!("ref-{reference}")),
            model.posted.references.contains(&reference)
        );
    }
    let violations = ledger.verify();
    assert!(violations.is_empty(), "{violations:?}");
}
