//! The writer thread: the only mutator of the ledger and the only writer of
//! the journal. One batch = apply in order, one journal record, one
//! `fdatasync`, then wake the waiters. Journaled batches reach redb in
//! checkpoints, run by the checkpoint thread this module also owns (a full
//! journal file at a time) or by the writer itself when it needs redb
//! current. See the parent module doc and [`super::journal`].

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableDatabase};

use super::idempotency_index::{IdempotencyIndex, Location};
use super::inbox::{Inbox, Popped};
use super::journal::{self, Journal, RecordBuilder};
use super::records::{AccountRecord, BookingRecord, encode};
use super::tables::{self, redb_error};
use super::{
    Command, Durability, FaultSwitch, IdempotencyRecorder, Job, Reply, Shared, StoreError, Waiter,
};
use crate::key_hash::KeyHash;
use crate::ledger::{AccountId, Ledger, LedgerError, Posted};
use crate::records::{AgentRecord, IdempotencyRecord, NonceRecord};

/// A durable write that is not a ledger transfer or account row.
enum Effect {
    Agent(AgentRecord),
    /// With its index key when the writer computed it already.
    Idempotency(IdempotencyRecord, Option<KeyHash>),
    Nonce(NonceRecord),
    Sweep {
        now_s: i64,
    },
}

/// A reply waiting for the batch's commit.
struct Pending {
    waiter: Option<Waiter>,
    result: Result<Reply, StoreError>,
}

/// A batch that is in the journal but not yet in redb.
struct Unapplied {
    record: Vec<u8>,
    /// Which journal file holds it, and the offset just past it there.
    file: usize,
    end_offset: u64,
}

/// Batches of a full journal file, for the checkpoint thread.
struct CheckpointJob {
    db: Arc<Database>,
    records: Vec<Vec<u8>>,
}

/// What the checkpoint thread reports. It has dropped its database handle
/// before it reports, so the writer may reopen the file right after.
enum CheckpointDone {
    /// redb now holds every batch up to this `commit_seq`; the records'
    /// buffers come back for reuse.
    Applied { seq: u64, records: Vec<Vec<u8>> },
    /// The records come back: they are still needed for the next attempt.
    Failed {
        error: StoreError,
        records: Vec<Vec<u8>>,
    },
}

/// The checkpoint thread: applies handed-off journal files to redb while the
/// writer goes on journaling into the other file.
fn run_checkpoints(jobs: Receiver<CheckpointJob>, done: SyncSender<CheckpointDone>) {
    while let Ok(CheckpointJob { db, records }) = jobs.recv() {
        let result = journal::checkpoint(&db, records.iter().map(Vec::as_slice));
        drop(db);
        let report = match result {
            Ok(seq) => CheckpointDone::Applied { seq, records },
            Err(error) => CheckpointDone::Failed { error, records },
        };
        if done.send(report).is_err() {
            return;
        }
    }
}

pub(super) struct Writer {
    /// `None` after a redb error, until reopened (redb refuses all work then).
    db: Option<Arc<Database>>,
    /// The two journal files; `active` takes appends.
    journals: [Journal; 2],
    active: usize,
    /// Journaled batches not yet checkpointed into redb and not handed to
    /// the checkpoint thread, oldest first.
    unapplied: VecDeque<Unapplied>,
    /// Set while the checkpoint thread works on the other file's batches.
    checkpoint_in_flight: bool,
    checkpoint_jobs: Option<SyncSender<CheckpointJob>>,
    checkpoint_done: Receiver<CheckpointDone>,
    checkpoint_thread: Option<JoinHandle<()>>,
    unapplied_bytes: usize,
    /// When the oldest unapplied batch was journaled, and the newest.
    unapplied_since: Option<Instant>,
    last_append: Option<Instant>,
    /// Live idempotency keys on disk; a second charge under one is refused.
    idempotency_index: Arc<IdempotencyIndex>,
    /// Index entries of the batch being committed, added on success.
    index_staging: Vec<(KeyHash, Location)>,
    path: PathBuf,
    fault: Option<FaultSwitch>,
    ledger: Arc<RwLock<Ledger>>,
    shared: Arc<Shared>,
    durability: Durability,
    batch_max: usize,
    checkpoint_bytes: usize,
    /// `commit_seq` of the last journaled batch.
    commit_seq: u64,
    /// `commit_seq` redb holds (the last checkpoint).
    applied_seq: u64,
    /// Set while journaled batches (batched mode) wait for an fsync.
    unsynced_since: Option<Instant>,
    /// After a failed journal write or sync: the offset from which the file
    /// must be zeroed before anything is appended again.
    journal_repair: Option<u64>,
    /// Acknowledged batches were lost (batched mode): memory must be rebuilt
    /// from what the disk holds before the next batch.
    reload_needed: bool,
    pending_buffer: Vec<Pending>,
    effects_buffer: Vec<Effect>,
    /// Charges of the batch whose idempotency record is still to be built:
    /// (index in the pending replies, recorder).
    unrecorded_buffer: Vec<(usize, IdempotencyRecorder, KeyHash)>,
    /// Bytes per account row, and per reply or effect, in the last journal
    /// record with any: the next record is reserved at about its final size
    /// instead of regrowing.
    row_bytes_estimate: usize,
    entry_bytes_estimate: usize,
    /// Buffers of checkpointed records, for the next records.
    spare_records: SpareRecords,
}

/// The most a journal record is allocated with up front (a record of
/// unusually large rows just grows past it).
const RECORD_PREALLOCATION_BYTES_MAX: usize = 1 << 20;

/// Buffers of journal records redb now holds, kept for the next records.
///
/// A record lives from its commit until its checkpoint, often on another
/// thread, so every commit used to take fresh memory from the allocator,
/// which had returned the freed records' pages to the OS meanwhile: page
/// faults on the writer's hot path. Reusing the buffers keeps that memory
/// mapped. At most `bytes_max` of capacity is kept: two journal files' worth
/// of record bytes, because records are allocated a quarter larger than they
/// turn out and a whole file's records come back at once; with only one
/// file's worth, part of every checkpoint's memory was freed and the next
/// file's records faulted fresh (transparent huge) pages in again.
struct SpareRecords {
    buffers: Vec<Vec<u8>>,
    bytes: usize,
    bytes_max: usize,
}

impl SpareRecords {
    fn new(bytes_max: usize) -> SpareRecords {
        SpareRecords {
            buffers: Vec::new(),
            bytes: 0,
            bytes_max,
        }
    }

    /// An empty buffer of at least `bytes` capacity: the smallest spare that
    /// fits, else a new one. (Batches vary in size, so the last spare in
    /// would often be too small. A spare too small is not grown either: a
    /// `realloc` copies its whole old capacity, garbage included, into fresh
    /// pages; it stays for a smaller record.)
    fn take(&mut self, bytes: usize) -> Vec<u8> {
        let fitting = self
            .buffers
            .iter()
            .enumerate()
            .filter(|(_, buffer)| buffer.capacity() >= bytes)
            .min_by_key(|(_, buffer)| buffer.capacity())
            .map(|(index, _)| index);
        let Some(index) = fitting else {
            return Vec::with_capacity(bytes);
        };
        let mut buffer = self.buffers.swap_remove(index);
        self.bytes -= buffer.capacity();
        buffer.clear();
        buffer
    }

    /// Keeps what fits within the bound; the rest is freed.
    fn give_back(&mut self, records: impl IntoIterator<Item = Vec<u8>>) {
        for record in records {
            if self.bytes + record.capacity() > self.bytes_max {
                continue;
            }
            self.bytes += record.capacity();
            self.buffers.push(record);
        }
    }
}

/// How often an unhealthy store tries a durable commit to learn whether the
/// fault has cleared.
const HEALTH_PROBE_INTERVAL: Duration = Duration::from_millis(500);
/// Journaled bytes that hand the active journal file to the checkpoint
/// thread ([`super::StoreOptions::checkpoint_bytes`]). Bounds the journal
/// files, the memory holding unapplied records, and start-up replay time.
pub(super) const CHECKPOINT_BYTES_DEFAULT: usize = 4 << 20;
/// A checkpoint follows this long after the last append...
const CHECKPOINT_IDLE: Duration = Duration::from_millis(500);
/// ...and never later than this after the oldest unapplied batch, so the
/// redb file the admin tools read is never far behind.
const CHECKPOINT_AGE_MAX: Duration = Duration::from_secs(5);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn reply(waiter: Option<Waiter>, result: Result<Reply, StoreError>) {
    match waiter {
        // The caller may have given up (its future dropped); nothing to do then.
        Some(waiter) => {
            let _ = waiter.send(result);
        }
        None => {
            if let Err(error) = result {
                tracing::warn!(%error, "queued store write failed");
            }
        }
    }
}

impl Writer {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        db: Database,
        journals: [Journal; 2],
        idempotency_index: Arc<IdempotencyIndex>,
        path: PathBuf,
        fault: Option<FaultSwitch>,
        ledger: Arc<RwLock<Ledger>>,
        shared: Arc<Shared>,
        durability: Durability,
        batch_max: usize,
        checkpoint_bytes: usize,
        commit_seq: u64,
    ) -> Result<Writer, StoreError> {
        let (checkpoint_jobs, jobs) = mpsc::sync_channel(1);
        let (done, checkpoint_done) = mpsc::sync_channel(1);
        let checkpoint_thread =
            super::scheduling::spawn_store_thread("jecp-store-checkpoint", move || {
                run_checkpoints(jobs, done);
            })
            .map_err(|error| StoreError::Io(format!("spawning the checkpoint thread: {error}")))?;
        Ok(Writer {
            db: Some(Arc::new(db)),
            journals,
            active: 0,
            unapplied: VecDeque::new(),
            checkpoint_in_flight: false,
            checkpoint_jobs: Some(checkpoint_jobs),
            checkpoint_done,
            checkpoint_thread: Some(checkpoint_thread),
            unapplied_bytes: 0,
            unapplied_since: None,
            last_append: None,
            idempotency_index,
            index_staging: Vec::new(),
            path,
            fault,
            ledger,
            shared,
            durability,
            batch_max,
            checkpoint_bytes,
            commit_seq,
            applied_seq: commit_seq,
            unsynced_since: None,
            journal_repair: None,
            reload_needed: false,
            pending_buffer: Vec::new(),
            effects_buffer: Vec::new(),
            unrecorded_buffer: Vec::new(),
            row_bytes_estimate: 0,
            entry_bytes_estimate: 0,
            spare_records: SpareRecords::new(checkpoint_bytes.saturating_mul(2)),
        })
    }

    pub(super) fn run(mut self, inbox: &Inbox<Job>) {
        let mut batch: Vec<(Command, Option<Waiter>)> = Vec::with_capacity(self.batch_max);
        let mut jobs: Vec<Job> = Vec::with_capacity(self.batch_max);
        loop {
            let mut stop = match inbox.pop(self.wake_deadline()) {
                Popped::TimedOut => {
                    self.on_timer();
                    continue;
                }
                Popped::Closed => true,
                Popped::Job(first) => {
                    jobs.push(first);
                    inbox.pop_more(&mut jobs, self.batch_max - 1);
                    false
                }
            };
            for job in jobs.drain(..) {
                match job {
                    // Jobs behind the marker in this drain are refused like
                    // those still queued behind it (below).
                    _ if stop => self.refuse_after_shutdown(job),
                    Job::Run { command, waiter } => batch.push((command, waiter)),
                    Job::Shutdown => stop = true,
                }
            }
            self.shared
                .queue_depth
                .fetch_sub(batch.len(), Ordering::AcqRel);
            if !batch.is_empty() {
                self.process(&mut batch);
            }
            if let Ok(done) = self.checkpoint_done.try_recv() {
                self.retire_checkpoint(done);
            }
            if self.unapplied_bytes >= self.checkpoint_bytes {
                self.hand_off_active_file();
            }
            // Under steady load `recv_timeout` never times out: timers that
            // are due (a checkpoint held back by a failure, the batched
            // fsync) run here.
            if self
                .wake_deadline()
                .is_some_and(|deadline| deadline <= Instant::now())
            {
                self.on_timer();
            }
            if stop {
                // Nothing is accepted from here on; what is already queued
                // behind the shutdown marker is refused, not dropped silently.
                inbox.close();
                self.close();
                while let Popped::Job(job) = inbox.pop(None) {
                    self.refuse_after_shutdown(job);
                }
                tracing::info!("store writer stopped");
                return;
            }
        }
    }

    /// Shutdown: everything journaled goes durably into redb, so the file the
    /// admin tools read is complete; if that fails, the journal still holds
    /// it and the next start replays it.
    fn close(&mut self) {
        if self.journal_repair.is_none()
            && let Err(error) = self.journals[self.active].sync()
        {
            tracing::error!(%error, "final journal sync failed");
        }
        if self.journal_repair.is_none()
            && !self.reload_needed
            && let Err(error) = self.checkpoint()
        {
            tracing::error!(%error, "final checkpoint failed; the next start replays the journal");
        }
        self.wait_for_checkpoint();
        self.db = None;
        // Closing the job queue ends the checkpoint thread.
        self.checkpoint_jobs = None;
        if let Some(thread) = self.checkpoint_thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the checkpoint thread panicked");
        }
    }

    /// When the active journal file has taken `checkpoint_bytes`: hands its
    /// batches to the checkpoint thread and switches appends to the other
    /// file, so commits never wait for redb. Waits for a better moment when
    /// a checkpoint is still running, a repair is pending, or batches of the
    /// other file are still unapplied (after a failed checkpoint).
    fn hand_off_active_file(&mut self) {
        if self.checkpoint_in_flight
            || self.journal_repair.is_some()
            || self.reload_needed
            || self.unapplied.iter().any(|u| u.file != self.active)
        {
            return;
        }
        let (Some(db), Some(jobs)) = (self.db.clone(), self.checkpoint_jobs.clone()) else {
            return;
        };
        // Batched mode: only the active file may hold unsynced batches, so
        // it is made durable before the switch.
        if self.unsynced_since.is_some() {
            self.sync_journal();
            if self.journal_repair.is_some() {
                return;
            }
        }
        let records: Vec<Vec<u8>> = self.unapplied.drain(..).map(|u| u.record).collect();
        if let Err(mpsc::SendError(job)) = jobs.send(CheckpointJob { db, records }) {
            // The thread is gone (it only stops when the writer closes):
            // keep the batches for a synchronous checkpoint.
            let file = self.active;
            self.unapplied
                .extend(job.records.into_iter().map(|record| Unapplied {
                    record,
                    file,
                    end_offset: 0,
                }));
            return;
        }
        self.checkpoint_in_flight = true;
        self.unapplied_bytes = 0;
        self.unapplied_since = None;
        self.last_append = None;
        self.active = 1 - self.active;
        // The other file's batches were all checkpointed before this one's
        // hand-off could start, so it is free to start over.
        if let Err(error) = self.journals[self.active].reset() {
            self.journal_repair = Some(0);
            self.record_failure(&error.to_string());
        }
    }

    /// Takes the checkpoint thread's report.
    fn retire_checkpoint(&mut self, done: CheckpointDone) {
        self.checkpoint_in_flight = false;
        match done {
            CheckpointDone::Applied { seq, records } => {
                self.applied_seq = seq;
                self.spare_records.give_back(records);
            }
            CheckpointDone::Failed { error, records } => {
                // redb refuses every operation after an I/O error until
                // reopened; the batches go back in line, oldest first, for a
                // synchronous checkpoint once it is.
                self.db = None;
                let file = 1 - self.active;
                for record in records.into_iter().rev() {
                    self.unapplied_bytes += record.len();
                    self.unapplied.push_front(Unapplied {
                        record,
                        file,
                        end_offset: 0,
                    });
                }
                self.unapplied_since.get_or_insert_with(Instant::now);
                self.last_append.get_or_insert_with(Instant::now);
                self.record_failure(&error.to_string());
            }
        }
    }

    /// Blocks until the checkpoint thread has finished its job, if it has one.
    fn wait_for_checkpoint(&mut self) {
        if !self.checkpoint_in_flight {
            return;
        }
        match self.checkpoint_done.recv() {
            Ok(done) => self.retire_checkpoint(done),
            // The thread died mid-job (a panic): its batches are still in the
            // journal file, which the next start replays.
            Err(_) => {
                self.checkpoint_in_flight = false;
                self.db = None;
                self.record_failure("the checkpoint thread stopped");
            }
        }
    }

    /// Answers a job found behind the shutdown marker: the store is closed.
    fn refuse_after_shutdown(&self, job: Job) {
        if let Job::Run { waiter, .. } = job {
            self.shared.queue_depth.fetch_sub(1, Ordering::AcqRel);
            reply(waiter, Err(StoreError::Closed));
        }
    }

    /// When the loop must wake without work: the batched-mode fsync, a
    /// checkpoint of an idle journal, or, while the store is unhealthy, the
    /// next probe (so the store recovers by itself once the fault clears,
    /// even with no writes queued).
    fn wake_deadline(&self) -> Option<Instant> {
        let probe = (!self.shared.healthy.load(Ordering::Acquire))
            .then(|| Instant::now() + HEALTH_PROBE_INTERVAL);
        [self.fsync_due_at(), self.checkpoint_due_at(), probe]
            .into_iter()
            .flatten()
            .min()
    }

    /// Batched mode: when the journaled but unsynced batches must be synced.
    fn fsync_due_at(&self) -> Option<Instant> {
        match (self.durability, self.unsynced_since) {
            (Durability::Batched { fsync_interval_ms }, Some(since)) => {
                Some(since + Duration::from_millis(fsync_interval_ms))
            }
            _ => None,
        }
    }

    /// When unapplied batches are checkpointed on the writer: after a quiet
    /// spell, or when the oldest has waited too long.
    fn checkpoint_due_at(&self) -> Option<Instant> {
        let (last, oldest) = (self.last_append?, self.unapplied_since?);
        Some((last + CHECKPOINT_IDLE).min(oldest + CHECKPOINT_AGE_MAX))
    }

    fn on_timer(&mut self) {
        let unhealthy = !self.shared.healthy.load(Ordering::Acquire);
        if self.ensure_ready().is_err() {
            return;
        }
        let now = Instant::now();
        if self.fsync_due_at().is_some_and(|due| due <= now) {
            self.sync_journal();
        }
        let checkpoint_due = self.checkpoint_due_at().is_some_and(|due| due <= now);
        if (checkpoint_due || unhealthy) && !self.reload_needed && self.journal_repair.is_none() {
            // While unhealthy this is the probe: a durable redb commit.
            if self.checkpoint_or_probe().is_ok() {
                self.record_success();
            }
        }
    }

    fn lock_ledger(&self) -> std::sync::RwLockWriteGuard<'_, Ledger> {
        self.ledger.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The stored answer when `command` would charge under an idempotency key
    /// that already has a live record on disk, or that an earlier command of
    /// this batch uses. Such a record exists when a commit reached the disk
    /// although its callers were told it failed: the retry must not charge again.
    fn already_charged(
        &mut self,
        key: KeyHash,
        recorder: &IdempotencyRecorder,
        now_s: i64,
    ) -> Option<Result<Reply, StoreError>> {
        let (agent_id, request_key) = recorder.key();
        match self.stored_answer_under(key, agent_id, request_key, now_s) {
            Ok(None) => None,
            Ok(Some(record)) => Some(Ok(Reply::Replayed(record))),
            Err(error) => Some(Err(error)),
        }
    }

    /// The live idempotency record under `(agent_id, request_key)`, read
    /// from redb (after a checkpoint) only when the index says one exists.
    fn stored_answer(
        &mut self,
        agent_id: &str,
        request_key: &str,
        now_s: i64,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let key = self.idempotency_index.key_of(agent_id, request_key);
        self.stored_answer_under(key, agent_id, request_key, now_s)
    }

    /// [`Writer::stored_answer`] with the index key already computed.
    fn stored_answer_under(
        &mut self,
        key: KeyHash,
        agent_id: &str,
        request_key: &str,
        now_s: i64,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let Some(Location {
            log_key,
            expires_at_s,
        }) = self.idempotency_index.get(key)
        else {
            return Ok(None);
        };
        if expires_at_s <= now_s {
            return Ok(None);
        }
        let txn = self.read_current("reading an idempotency record")?;
        match tables::read_idempotency(&txn, log_key)? {
            // The index holds hashes: the record's own key decides.
            Some(record) => Ok(
                (record.agent_id == agent_id && record.request_key == request_key)
                    .then_some(record),
            ),
            None => Err(StoreError::Corrupt(format!(
                "idempotency log key {log_key:032x} vanished"
            ))),
        }
    }

    /// A read transaction on redb holding every acknowledged batch: what is
    /// still only in the journal is checkpointed first.
    fn read_current(&mut self, context: &str) -> Result<redb::ReadTransaction, StoreError> {
        self.checkpoint()?;
        self.db
            .as_ref()
            .ok_or_else(|| StoreError::Degraded("database is closed".into()))?
            .begin_read()
            .map_err(|e| redb_error(context, e))
    }

    fn read_history(
        &mut self,
        wallet: AccountId,
        before: Option<u128>,
        limit: usize,
    ) -> Result<Reply, StoreError> {
        let txn = self.read_current("reading wallet history")?;
        tables::wallet_history(&txn, wallet, before, limit).map(Reply::History)
    }

    /// Applies a batch, journals it once and wakes its waiters.
    fn process(&mut self, batch: &mut Vec<(Command, Option<Waiter>)>) {
        if let Err(error) = self.ensure_ready() {
            for (_, waiter) in batch.drain(..) {
                reply(waiter, Err(StoreError::Degraded(error.clone())));
            }
            return;
        }
        let now_ms = now_ms();
        // Reused across batches: a large batch's buffers would otherwise be
        // mmap'd and unmapped by the allocator on every commit.
        let mut pending = std::mem::take(&mut self.pending_buffer);
        let mut effects = std::mem::take(&mut self.effects_buffer);
        let mut unrecorded = std::mem::take(&mut self.unrecorded_buffer);
        // The ledger is locked one command at a time, not for the whole
        // batch: a batch of dozens of charges held the lock for tens of µs,
        // and request tasks taking holds or reading trust counters meanwhile
        // went to sleep on it (and had to be woken and scheduled again).
        // Holds taken between two commands are recorded by the batch's undo
        // journal exactly like holds taken during the commit below.
        self.lock_ledger().begin_batch();
        for (command, waiter) in batch.drain(..) {
            match command {
                Command::History {
                    wallet,
                    before,
                    limit,
                } => {
                    let history = self.read_history(wallet, before, limit);
                    reply(waiter, history);
                    continue;
                }
                Command::ReadIdempotency {
                    agent_id,
                    request_key,
                } => {
                    let stored = self
                        .stored_answer(&agent_id, &request_key, now_ms.div_euclid(1000))
                        .map(Reply::Stored);
                    reply(waiter, stored);
                    continue;
                }
                _ => {}
            }
            // The idempotency index key of the charge's record, named once
            // for the duplicate check here and the index entry at commit.
            let charge = charge_recorder(&command).map(|recorder| {
                let (agent_id, request_key) = recorder.key();
                (
                    recorder,
                    self.idempotency_index.key_of(agent_id, request_key),
                )
            });
            let charge_key = charge.map(|(_, key)| key);
            if let Some((recorder, key)) = charge
                && let Some(stored) = self.already_charged(key, recorder, now_ms.div_euclid(1000))
            {
                // Release what the duplicate reserved; the first charge stands.
                if let Command::Post { hold, .. } = &command {
                    let _ = self.lock_ledger().void(*hold);
                }
                reply(waiter, stored);
                continue;
            }
            let applied = apply(&mut self.lock_ledger(), command, now_ms, &mut effects);
            match applied {
                // Memory-only work and ledger refusals need no commit: answer now.
                Applied::Now(result) => reply(waiter, result),
                Applied::AfterCommit(result) => pending.push(Pending { waiter, result }),
                Applied::Charged { posted, recorder } => {
                    if let (Some(recorder), Some(key)) = (recorder, charge_key) {
                        unrecorded.push((pending.len(), recorder, key));
                    }
                    pending.push(Pending {
                        waiter,
                        result: Ok(Reply::Posted(posted)),
                    });
                }
            }
        }
        let needs_commit = !effects.is_empty()
            || pending
                .iter()
                .any(|p| matches!(p.result, Ok(Reply::Posted(_) | Reply::Credited(_))));
        if !needs_commit {
            self.lock_ledger().commit_batch();
            for Pending { waiter, result } in pending.drain(..) {
                reply(waiter, result);
            }
            self.pending_buffer = pending;
            self.effects_buffer = effects;
            self.unrecorded_buffer = unrecorded;
            return;
        }
        let rows: Vec<AccountRecord> = {
            let ledger = self.lock_ledger();
            ledger
                .batch_touched()
                .iter()
                .filter_map(|id| ledger.account(*id))
                .map(AccountRecord::from)
                .collect()
        };
        // Rendering a response body takes longer than booking the charge;
        // done here, it no longer holds up the request tasks that read the
        // ledger (trust tier, free calls) or take holds meanwhile.
        for (index, recorder, key) in unrecorded.drain(..) {
            if let Ok(Reply::Posted(posted)) = &pending[index].result {
                effects.push(Effect::Idempotency(recorder.build(posted), Some(key)));
            }
        }
        // The ledger lock is released during the commit so readers and holds
        // never wait on an fsync. Only this thread posts, credits or opens
        // accounts; holds and voids taken meanwhile (`Store::hold`) touch only
        // pending amounts, which the journal's rollback handles.
        match self.commit(&rows, &pending, &effects) {
            Ok(()) => {
                for (key, location) in self.index_staging.drain(..) {
                    self.idempotency_index.insert(key, location);
                }
                if let Some(now_s) = effects.iter().find_map(|effect| match effect {
                    Effect::Sweep { now_s } => Some(*now_s),
                    _ => None,
                }) {
                    self.idempotency_index.retain_live(now_s);
                }
                self.lock_ledger().commit_batch();
                self.record_success();
                for Pending { waiter, result } in pending.drain(..) {
                    reply(waiter, result);
                }
            }
            Err(error) => {
                let message = error.to_string();
                self.index_staging.clear();
                // Memory goes back to what it was before this batch, which
                // is what the disk holds once the failed tail is zeroed.
                self.lock_ledger().rollback_batch();
                self.record_failure(&message);
                for Pending { waiter, .. } in pending.drain(..) {
                    reply(waiter, Err(StoreError::Degraded(message.clone())));
                }
            }
        }
        effects.clear();
        self.pending_buffer = pending;
        self.effects_buffer = effects;
        self.unrecorded_buffer = unrecorded;
    }

    /// Encodes one batch as a journal record, appends it, and (in immediate
    /// mode, or when the batched interval is up) syncs the journal.
    fn commit(
        &mut self,
        rows: &[AccountRecord],
        pending: &[Pending],
        effects: &[Effect],
    ) -> Result<(), StoreError> {
        let commit_seq = self.commit_seq + 1;
        let entries = pending.len() + effects.len();
        // Rows (the few accounts a batch touches, however many calls it
        // holds) and entries (about 1.3 KB per billed call) are estimated
        // apart: one average over both fell short for every batch larger
        // than the last, and the record regrew by `realloc`, copying into
        // fresh pages, mid-commit. A quarter more than the estimate, so a
        // batch of larger-than-usual rows rarely regrows the buffer.
        let expected_bytes =
            ((rows.len() * self.row_bytes_estimate + entries * self.entry_bytes_estimate) * 5 / 4
                + journal::HEADER_BYTES)
                .min(RECORD_PREALLOCATION_BYTES_MAX);
        let buffer = self.spare_records.take(expected_bytes);
        let mut record = RecordBuilder::new(buffer, commit_seq);
        for row in rows {
            record.account(row.id, &encode(row)?);
        }
        let rows_end = record.len();
        if !rows.is_empty() {
            self.row_bytes_estimate = (rows_end - journal::HEADER_BYTES).div_ceil(rows.len());
        }
        for entry in pending {
            let booked = match &entry.result {
                Ok(Reply::Credited(transfer)) => std::slice::from_ref(transfer),
                Ok(Reply::Posted(posted)) => posted.transfers.as_slice(),
                _ => continue,
            };
            // A zero-cost charge books no transfer, hence no row.
            let Some(first) = booked.first() else {
                continue;
            };
            record.booking(first.id.0, &encode(&BookingRecord::of(booked))?);
            for wallet in tables::booking_wallets(booked) {
                record.wallet_index(wallet, first.id.0);
            }
        }
        // Log rows of this commit are numbered in write order.
        let mut log_index: u32 = 0;
        let mut next_log_key = || {
            log_index += 1;
            tables::log_key(commit_seq, log_index)
        };
        for effect in effects {
            match effect {
                Effect::Agent(agent) => record.agent(agent.agent_id.as_str(), &encode(agent)?),
                Effect::Idempotency(stored, known_key) => {
                    let log_key = next_log_key();
                    let index_key = known_key.unwrap_or_else(|| {
                        self.idempotency_index
                            .key_of(&stored.agent_id, &stored.request_key)
                    });
                    debug_assert_eq!(
                        index_key,
                        self.idempotency_index
                            .key_of(&stored.agent_id, &stored.request_key),
                        "a charge's record is stored under the key it was checked under"
                    );
                    self.index_staging.push((
                        index_key,
                        Location {
                            log_key,
                            expires_at_s: stored.expires_at_s,
                        },
                    ));
                    record.idempotency(log_key, &encode(stored)?);
                }
                Effect::Nonce(stored) => record.nonce(next_log_key(), &encode(stored)?),
                Effect::Sweep { now_s } => record.sweep(*now_s),
            }
        }
        if entries > 0 {
            self.entry_bytes_estimate = (record.len() - rows_end).div_ceil(entries);
        }
        let record = record.finish()?;

        let durable = self.durability == Durability::Immediate
            || self.fsync_due_at().is_some_and(|due| due <= Instant::now());
        let journal = &mut self.journals[self.active];
        let start = journal.write_offset();
        let end_offset = match journal.append(&record) {
            Ok(end) => end,
            Err(error) => {
                // A failed write may have left part of the record on disk.
                self.journal_repair = Some(start);
                return Err(error);
            }
        };
        if durable {
            let synced = journal.synced_offset();
            if let Err(error) = journal.sync() {
                // Earlier unsynced batches (batched mode) are now of unknown
                // fate too; `ensure_ready` drops them and reloads.
                self.journal_repair = Some(synced);
                return Err(error);
            }
            self.unsynced_since = None;
        } else if self.unsynced_since.is_none() {
            self.unsynced_since = Some(Instant::now());
        }
        let now = Instant::now();
        self.commit_seq = commit_seq;
        self.unapplied_bytes += record.len();
        self.unapplied.push_back(Unapplied {
            record,
            file: self.active,
            end_offset,
        });
        self.unapplied_since.get_or_insert(now);
        self.last_append = Some(now);
        Ok(())
    }

    /// Batched mode: makes every journaled batch durable.
    fn sync_journal(&mut self) {
        let journal = &mut self.journals[self.active];
        let synced = journal.synced_offset();
        match journal.sync() {
            Ok(()) => {
                self.unsynced_since = None;
                self.record_success();
            }
            Err(error) => {
                self.unsynced_since = None;
                self.journal_repair = Some(synced);
                self.record_failure(&error.to_string());
            }
        }
    }

    /// Moves every journaled batch into redb in one durable transaction and
    /// starts the journal over. A no-op when nothing is waiting.
    fn checkpoint(&mut self) -> Result<(), StoreError> {
        self.wait_for_checkpoint();
        if self.unapplied.is_empty() {
            return Ok(());
        }
        self.checkpoint_or_probe()
    }

    /// [`Writer::checkpoint`], or with nothing to apply a durable commit of
    /// the sequence number: the health probe's proof that redb writes again.
    fn checkpoint_or_probe(&mut self) -> Result<(), StoreError> {
        self.wait_for_checkpoint();
        let db = self
            .db
            .as_ref()
            .ok_or_else(|| StoreError::Degraded("database is closed".into()))?;
        let result = if self.unapplied.is_empty() {
            probe_commit(db)
        } else {
            journal::checkpoint(db, self.unapplied.iter().map(|u| u.record.as_slice())).and_then(
                |applied_seq| {
                    if applied_seq == self.commit_seq {
                        Ok(applied_seq)
                    } else {
                        Err(StoreError::Corrupt(format!(
                            "checkpoint reached commit {applied_seq}, journal holds {}",
                            self.commit_seq
                        )))
                    }
                },
            )
        };
        match result {
            Ok(_) => {
                self.applied_seq = self.commit_seq;
                self.spare_records
                    .give_back(self.unapplied.drain(..).map(|unapplied| unapplied.record));
                self.unapplied_bytes = 0;
                self.unapplied_since = None;
                self.last_append = None;
                // redb now holds durably what the journal held, synced or not.
                self.unsynced_since = None;
                // Both files are free now; the active one starts over.
                if let Err(error) = self.journals[self.active].reset() {
                    self.journal_repair = Some(0);
                    self.record_failure(&error.to_string());
                    return Err(error);
                }
                Ok(())
            }
            Err(error) => {
                // redb refuses every operation after an I/O error until
                // reopened; the journal still holds every batch.
                self.db = None;
                self.record_failure(&error.to_string());
                Err(error)
            }
        }
    }

    fn record_success(&self) {
        self.shared.commits.fetch_add(1, Ordering::AcqRel);
        self.shared.healthy.store(true, Ordering::Release);
        *self
            .shared
            .last_commit
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
    }

    fn record_failure(&self, message: &str) {
        tracing::error!(
            error = message,
            "store write failed; the batch failed and the store repairs itself before the next"
        );
        self.shared.failed_commits.fetch_add(1, Ordering::AcqRel);
        self.shared.healthy.store(false, Ordering::Release);
        *self
            .shared
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(message.to_owned());
    }

    fn note_unavailable(&self, message: &str) {
        tracing::error!(error = message, "store unavailable");
        *self
            .shared
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(message.to_owned());
    }

    /// Before any batch after a failure: reopens redb if it was closed, zeroes
    /// a journal tail a failed write or sync left behind, and, when that tail
    /// held acknowledged batches (batched mode), rebuilds memory from disk.
    fn ensure_ready(&mut self) -> Result<(), String> {
        if self.db.is_none() {
            // The checkpoint thread must have let go of the old handle.
            self.wait_for_checkpoint();
            let reopened = super::open_database(&self.path, self.fault.clone()).and_then(|db| {
                let disk_seq = tables::stored_commit_seq(&db, "reading the reopened store")?;
                Ok((db, disk_seq))
            });
            let (db, disk_seq) = reopened.map_err(|error| {
                let message = format!("cannot reopen the store: {error}");
                self.note_unavailable(&message);
                message
            })?;
            // A checkpoint reported as failed may have landed after all.
            while self
                .unapplied
                .front()
                .is_some_and(|u| journal::record_seq(&u.record) <= disk_seq)
            {
                if let Some(done) = self.unapplied.pop_front() {
                    self.unapplied_bytes -= done.record.len();
                }
            }
            self.applied_seq = disk_seq;
            self.db = Some(Arc::new(db));
        }
        if let Some(from) = self.journal_repair {
            // `applied_seq` must be final before it can stand for the last
            // surviving batch below.
            self.wait_for_checkpoint();
            self.journals[self.active]
                .invalidate_from(from)
                .map_err(|error| {
                    let message = format!("cannot repair the journal: {error}");
                    self.note_unavailable(&message);
                    message
                })?;
            let kept = self.unapplied.len();
            let active = self.active;
            self.unapplied
                .retain(|u| u.file != active || u.end_offset <= from);
            let lost = kept - self.unapplied.len();
            if lost > 0 {
                tracing::warn!(
                    lost_commits = lost,
                    "acknowledged but unsynced commits were lost with the journal's tail"
                );
                self.reload_needed = true;
            }
            self.unapplied_bytes = self.unapplied.iter().map(|u| u.record.len()).sum();
            self.commit_seq = self
                .unapplied
                .back()
                .map_or(self.applied_seq, |u| journal::record_seq(&u.record));
            self.journal_repair = None;
        }
        if self.reload_needed {
            self.reload().map_err(|error| {
                let message = format!("cannot reload the store: {error}");
                self.note_unavailable(&message);
                message
            })?;
            self.reload_needed = false;
        }
        Ok(())
    }

    /// Makes memory equal to the disk after acknowledged batches were lost:
    /// checkpoints what survived, then reads the ledger and the idempotency
    /// index back from redb.
    fn reload(&mut self) -> Result<(), StoreError> {
        let txn = self.read_current("reloading the store")?;
        let state = tables::read_state(&txn, false)?;
        // Bodies are not needed: a zero budget decodes one record at a time.
        self.idempotency_index.clear();
        tables::read_idempotency_log(&txn, &self.idempotency_index, 0)?;
        tracing::warn!(
            commit_seq = state.commit_seq,
            "reloaded the ledger from the store after losing unsynced commits"
        );
        *self.lock_ledger() = state.ledger;
        self.commit_seq = state.commit_seq;
        self.applied_seq = state.commit_seq;
        Ok(())
    }
}

/// A durable redb commit that changes nothing but proves the file writable:
/// it rewrites the stored `commit_seq` with its own value.
fn probe_commit(db: &Database) -> Result<u64, StoreError> {
    let context = "health probe commit";
    let commit_seq = tables::stored_commit_seq(db, context)?;
    let txn = db.begin_write().map_err(|e| redb_error(context, e))?;
    {
        let mut meta = txn
            .open_table(tables::META)
            .map_err(|e| redb_error(context, e))?;
        meta.insert(tables::META_COMMIT_SEQ, commit_seq)
            .map_err(|e| redb_error(context, e))?;
    }
    txn.commit().map_err(|e| redb_error(context, e))?;
    Ok(commit_seq)
}

enum Applied {
    Now(Result<Reply, StoreError>),
    AfterCommit(Result<Reply, StoreError>),
    /// A posted charge. Its idempotency record (which renders the response
    /// body) is built by the caller after it releases the ledger lock.
    Charged {
        posted: Posted,
        recorder: Option<IdempotencyRecorder>,
    },
}

/// The idempotency recorder of a charge that stores its answer.
fn charge_recorder(command: &Command) -> Option<&IdempotencyRecorder> {
    match command {
        Command::Post {
            idempotency: Some(recorder),
            ..
        }
        | Command::ChargeFree {
            idempotency: Some(recorder),
            ..
        } => Some(recorder),
        _ => None,
    }
}

fn apply(ledger: &mut Ledger, command: Command, now_ms: i64, effects: &mut Vec<Effect>) -> Applied {
    let refused = |error: LedgerError| Applied::Now(Err(StoreError::Ledger(error)));
    match command {
        Command::OpenWallet { account, agent } => match ledger.open_wallet(account) {
            Ok(()) => {
                effects.push(Effect::Agent(agent));
                Applied::AfterCommit(Ok(Reply::Done))
            }
            Err(error) => refused(error),
        },
        // The account row written with the batch is the durable effect.
        Command::OpenProvider { account } => match ledger.open_provider(account) {
            Ok(()) => Applied::AfterCommit(Ok(Reply::Done)),
            Err(error) => refused(error),
        },
        Command::PutAgent(agent) => {
            effects.push(Effect::Agent(agent));
            Applied::AfterCommit(Ok(Reply::Done))
        }
        Command::Credit {
            wallet,
            amount,
            reference,
        } => match ledger.credit(wallet, amount, &reference, now_ms) {
            Ok(transfer) => Applied::AfterCommit(Ok(Reply::Credited(transfer))),
            // The first credit may be in this very batch: answer after the commit.
            Err(LedgerError::DuplicateReference) => {
                Applied::AfterCommit(Ok(Reply::AlreadyCredited))
            }
            Err(error) => refused(error),
        },
        Command::Hold { wallet, amount } => match ledger.hold(wallet, amount) {
            Ok(hold) => Applied::Now(Ok(Reply::Held(hold))),
            Err(error) => refused(error),
        },
        Command::Void { hold } => match ledger.void(hold) {
            Ok(()) => Applied::Now(Ok(Reply::Done)),
            Err(error) => refused(error),
        },
        Command::Post {
            hold,
            provider,
            memo,
            idempotency,
        } => match ledger.post(hold, provider, memo, now_ms) {
            Ok(posted) => Applied::Charged {
                posted,
                recorder: idempotency,
            },
            Err(error) => refused(error),
        },
        Command::ChargeFree {
            wallet,
            cost,
            provider,
            free_allowance,
            memo,
            idempotency,
        } => match ledger.charge_free(wallet, cost, provider, free_allowance, memo, now_ms) {
            Ok(posted) => Applied::Charged {
                posted,
                recorder: idempotency,
            },
            Err(error) => refused(error),
        },
        Command::PutNonce(record) => {
            effects.push(Effect::Nonce(record));
            Applied::AfterCommit(Ok(Reply::Done))
        }
        Command::PutIdempotency(record) => {
            effects.push(Effect::Idempotency(record, None));
            Applied::AfterCommit(Ok(Reply::Done))
        }
        Command::Sweep { now_s } => {
            effects.push(Effect::Sweep { now_s });
            Applied::AfterCommit(Ok(Reply::Done))
        }
        // `process` serves reads before applying; one here is a wiring bug.
        Command::History { .. } | Command::ReadIdempotency { .. } => {
            debug_assert!(false, "a read reached apply");
            Applied::Now(Err(StoreError::Degraded(
                "a read reached the apply step".into(),
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spare_records_stay_within_their_bound_and_hand_back_capacity() {
        let mut spares = SpareRecords::new(10_000);
        let mut used = Vec::with_capacity(4_000);
        used.extend_from_slice(b"an applied record");
        spares.give_back([Vec::with_capacity(4_000), used]);
        // A third would pass the bound: freed, not kept.
        spares.give_back([Vec::with_capacity(4_000)]);
        assert_eq!(spares.buffers.len(), 2);
        assert!(spares.bytes <= 10_000);
        let reused = spares.take(100);
        assert!(reused.capacity() >= 4_000 && reused.is_empty());
        assert_eq!(
            spares.bytes,
            spares.buffers.iter().map(Vec::capacity).sum::<usize>()
        );
        spares.take(0);
        // Empty: a fresh buffer, and the count stays at zero.
        assert_eq!(spares.take(0).capacity(), 0);
        assert_eq!(spares.bytes, 0);
    }

    #[test]
    fn spare_records_are_taken_by_best_fit() {
        let mut spares = SpareRecords::new(100_000);
        spares.give_back([
            Vec::with_capacity(1_000),
            Vec::with_capacity(30_000),
            Vec::with_capacity(8_000),
        ]);
        // The smallest that fits...
        assert!((8_000..30_000).contains(&spares.take(5_000).capacity()));
        // ...else a new one; the spares too small stay for smaller records.
        let fresh = spares.take(50_000);
        assert!(fresh.capacity() >= 50_000);
        assert_eq!(spares.buffers.len(), 2);
        assert_eq!(
            spares.bytes,
            spares.buffers.iter().map(Vec::capacity).sum::<usize>()
        );
        assert!(spares.take(20_000).capacity() >= 30_000);
    }
}
