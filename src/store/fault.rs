//! The storage seam for fault tests: a `redb::StorageBackend` over
//! [`FileBackend`] whose writes and syncs fail while a shared switch is armed.
//!
//! Production passes no switch and the wrapper only forwards. Tests arm the
//! switch to simulate a full disk (`ENOSPC`) and check that a failed commit
//! fails its waiters and leaves memory equal to disk.

use std::fmt;
use std::fs::File;
use std::io;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

/// `ENOSPC` on Linux; what a full disk reports.
const ENOSPC: i32 = 28;

/// A shared on/off switch for injected I/O failures.
#[derive(Clone, Default)]
pub struct FaultSwitch {
    armed: Arc<AtomicBool>,
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

    /// From now on every `write` and `sync_data` fails with `ENOSPC`.
    pub fn arm(&self) {
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

    fn check(&self) -> io::Result<()> {
        if self.is_armed() {
            self.injected.fetch_add(1, Ordering::SeqCst);
            return Err(io::Error::from_raw_os_error(ENOSPC));
        }
        Ok(())
    }
}

/// [`FileBackend`] with optional injected failures on `write` and `sync_data`.
#[derive(Debug)]
pub struct FaultyBackend {
    inner: FileBackend,
    switch: Option<FaultSwitch>,
}

impl FaultyBackend {
    pub fn new(
        file: File,
        switch: Option<FaultSwitch>,
    ) -> Result<FaultyBackend, redb::DatabaseError> {
        Ok(FaultyBackend {
            inner: FileBackend::new(file)?,
            switch,
        })
    }

    fn check(&self) -> io::Result<()> {
        match &self.switch {
            Some(switch) => switch.check(),
            None => Ok(()),
        }
    }
}

impl StorageBackend for FaultyBackend {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.check()?;
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.check()?;
        self.inner.write(offset, data)
    }

    fn close(&self) -> io::Result<()> {
        self.inner.close()
    }

    // Locking is forwarded so another process (or handle) opening the same
    // file is refused exactly as with a plain FileBackend.
    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}
