//! Bundled logs: many rows of an append-only, key-ordered log packed into one
//! redb row.
//!
//! # Why bundles
//!
//! Every billed call appends a booking (its split legs) and a stored answer
//! (DESIGN §3.6). Schema 2 gave each a row of its own; the B-tree insert per
//! row, whatever its size, cost about 4,000 instructions, and with the
//! wallet-index entry (see [`super::wallet_runs`]) the three inserts were
//! about a fifth of the Hub's instructions per billed call. A checkpoint
//! applies thousands of calls in one transaction, so it now packs consecutive
//! entries of each log into bundles of up to [`BUNDLE_BYTES_MAX`]:
//!
//! ```text
//! key    = the key of the bundle's first entry (u128)
//! value  = entry*                              (at least one)
//! entry  = key u128 | len u32 | bytes          (little-endian; keys strictly increasing)
//! ```
//!
//! Entries keep their own keys (a booking's first transfer id, an idempotency
//! record's log key), so whoever holds a key — the writer's in-memory index,
//! the wallet index — still holds a valid address: the entry under `k` is in
//! the last bundle whose key is at or below `k`. Bundles never overlap
//! because a log's keys only grow, across restarts too.
//!
//! Logs bundled this way: `booking_bundles` (bookings) and
//! `idempotency_bundles` (stored answers); see [`super::tables`].

use redb::{ReadOnlyTable, ReadableTable, Table, TableDefinition, TableHandle};

use super::StoreError;
use super::tables::redb_error;

/// A bundled log: bundle key → entries.
pub type BundleTable = TableDefinition<'static, u128, &'static [u8]>;

/// A bundle is written once it holds this many bytes (a single larger entry
/// makes a bundle of its own). Bounds what a point read scans.
pub const BUNDLE_BYTES_MAX: usize = 64 << 10;

const ENTRY_HEADER_BYTES: usize = 16 + 4;

/// Packs one log's entries into bundles while a checkpoint applies journal
/// records.
pub struct BundleWriter {
    log: BundleTable,
    bytes: Vec<u8>,
    first: Option<u128>,
    last: Option<u128>,
}

impl BundleWriter {
    pub fn new(log: BundleTable) -> BundleWriter {
        BundleWriter {
            log,
            bytes: Vec::new(),
            first: None,
            last: None,
        }
    }

    /// Adds the entry stored under `key`; writes the bundle first if the
    /// entry would take it past [`BUNDLE_BYTES_MAX`].
    pub fn push(
        &mut self,
        table: &mut Table<u128, &[u8]>,
        key: u128,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        if self.last.is_some_and(|last| key <= last) {
            return Err(StoreError::Corrupt(format!(
                "table `{}`: entry {key:032x} follows a newer one",
                self.log.name()
            )));
        }
        if !self.bytes.is_empty()
            && self.bytes.len() + ENTRY_HEADER_BYTES + bytes.len() > BUNDLE_BYTES_MAX
        {
            self.flush(table)?;
        }
        self.append(key, bytes)
    }

    /// Appends one entry to the bundle being built, whatever its size.
    fn append(&mut self, key: u128, bytes: &[u8]) -> Result<(), StoreError> {
        let len = u32::try_from(bytes.len()).map_err(|_| {
            StoreError::Io(format!(
                "table `{}`: an entry of {} bytes cannot be stored",
                self.log.name(),
                bytes.len()
            ))
        })?;
        self.first.get_or_insert(key);
        self.last = Some(key);
        self.bytes.extend_from_slice(&key.to_le_bytes());
        self.bytes.extend_from_slice(&len.to_le_bytes());
        self.bytes.extend_from_slice(bytes);
        Ok(())
    }

    /// Writes the entries gathered so far as one bundle (nothing if none).
    pub fn flush(&mut self, table: &mut Table<u128, &[u8]>) -> Result<(), StoreError> {
        if let Some(first) = self.first.take() {
            table
                .insert(first, self.bytes.as_slice())
                .map_err(|e| redb_error(&format!("writing `{}`", self.log.name()), e))?;
            self.bytes.clear();
        }
        Ok(())
    }
}

/// The entries of one stored bundle of `log`, `(key, bytes)`, oldest first,
/// checked against the row's key.
pub fn entries(
    log: BundleTable,
    bundle_key: u128,
    value: &[u8],
) -> Result<Vec<(u128, &[u8])>, StoreError> {
    let corrupt = |detail: &str| {
        StoreError::Corrupt(format!(
            "table `{}` key {bundle_key:032x}: {detail}",
            log.name()
        ))
    };
    let mut entries: Vec<(u128, &[u8])> = Vec::new();
    let mut rest = value;
    while !rest.is_empty() {
        if rest.len() < ENTRY_HEADER_BYTES {
            return Err(corrupt("an entry is cut short"));
        }
        let (header, tail) = rest.split_at(ENTRY_HEADER_BYTES);
        let mut key = [0u8; 16];
        key.copy_from_slice(&header[..16]);
        let key = u128::from_le_bytes(key);
        let mut len = [0u8; 4];
        len.copy_from_slice(&header[16..]);
        let len = u32::from_le_bytes(len) as usize;
        if tail.len() < len {
            return Err(corrupt("an entry runs past the end of the bundle"));
        }
        if entries.last().is_some_and(|&(last, _)| key <= last) {
            return Err(corrupt("the entries' keys are not increasing"));
        }
        let (bytes, after) = tail.split_at(len);
        entries.push((key, bytes));
        rest = after;
    }
    match entries.first() {
        Some(&(first, _)) if first == bundle_key => Ok(entries),
        Some(_) => Err(corrupt("the bundle does not start at its key")),
        None => Err(corrupt("an empty bundle")),
    }
}

/// Calls `visit` with every entry of `log`, `(key, bytes)`, in key order.
pub fn for_each(
    log: BundleTable,
    table: &ReadOnlyTable<u128, &'static [u8]>,
    mut visit: impl FnMut(u128, &[u8]) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let context = format!("reading `{}`", log.name());
    for row in table.iter().map_err(|e| redb_error(&context, e))? {
        let (bundle_key, value) = row.map_err(|e| redb_error(&context, e))?;
        for (key, bytes) in entries(log, bundle_key.value(), value.value())? {
            visit(key, bytes)?;
        }
    }
    Ok(())
}

/// Reads the entry stored under `key` in `log` and hands its bytes to
/// `read`; `None` if there is no such entry.
pub fn find<T>(
    log: BundleTable,
    table: &ReadOnlyTable<u128, &'static [u8]>,
    key: u128,
    read: impl FnOnce(&[u8]) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    let context = format!("reading `{}`", log.name());
    let Some(row) = table
        .range(..=key)
        .map_err(|e| redb_error(&context, e))?
        .next_back()
    else {
        return Ok(None);
    };
    let (bundle_key, value) = row.map_err(|e| redb_error(&context, e))?;
    let found = entries(log, bundle_key.value(), value.value())?
        .into_iter()
        .find(|&(entry_key, _)| entry_key == key);
    found.map(|(_, bytes)| read(bytes)).transpose()
}

/// Deletes the dead entries at the front of `log`, oldest first: bundles
/// whose entries `live` all rejects go, and the sweep stops at the first
/// bundle that keeps a live entry, rewriting it with its live entries only
/// (under its first live key, keeping bundle keys equal to their first
/// entry).
///
/// Made for logs whose entries die in the order they were written (stored
/// answers: one TTL from the time of the call), where this finds every dead
/// entry without reading the live ones. A sweep used to read the whole log,
/// every stored answer of the last day, once a minute: seconds of a core, and
/// all of the file read through the page cache, at millions of answers
/// (BENCHMARKS.md, session 15). Where the order does not hold (a TTL lowered
/// across a restart, a clock stepped back), a dead entry behind a live one
/// waits until that one dies too; readers check expiry themselves, so only
/// disk space waits with it.
///
/// A bundle that does not parse is kept whole and stepped over: deleting is
/// never the way to handle corruption (loading reports it); `live` should
/// keep what it cannot read for the same reason.
pub fn drop_dead_front(
    log: BundleTable,
    table: &mut Table<u128, &[u8]>,
    live: impl Fn(u128, &[u8]) -> bool,
) -> Result<(), StoreError> {
    let context = format!("sweeping `{}`", log.name());
    let mut from = 0u128;
    loop {
        // (bundle key, live entries, entries), `None` for entries when the
        // bundle does not parse.
        let oldest = {
            let mut rows = table.range(from..).map_err(|e| redb_error(&context, e))?;
            match rows.next() {
                None => None,
                Some(row) => {
                    let (bundle_key, value) = row.map_err(|e| redb_error(&context, e))?;
                    let bundle_key = bundle_key.value();
                    let counts = entries(log, bundle_key, value.value()).ok().map(|entries| {
                        let live_count = entries
                            .iter()
                            .filter(|&&(key, bytes)| live(key, bytes))
                            .count();
                        (live_count, entries.len())
                    });
                    Some((bundle_key, counts))
                }
            }
        };
        let Some((bundle_key, counts)) = oldest else {
            return Ok(());
        };
        match counts {
            Some((live_count, count)) if live_count == count => return Ok(()),
            Some((0, _)) => {
                table
                    .remove(bundle_key)
                    .map_err(|e| redb_error(&context, e))?;
            }
            Some(_) => {
                rewrite_live(log, table, bundle_key, &live, &context)?;
                return Ok(());
            }
            None => {}
        }
        let Some(next) = bundle_key.checked_add(1) else {
            return Ok(());
        };
        from = next;
    }
}

/// Replaces the bundle under `bundle_key` with its entries `live` accepts.
fn rewrite_live(
    log: BundleTable,
    table: &mut Table<u128, &[u8]>,
    bundle_key: u128,
    live: &impl Fn(u128, &[u8]) -> bool,
    context: &str,
) -> Result<(), StoreError> {
    let Some(old) = table
        .remove(bundle_key)
        .map_err(|e| redb_error(context, e))?
    else {
        return Ok(());
    };
    // Smaller than the bundle it replaces, so it stays one bundle.
    let mut kept = BundleWriter::new(log);
    kept.bytes.reserve(old.value().len());
    for (key, bytes) in entries(log, bundle_key, old.value())? {
        if live(key, bytes) {
            kept.append(key, bytes)?;
        }
    }
    drop(old);
    kept.flush(table)
}

#[cfg(test)]
mod tests {
    use redb::{ReadableDatabase, ReadableTableMetadata};

    use super::*;

    const LOG: BundleTable = TableDefinition::new("test_log");

    /// An entry whose first byte says when it expires.
    fn entry_bytes(index: u128, len: usize) -> Vec<u8> {
        let mut bytes = vec![(index % 251) as u8; len];
        bytes[0] = if index < 200 { 100 } else { 200 };
        bytes
    }

    #[test]
    fn entries_are_found_by_key_across_bundles_and_retained_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("t.redb")).unwrap();
        // 300 entries of ~1 KiB: several bundles; one large entry alone.
        let mut written = Vec::new();
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(LOG).unwrap();
            let mut writer = BundleWriter::new(LOG);
            for index in 0..300u128 {
                let len = if index == 150 {
                    BUNDLE_BYTES_MAX * 2
                } else {
                    1000
                };
                let key = (5 << 32) | (index * 3);
                let bytes = entry_bytes(index, len);
                writer.push(&mut table, key, &bytes).unwrap();
                written.push((key, bytes));
            }
            writer.flush(&mut table).unwrap();
            let bundles = table.len().unwrap();
            assert!((6..=10).contains(&bundles), "{bundles} bundles");
            for (bundle_key, value) in table.iter().unwrap().map(Result::unwrap) {
                let value = value.value();
                let entries = entries(LOG, bundle_key.value(), value).unwrap();
                assert!(value.len() <= BUNDLE_BYTES_MAX || entries.len() == 1);
            }
            // Keys only grow.
            assert!(matches!(
                writer.push(&mut table, written[299].0, b"x"),
                Err(StoreError::Corrupt(_))
            ));
        }
        txn.commit().unwrap();

        let read = |key: u128| {
            let txn = db.begin_read().unwrap();
            let table = txn.open_table(LOG).unwrap();
            find(LOG, &table, key, |bytes| Ok(bytes.to_vec())).unwrap()
        };
        for (key, bytes) in &written {
            assert_eq!(read(*key).as_ref(), Some(bytes));
            // Between and before stored keys there is nothing.
            assert_eq!(read(key + 1), None);
        }
        assert_eq!(read(0), None);

        // At 50 nothing goes; at 150 the first 200 entries go (the bundle
        // straddling 200 is rewritten without them); at 250 everything goes.
        let live_at = |now: u8| move |_: u128, bytes: &[u8]| bytes[0] > now;
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(LOG).unwrap();
            let bundles = table.len().unwrap();
            drop_dead_front(LOG, &mut table, live_at(50)).unwrap();
            assert_eq!(table.len().unwrap(), bundles);
            drop_dead_front(LOG, &mut table, live_at(150)).unwrap();
            assert!(table.len().unwrap() < bundles);
            let left: Vec<(u128, Vec<u8>)> = table
                .iter()
                .unwrap()
                .map(Result::unwrap)
                .flat_map(|(key, value)| {
                    entries(LOG, key.value(), value.value())
                        .unwrap()
                        .into_iter()
                        .map(|(key, bytes)| (key, bytes.to_vec()))
                        .collect::<Vec<_>>()
                })
                .collect();
            assert_eq!(left, written[200..], "exactly the live entries remain");
            drop_dead_front(LOG, &mut table, live_at(250)).unwrap();
            assert!(table.is_empty().unwrap());
        }
        txn.commit().unwrap();
    }

    #[test]
    fn the_sweep_stops_at_the_first_live_bundle_and_steps_over_unreadable_ones() {
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("t.redb")).unwrap();
        // Entries of a whole bundle each, first byte = when they die:
        // an unreadable row, two dead, one live, then a dead one out of order.
        let dies_at = [100u8, 100, 200, 100];
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(LOG).unwrap();
            table.insert(1, &b"not a bundle"[..]).unwrap();
            let mut writer = BundleWriter::new(LOG);
            for (index, &dies) in dies_at.iter().enumerate() {
                let mut bytes = vec![0u8; BUNDLE_BYTES_MAX];
                bytes[0] = dies;
                writer.push(&mut table, 10 + index as u128, &bytes).unwrap();
            }
            writer.flush(&mut table).unwrap();
            assert_eq!(table.len().unwrap(), 5);

            drop_dead_front(LOG, &mut table, |_, bytes| bytes[0] > 150).unwrap();
            let keys: Vec<u128> = table
                .iter()
                .unwrap()
                .map(|row| row.unwrap().0.value())
                .collect();
            // The unreadable row is kept, the dead front goes, and the dead
            // entry behind the live one waits for it.
            assert_eq!(keys, vec![1, 12, 13]);
        }
        txn.commit().unwrap();
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any entries (increasing keys, any bytes) read back as written; a
        /// bundle cut short reads as a prefix of them or `Corrupt`; a flipped
        /// byte never panics the parse (redb's page checksums, not the
        /// bundle, catch damage on disk).
        #[test]
        fn bundles_round_trip_and_damage_never_panics(
            gaps in proptest::collection::vec((1u128..1_000, proptest::collection::vec(any::<u8>(), 0..64)), 1..20),
            cut in any::<prop::sample::Index>(),
            flip in (any::<prop::sample::Index>(), 1u8..=255),
        ) {
            let mut writer = BundleWriter::new(LOG);
            let mut written = Vec::new();
            let mut key = 0u128;
            for (gap, bytes) in &gaps {
                key += gap;
                writer.first.get_or_insert(key);
                writer.append(key, bytes).unwrap();
                written.push((key, bytes.clone()));
            }
            let first = written[0].0;
            let parsed: Vec<(u128, Vec<u8>)> = entries(LOG, first, &writer.bytes)
                .unwrap()
                .into_iter()
                .map(|(key, bytes)| (key, bytes.to_vec()))
                .collect();
            prop_assert_eq!(&parsed, &written);

            let cut = cut.index(writer.bytes.len());
            match entries(LOG, first, &writer.bytes[..cut]) {
                Ok(prefix) => {
                    prop_assert!(prefix.len() < written.len());
                    for ((key, bytes), (written_key, written_bytes)) in prefix.iter().zip(&written) {
                        prop_assert_eq!(key, written_key);
                        prop_assert_eq!(*bytes, written_bytes.as_slice());
                    }
                }
                Err(error) => prop_assert!(matches!(error, StoreError::Corrupt(_))),
            }
            let mut flipped = writer.bytes.clone();
            let at = flip.0.index(flipped.len());
            flipped[at] ^= flip.1;
            let _ = entries(LOG, first, &flipped);
        }
    }

    #[test]
    fn torn_or_misordered_bundles_are_corrupt() {
        let entry = |key: u128, bytes: &[u8]| {
            let mut entry = key.to_le_bytes().to_vec();
            entry.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            entry.extend_from_slice(bytes);
            entry
        };
        let good = [entry(4, b"ab"), entry(9, b"c")].concat();
        assert_eq!(
            entries(LOG, 4, &good).unwrap(),
            vec![(4, &b"ab"[..]), (9, &b"c"[..])]
        );
        for (key, value) in [
            (4, good[..good.len() - 1].to_vec()),
            (4, good[..10].to_vec()),
            (5, good.clone()),
            (9, [entry(9, b"c"), entry(4, b"ab")].concat()),
            (4, Vec::new()),
        ] {
            assert!(
                matches!(entries(LOG, key, &value), Err(StoreError::Corrupt(_))),
                "{value:?}"
            );
        }
    }
}
