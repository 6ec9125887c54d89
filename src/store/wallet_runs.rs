//! The wallet index as runs: which bookings touch each wallet, many booking
//! keys to a redb row.
//!
//! # Why runs
//!
//! An agent's history is a range scan over its wallet's bookings, so the
//! store keeps an index from wallet to booking key. Schema 2 stored one row
//! per (wallet, booking); every billed call then paid a B-tree insert for a
//! 24-byte entry, about 5% of the Hub's instructions per call. A checkpoint
//! applies thousands of calls in one transaction, so it now gathers each
//! wallet's new booking keys and writes them as one row:
//!
//! ```text
//! key   = (wallet u64, first booking key u128)
//! value = booking key u128 (little-endian) * n,  1 <= n <= RUN_KEYS_MAX, strictly increasing
//! ```
//!
//! Booking keys only grow (transfer ids are time-ordered and never reused,
//! across restarts too), so a wallet's runs never overlap: reading them in key
//! order yields its bookings in order. [`RUN_KEYS_MAX`] bounds what one
//! history page may have to read past.

use std::collections::BTreeMap;

use redb::{ReadOnlyTable, Table, TableDefinition, TableHandle};

use super::StoreError;
use super::tables::redb_error;

/// `(wallet, first booking key)` → the run's booking keys, packed.
pub const WALLET_RUNS: TableDefinition<(u64, u128), &[u8]> =
    TableDefinition::new("wallet_booking_runs");

/// Most booking keys in one run (16 KiB of value).
pub const RUN_KEYS_MAX: usize = 1024;

const KEY_BYTES: usize = 16;

/// Gathers booking keys per wallet while a checkpoint applies journal
/// records, and writes them as runs.
#[derive(Debug, Default)]
pub struct RunWriter {
    pending: BTreeMap<u64, Vec<u128>>,
}

impl RunWriter {
    /// Notes that `booking` touches `wallet`; writes the wallet's run once it
    /// is full.
    pub fn push(
        &mut self,
        table: &mut Table<(u64, u128), &[u8]>,
        wallet: u64,
        booking: u128,
    ) -> Result<(), StoreError> {
        let keys = self.pending.entry(wallet).or_default();
        if keys.last().is_some_and(|&last| booking <= last) {
            return Err(StoreError::Corrupt(format!(
                "wallet {wallet}: booking {booking:032x} is indexed after a newer one"
            )));
        }
        keys.push(booking);
        if keys.len() == RUN_KEYS_MAX {
            write_run(table, wallet, keys)?;
            keys.clear();
        }
        Ok(())
    }

    /// Writes every wallet's unwritten keys; called once at the end of the
    /// checkpoint's transaction.
    pub fn finish(self, table: &mut Table<(u64, u128), &[u8]>) -> Result<(), StoreError> {
        for (wallet, keys) in &self.pending {
            if !keys.is_empty() {
                write_run(table, *wallet, keys)?;
            }
        }
        Ok(())
    }
}

/// Writes one run; `keys` is non-empty and strictly increasing.
fn write_run(
    table: &mut Table<(u64, u128), &[u8]>,
    wallet: u64,
    keys: &[u128],
) -> Result<(), StoreError> {
    debug_assert!(!keys.is_empty() && keys.len() <= RUN_KEYS_MAX);
    debug_assert!(keys.windows(2).all(|pair| pair[0] < pair[1]));
    let mut value = Vec::with_capacity(keys.len() * KEY_BYTES);
    for key in keys {
        value.extend_from_slice(&key.to_le_bytes());
    }
    table
        .insert((wallet, keys[0]), value.as_slice())
        .map_err(|e| redb_error("writing the wallet index", e))?;
    Ok(())
}

/// The booking keys of one stored run, checked against the row's key.
pub fn decode_run(wallet: u64, first: u128, value: &[u8]) -> Result<Vec<u128>, StoreError> {
    let corrupt = |detail: &str| {
        StoreError::Corrupt(format!(
            "table `{}` key ({wallet}, {first:032x}): {detail}",
            WALLET_RUNS.name()
        ))
    };
    if value.is_empty()
        || !value.len().is_multiple_of(KEY_BYTES)
        || value.len() / KEY_BYTES > RUN_KEYS_MAX
    {
        return Err(corrupt(&format!("a run of {} bytes", value.len())));
    }
    let keys: Vec<u128> = value
        .chunks_exact(KEY_BYTES)
        .map(|chunk| {
            let mut bytes = [0u8; KEY_BYTES];
            bytes.copy_from_slice(chunk);
            u128::from_le_bytes(bytes)
        })
        .collect();
    if keys[0] != first {
        return Err(corrupt("the run does not start at its key"));
    }
    if keys.windows(2).any(|pair| pair[0] >= pair[1]) {
        return Err(corrupt("the run's keys are not increasing"));
    }
    Ok(keys)
}

/// The keys of `wallet`'s bookings below `upper` (exclusive), newest first,
/// read lazily run by run.
pub fn bookings_below<'t>(
    runs: &'t ReadOnlyTable<(u64, u128), &'static [u8]>,
    wallet: u64,
    upper: u128,
) -> Result<impl Iterator<Item = Result<u128, StoreError>> + 't, StoreError> {
    let context = "reading the wallet index";
    let rows = runs
        .range((wallet, 0u128)..(wallet, upper))
        .map_err(|e| redb_error(context, e))?
        .rev();
    Ok(rows.flat_map(move |row| {
        let keys = row
            .map_err(|e| redb_error(context, e))
            .and_then(|(key, value)| {
                let (_, first) = key.value();
                decode_run(wallet, first, value.value())
            });
        let (keys, error) = match keys {
            Ok(keys) => (keys, None),
            Err(error) => (Vec::new(), Some(error)),
        };
        error.map(Err).into_iter().chain(
            keys.into_iter()
                .rev()
                .filter(move |&key| key < upper)
                .map(Ok),
        )
    }))
}

#[cfg(test)]
mod tests {
    use redb::{ReadableDatabase, ReadableTableMetadata};

    use super::*;

    fn stored(db: &redb::Database, wallet: u64, upper: u128) -> Vec<u128> {
        let txn = db.begin_read().unwrap();
        let runs = txn.open_table(WALLET_RUNS).unwrap();
        bookings_below(&runs, wallet, upper)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn runs_split_at_their_bound_and_read_back_newest_first_per_wallet() {
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("t.redb")).unwrap();
        let total = RUN_KEYS_MAX as u128 * 2 + 7;
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(WALLET_RUNS).unwrap();
            let mut writer = RunWriter::default();
            for key in 1..=total {
                // Two wallets interleaved: wallet 10 gets the odd keys.
                writer.push(&mut table, 10, key * 2 + 1).unwrap();
                writer.push(&mut table, 11, key * 2).unwrap();
            }
            writer.finish(&mut table).unwrap();
            assert_eq!(table.len().unwrap(), 6, "three runs per wallet");
        }
        txn.commit().unwrap();

        let all = stored(&db, 10, u128::MAX);
        let expected: Vec<u128> = (1..=total).rev().map(|key| key * 2 + 1).collect();
        assert_eq!(all, expected);
        // A bound inside a run cuts it; the bound itself is excluded.
        let upper = 2 * 1500 + 1;
        assert_eq!(
            stored(&db, 10, upper),
            expected
                .iter()
                .copied()
                .filter(|&k| k < upper)
                .collect::<Vec<_>>()
        );
        assert_eq!(stored(&db, 11, u128::MAX).len(), total as usize);
        assert!(stored(&db, 12, u128::MAX).is_empty());
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Arbitrary bytes as a stored run decode to keys that start at the
        /// row's key and increase, or to `Corrupt`; never a panic.
        #[test]
        fn arbitrary_runs_decode_or_are_corrupt(
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
            first in any::<u128>(),
        ) {
            match decode_run(10, first, &bytes) {
                Ok(keys) => {
                    prop_assert_eq!(keys[0], first);
                    prop_assert!(keys.windows(2).all(|pair| pair[0] < pair[1]));
                }
                Err(error) => prop_assert!(matches!(error, StoreError::Corrupt(_))),
            }
        }
    }

    #[test]
    fn a_key_out_of_order_is_refused_and_a_torn_run_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("t.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(WALLET_RUNS).unwrap();
            let mut writer = RunWriter::default();
            writer.push(&mut table, 10, 5).unwrap();
            assert!(matches!(
                writer.push(&mut table, 10, 5),
                Err(StoreError::Corrupt(_))
            ));
        }
        drop(txn);
        for (value, first) in [
            (vec![0u8; 15], 0),
            (Vec::new(), 0),
            (7u128.to_le_bytes().to_vec(), 8),
            ([9u128.to_le_bytes(), 8u128.to_le_bytes()].concat(), 9),
        ] {
            assert!(
                matches!(decode_run(10, first, &value), Err(StoreError::Corrupt(_))),
                "{value:?}"
            );
        }
        assert_eq!(
            decode_run(10, 7, &[7u128.to_le_bytes(), 9u128.to_le_bytes()].concat()).unwrap(),
            vec![7, 9]
        );
    }
}
