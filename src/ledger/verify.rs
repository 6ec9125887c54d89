//! Invariant violations and the transfer-log checks (`ledger verify`).
//!
//! [`Ledger::verify`](super::Ledger::verify) judges balances in memory;
//! [`verify_transfers`] judges the immutable log itself: every charge's legs
//! must be exactly the 85/10/5 split of their sum, paid by one account.

use std::collections::BTreeMap;
use std::fmt;

use super::{AccountId, ChargeId, Transfer, TransferKind, split};
use crate::money::Micros;

/// One broken invariant, precise enough to act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// Σ (credits_posted − debits_posted) over all accounts is not zero.
    SumNotZero { sum: i128 },
    /// A wallet whose posted debits plus holds exceed its credits.
    WalletOverdrawn {
        account: AccountId,
        credits_posted: Micros,
        debits_posted: Micros,
        debits_pending: Micros,
    },
    /// `debits_pending` disagrees with the sum of the account's live holds.
    PendingMismatch {
        account: AccountId,
        recorded: Micros,
        holds: u128,
    },
    /// A stored account row disagrees with the balance recomputed from transfers.
    BalanceMismatch {
        account: AccountId,
        field: &'static str,
        stored: Micros,
        recomputed: Micros,
    },
    /// A charge's legs are not the split of their sum (or mix payers, or repeat a kind).
    SplitMismatch { charge: ChargeId, detail: String },
    /// A transfer names an account that has no row.
    UnknownAccount { transfer: u128, account: AccountId },
    /// A transfer of kind `Credit` carries a charge id, or a split leg lacks one.
    MalformedTransfer { transfer: u128, detail: String },
    /// A stored record could not be decoded.
    Unreadable { location: String, detail: String },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::SumNotZero { sum } => {
                write!(
                    f,
                    "sum of all account balances is {sum} micro-USDC, expected 0"
                )
            }
            Violation::WalletOverdrawn {
                account,
                credits_posted,
                debits_posted,
                debits_pending,
            } => write!(
                f,
                "wallet {} is overdrawn: credits_posted {credits_posted} < debits_posted {debits_posted} + debits_pending {debits_pending} USDC",
                account.0
            ),
            Violation::PendingMismatch {
                account,
                recorded,
                holds,
            } => write!(
                f,
                "account {}: debits_pending {recorded} USDC but its holds sum to {holds} micro-USDC",
                account.0
            ),
            Violation::BalanceMismatch {
                account,
                field,
                stored,
                recomputed,
            } => write!(
                f,
                "account {}: stored {field} {stored} USDC, recomputed from transfers {recomputed} USDC",
                account.0
            ),
            Violation::SplitMismatch { charge, detail } => {
                write!(f, "charge {:032x}: {detail}", charge.0)
            }
            Violation::UnknownAccount { transfer, account } => {
                write!(
                    f,
                    "transfer {transfer:032x} names account {} which does not exist",
                    account.0
                )
            }
            Violation::MalformedTransfer { transfer, detail } => {
                write!(f, "transfer {transfer:032x}: {detail}")
            }
            Violation::Unreadable { location, detail } => {
                write!(f, "{location}: unreadable record: {detail}")
            }
        }
    }
}

#[derive(Default)]
struct ChargeLegs {
    payer: Option<AccountId>,
    mixed_payers: bool,
    provider: Option<Micros>,
    hub: Option<Micros>,
    payment: Option<Micros>,
    repeated_kind: bool,
    total: u128,
}

/// Checks every charge in the log: legs are the 85/10/5 split of their sum,
/// one payer, one leg per kind; credits carry no charge id and split legs do.
pub fn verify_transfers<'a>(transfers: impl IntoIterator<Item = &'a Transfer>) -> Vec<Violation> {
    let mut violations = Vec::new();
    let mut charges: BTreeMap<ChargeId, ChargeLegs> = BTreeMap::new();
    for transfer in transfers {
        match (transfer.kind, transfer.charge) {
            (TransferKind::Credit, Some(_)) => violations.push(Violation::MalformedTransfer {
                transfer: transfer.id.0,
                detail: "a credit carries a charge id".into(),
            }),
            (TransferKind::Credit, None) => {}
            (_, None) => violations.push(Violation::MalformedTransfer {
                transfer: transfer.id.0,
                detail: format!("split leg {} has no charge id", transfer.kind.as_str()),
            }),
            (kind, Some(charge)) => {
                let legs = charges.entry(charge).or_default();
                match legs.payer {
                    None => legs.payer = Some(transfer.debit),
                    Some(payer) if payer != transfer.debit => legs.mixed_payers = true,
                    Some(_) => {}
                }
                let slot = match kind {
                    TransferKind::ProviderShare => &mut legs.provider,
                    TransferKind::HubFee => &mut legs.hub,
                    _ => &mut legs.payment,
                };
                if slot.replace(transfer.amount).is_some() {
                    legs.repeated_kind = true;
                }
                legs.total += u128::from(transfer.amount.get());
            }
        }
    }
    for (charge, legs) in charges {
        if legs.mixed_payers {
            violations.push(Violation::SplitMismatch {
                charge,
                detail: "legs are paid by different accounts".into(),
            });
        }
        if legs.repeated_kind {
            violations.push(Violation::SplitMismatch {
                charge,
                detail: "a split leg appears twice".into(),
            });
        }
        let Some(cost) = u64::try_from(legs.total).ok().and_then(Micros::new) else {
            violations.push(Violation::SplitMismatch {
                charge,
                detail: format!("legs sum to {} micro-USDC, out of range", legs.total),
            });
            continue;
        };
        let (provider, hub, payment) = split(cost);
        let found = (
            legs.provider.unwrap_or(Micros::ZERO),
            legs.hub.unwrap_or(Micros::ZERO),
            legs.payment.unwrap_or(Micros::ZERO),
        );
        if found != (provider, hub, payment) {
            violations.push(Violation::SplitMismatch {
                charge,
                detail: format!(
                    "legs provider {} / hub {} / payment {} USDC are not the 85/10/5 split of {cost} USDC (expected {provider} / {hub} / {payment})",
                    found.0, found.1, found.2
                ),
            });
        }
    }
    violations
}
