//! The commit journal: an append-only file that makes a batch durable with one
//! small sequential write and one `fdatasync`, with redb as its checkpoint.
//!
//! # Why
//!
//! A durable redb commit rewrites B-tree pages scattered over the file (every
//! table the batch touches, plus the header), so a single charge paid about
//! three times the cost of a raw `fdatasync` (BENCHMARKS.md, issue 3). The
//! journal turns a commit into one append of a few hundred bytes into space
//! that is already allocated and zero-filled, so `fdatasync` flushes one or two
//! data pages and no file-system metadata.
//!
//! # What it holds
//!
//! Each record is the complete set of rows one writer batch puts into redb
//! (account rows, bookings, wallet-index entries, agents, idempotency and
//! nonce log rows, sweeps), numbered by the batch's `commit_seq`. The rows
//! are already encoded as redb stores them, so applying a record is a
//! sequence of inserts with no decision left to make: replay is
//! deterministic. (A schema-1 transfer row is re-encoded as a booking of its
//! own; wallet-index entries and idempotency records are packed into runs and
//! bundles as a checkpoint applies them, so how many rows they take depends
//! on how records are grouped into checkpoints, never what they hold.)
//!
//! ```text
//! record  = magic "JNL1" (4) | payload_len u32 | commit_seq u64 | crc32 u32 | payload
//! payload = row*            (crc32 covers magic, length, seq and payload)
//! row     = 1 account   id u64        bytes
//!         | 2 transfer  id u128       bytes   (schema 1 only: read, never written)
//!         | 3 wallet    account u64   booking key u128
//!         | 4 agent     key str       bytes
//!         | 5 idem      log_key u128  bytes
//!         | 6 nonce     log_key u128  bytes
//!         | 7 sweep     now_s i64
//!         | 8 booking   key u128      bytes
//! bytes, str = len u32 | data            (all integers little-endian)
//! ```
//!
//! # Checkpoints and recovery
//!
//! Journaled batches reach redb in checkpoints: one durable redb transaction
//! applying many batches, after which redb's `commit_seq` names the last batch
//! it holds. There are two journal files. When the active one has taken a few
//! MiB, the writer hands its batches to the checkpoint thread and switches to
//! the other file, which is free because its batches were checkpointed
//! before; so commits never wait for a checkpoint. The writer also
//! checkpoints synchronously when it is idle, before a read that needs redb
//! to be current, and at shutdown.
//!
//! A reused file starts over at offset 0 and old records are not erased: a
//! scan stops at the first record whose CRC fails, whose magic is wrong, or
//! whose sequence number is not one more than the previous record's, and the
//! records of an earlier cycle all carry numbers at or below the last
//! checkpoint's. At start-up (and before the admin tools read the store)
//! [`Journal::open_and_replay`] scans both files, applies every record
//! numbered above redb's `commit_seq` in order — refusing a gap — and
//! checkpoints, exactly as a running writer would.
//!
//! A failed append or `fdatasync` leaves an unknown tail: the writer zeroes
//! the region from the last durable offset ([`Journal::invalidate_from`])
//! before it writes there again, so a half-written record can never be read
//! back behind a later one.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use redb::WriteTransaction;

use super::bundles::BundleWriter;
use super::fault::FaultSwitch;
use super::tables::{self, redb_error};
use super::wallet_runs::{RunWriter, WALLET_RUNS};
use super::{StoreError, records};
use crate::records::NonceRecord;

/// The two journal files inside the data directory, beside the redb file.
/// The writer appends to one while the other's batches are checkpointed into
/// redb on a separate thread; a file is reused only once redb holds all of it.
pub const JOURNAL_FILES: [&str; 2] = ["hub.journal.a", "hub.journal.b"];

/// Whether a data directory has journal files (a store written by this build).
pub fn journal_exists(data_dir: &Path) -> bool {
    JOURNAL_FILES
        .iter()
        .any(|name| data_dir.join(name).exists())
}

const MAGIC: [u8; 4] = *b"JNL1";
/// magic + payload length + commit_seq + crc32.
pub(super) const HEADER_BYTES: usize = 4 + 4 + 8 + 4;
/// The file is zero-filled ahead of the write offset in steps of this size, so
/// appends never extend the file (which would make `fdatasync` write metadata).
const GROW_STEP_BYTES: u64 = 1 << 20;
/// A journal that grew past this (one giant batch) is cut back at the next reset.
const SHRINK_ABOVE_BYTES: u64 = 64 << 20;
/// Largest record accepted; a batch bigger than this fails rather than wraps.
const RECORD_BYTES_MAX: usize = 1 << 30;

const ROW_ACCOUNT: u8 = 1;
/// One transfer (`TransferRecord`): written by schema-1 builds only, read so
/// that their unapplied journal survives an upgrade (a booking of its own).
const ROW_TRANSFER_V1: u8 = 2;
const ROW_WALLET_INDEX: u8 = 3;
const ROW_AGENT: u8 = 4;
const ROW_IDEMPOTENCY: u8 = 5;
const ROW_NONCE: u8 = 6;
const ROW_SWEEP: u8 = 7;
const ROW_BOOKING: u8 = 8;

/// Builds one record. Rows are appended in the order redb must apply them.
#[derive(Debug, Default)]
pub(super) struct RecordBuilder {
    bytes: Vec<u8>,
}

impl RecordBuilder {
    /// Starts a record for batch `commit_seq`, reusing `buffer`'s allocation.
    pub(super) fn new(mut buffer: Vec<u8>, commit_seq: u64) -> RecordBuilder {
        buffer.clear();
        buffer.extend_from_slice(&MAGIC);
        buffer.extend_from_slice(&0u32.to_le_bytes());
        buffer.extend_from_slice(&commit_seq.to_le_bytes());
        buffer.extend_from_slice(&0u32.to_le_bytes());
        RecordBuilder { bytes: buffer }
    }

    /// Bytes so far, header included.
    pub(super) fn len(&self) -> usize {
        self.bytes.len()
    }

    fn blob(&mut self, data: &[u8]) {
        // Record values are bounded far below 4 GiB by `RECORD_BYTES_MAX`;
        // `finish` refuses the record if the total says otherwise.
        self.bytes
            .extend_from_slice(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_le_bytes());
        self.bytes.extend_from_slice(data);
    }

    pub(super) fn account(&mut self, id: u64, value: &[u8]) {
        self.bytes.push(ROW_ACCOUNT);
        self.bytes.extend_from_slice(&id.to_le_bytes());
        self.blob(value);
    }

    /// A `BookingRecord` under its key (its first transfer's id).
    pub(super) fn booking(&mut self, key: u128, value: &[u8]) {
        self.bytes.push(ROW_BOOKING);
        self.bytes.extend_from_slice(&key.to_le_bytes());
        self.blob(value);
    }

    /// What a schema-1 build wrote for each transfer.
    #[cfg(test)]
    fn transfer_v1(&mut self, id: u128, value: &[u8]) {
        self.bytes.push(ROW_TRANSFER_V1);
        self.bytes.extend_from_slice(&id.to_le_bytes());
        self.blob(value);
    }

    pub(super) fn wallet_index(&mut self, account: u64, booking: u128) {
        self.bytes.push(ROW_WALLET_INDEX);
        self.bytes.extend_from_slice(&account.to_le_bytes());
        self.bytes.extend_from_slice(&booking.to_le_bytes());
    }

    pub(super) fn agent(&mut self, agent_id: &str, value: &[u8]) {
        self.bytes.push(ROW_AGENT);
        self.blob(agent_id.as_bytes());
        self.blob(value);
    }

    pub(super) fn idempotency(&mut self, log_key: u128, value: &[u8]) {
        self.bytes.push(ROW_IDEMPOTENCY);
        self.bytes.extend_from_slice(&log_key.to_le_bytes());
        self.blob(value);
    }

    pub(super) fn nonce(&mut self, log_key: u128, value: &[u8]) {
        self.bytes.push(ROW_NONCE);
        self.bytes.extend_from_slice(&log_key.to_le_bytes());
        self.blob(value);
    }

    pub(super) fn sweep(&mut self, now_s: i64) {
        self.bytes.push(ROW_SWEEP);
        self.bytes.extend_from_slice(&now_s.to_le_bytes());
    }

    /// Seals the record: fills in the length and the checksum.
    pub(super) fn finish(mut self) -> Result<Vec<u8>, StoreError> {
        let payload_len = self.bytes.len() - HEADER_BYTES;
        if self.bytes.len() > RECORD_BYTES_MAX {
            return Err(StoreError::Io(format!(
                "a batch of {payload_len} bytes exceeds the journal's record limit of {RECORD_BYTES_MAX} bytes"
            )));
        }
        self.bytes[4..8].copy_from_slice(&(payload_len as u32).to_le_bytes());
        let crc = checksum(&self.bytes);
        self.bytes[16..20].copy_from_slice(&crc.to_le_bytes());
        Ok(self.bytes)
    }
}

/// CRC-32 of a record with its checksum field taken as absent.
fn checksum(record: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&record[..16]);
    hasher.update(&record[HEADER_BYTES..]);
    hasher.finalize()
}

/// The sequence number of a sealed record.
pub(super) fn record_seq(record: &[u8]) -> u64 {
    u64::from_le_bytes(record[8..16].try_into().unwrap_or([0; 8]))
}

/// Reads the records of a journal image in order: stops at the first record
/// that is torn, zeroed, stale (not numbered one above its predecessor) or
/// runs past the end. Returns `(commit_seq, whole record)` pairs.
pub(super) fn scan(image: &[u8]) -> Vec<(u64, &[u8])> {
    let mut records = Vec::new();
    let mut offset = 0usize;
    let mut previous: Option<u64> = None;
    while let Some(header) = image.get(offset..offset + HEADER_BYTES) {
        if header[..4] != MAGIC {
            break;
        }
        let payload_len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let Some(record) = image.get(offset..offset + HEADER_BYTES + payload_len) else {
            break;
        };
        let stored_crc = u32::from_le_bytes([header[16], header[17], header[18], header[19]]);
        if checksum(record) != stored_crc {
            break;
        }
        let seq = record_seq(record);
        if previous.is_some_and(|previous| previous.checked_add(1) != Some(seq)) {
            break;
        }
        previous = Some(seq);
        records.push((seq, record));
        offset += record.len();
    }
    records
}

/// A cursor over a record's payload; every read is bounds-checked.
struct Cursor<'a> {
    bytes: &'a [u8],
    seq: u64,
}

impl<'a> Cursor<'a> {
    fn corrupt(&self, what: &str) -> StoreError {
        StoreError::Corrupt(format!("journal record {}: {what}", self.seq))
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], StoreError> {
        if self.bytes.len() < len {
            return Err(self.corrupt("a row runs past the end of the record"));
        }
        let (head, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        let bytes = self.take(N)?;
        let mut array = [0u8; N];
        array.copy_from_slice(bytes);
        Ok(array)
    }

    fn u64(&mut self) -> Result<u64, StoreError> {
        self.array().map(u64::from_le_bytes)
    }

    fn u128(&mut self) -> Result<u128, StoreError> {
        self.array().map(u128::from_le_bytes)
    }

    fn blob(&mut self) -> Result<&'a [u8], StoreError> {
        let len = u32::from_le_bytes(self.array()?) as usize;
        self.take(len)
    }
}

/// Applies `records` (consecutive, oldest first) to redb in one durable
/// transaction. Records at or below redb's `commit_seq` are skipped; a gap is
/// refused. Returns the `commit_seq` redb holds afterwards.
///
/// Every batch rewrites the account and agent rows it touched; within one
/// checkpoint only each key's last row is written, since no intermediate
/// value is ever visible outside the transaction.
pub(super) fn checkpoint<'r>(
    db: &redb::Database,
    records: impl IntoIterator<Item = &'r [u8]>,
) -> Result<u64, StoreError> {
    let context = "journal checkpoint";
    let disk_seq = tables::stored_commit_seq(db, context)?;
    let txn = db.begin_write().map_err(|e| redb_error(context, e))?;
    let applied_seq = apply_records(&txn, records, disk_seq)?;
    if applied_seq == disk_seq {
        txn.abort().map_err(|e| redb_error(context, e))?;
        return Ok(disk_seq);
    }
    txn.commit().map_err(|e| redb_error(context, e))?;
    Ok(applied_seq)
}

fn apply_records<'r>(
    txn: &WriteTransaction,
    records: impl IntoIterator<Item = &'r [u8]>,
    disk_seq: u64,
) -> Result<u64, StoreError> {
    let context = "applying journal records";
    let mut bookings = txn
        .open_table(tables::BOOKINGS)
        .map_err(|e| redb_error(context, e))?;
    let mut wallet_runs = txn
        .open_table(WALLET_RUNS)
        .map_err(|e| redb_error(context, e))?;
    let mut agents = txn
        .open_table(tables::AGENTS)
        .map_err(|e| redb_error(context, e))?;
    let mut idempotency = txn
        .open_table(tables::IDEMPOTENCY)
        .map_err(|e| redb_error(context, e))?;
    let mut nonces = txn
        .open_table(tables::NONCES)
        .map_err(|e| redb_error(context, e))?;
    // Every charge rewrites its wallet's account row and its agent's row
    // (`total_calls`); only the last of each reaches redb.
    let mut latest_accounts: BTreeMap<u64, &'r [u8]> = BTreeMap::new();
    let mut latest_agents: BTreeMap<&'r str, &'r [u8]> = BTreeMap::new();
    // Bookings, idempotency records and wallet-index entries are packed many
    // to a row (see `bundles`, `wallet_runs`): an insert per bundle and per
    // wallet instead of three per call.
    let mut booking_bundles = BundleWriter::new(tables::BOOKINGS);
    let mut idempotency_bundles = BundleWriter::new(tables::IDEMPOTENCY);
    let mut runs = RunWriter::default();
    let mut applied_seq = disk_seq;
    for record in records {
        let seq = record_seq(record);
        if seq <= applied_seq {
            continue;
        }
        if seq != applied_seq + 1 {
            return Err(StoreError::Corrupt(format!(
                "journal record {seq} follows commit {applied_seq}: records are missing"
            )));
        }
        let mut cursor = Cursor {
            bytes: record.get(HEADER_BYTES..).unwrap_or_default(),
            seq,
        };
        while let Some(&tag) = cursor.bytes.first() {
            cursor.bytes = &cursor.bytes[1..];
            match tag {
                ROW_ACCOUNT => {
                    let id = cursor.u64()?;
                    latest_accounts.insert(id, cursor.blob()?);
                }
                ROW_BOOKING => {
                    let key = cursor.u128()?;
                    booking_bundles.push(&mut bookings, key, cursor.blob()?)?;
                }
                ROW_TRANSFER_V1 => {
                    let id = cursor.u128()?;
                    let booking = tables::booking_of_v1_transfer("journal", id, cursor.blob()?)?;
                    booking_bundles.push(&mut bookings, id, &booking)?;
                }
                ROW_WALLET_INDEX => {
                    let account = cursor.u64()?;
                    let booking = cursor.u128()?;
                    runs.push(&mut wallet_runs, account, booking)?;
                }
                ROW_AGENT => {
                    let key = cursor.blob()?;
                    let key = std::str::from_utf8(key)
                        .map_err(|_| cursor.corrupt("an agent key is not UTF-8"))?;
                    latest_agents.insert(key, cursor.blob()?);
                }
                ROW_IDEMPOTENCY => {
                    let key = cursor.u128()?;
                    idempotency_bundles.push(&mut idempotency, key, cursor.blob()?)?;
                }
                ROW_NONCE => {
                    let key = cursor.u128()?;
                    nonces
                        .insert(key, cursor.blob()?)
                        .map_err(|e| redb_error(context, e))?;
                }
                ROW_SWEEP => {
                    let now_s = cursor.u64()? as i64;
                    // Unreadable rows are kept: deleting is never the way to handle them.
                    idempotency_bundles.flush(&mut idempotency)?;
                    tables::sweep_idempotency(&mut idempotency, now_s)?;
                    nonces
                        .retain(|key, value| {
                            records::decode::<NonceRecord>(
                                "nonce_log",
                                &format_args!("{key:032x}"),
                                value,
                            )
                            .map_or(true, |record| record.expires_at_s > now_s)
                        })
                        .map_err(|e| redb_error(context, e))?;
                }
                other => return Err(cursor.corrupt(&format!("unknown row tag {other}"))),
            }
        }
        applied_seq = seq;
    }
    booking_bundles.flush(&mut bookings)?;
    idempotency_bundles.flush(&mut idempotency)?;
    runs.finish(&mut wallet_runs)?;
    let mut accounts = txn
        .open_table(tables::ACCOUNTS)
        .map_err(|e| redb_error(context, e))?;
    for (id, row) in latest_accounts {
        accounts
            .insert(id, row)
            .map_err(|e| redb_error(context, e))?;
    }
    for (agent_id, row) in latest_agents {
        agents
            .insert(agent_id, row)
            .map_err(|e| redb_error(context, e))?;
    }
    if applied_seq > disk_seq {
        let mut meta = txn
            .open_table(tables::META)
            .map_err(|e| redb_error(context, e))?;
        meta.insert(tables::META_COMMIT_SEQ, applied_seq)
            .map_err(|e| redb_error(context, e))?;
    }
    Ok(applied_seq)
}

/// The open journal file and the writer's position in it.
#[derive(Debug)]
pub(super) struct Journal {
    file: File,
    path: PathBuf,
    fault: Option<FaultSwitch>,
    /// Where the next record goes.
    write_offset: u64,
    /// Everything before this offset has been `fdatasync`ed.
    synced_offset: u64,
    /// Bytes of the file known to be allocated and zero-filled or written.
    prepared_len: u64,
}

impl Journal {
    /// Opens (or creates) both journal files in `data_dir`, applies every
    /// record newer than redb's `commit_seq` to `db` in one durable
    /// checkpoint, and returns the journals, each ready to append at offset 0,
    /// with how many records it applied.
    pub(super) fn open_and_replay(
        data_dir: &Path,
        db: &redb::Database,
        fault: Option<FaultSwitch>,
    ) -> Result<([Journal; 2], usize), StoreError> {
        let disk_seq = tables::stored_commit_seq(db, "reading the store before replay")?;
        let (first, first_image) = Journal::open(&data_dir.join(JOURNAL_FILES[0]), fault.clone())?;
        let (second, second_image) = Journal::open(&data_dir.join(JOURNAL_FILES[1]), fault)?;
        let mut records: Vec<(u64, &[u8])> = scan(&first_image);
        records.extend(scan(&second_image));
        records.retain(|(seq, _)| *seq > disk_seq);
        records.sort_by_key(|(seq, _)| *seq);
        let replayed = records.len();
        let applied_seq = checkpoint(db, records.into_iter().map(|(_, record)| record))?;
        if replayed > 0 {
            tracing::info!(
                records = replayed,
                commit_seq = applied_seq,
                "journal replayed into the store"
            );
        }
        let mut journals = [first, second];
        for journal in &mut journals {
            journal.prepare(GROW_STEP_BYTES)?;
        }
        Ok((journals, replayed))
    }

    /// Opens (or creates) one journal file and reads it whole.
    fn open(path: &Path, fault: Option<FaultSwitch>) -> Result<(Journal, Vec<u8>), StoreError> {
        let io_error = |what: &str, error: io::Error| {
            StoreError::Io(format!("{what} {}: {error}", path.display()))
        };
        let file = super::open_or_create(path).map_err(|e| io_error("opening", e))?;
        let len = file.metadata().map_err(|e| io_error("reading", e))?.len();
        let mut image = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX)];
        file.read_exact_at(&mut image, 0)
            .map_err(|e| io_error("reading", e))?;
        let journal = Journal {
            file,
            path: path.to_owned(),
            fault,
            write_offset: 0,
            synced_offset: 0,
            prepared_len: len,
        };
        Ok((journal, image))
    }

    fn io_error(&self, what: &str, error: io::Error) -> StoreError {
        StoreError::Io(format!("{what} {}: {error}", self.path.display()))
    }

    fn check_write(&self) -> io::Result<()> {
        self.fault.as_ref().map_or(Ok(()), FaultSwitch::check_write)
    }

    fn check_sync(&self) -> io::Result<()> {
        self.fault.as_ref().map_or(Ok(()), FaultSwitch::check_sync)
    }

    /// Zero-fills the file up to at least `len` bytes (in whole grow steps)
    /// and makes the new length durable.
    fn prepare(&mut self, len: u64) -> Result<(), StoreError> {
        if len <= self.prepared_len {
            return Ok(());
        }
        let target = len.div_ceil(GROW_STEP_BYTES) * GROW_STEP_BYTES;
        let zeros = vec![0u8; GROW_STEP_BYTES as usize];
        let mut at = self.prepared_len;
        while at < target {
            let step = (target - at).min(GROW_STEP_BYTES) as usize;
            self.check_write()
                .and_then(|()| self.file.write_all_at(&zeros[..step], at))
                .map_err(|e| self.io_error("growing", e))?;
            at += step as u64;
        }
        self.check_sync()
            .and_then(|()| self.file.sync_all())
            .map_err(|e| self.io_error("syncing", e))?;
        self.prepared_len = target;
        Ok(())
    }

    /// Writes a sealed record at the write offset (not yet synced). Returns
    /// the offset just past it.
    pub(super) fn append(&mut self, record: &[u8]) -> Result<u64, StoreError> {
        let end = self.write_offset + record.len() as u64;
        self.prepare(end)?;
        self.check_write()
            .and_then(|()| self.file.write_all_at(record, self.write_offset))
            .map_err(|e| self.io_error("appending to", e))?;
        self.write_offset = end;
        Ok(end)
    }

    /// Makes every appended record durable.
    pub(super) fn sync(&mut self) -> Result<(), StoreError> {
        if self.synced_offset == self.write_offset {
            return Ok(());
        }
        self.check_sync()
            .and_then(|()| self.file.sync_data())
            .map_err(|e| self.io_error("syncing", e))?;
        self.synced_offset = self.write_offset;
        Ok(())
    }

    pub(super) fn write_offset(&self) -> u64 {
        self.write_offset
    }

    pub(super) fn synced_offset(&self) -> u64 {
        self.synced_offset
    }

    /// Zeroes `[from, write offset)` durably and moves the write offset back
    /// to `from`: what a failed write or sync may have left there must never
    /// be read as a record.
    pub(super) fn invalidate_from(&mut self, from: u64) -> Result<(), StoreError> {
        let end = self.write_offset.max(from);
        if end > from {
            let zeros = vec![0u8; usize::try_from(end - from).unwrap_or(usize::MAX)];
            self.check_write()
                .and_then(|()| self.file.write_all_at(&zeros, from))
                .map_err(|e| self.io_error("invalidating the tail of", e))?;
        }
        self.check_sync()
            .and_then(|()| self.file.sync_data())
            .map_err(|e| self.io_error("syncing", e))?;
        self.write_offset = from;
        self.synced_offset = from;
        Ok(())
    }

    /// Starts over at offset 0 after a durable checkpoint holds every record.
    pub(super) fn reset(&mut self) -> Result<(), StoreError> {
        self.write_offset = 0;
        self.synced_offset = 0;
        if self.prepared_len > SHRINK_ABOVE_BYTES {
            self.check_write()
                .and_then(|()| self.file.set_len(GROW_STEP_BYTES))
                .and_then(|()| self.check_sync())
                .and_then(|()| self.file.sync_all())
                .map_err(|e| self.io_error("shrinking", e))?;
            self.prepared_len = GROW_STEP_BYTES;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::ReadableDatabase;

    fn record(seq: u64, rows: u8) -> Vec<u8> {
        let mut builder = RecordBuilder::new(Vec::new(), seq);
        for i in 0..rows {
            // Booking keys grow with the record, as transfer ids do.
            let key = (u128::from(seq) << 8) | u128::from(i);
            builder.booking(key, &[i; 7]);
            builder.wallet_index(u64::from(i), key);
        }
        builder.finish().unwrap()
    }

    #[test]
    fn scan_reads_consecutive_records_and_stops_at_damage() {
        let mut image = Vec::new();
        for seq in 5..9 {
            image.extend_from_slice(&record(seq, 2));
        }
        let whole = scan(&image);
        assert_eq!(
            whole.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            [5, 6, 7, 8]
        );

        // A flipped bit in the third record ends the scan before it.
        let third = record(5, 2).len() * 2 + HEADER_BYTES + 3;
        let mut damaged = image.clone();
        damaged[third] ^= 0x40;
        assert_eq!(scan(&damaged).len(), 2);

        // A torn tail (the last record cut short) is not read.
        assert_eq!(scan(&image[..image.len() - 1]).len(), 3);

        // A stale record of an earlier cycle behind the current ones is not read.
        let mut cycled = record(9, 1);
        cycled.extend_from_slice(&record(3, 1));
        assert_eq!(scan(&cycled).len(), 1);

        // Zeroes read as the end.
        let mut zeroed = record(1, 1);
        zeroed.extend_from_slice(&[0u8; 64]);
        assert_eq!(scan(&zeroed).len(), 1);
        assert!(scan(&[]).is_empty());
    }

    #[test]
    fn a_record_with_an_unknown_row_is_corrupt_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("t.redb")).unwrap();
        let mut builder = RecordBuilder::new(Vec::new(), 1);
        builder.bytes.push(99);
        let record = builder.finish().unwrap();
        let error = checkpoint(&db, [record.as_slice()]).unwrap_err();
        assert!(
            matches!(error, StoreError::Corrupt(ref m) if m.contains("unknown row tag 99")),
            "{error}"
        );

        // A row cut short inside its length-prefixed value.
        let mut builder = RecordBuilder::new(Vec::new(), 1);
        builder.bytes.push(ROW_ACCOUNT);
        builder.bytes.extend_from_slice(&7u64.to_le_bytes());
        builder.bytes.extend_from_slice(&100u32.to_le_bytes());
        let record = builder.finish().unwrap();
        let error = checkpoint(&db, [record.as_slice()]).unwrap_err();
        assert!(
            matches!(error, StoreError::Corrupt(ref m) if m.contains("past the end")),
            "{error}"
        );
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Damage anywhere in a journal image (flipped bytes, a cut tail)
        /// never yields a record that was not written: a scan returns a
        /// prefix of the original records, byte for byte.
        #[test]
        fn a_damaged_image_scans_to_a_prefix_of_what_was_written(
            rows in proptest::collection::vec(1u8..6, 1..12),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 0..4),
            cut in any::<prop::sample::Index>(),
        ) {
            let written: Vec<Vec<u8>> = rows
                .iter()
                .enumerate()
                .map(|(i, &n)| record(100 + i as u64, n))
                .collect();
            let mut image = written.concat();
            for (at, mask) in &flips {
                let at = at.index(image.len());
                image[at] ^= mask;
            }
            let keep = cut.index(image.len() + 1);
            let scanned = scan(&image[..keep]);
            prop_assert!(scanned.len() <= written.len());
            for (i, (seq, bytes)) in scanned.iter().enumerate() {
                prop_assert_eq!(*seq, 100 + i as u64);
                prop_assert_eq!(*bytes, written[i].as_slice());
            }
        }

        /// Arbitrary bytes as a journal: the scan and the replay of whatever
        /// it accepts end in records or a `Corrupt` error, never a panic.
        #[test]
        fn arbitrary_bytes_never_panic_the_scan(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = scan(&bytes);
            let mut builder = RecordBuilder::new(Vec::new(), 1);
            builder.bytes.extend_from_slice(&bytes);
            let record = builder.finish().unwrap();
            let dir = tempfile::tempdir().unwrap();
            let db = redb::Database::create(dir.path().join("t.redb")).unwrap();
            match checkpoint(&db, [record.as_slice()]) {
                Ok(_) | Err(StoreError::Corrupt(_)) => {}
                Err(other) => prop_assert!(false, "unexpected error {other}"),
            }
        }
    }

    fn write_journal(path: &Path, records: &[Vec<u8>]) {
        let bytes: Vec<u8> = records.concat();
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn replay_merges_both_files_in_sequence_order() {
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("t.redb")).unwrap();
        crate::store::initialize(&db).unwrap();
        // Records 1-2 were checkpointed; 3-4 sit in file b (handed off),
        // 5-6 in file a (reused: a stale record 2 of its earlier cycle trails).
        assert_eq!(
            checkpoint(&db, [record(1, 1).as_slice(), record(2, 1).as_slice()]).unwrap(),
            2
        );
        write_journal(
            &dir.path().join(JOURNAL_FILES[0]),
            &[record(5, 2), record(6, 1), record(2, 1)],
        );
        write_journal(
            &dir.path().join(JOURNAL_FILES[1]),
            &[record(3, 3), record(4, 1)],
        );
        let (_, replayed) = Journal::open_and_replay(dir.path(), &db, None).unwrap();
        assert_eq!(replayed, 4);
        let txn = db.begin_read().unwrap();
        assert_eq!(tables::read_commit_seq(&txn).unwrap(), 6);
        drop(txn);
        // A second replay finds nothing newer.
        let (_, replayed) = Journal::open_and_replay(dir.path(), &db, None).unwrap();
        assert_eq!(replayed, 0);

        // A missing record between the files is refused, not skipped.
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("t.redb")).unwrap();
        write_journal(&dir.path().join(JOURNAL_FILES[0]), &[record(1, 1)]);
        write_journal(&dir.path().join(JOURNAL_FILES[1]), &[record(3, 1)]);
        let error = Journal::open_and_replay(dir.path(), &db, None).unwrap_err();
        assert!(
            matches!(error, StoreError::Corrupt(ref m) if m.contains("missing")),
            "{error}"
        );
    }

    #[test]
    fn the_last_account_and_agent_rows_of_a_checkpoint_win() {
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("t.redb")).unwrap();
        let rows = |seq: u64, value: u8| {
            let mut builder = RecordBuilder::new(Vec::new(), seq);
            builder.account(7, &[value]);
            builder.account(8 + u64::from(value), &[value]);
            builder.agent("agent-a", &[value]);
            builder.agent(if value == 1 { "agent-b" } else { "agent-c" }, &[value]);
            builder.finish().unwrap()
        };
        let (one, two) = (rows(1, 1), rows(2, 2));
        assert_eq!(
            checkpoint(&db, [one.as_slice(), two.as_slice()]).unwrap(),
            2
        );
        let txn = db.begin_read().unwrap();
        let accounts = txn.open_table(tables::ACCOUNTS).unwrap();
        let value = |id: u64| accounts.get(id).unwrap().map(|v| v.value().to_vec());
        assert_eq!(value(7), Some(vec![2]));
        assert_eq!((value(9), value(10)), (Some(vec![1]), Some(vec![2])));
        let agents = txn.open_table(tables::AGENTS).unwrap();
        let agent = |key: &str| agents.get(key).unwrap().map(|v| v.value().to_vec());
        assert_eq!(agent("agent-a"), Some(vec![2]));
        assert_eq!(
            (agent("agent-b"), agent("agent-c")),
            (Some(vec![1]), Some(vec![2]))
        );
    }

    #[test]
    fn a_schema_1_transfer_row_is_checkpointed_as_a_booking_of_its_own() {
        use crate::ledger::TransferKind;
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("t.redb")).unwrap();
        let legacy = records::TransferRecord {
            id: 77,
            debit: 1,
            credit: 1_000,
            amount: 5,
            kind: TransferKind::Credit.as_u8(),
            charge: None,
            timestamp_ms: 1,
            reference: Some("stripe:pi_9".into()),
            memo: None,
        };
        let mut builder = RecordBuilder::new(Vec::new(), 1);
        builder.transfer_v1(77, &records::encode(&legacy).unwrap());
        builder.wallet_index(1_000, 77);
        assert_eq!(
            checkpoint(&db, [builder.finish().unwrap().as_slice()]).unwrap(),
            1
        );

        let txn = db.begin_read().unwrap();
        let bookings = txn.open_table(tables::BOOKINGS).unwrap();
        let transfers = crate::store::bundles::find(tables::BOOKINGS, &bookings, 77, |value| {
            tables::decode_booking(77, value)
        })
        .unwrap()
        .unwrap();
        assert_eq!(transfers.len(), 1);
        assert_eq!(transfers[0].reference.as_deref(), Some("stripe:pi_9"));
        let runs = txn.open_table(WALLET_RUNS).unwrap();
        assert!(runs.get((1_000, 77)).unwrap().is_some());
    }

    #[test]
    fn checkpoint_skips_applied_records_and_refuses_a_gap() {
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("t.redb")).unwrap();
        let (one, two, four) = (record(1, 1), record(2, 1), record(4, 1));
        assert_eq!(
            checkpoint(&db, [one.as_slice(), two.as_slice()]).unwrap(),
            2
        );
        // Replaying the same records again changes nothing.
        assert_eq!(
            checkpoint(&db, [one.as_slice(), two.as_slice()]).unwrap(),
            2
        );
        let error = checkpoint(&db, [four.as_slice()]).unwrap_err();
        assert!(
            matches!(error, StoreError::Corrupt(ref m) if m.contains("missing")),
            "{error}"
        );
    }
}
