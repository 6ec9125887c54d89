//! Persisted value encoding: one format-version byte, then an rkyv archive.
//!
//! redb hands out values at arbitrary alignment, so every value is copied into
//! an [`AlignedVec`] before rkyv validates (bytecheck) and deserializes it. A
//! version byte above [`FORMAT_VERSION`] means a newer Hub wrote the file and
//! stops start-up with [`StoreError::NewerFormat`]; anything unreadable is
//! [`StoreError::Corrupt`] naming the table and key. rkyv's format features
//! are pinned in Cargo.toml and `tests/store_golden.rs` fails if the archive
//! bytes ever change.

use rkyv::rancor;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};

use super::StoreError;
use crate::ledger::{
    Account, AccountId, AccountKind, ChargeId, ChargeMemo, ChargeMethod, Transfer, TransferId,
    TransferKind,
};
use crate::money::Micros;

/// The record format this build writes and the newest it reads.
pub const FORMAT_VERSION: u8 = 1;

/// Alignment of the copy buffer: enough for the `u128` fields of transfers.
const ALIGNMENT: usize = 16;

/// A transfer as stored (plain integers; `Micros` and the id newtypes are ledger types).
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct TransferRecord {
    pub id: u128,
    pub debit: u64,
    pub credit: u64,
    pub amount: u64,
    pub kind: u8,
    pub charge: Option<u128>,
    pub timestamp_ms: i64,
    pub reference: Option<String>,
    pub memo: Option<MemoRecord>,
}

/// The transfers one ledger operation booked together, stored as one row
/// under its first transfer's id: a charge's split legs (consecutive ids) or
/// a single credit. A charge costs the checkpoint one insert, not one per leg.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct BookingRecord {
    pub transfers: Vec<TransferRecord>,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct MemoRecord {
    pub agent_id: String,
    pub capability: String,
    pub action: String,
    pub request_id: String,
    pub method: u8,
}

/// An account row: kind, posted balances and counters. `debits_pending` is
/// memory-only (holds do not survive a restart) and is not stored.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct AccountRecord {
    pub id: u64,
    pub kind: u8,
    pub credits_posted: u64,
    pub debits_posted: u64,
    pub charges_posted: u64,
    pub free_calls_used: u64,
}

impl From<&Transfer> for TransferRecord {
    fn from(transfer: &Transfer) -> TransferRecord {
        TransferRecord {
            id: transfer.id.0,
            debit: transfer.debit.0,
            credit: transfer.credit.0,
            amount: transfer.amount.get(),
            kind: transfer.kind.as_u8(),
            charge: transfer.charge.map(|charge| charge.0),
            timestamp_ms: transfer.timestamp_ms,
            reference: transfer.reference.clone(),
            memo: transfer.memo.as_ref().map(|memo| MemoRecord {
                agent_id: memo.agent_id.clone(),
                capability: memo.capability.clone(),
                action: memo.action.clone(),
                request_id: memo.request_id.clone(),
                method: memo.method.as_u8(),
            }),
        }
    }
}

impl TransferRecord {
    /// Back to a ledger transfer; `None` names the first field out of range.
    pub fn into_transfer(self) -> Result<Transfer, String> {
        let amount = Micros::new(self.amount)
            .ok_or_else(|| format!("amount {} out of range", self.amount))?;
        let kind = TransferKind::from_u8(self.kind)
            .ok_or_else(|| format!("unknown transfer kind {}", self.kind))?;
        let memo = match self.memo {
            None => None,
            Some(memo) => Some(ChargeMemo {
                method: ChargeMethod::from_u8(memo.method)
                    .ok_or_else(|| format!("unknown charge method {}", memo.method))?,
                agent_id: memo.agent_id,
                capability: memo.capability,
                action: memo.action,
                request_id: memo.request_id,
            }),
        };
        Ok(Transfer {
            id: TransferId(self.id),
            debit: AccountId(self.debit),
            credit: AccountId(self.credit),
            amount,
            kind,
            charge: self.charge.map(ChargeId),
            timestamp_ms: self.timestamp_ms,
            reference: self.reference,
            memo,
        })
    }
}

impl BookingRecord {
    pub fn of(transfers: &[Transfer]) -> BookingRecord {
        BookingRecord {
            transfers: transfers.iter().map(TransferRecord::from).collect(),
        }
    }

    /// Back to ledger transfers, checking the row against the key it is
    /// stored under: not empty, first id equal to the key, ids increasing.
    pub fn into_transfers(self, key: u128) -> Result<Vec<Transfer>, String> {
        let mut transfers: Vec<Transfer> = Vec::with_capacity(self.transfers.len());
        for record in self.transfers {
            let transfer = record.into_transfer()?;
            match transfers.last() {
                None if transfer.id.0 != key => {
                    return Err(format!("first transfer is {:032x}", transfer.id.0));
                }
                Some(previous) if transfer.id.0 <= previous.id.0 => {
                    return Err(format!(
                        "transfer {:032x} follows {:032x}",
                        transfer.id.0, previous.id.0
                    ));
                }
                _ => transfers.push(transfer),
            }
        }
        if transfers.is_empty() {
            return Err("no transfers".into());
        }
        Ok(transfers)
    }
}

impl From<&Account> for AccountRecord {
    fn from(account: &Account) -> AccountRecord {
        AccountRecord {
            id: account.id.0,
            kind: account.kind.as_u8(),
            credits_posted: account.credits_posted.get(),
            debits_posted: account.debits_posted.get(),
            charges_posted: account.charges_posted,
            free_calls_used: account.free_calls_used,
        }
    }
}

impl AccountRecord {
    pub fn kind(&self) -> Result<AccountKind, String> {
        AccountKind::from_u8(self.kind).ok_or_else(|| format!("unknown account kind {}", self.kind))
    }
}

thread_local! {
    /// The archive buffer [`encode`] serializes into, kept per thread: a
    /// fresh one regrew from empty for every record, a handful of
    /// reallocations per idempotency record on the writer's hot path.
    static ARCHIVE_SCRATCH: std::cell::Cell<AlignedVec> = std::cell::Cell::new(AlignedVec::new());
}

/// A scratch buffer that grew past this is dropped rather than kept.
const ARCHIVE_SCRATCH_BYTES_MAX: usize = 1 << 20;

/// `[FORMAT_VERSION] ++ rkyv archive`.
pub fn encode<T>(value: &T) -> Result<Vec<u8>, StoreError>
where
    T: for<'a> Serialize<
        rkyv::api::high::HighSerializer<
            AlignedVec,
            rkyv::ser::allocator::ArenaHandle<'a>,
            rancor::Error,
        >,
    >,
{
    let mut scratch = ARCHIVE_SCRATCH.take();
    scratch.clear();
    let archive = rkyv::api::high::to_bytes_in::<_, rancor::Error>(value, scratch)
        .map_err(|error| StoreError::Corrupt(format!("cannot archive a record: {error}")))?;
    let mut bytes = Vec::with_capacity(archive.len() + 1);
    bytes.push(FORMAT_VERSION);
    bytes.extend_from_slice(&archive);
    if archive.capacity() <= ARCHIVE_SCRATCH_BYTES_MAX {
        ARCHIVE_SCRATCH.set(archive);
    }
    Ok(bytes)
}

/// Checks the version byte, copies into an aligned buffer, validates and deserializes.
/// `table` and `key` only name the record in errors.
pub fn decode<T>(table: &str, key: &dyn std::fmt::Display, bytes: &[u8]) -> Result<T, StoreError>
where
    T: Archive,
    T::Archived: for<'a> rkyv::bytecheck::CheckBytes<rkyv::api::high::HighValidator<'a, rancor::Error>>
        + Deserialize<T, rkyv::rancor::Strategy<rkyv::de::Pool, rancor::Error>>,
{
    let Some((&version, archive)) = bytes.split_first() else {
        return Err(StoreError::Corrupt(format!(
            "table `{table}` key {key}: empty value (no format-version byte)"
        )));
    };
    if version > FORMAT_VERSION {
        tracing::error!(table, key = %key, found = version, supported = FORMAT_VERSION, "record written by a newer jecp-hub");
        return Err(StoreError::NewerFormat {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    if version != FORMAT_VERSION {
        return Err(StoreError::Corrupt(format!(
            "table `{table}` key {key}: unknown record format version {version} (this build reads {FORMAT_VERSION})"
        )));
    }
    let mut aligned = AlignedVec::<ALIGNMENT>::with_capacity(archive.len());
    aligned.extend_from_slice(archive);
    rkyv::from_bytes::<T, rancor::Error>(&aligned).map_err(|error| {
        StoreError::Corrupt(format!(
            "table `{table}` key {key}: invalid archive: {error}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leg(id: u128) -> TransferRecord {
        TransferRecord {
            id,
            debit: 1_000,
            credit: 4,
            amount: 10,
            kind: TransferKind::HubFee.as_u8(),
            charge: Some(9),
            timestamp_ms: 1,
            reference: None,
            memo: None,
        }
    }

    #[test]
    fn a_booking_must_start_at_its_key_and_increase() {
        let booking = |ids: &[u128]| BookingRecord {
            transfers: ids.iter().copied().map(leg).collect(),
        };
        let transfers = booking(&[10, 11, 12]).into_transfers(10).unwrap();
        assert_eq!(
            transfers.iter().map(|t| t.id.0).collect::<Vec<_>>(),
            [10, 11, 12]
        );
        for (ids, key, expected) in [
            (&[10u128, 11][..], 9, "first transfer is"),
            (&[10, 10], 10, "follows"),
            (&[10, 12, 11], 10, "follows"),
            (&[], 10, "no transfers"),
        ] {
            let error = booking(ids).into_transfers(key).unwrap_err();
            assert!(error.contains(expected), "{ids:?}: {error}");
        }
    }

    #[test]
    fn round_trips_and_rejects_bad_bytes() {
        let record = AccountRecord {
            id: 1_000,
            kind: 6,
            credits_posted: 5,
            debits_posted: 2,
            charges_posted: 1,
            free_calls_used: 0,
        };
        let bytes = encode(&record).unwrap();
        assert_eq!(bytes[0], FORMAT_VERSION);
        // Decoding from an odd offset proves the aligned copy.
        let mut shifted = vec![0u8];
        shifted.extend_from_slice(&bytes);
        assert_eq!(
            decode::<AccountRecord>("accounts", &1_000, &shifted[1..]).unwrap(),
            record
        );

        let mut newer = bytes.clone();
        newer[0] = FORMAT_VERSION + 1;
        assert!(matches!(
            decode::<AccountRecord>("accounts", &1_000, &newer),
            Err(StoreError::NewerFormat {
                found: 2,
                supported: 1
            })
        ));
        let truncated = &bytes[..bytes.len() - 3];
        let error = decode::<AccountRecord>("accounts", &1_000, truncated).unwrap_err();
        assert!(
            matches!(&error, StoreError::Corrupt(message) if message.contains("table `accounts` key 1000")),
            "{error}"
        );
        assert!(matches!(
            decode::<AccountRecord>("accounts", &1_000, &[]),
            Err(StoreError::Corrupt(_))
        ));
    }
}
