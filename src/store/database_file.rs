//! The database file as redb sees it: a `redb::StorageBackend` over redb's
//! own [`FileBackend`] that adds two things, both around `write` and
//! `sync_data`:
//!
//! - **Fault injection.** With a [`FaultSwitch`] (tests only), each write and
//!   sync first asks the switch, which fails it while armed (`fault.rs`).
//! - **Dropping the file from the page cache.** After each successful sync
//!   the kernel is advised that the file's clean pages will not be needed
//!   (`posix_fadvise(POSIX_FADV_DONTNEED)`).
//!
//! # Why drop the pages
//!
//! The checkpoint copies about a kilobyte per billed call into the redb file
//! (tens of MB a second under load), and the file only grows. Nothing on the
//! Hub's hot path reads that file through the page cache: the ledger, agents
//! and idempotency index live in memory, and redb keeps its own cache of the
//! pages it touches (`REDB_CACHE_BYTES`). Left alone, the kernel would still
//! keep every written page cached, since nothing else asks for the memory:
//! gigabytes after a few minutes of load. That is resident memory an edge box
//! may not have, and on a virtual machine whose host takes back the guest's
//! free memory (free page reporting, as on the machines the benchmarks run
//! on) every fresh page costs a fault on the host: there, buffered writes past
//! the first gigabyte took ~2.5 s of system time per GB instead of ~0.25, and
//! the checkpoint thread's CPU per call tripled once the file had grown past
//! that (BENCHMARKS.md, "The page cache and the minute sweep"). Dropped after
//! each sync, the same few megabytes of page cache are reused instead.
//!
//! The advice only ever drops clean pages that no process has mapped, so it
//! cannot lose data; if it fails, nothing is wrong but memory use, and it is
//! only logged. The cost: a read that misses redb's own cache (wallet history,
//! an old stored answer, a sweep, opening the file) goes to the disk instead
//! of memory. On systems without `posix_fadvise` the pages are left alone.

use std::fs::File;
use std::io;
use std::ops::Bound;

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

use super::fault::FaultSwitch;

/// The Hub's backend for its redb file; see the module doc.
#[derive(Debug)]
pub struct DatabaseFile {
    inner: FileBackend,
    /// The same open file as `inner`'s (a duplicated descriptor): the page
    /// cache belongs to the file, so advice given through either applies.
    advice_handle: File,
    /// Armed by fault tests; `None` in production.
    fault: Option<FaultSwitch>,
}

impl DatabaseFile {
    /// Takes redb's lock on `file` (another process holding it is refused).
    pub fn new(
        file: File,
        fault: Option<FaultSwitch>,
    ) -> Result<DatabaseFile, redb::DatabaseError> {
        let advice_handle = file.try_clone()?;
        Ok(DatabaseFile {
            inner: FileBackend::new(file)?,
            advice_handle,
            fault,
        })
    }
}

/// Advises the kernel to drop `file`'s clean cached pages.
fn drop_clean_pages(file: &File) {
    #[cfg(target_os = "linux")]
    if let Err(error) = rustix::fs::fadvise(file, 0, None, rustix::fs::Advice::DontNeed) {
        tracing::debug!(%error, "could not drop the database file's cached pages");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}

impl StorageBackend for DatabaseFile {
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
        if let Some(fault) = &self.fault {
            fault.check_database_sync()?;
        }
        self.inner.sync_data()?;
        // Only after the sync: dirty pages are not dropped, so advice given
        // before it would leave this commit's pages cached.
        drop_clean_pages(&self.advice_handle);
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        if let Some(fault) = &self.fault {
            fault.check_database_write()?;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Dropping the cache after a sync must never change what is read back:
    /// the pages come from the disk instead, byte for byte.
    #[test]
    fn what_was_synced_reads_back_after_the_pages_are_dropped() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("file");
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .expect("create");
        let backend = DatabaseFile::new(file, None).expect("database file");

        let written: Vec<u8> = (0..64 * 1024u32).map(|i| (i % 251) as u8).collect();
        backend.set_len(written.len() as u64).expect("set_len");
        backend.write(0, &written).expect("write");
        backend.sync_data().expect("sync, then drop the pages");

        let mut read_back = vec![0u8; written.len()];
        backend.read(0, &mut read_back).expect("read");
        assert_eq!(read_back, written);
        assert_eq!(backend.len().expect("len"), written.len() as u64);
        assert_eq!(
            std::fs::read(&path).expect("read through another handle"),
            written
        );
    }
}
