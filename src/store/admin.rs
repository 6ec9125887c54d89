//! Operator tools over a stopped Hub's data directory: `ledger verify` and
//! `ledger export`. `main.rs` wires the CLI; these are the library halves.
//!
//! `verify` recomputes every balance from the transfer log and checks the
//! invariants (Σ balances = 0, no wallet below zero, stored rows equal the
//! recomputed balances, every charge's legs are its 85/10/5 split). `export`
//! writes the immutable transfer log in id (= time) order.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use redb::ReadableDatabase;
use serde_json::{Value, json};

use super::StoreError;
use super::bundles;
use super::tables::{self, DATABASE_FILE, redb_error};
use crate::ledger::{AccountKind, Transfer, Violation};

/// The outcome of `ledger verify`.
#[derive(Clone, Debug)]
pub struct VerifyReport {
    pub path: PathBuf,
    pub accounts: u64,
    pub wallets: u64,
    pub transfers: u64,
    /// Σ (credits_posted − debits_posted) over all accounts, micro-USDC.
    pub balance_sum: i128,
    pub violations: Vec<Violation>,
    /// Journal records applied before checking: batches acknowledged by a
    /// Hub that stopped without its final checkpoint (a crash).
    pub journal_replayed: usize,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_ok() {
            return write!(
                f,
                "ledger verify: OK ({}): {} accounts ({} wallets), {} transfers, sum of balances {} micro-USDC{}",
                self.path.display(),
                self.accounts,
                self.wallets,
                self.transfers,
                self.balance_sum,
                if self.journal_replayed > 0 {
                    format!(
                        "; {} journal record(s) replayed first",
                        self.journal_replayed
                    )
                } else {
                    String::new()
                }
            );
        }
        writeln!(
            f,
            "ledger verify: FAILED ({}): {} violation(s) over {} accounts and {} transfers",
            self.path.display(),
            self.violations.len(),
            self.accounts,
            self.transfers
        )?;
        for violation in &self.violations {
            writeln!(f, "  - {violation}")?;
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    Jsonl,
    Csv,
}

/// Opens an existing store for the admin tools. Refuses a directory a running
/// Hub holds (`Locked`) and never creates a file.
fn open_existing(data_dir: &Path) -> Result<(redb::Database, PathBuf, usize), StoreError> {
    let path = data_dir.join(DATABASE_FILE);
    if !path.exists() {
        return Err(StoreError::Io(format!(
            "no store at {} (is the data directory right?)",
            path.display()
        )));
    }
    // A read-write handle (without writing) so redb can finish a crash
    // recovery that a read-only handle would refuse.
    let db = redb::Database::builder()
        .open(&path)
        .map_err(|e| redb_error(&path.display().to_string(), e))?;
    // An older file is upgraded, and after a crash acknowledged batches may
    // be only in the journal: both happen first, exactly as the next start would.
    super::initialize(&db)?;
    let replayed = if super::journal_exists(data_dir) {
        super::journal::Journal::open_and_replay(data_dir, &db, None)?.1
    } else {
        0
    };
    Ok((db, path, replayed))
}

/// Recomputes every balance from the transfers and checks the invariants.
/// Corrupt or newer-format records are an `Err`; broken invariants are in the report.
pub fn verify(data_dir: &Path) -> Result<VerifyReport, StoreError> {
    let (db, path, journal_replayed) = open_existing(data_dir)?;
    let txn = db
        .begin_read()
        .map_err(|e| redb_error("ledger verify", e))?;
    let state = tables::read_state(&txn, false)?;
    let balance_sum = state
        .ledger
        .accounts()
        .map(|account| account.balance())
        .sum();
    let wallets = state
        .ledger
        .accounts()
        .filter(|account| account.kind == AccountKind::Wallet)
        .count() as u64;
    Ok(VerifyReport {
        path,
        accounts: state.account_count,
        wallets,
        transfers: state.transfer_count,
        balance_sum,
        violations: state.violations,
        journal_replayed,
    })
}

const COLUMNS: [&str; 14] = [
    "id",
    "timestamp_ms",
    "kind",
    "debit",
    "credit",
    "amount",
    "amount_micros",
    "charge",
    "reference",
    "agent_id",
    "capability",
    "action",
    "request_id",
    "method",
];

fn export_error(error: impl fmt::Display) -> StoreError {
    StoreError::Io(format!("writing the export: {error}"))
}

/// Writes every transfer in id order as JSON lines or CSV (with a header row).
/// Returns the number of transfers written.
pub fn export(
    data_dir: &Path,
    format: ExportFormat,
    out: &mut dyn Write,
) -> Result<u64, StoreError> {
    let (db, _, _) = open_existing(data_dir)?;
    let txn = db
        .begin_read()
        .map_err(|e| redb_error("ledger export", e))?;
    let table = match txn.open_table(tables::BOOKINGS) {
        Ok(table) => Some(table),
        Err(redb::TableError::TableDoesNotExist(_)) => None,
        Err(error) => return Err(redb_error("ledger export", error)),
    };
    let mut sink = match format {
        ExportFormat::Csv => {
            let mut writer = csv::Writer::from_writer(out);
            writer.write_record(COLUMNS).map_err(export_error)?;
            Sink::Csv(Box::new(writer))
        }
        ExportFormat::Jsonl => Sink::Jsonl(out),
    };
    let mut written = 0u64;
    if let Some(table) = table {
        bundles::for_each(tables::BOOKINGS, &table, |key, value| {
            for transfer in tables::decode_booking(key, value)? {
                match &mut sink {
                    Sink::Csv(writer) => writer
                        .write_record(csv_row(&transfer))
                        .map_err(export_error)?,
                    Sink::Jsonl(out) => {
                        serde_json::to_writer(&mut **out, &json_row(&transfer))
                            .map_err(export_error)?;
                        out.write_all(b"\n").map_err(export_error)?;
                    }
                }
                written += 1;
            }
            Ok(())
        })?;
    }
    match sink {
        Sink::Csv(mut writer) => writer.flush().map_err(export_error)?,
        Sink::Jsonl(out) => out.flush().map_err(export_error)?,
    }
    Ok(written)
}

enum Sink<'a> {
    // Boxed: the CSV writer carries its buffer state inline.
    Csv(Box<csv::Writer<&'a mut dyn Write>>),
    Jsonl(&'a mut dyn Write),
}

fn json_row(transfer: &Transfer) -> Value {
    let memo = transfer.memo.as_ref();
    json!({
        "id": format!("{:032x}", transfer.id.0),
        "timestamp_ms": transfer.timestamp_ms,
        "kind": transfer.kind.as_str(),
        "debit": transfer.debit.0,
        "credit": transfer.credit.0,
        "amount": transfer.amount.to_json(),
        "amount_micros": transfer.amount.get(),
        "charge": transfer.charge.map(|charge| format!("{:032x}", charge.0)),
        "reference": transfer.reference,
        "agent_id": memo.map(|m| m.agent_id.as_str()),
        "capability": memo.map(|m| m.capability.as_str()),
        "action": memo.map(|m| m.action.as_str()),
        "request_id": memo.map(|m| m.request_id.as_str()),
        "method": memo.map(|m| m.method.as_str()),
    })
}

fn csv_row(transfer: &Transfer) -> [String; 14] {
    let memo = transfer.memo.as_ref();
    let text = |value: Option<&str>| value.unwrap_or_default().to_owned();
    [
        format!("{:032x}", transfer.id.0),
        transfer.timestamp_ms.to_string(),
        transfer.kind.as_str().to_owned(),
        transfer.debit.0.to_string(),
        transfer.credit.0.to_string(),
        transfer.amount.to_string(),
        transfer.amount.get().to_string(),
        transfer
            .charge
            .map(|charge| format!("{:032x}", charge.0))
            .unwrap_or_default(),
        text(transfer.reference.as_deref()),
        text(memo.map(|m| m.agent_id.as_str())),
        text(memo.map(|m| m.capability.as_str())),
        text(memo.map(|m| m.action.as_str())),
        text(memo.map(|m| m.request_id.as_str())),
        text(memo.map(|m| m.method.as_str())),
    ]
}
