//! The storage seam for fault tests: a shared switch that, while armed, fails
//! the database file's writes and syncs (`DatabaseFile`, in
//! `database_file.rs`, asks it before each) and the commit journal's (which
//! asks it the same way).
//!
//! Production passes no switch and nothing is ever failed. Tests arm the
//! switch ([`FaultKind`]) to simulate a full disk (`ENOSPC`), a failing write or
//! a failing fsync (`EIO`) and check that a failed commit fails its waiters and
//! leaves memory equal to disk. A running Hub takes a switch through
//! `Running::start_with_fault` / `Hub::open_with_fault`.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

/// `ENOSPC` on Linux; what a full disk reports.
const ENOSPC: i32 = 28;
/// `EIO` on Linux; what a failing device reports.
const EIO: i32 = 5;

/// Which operations an armed switch fails, and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// `write` and `sync_data` fail with `ENOSPC` (the default of [`FaultSwitch::arm`]).
    DiskFull,
    /// Only `write` fails, with `EIO`.
    WriteError,
    /// Only `sync_data` (fsync) fails, with `EIO`; writes still land in the page cache.
    SyncError,
    /// Only the redb file's `sync_data` fails, with `EIO`; the commit journal
    /// works: checkpoints fail while commits go on.
    DatabaseSyncError,
}

const KIND_DISK_FULL: u8 = 0;
const KIND_WRITE_ERROR: u8 = 1;
const KIND_SYNC_ERROR: u8 = 2;
const KIND_DATABASE_SYNC_ERROR: u8 = 3;

/// A shared on/off switch for injected I/O failures.
#[derive(Clone, Default)]
pub struct FaultSwitch {
    armed: Arc<AtomicBool>,
    kind: Arc<AtomicU8>,
    injected: Arc<AtomicU64>,
}

impl fmt::Debug for FaultSwitch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultSwitch")
            .field("armed", &self.is_armed())
            .finish()
    }
}

impl FaultSwitch {
    pub fn new() -> FaultSwitch {
        FaultSwitch::default()
    }

    /// From now on every `write` and `sync_data` fails with `ENOSPC` (a full disk).
    pub fn arm(&self) {
        self.arm_with(FaultKind::DiskFull);
    }

    /// From now on the operations `kind` names fail.
    pub fn arm_with(&self, kind: FaultKind) {
        let code = match kind {
            FaultKind::DiskFull => KIND_DISK_FULL,
            FaultKind::WriteError => KIND_WRITE_ERROR,
            FaultKind::SyncError => KIND_SYNC_ERROR,
            FaultKind::DatabaseSyncError => KIND_DATABASE_SYNC_ERROR,
        };
        self.kind.store(code, Ordering::SeqCst);
        self.armed.store(true, Ordering::SeqCst);
    }

    pub fn disarm(&self) {
        self.armed.store(false, Ordering::SeqCst);
    }

    pub fn is_armed(&self) -> bool {
        self.armed.load(Ordering::SeqCst)
    }

    /// How many operations have failed on purpose so far.
    pub fn injected_failures(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }

    /// The database file's seam, asked before each of its writes.
    pub(super) fn check_database_write(&self) -> io::Result<()> {
        self.check(Operation::Write)
    }

    /// The database file's seam, asked before each of its syncs.
    pub(super) fn check_database_sync(&self) -> io::Result<()> {
        self.check(Operation::Sync)
    }

    /// The journal's seam: fails like a database `write` would.
    pub(super) fn check_write(&self) -> io::Result<()> {
        self.check(Operation::JournalWrite)
    }

    /// The journal's seam: fails like a database `sync_data` would.
    pub(super) fn check_sync(&self) -> io::Result<()> {
        self.check(Operation::JournalSync)
    }

    fn check(&self, operation: Operation) -> io::Result<()> {
        if !self.is_armed() {
            return Ok(());
        }
        let errno = match (self.kind.load(Ordering::SeqCst), operation) {
            (KIND_DISK_FULL, _) => ENOSPC,
            (KIND_WRITE_ERROR, Operation::Write | Operation::JournalWrite)
            | (KIND_SYNC_ERROR, Operation::Sync | Operation::JournalSync)
            | (KIND_DATABASE_SYNC_ERROR, Operation::Sync) => EIO,
            _ => return Ok(()),
        };
        self.injected.fetch_add(1, Ordering::SeqCst);
        Err(io::Error::from_raw_os_error(errno))
    }
}

#[derive(Clone, Copy)]
enum Operation {
    Write,
    Sync,
    JournalWrite,
    JournalSync,
}
