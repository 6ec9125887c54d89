//! The database file as redb sees it: a `redb::StorageBackend` over redb's
//! own [`FileBackend`] that adds two things, both around `write` and
//! `sync_data`:
//!
//! - **Fault injection.** With a [`FaultSwitch`] (tests only), each write and
//!   sync first asks the switch, which fails it while armed (`fault.rs`).
//! - **Dropping bulk writes from the page cache.** Every write of at least
//!   [`BULK_WRITE_BYTES_MIN`] is remembered, and after the next successful
//!   sync the kernel is advised that those pages will not be needed
//!   (`posix_fadvise(POSIX_FADV_DONTNEED)` on each range).
//!
//! # Why drop those pages
//!
//! The checkpoint copies about a kilobyte per billed call into the redb file
//! (tens of MB a second under load), nearly all of it stored answers and
//! bookings packed into bundles of up to 64 KiB (`store::bundles`). redb writes
//! each such value as one large allocation, so one large `write`, and nothing
//! reads it back but a replay, a wallet's history or the sweep. Left alone,
//! the kernel keeps every written page cached, since nothing else asks for the
//! memory: gigabytes after a few minutes of load. That is resident memory an
//! edge box may not have, and on a virtual machine whose host takes back the
//! guest's free memory (free page reporting, as on the machines the
//! benchmarks run on) every fresh page costs a fault on the host: there,
//! buffered writes past the first gigabyte took ~2.5 s of system time per GB
//! instead of ~0.25, and the checkpoint thread's CPU per call tripled once the
//! file had grown past that (BENCHMARKS.md, "The page cache and the minute
//! sweep").
//!
//! # Why only those
//!
//! Ordinary B-tree pages (4 KiB: agents, accounts, wallet runs, the tables'
//! inner nodes) are read back by later checkpoints whenever redb's own cache
//! (`REDB_CACHE_BYTES`) misses them, and those reads must stay memory reads.
//! The first version of this module dropped the whole file after each sync:
//! the checkpoint that stored ~110,000 newly registered agents then read
//! 2.75 GB from the disk instead of the page cache and used 30% more CPU,
//! still running while the next scenario was measured (session 16).
//!
//! The advice only ever drops clean pages that no process has mapped, so it
//! cannot lose data; if it fails, nothing is wrong but memory use, and it is
//! only logged. On systems without `posix_fadvise` the pages are left alone.

use std::fs::File;
use std::io;
use std::ops::Bound;
use std::sync::{Mutex, PoisonError};

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

use super::fault::FaultSwitch;

/// Writes this large or larger are bulk values (bundles), dropped from the page
/// cache after the sync that makes them durable. B-tree pages are 4 KiB; a
/// bundle closes at 64 KiB, so most are well above this.
pub const BULK_WRITE_BYTES_MIN: usize = 16 * 1024;

/// Most bulk ranges remembered between two syncs. A checkpoint writes a few
/// hundred (tens of MB in 64 KiB bundles, many of them adjacent and merged);
/// past this bound the rest are not remembered, and only cost page cache.
const BULK_RANGES_MAX: usize = 16 * 1024;

/// The Hub's backend for its redb file; see the module doc.
#[derive(Debug)]
pub struct DatabaseFile {
    inner: FileBackend,
    /// The same open file as `inner`'s (a duplicated descriptor): the page
    /// cache belongs to the file, so advice given through either applies.
    advice_handle: File,
    /// Armed by fault tests; `None` in production.
    fault: Option<FaultSwitch>,
    /// Bulk writes since the last sync, as (offset, length); adjacent ones merged.
    bulk_ranges: Mutex<Vec<(u64, u64)>>,
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
            bulk_ranges: Mutex::new(Vec::new()),
        })
    }

    fn lock_bulk_ranges(&self) -> std::sync::MutexGuard<'_, Vec<(u64, u64)>> {
        self.bulk_ranges
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Remembers a written range if it is a bulk value.
    fn note_write(&self, offset: u64, length: usize) {
        if length < BULK_WRITE_BYTES_MIN {
            return;
        }
        let length = length as u64;
        let mut ranges = self.lock_bulk_ranges();
        // redb flushes its write buffer in offset order, so a bundle written
        // right after the previous one extends it.
        if let Some((last_offset, last_length)) = ranges.last_mut()
            && *last_offset + *last_length == offset
        {
            *last_length += length;
        } else if ranges.len() < BULK_RANGES_MAX {
            ranges.push((offset, length));
        }
    }

    /// Advises the kernel to drop the bulk ranges written before this sync.
    fn drop_bulk_pages(&self) {
        let ranges = std::mem::take(&mut *self.lock_bulk_ranges());
        for (offset, length) in ranges {
            drop_clean_pages(&self.advice_handle, offset, length);
        }
    }
}

/// Advises the kernel to drop the clean cached pages of `file` in the range.
fn drop_clean_pages(file: &File, offset: u64, length: u64) {
    #[cfg(target_os = "linux")]
    if let Err(error) = rustix::fs::fadvise(
        file,
        offset,
        std::num::NonZeroU64::new(length),
        rustix::fs::Advice::DontNeed,
    ) {
        tracing::debug!(%error, "could not drop the database file's cached pages");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, length);
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
        // before it would leave this commit's pages cached. After a failed
        // sync the ranges stay remembered for the next one.
        self.drop_bulk_pages();
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        if let Some(fault) = &self.fault {
            fault.check_database_write()?;
        }
        self.inner.write(offset, data)?;
        self.note_write(offset, data.len());
        Ok(())
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
        assert_eq!(*backend.lock_bulk_ranges(), [(0, written.len() as u64)]);
        backend.sync_data().expect("sync, then drop the pages");
        assert!(backend.lock_bulk_ranges().is_empty());

        let mut read_back = vec![0u8; written.len()];
        backend.read(0, &mut read_back).expect("read");
        assert_eq!(read_back, written);
        assert_eq!(backend.len().expect("len"), written.len() as u64);
        assert_eq!(
            std::fs::read(&path).expect("read through another handle"),
            written
        );
    }

    /// Only bulk writes are remembered; adjacent ones merge into one range.
    #[test]
    fn only_bulk_writes_are_remembered_and_adjacent_ones_merge() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.path().join("file"))
            .expect("create");
        let backend = DatabaseFile::new(file, None).expect("database file");
        let page = vec![7u8; 4096];
        let bulk = vec![9u8; BULK_WRITE_BYTES_MIN];
        let bulk_len = bulk.len() as u64;

        backend.write(0, &page).expect("write a B-tree page");
        backend.write(4096, &bulk).expect("write a bundle");
        backend
            .write(4096 + bulk_len, &bulk)
            .expect("write the next bundle");
        backend
            .write(1 << 20, &bulk)
            .expect("write a bundle elsewhere");
        assert_eq!(
            *backend.lock_bulk_ranges(),
            [(4096, 2 * bulk_len), (1 << 20, bulk_len)]
        );
        backend.sync_data().expect("sync");
        assert!(backend.lock_bulk_ranges().is_empty());
    }
}
