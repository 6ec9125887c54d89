//! The redb tables, and loading them into a [`Ledger`] with every invariant checked.
//!
//! | table | key | value |
//! |---|---|---|
//! | `agents` | agent_id | `AgentRecord` |
//! | `accounts` | account number (u64) | `AccountRecord` (posted balances, counters) |
//! | `booking_bundles` | first entry's key | bundled ([`super::bundles`]): `BookingRecord`s (a charge's legs or one credit) by first transfer id (u128, time-ordered); append-only, never updated |
//! | `wallet_booking_runs` | (wallet, first booking key) | the bookings touching each wallet, a run of keys a row ([`super::wallet_runs`]) |
//! | `idempotency_bundles` | first entry's key | bundled: `IdempotencyRecord`s by [`log_key`] (looked up through memory) |
//! | `nonce_log` | [`log_key`] (commit, index) | `NonceRecord` |
//! | `meta` | name | u64 (`schema_version`, `commit_seq`) |
//!
//! Schema 1 stored one row per transfer (`transfers`, `wallet_transfers`);
//! schema 2 one row per booking (`bookings`), per wallet-index entry
//! (`wallet_bookings`) and per idempotency record (`idempotency_log`).
//! [`upgrade_schema`] brings such a file to schema 3 in place.
//!
//! Account rows are a cache of what the transfers imply: loading replays
//! every transfer and reports any row that disagrees, so a torn or tampered
//! file cannot start with wrong balances.

use std::collections::BTreeMap;

use redb::{
    ReadTransaction, ReadableTable, Table, TableDefinition, TableError, TableHandle,
    WriteTransaction,
};

use super::StoreError;
use super::bundles::{self, BundleTable, BundleWriter};
use super::idempotency_index::{IdempotencyIndex, Location};
use super::records::{AccountRecord, BookingRecord, TransferRecord, decode, encode};
use super::wallet_runs::{self, RunWriter, WALLET_RUNS};
use crate::ledger::{AccountId, Ledger, LedgerError, Transfer, Violation, verify_transfers};
use crate::money::Micros;
use crate::records::{AgentRecord, IdempotencyRecord, NonceRecord};

pub const AGENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("agents");
pub const ACCOUNTS: TableDefinition<u64, &[u8]> = TableDefinition::new("accounts");
/// The transfer log: bookings (see [`BookingRecord`]) under their first
/// transfer id, bundled ([`super::bundles`]).
pub const BOOKINGS: BundleTable = TableDefinition::new("booking_bundles");
/// Stored answers ([`IdempotencyRecord`]) under the [`log_key`] the writer
/// gave them, bundled. Keyed by write order, not by `(agent, request key)`:
/// appends touch the last leaf page only, where random keys would dirty a
/// page per record. Lookups go through the in-memory
/// [`IdempotencyIndex`]; the table is read whole once at start-up, and the
/// periodic sweep deletes expired records.
pub const IDEMPOTENCY: BundleTable = TableDefinition::new("idempotency_bundles");
/// Provenance nonces: a log keyed by write order like [`IDEMPOTENCY`], a
/// row per nonce (they are rare: only provenance-signed calls write one).
pub const NONCES: TableDefinition<u128, &[u8]> = TableDefinition::new("nonce_log");
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Schema 2's tables: the transfer log, one row per booking...
const BOOKINGS_V2: TableDefinition<u128, &[u8]> = TableDefinition::new("bookings");
/// ...its wallet index, `(wallet, booking key)`...
const WALLET_BOOKINGS_V2: TableDefinition<(u64, u128), ()> =
    TableDefinition::new("wallet_bookings");
/// ...and the idempotency log, one row per record.
const IDEMPOTENCY_V2: TableDefinition<u128, &[u8]> = TableDefinition::new("idempotency_log");
/// Schema 1's transfer log, one row per transfer (`TransferRecord`)...
const TRANSFERS_V1: TableDefinition<u128, &[u8]> = TableDefinition::new("transfers");
/// ...and its wallet index, `(wallet, transfer id)`.
const WALLET_TRANSFERS_V1: TableDefinition<(u64, u128), ()> =
    TableDefinition::new("wallet_transfers");

/// The table layout version this build writes and the newest it reads.
pub const SCHEMA_VERSION: u64 = 3;
pub const META_SCHEMA_VERSION: &str = "schema_version";
/// Incremented by every commit; compared after a failed commit to learn
/// what actually reached the file.
pub const META_COMMIT_SEQ: &str = "commit_seq";

/// The file name inside the data directory.
pub const DATABASE_FILE: &str = "hub.redb";

/// The key of the `index`-th log row written by commit number `commit_seq`:
/// unique and increasing across restarts because `commit_seq` is persisted.
pub fn log_key(commit_seq: u64, index: u32) -> u128 {
    (u128::from(commit_seq) << 32) | u128::from(index)
}

/// Maps any redb error into the store's vocabulary.
pub fn redb_error(context: &str, error: impl Into<redb::Error>) -> StoreError {
    match error.into() {
        redb::Error::DatabaseAlreadyOpen => StoreError::Locked(format!(
            "{context}: the data directory is in use by another jecp-hub process (the database file is locked)"
        )),
        redb::Error::Corrupted(detail) => StoreError::Corrupt(format!("{context}: {detail}")),
        redb::Error::UpgradeRequired(version) => StoreError::Corrupt(format!(
            "{context}: the file uses the old redb file format {version} and must be upgraded first"
        )),
        other => StoreError::Io(format!("{context}: {other}")),
    }
}

/// Everything read from the file.
#[derive(Debug)]
pub struct State {
    pub ledger: Ledger,
    pub agents: Vec<AgentRecord>,
    pub nonces: Vec<NonceRecord>,
    pub commit_seq: u64,
    pub transfer_count: u64,
    pub account_count: u64,
    /// Every broken invariant found; empty for a healthy file.
    pub violations: Vec<Violation>,
}

/// Opens a table for reading; a table that was never created reads as empty.
fn open_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &ReadTransaction,
    definition: TableDefinition<K, V>,
) -> Result<Option<redb::ReadOnlyTable<K, V>>, StoreError> {
    match txn.open_table(definition) {
        Ok(table) => Ok(Some(table)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(error) => Err(redb_error(
            &format!("opening table `{}`", definition.name()),
            error,
        )),
    }
}

pub fn read_commit_seq(txn: &ReadTransaction) -> Result<u64, StoreError> {
    let Some(meta) = open_table(txn, META)? else {
        return Ok(0);
    };
    let value = meta
        .get(META_COMMIT_SEQ)
        .map_err(|e| redb_error("reading meta", e))?;
    Ok(value.map(|guard| guard.value()).unwrap_or(0))
}

/// The `commit_seq` the database holds now, read in a transaction of its own.
pub fn stored_commit_seq(db: &redb::Database, context: &str) -> Result<u64, StoreError> {
    redb::ReadableDatabase::begin_read(db)
        .map_err(|e| redb_error(context, e))
        .and_then(|txn| read_commit_seq(&txn))
}

/// Reads the whole file: rebuilds the ledger from account rows and the
/// transfer log and checks it. `with_records` also loads agents and nonces
/// (the admin tools skip them; idempotency records are read by
/// [`read_idempotency_log`]).
pub fn read_state(txn: &ReadTransaction, with_records: bool) -> Result<State, StoreError> {
    if let Some(meta) = open_table(txn, META)? {
        let version = meta
            .get(META_SCHEMA_VERSION)
            .map_err(|e| redb_error("reading meta", e))?;
        if let Some(version) = version.map(|guard| guard.value())
            && version > SCHEMA_VERSION
        {
            tracing::error!(
                found = version,
                supported = SCHEMA_VERSION,
                "store schema written by a newer jecp-hub"
            );
            return Err(StoreError::NewerFormat {
                found: u8::try_from(version).unwrap_or(u8::MAX),
                supported: SCHEMA_VERSION as u8,
            });
        }
    }
    let commit_seq = read_commit_seq(txn)?;
    let mut ledger = Ledger::new();
    let mut violations = Vec::new();

    // Account rows: kinds and counters now, balances to compare later.
    let mut stored_balances: BTreeMap<AccountId, (Micros, Micros)> = BTreeMap::new();
    if let Some(accounts) = open_table(txn, ACCOUNTS)? {
        for entry in accounts
            .iter()
            .map_err(|e| redb_error("reading accounts", e))?
        {
            let (key, value) = entry.map_err(|e| redb_error("reading accounts", e))?;
            let key = key.value();
            let record: AccountRecord = decode("accounts", &key, value.value())?;
            let kind = record.kind().map_err(|detail| {
                StoreError::Corrupt(format!("table `accounts` key {key}: {detail}"))
            })?;
            if record.id != key {
                return Err(StoreError::Corrupt(format!(
                    "table `accounts` key {key}: row holds account {}",
                    record.id
                )));
            }
            let balances = (
                Micros::new(record.credits_posted).ok_or_else(|| {
                    StoreError::Corrupt(format!("table `accounts` key {key}: credits out of range"))
                })?,
                Micros::new(record.debits_posted).ok_or_else(|| {
                    StoreError::Corrupt(format!("table `accounts` key {key}: debits out of range"))
                })?,
            );
            ledger.restore_account(
                AccountId(key),
                kind,
                record.charges_posted,
                record.free_calls_used,
            );
            stored_balances.insert(AccountId(key), balances);
        }
    }

    // The transfer log, in id order. Legs of one charge have consecutive ids
    // (the ledger books them together), so splits are checked group by group
    // without holding the whole log in memory.
    let mut transfer_count = 0u64;
    if let Some(bookings) = open_table(txn, BOOKINGS)? {
        let mut group: Vec<Transfer> = Vec::with_capacity(3);
        let mut last_id: Option<u128> = None;
        let name = BOOKINGS.name();
        bundles::for_each(BOOKINGS, &bookings, |key, value| {
            if last_id.is_some_and(|last| key <= last) {
                return Err(StoreError::Corrupt(format!(
                    "table `{name}` key {key:032x}: overlaps the booking before it"
                )));
            }
            for transfer in decode_booking(key, value)? {
                last_id = Some(transfer.id.0);
                transfer_count += 1;
                match ledger.replay_transfer(&transfer) {
                    Ok(()) => {}
                    Err(LedgerError::UnknownAccount(account)) => {
                        violations.push(Violation::UnknownAccount {
                            transfer: transfer.id.0,
                            account,
                        });
                        continue;
                    }
                    Err(error) => {
                        return Err(StoreError::Corrupt(format!(
                            "table `{name}` key {key:032x}: cannot replay transfer {:032x}: {error}",
                            transfer.id.0
                        )));
                    }
                }
                if group.first().is_some_and(|first| {
                    first.charge != transfer.charge || transfer.charge.is_none()
                }) {
                    violations.extend(verify_transfers(&group));
                    group.clear();
                }
                group.push(transfer);
            }
            Ok(())
        })?;
        violations.extend(verify_transfers(&group));
    }

    let mut account_count = 0u64;
    for account in ledger.accounts() {
        account_count += 1;
        let (stored_credits, stored_debits) = stored_balances
            .get(&account.id)
            .copied()
            .unwrap_or_default();
        for (field, stored, recomputed) in [
            ("credits_posted", stored_credits, account.credits_posted),
            ("debits_posted", stored_debits, account.debits_posted),
        ] {
            if stored != recomputed {
                violations.push(Violation::BalanceMismatch {
                    account: account.id,
                    field,
                    stored,
                    recomputed,
                });
            }
        }
    }
    violations.extend(ledger.verify());
    violations.sort_by_key(|violation| violation.to_string());

    let mut state = State {
        ledger,
        agents: Vec::new(),
        nonces: Vec::new(),
        commit_seq,
        transfer_count,
        account_count,
        violations,
    };
    if with_records {
        state.agents = read_all(txn, AGENTS, "agents")?;
        state.nonces = without_keys(read_log(txn, NONCES, "nonce_log")?);
    }
    Ok(state)
}

fn read_all<T>(
    txn: &ReadTransaction,
    definition: TableDefinition<&str, &[u8]>,
    name: &str,
) -> Result<Vec<T>, StoreError>
where
    T: rkyv::Archive,
    T::Archived: for<'a> rkyv::bytecheck::CheckBytes<rkyv::api::high::HighValidator<'a, rkyv::rancor::Error>>
        + rkyv::Deserialize<T, rkyv::rancor::Strategy<rkyv::de::Pool, rkyv::rancor::Error>>,
{
    let Some(table) = open_table(txn, definition)? else {
        return Ok(Vec::new());
    };
    let mut records = Vec::new();
    for entry in table
        .iter()
        .map_err(|e| redb_error(&format!("reading {name}"), e))?
    {
        let (key, value) = entry.map_err(|e| redb_error(&format!("reading {name}"), e))?;
        // Keys hold a NUL separator; show it escaped in messages.
        let shown = key.value().escape_debug().to_string();
        records.push(decode(name, &shown, value.value())?);
    }
    Ok(records)
}

/// Reads the idempotency log into `index` (every live record's location),
/// newest first, and returns the newest records whose bodies and headers fit
/// in `bodies_bytes_max`, oldest first, for the Hub's table. Older records
/// are decoded one at a time and only indexed, so a large log never sits in
/// memory whole.
pub fn read_idempotency_log(
    txn: &ReadTransaction,
    index: &IdempotencyIndex,
    bodies_bytes_max: usize,
) -> Result<Vec<IdempotencyRecord>, StoreError> {
    let name = IDEMPOTENCY.name();
    let mut kept = Vec::new();
    let Some(table) = open_table(txn, IDEMPOTENCY)? else {
        return Ok(kept);
    };
    let mut budget_left = bodies_bytes_max;
    let mut keeping = true;
    for row in table
        .iter()
        .map_err(|e| redb_error(&format!("reading {name}"), e))?
        .rev()
    {
        let (bundle_key, value) = row.map_err(|e| redb_error(&format!("reading {name}"), e))?;
        let entries = bundles::entries(IDEMPOTENCY, bundle_key.value(), value.value())?;
        for (key, record) in entries.into_iter().rev() {
            let record: IdempotencyRecord = decode(name, &format_args!("{key:032x}"), record)?;
            let index_key = index.key_of(&record.agent_id, &record.request_key);
            if index.get(index_key).is_some() {
                // A newer record under the same key (the old one expired) wins.
                continue;
            }
            index.insert(
                index_key,
                Location {
                    log_key: key,
                    expires_at_s: record.expires_at_s,
                },
            );
            let bytes = crate::records::response_memory_bytes(record.body.len(), &record.headers);
            // Once one body is left out, every older one is too: memory
            // keeps a contiguous newest stretch, as the Hub's table does.
            keeping = keeping && bytes <= budget_left;
            if keeping {
                budget_left -= bytes;
                kept.push(record);
            }
        }
    }
    kept.reverse();
    Ok(kept)
}

/// One idempotency record by its log key.
pub fn read_idempotency(
    txn: &ReadTransaction,
    key: u128,
) -> Result<Option<IdempotencyRecord>, StoreError> {
    let Some(table) = open_table(txn, IDEMPOTENCY)? else {
        return Ok(None);
    };
    bundles::find(IDEMPOTENCY, &table, key, |record| {
        decode(IDEMPOTENCY.name(), &format_args!("{key:032x}"), record)
    })
}

/// Deletes the idempotency records expired at `now_s`, oldest first, up to
/// the first live one (records expire in the order they were written; see
/// [`bundles::drop_dead_front`]). Unreadable records are kept: deleting is
/// never the way to handle them.
pub fn sweep_idempotency(table: &mut Table<u128, &[u8]>, now_s: i64) -> Result<(), StoreError> {
    bundles::drop_dead_front(IDEMPOTENCY, table, |key, record| {
        decode::<IdempotencyRecord>(IDEMPOTENCY.name(), &format_args!("{key:032x}"), record)
            .map_or(true, |record| record.expires_at_s > now_s)
    })
}

/// Every row of a write-ordered log table, with its log key, oldest first.
fn read_log<T>(
    txn: &ReadTransaction,
    definition: TableDefinition<u128, &[u8]>,
    name: &str,
) -> Result<Vec<(u128, T)>, StoreError>
where
    T: rkyv::Archive,
    T::Archived: for<'a> rkyv::bytecheck::CheckBytes<rkyv::api::high::HighValidator<'a, rkyv::rancor::Error>>
        + rkyv::Deserialize<T, rkyv::rancor::Strategy<rkyv::de::Pool, rkyv::rancor::Error>>,
{
    let Some(table) = open_table(txn, definition)? else {
        return Ok(Vec::new());
    };
    let mut records = Vec::new();
    for entry in table
        .iter()
        .map_err(|e| redb_error(&format!("reading {name}"), e))?
    {
        let (key, value) = entry.map_err(|e| redb_error(&format!("reading {name}"), e))?;
        let key = key.value();
        let record = decode(name, &format_args!("{key:032x}"), value.value())?;
        records.push((key, record));
    }
    Ok(records)
}

fn without_keys<T>(rows: Vec<(u128, T)>) -> Vec<T> {
    rows.into_iter().map(|(_, record)| record).collect()
}

/// Transfers touching `wallet`, newest first, with ids below `before` (exclusive).
pub fn wallet_history(
    txn: &ReadTransaction,
    wallet: AccountId,
    before: Option<u128>,
    limit: usize,
) -> Result<Vec<Transfer>, StoreError> {
    let (Some(runs), Some(bookings)) = (open_table(txn, WALLET_RUNS)?, open_table(txn, BOOKINGS)?)
    else {
        return Ok(Vec::new());
    };
    let upper = before.unwrap_or(u128::MAX);
    let mut history = Vec::with_capacity(limit);
    // A booking's key is its smallest id: those below `upper` may still hold
    // legs at or above it (a page boundary inside a charge), filtered below.
    for key in wallet_runs::bookings_below(&runs, wallet.0, upper)? {
        if history.len() >= limit {
            break;
        }
        let key = key?;
        let Some(booking) =
            bundles::find(BOOKINGS, &bookings, key, |value| decode_booking(key, value))?
        else {
            return Err(StoreError::Corrupt(format!(
                "table `{}` names missing booking {key:032x}",
                WALLET_RUNS.name()
            )));
        };
        let newest_first = booking.into_iter().rev();
        history.extend(
            newest_first
                .filter(|transfer| {
                    transfer.id.0 < upper && (transfer.debit == wallet || transfer.credit == wallet)
                })
                .take(limit - history.len()),
        );
    }
    Ok(history)
}

/// One `bookings` row back as ledger transfers.
pub fn decode_booking(key: u128, value: &[u8]) -> Result<Vec<Transfer>, StoreError> {
    let record: BookingRecord = decode("bookings", &format_args!("{key:032x}"), value)?;
    record
        .into_transfers(key)
        .map_err(|detail| StoreError::Corrupt(format!("table `bookings` key {key:032x}: {detail}")))
}

/// The wallets a booking touches, each once, for [`WALLET_RUNS`].
pub fn booking_wallets(transfers: &[Transfer]) -> impl Iterator<Item = u64> + '_ {
    let mut seen: Vec<u64> = Vec::with_capacity(2);
    transfers
        .iter()
        .flat_map(|transfer| [transfer.debit.0, transfer.credit.0])
        .filter(move |&account| {
            let new = account >= AccountId::FIRST_WALLET && !seen.contains(&account);
            if new {
                seen.push(account);
            }
            new
        })
}

/// A schema-1 transfer row (`TransferRecord` under its id) as the schema-2
/// booking of its own that replaces it; `source` names where it was read.
pub fn booking_of_v1_transfer(source: &str, id: u128, value: &[u8]) -> Result<Vec<u8>, StoreError> {
    let record: TransferRecord = decode(source, &format_args!("{id:032x}"), value)?;
    encode(&BookingRecord {
        transfers: vec![record],
    })
}

/// Brings a file written under schema `from` up to [`SCHEMA_VERSION`] inside
/// `txn` (the caller commits, so a crash leaves the old file untouched), one
/// schema step after another.
pub fn upgrade_schema(txn: &WriteTransaction, from: u64) -> Result<(), StoreError> {
    if from < 2 {
        upgrade_1_to_2(txn)?;
    }
    if from < 3 {
        upgrade_2_to_3(txn)?;
    }
    Ok(())
}

/// Opens a table of an older schema for the upgrade; `None` if the file never had it.
fn open_old_table<'t, K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &'t WriteTransaction,
    definition: TableDefinition<K, V>,
    context: &str,
) -> Result<Option<redb::Table<'t, K, V>>, StoreError> {
    match txn.open_table(definition) {
        Ok(table) => Ok(Some(table)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(redb_error(context, e)),
    }
}

/// Schema 1 → 2: every transfer becomes a booking of its own (its key stays
/// the transfer id, so the wallet index rows carry over unchanged).
fn upgrade_1_to_2(txn: &WriteTransaction) -> Result<(), StoreError> {
    let context = "upgrading the store from schema 1";
    let mut bookings = txn
        .open_table(BOOKINGS_V2)
        .map_err(|e| redb_error(context, e))?;
    let mut wallet_bookings = txn
        .open_table(WALLET_BOOKINGS_V2)
        .map_err(|e| redb_error(context, e))?;
    let mut moved = 0u64;
    if let Some(transfers) = open_old_table(txn, TRANSFERS_V1, context)? {
        for entry in transfers.iter().map_err(|e| redb_error(context, e))? {
            let (key, value) = entry.map_err(|e| redb_error(context, e))?;
            let key = key.value();
            let booking = booking_of_v1_transfer("transfers", key, value.value())?;
            bookings
                .insert(key, booking.as_slice())
                .map_err(|e| redb_error(context, e))?;
            moved += 1;
        }
    }
    if let Some(index) = open_old_table(txn, WALLET_TRANSFERS_V1, context)? {
        for entry in index.iter().map_err(|e| redb_error(context, e))? {
            let (key, _) = entry.map_err(|e| redb_error(context, e))?;
            wallet_bookings
                .insert(key.value(), ())
                .map_err(|e| redb_error(context, e))?;
        }
    }
    drop((bookings, wallet_bookings));
    txn.delete_table(TRANSFERS_V1)
        .map_err(|e| redb_error(context, e))?;
    txn.delete_table(WALLET_TRANSFERS_V1)
        .map_err(|e| redb_error(context, e))?;
    tracing::info!(transfers = moved, "store upgraded from schema 1 to 2");
    Ok(())
}

/// Schema 2 → 3: bookings and idempotency records are bundled, the wallet
/// index becomes runs; every key, transfer id and log key stays.
fn upgrade_2_to_3(txn: &WriteTransaction) -> Result<(), StoreError> {
    let context = "upgrading the store from schema 2";
    let mut moved = [0u64; 3];
    for (old, new, moved_index) in [
        (BOOKINGS_V2, BOOKINGS, 0usize),
        (IDEMPOTENCY_V2, IDEMPOTENCY, 1),
    ] {
        let Some(old_log) = open_old_table(txn, old, context)? else {
            continue;
        };
        let mut bundled = txn.open_table(new).map_err(|e| redb_error(context, e))?;
        let mut writer = BundleWriter::new(new);
        for entry in old_log.iter().map_err(|e| redb_error(context, e))? {
            let (key, value) = entry.map_err(|e| redb_error(context, e))?;
            writer.push(&mut bundled, key.value(), value.value())?;
            moved[moved_index] += 1;
        }
        writer.flush(&mut bundled)?;
    }
    if let Some(old_index) = open_old_table(txn, WALLET_BOOKINGS_V2, context)? {
        let mut runs = txn
            .open_table(WALLET_RUNS)
            .map_err(|e| redb_error(context, e))?;
        // Rows come sorted by (wallet, booking): writing each wallet's runs
        // before the next wallet's keeps one wallet's keys in memory at a time.
        let mut writer = RunWriter::default();
        let mut current_wallet = None;
        for entry in old_index.iter().map_err(|e| redb_error(context, e))? {
            let (key, _) = entry.map_err(|e| redb_error(context, e))?;
            let (wallet, booking) = key.value();
            if current_wallet
                .replace(wallet)
                .is_some_and(|previous| previous != wallet)
            {
                std::mem::take(&mut writer).finish(&mut runs)?;
            }
            writer.push(&mut runs, wallet, booking)?;
            moved[2] += 1;
        }
        writer.finish(&mut runs)?;
    }
    for old in [BOOKINGS_V2, IDEMPOTENCY_V2] {
        txn.delete_table(old).map_err(|e| redb_error(context, e))?;
    }
    txn.delete_table(WALLET_BOOKINGS_V2)
        .map_err(|e| redb_error(context, e))?;
    tracing::info!(
        bookings = moved[0],
        idempotency_records = moved[1],
        wallet_index_entries = moved[2],
        "store upgraded from schema 2 to 3"
    );
    Ok(())
}
