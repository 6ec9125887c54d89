//! The writer thread: the only owner of the redb `Database` and the only
//! mutator of the ledger. One batch = apply in order, one write transaction,
//! one commit, then wake the waiters. See the parent module doc.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableDatabase};

use super::records::{AccountRecord, TransferRecord, encode};
use super::tables::{self, redb_error};
use super::{Command, Durability, FaultSwitch, Job, Reply, Shared, StoreError, Waiter};
use crate::ledger::{AccountId, Ledger, LedgerError, Transfer};
use crate::records::{AgentRecord, IdempotencyRecord, NonceRecord};

/// A durable write that is not a ledger transfer or account row.
enum Effect {
    Agent(AgentRecord),
    Idempotency(IdempotencyRecord),
    Nonce(NonceRecord),
    Sweep { now_s: i64 },
}

/// A reply waiting for the batch's commit.
struct Pending {
    waiter: Option<Waiter>,
    result: Result<Reply, StoreError>,
}

pub(super) struct Writer {
    db: Option<Database>,
    /// Live idempotency keys on disk; a second charge under one is refused.
    idempotency_index: tables::IdempotencyIndex,
    /// Index entries of the batch being committed, added on success.
    index_staging: Vec<((String, String), (u128, i64))>,
    path: PathBuf,
    fault: Option<FaultSwitch>,
    ledger: Arc<RwLock<Ledger>>,
    shared: Arc<Shared>,
    durability: Durability,
    batch_max: usize,
    /// `commit_seq` of the last successful commit (durable or not).
    commit_seq: u64,
    /// Set while non-durable commits (batched mode) wait for an fsync.
    unsynced_since: Option<Instant>,
    pending_buffer: Vec<Pending>,
    effects_buffer: Vec<Effect>,
}

/// How often an unhealthy store tries a durable commit to learn whether the
/// fault has cleared.
const HEALTH_PROBE_INTERVAL: Duration = Duration::from_millis(500);

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
        idempotency_index: tables::IdempotencyIndex,
        path: PathBuf,
        fault: Option<FaultSwitch>,
        ledger: Arc<RwLock<Ledger>>,
        shared: Arc<Shared>,
        durability: Durability,
        batch_max: usize,
        commit_seq: u64,
    ) -> Writer {
        Writer {
            db: Some(db),
            idempotency_index,
            index_staging: Vec::new(),
            path,
            fault,
            ledger,
            shared,
            durability,
            batch_max,
            commit_seq,
            unsynced_since: None,
            pending_buffer: Vec::new(),
            effects_buffer: Vec::new(),
        }
    }

    pub(super) fn run(mut self, receiver: Receiver<Job>) {
        let mut batch: Vec<(Command, Option<Waiter>)> = Vec::with_capacity(self.batch_max);
        loop {
            let first = match self.fsync_deadline() {
                None => receiver.recv().ok(),
                Some(deadline) => match receiver
                    .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                {
                    Ok(job) => Some(job),
                    Err(RecvTimeoutError::Timeout) => {
                        // A durable commit of the sequence number: the batched
                        // fsync, or the health probe after a fault.
                        if self.db.is_none() && self.ensure_database(false).is_err() {
                            continue;
                        }
                        self.sync();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => None,
                },
            };
            let mut stop = match first {
                None | Some(Job::Shutdown) => true,
                Some(Job::Run { command, waiter }) => {
                    batch.push((command, waiter));
                    false
                }
            };
            while !stop && batch.len() < self.batch_max {
                match receiver.try_recv() {
                    Ok(Job::Run { command, waiter }) => batch.push((command, waiter)),
                    Ok(Job::Shutdown) => stop = true,
                    Err(_) => break,
                }
            }
            self.shared
                .queue_depth
                .fetch_sub(batch.len(), Ordering::AcqRel);
            if !batch.is_empty() {
                self.process(&mut batch);
            }
            if stop {
                if self.unsynced_since.is_some() {
                    self.sync();
                }
                // Late arrivals behind the shutdown marker are refused, not dropped silently.
                while let Ok(job) = receiver.try_recv() {
                    if let Job::Run { waiter, .. } = job {
                        self.shared.queue_depth.fetch_sub(1, Ordering::AcqRel);
                        reply(waiter, Err(StoreError::Closed));
                    }
                }
                self.db = None;
                tracing::info!("store writer stopped");
                return;
            }
        }
    }

    /// The stored answer when `command` would charge under an idempotency key
    /// that already has a live record on disk, or that an earlier command of
    /// this batch uses. Such a record exists when a commit reached the file
    /// although its callers were told it failed: the retry must not charge again.
    fn already_charged(&self, command: &Command, now_s: i64) -> Option<Result<Reply, StoreError>> {
        let recorder = match command {
            Command::Post {
                idempotency: Some(recorder),
                ..
            }
            | Command::ChargeFree {
                idempotency: Some(recorder),
                ..
            } => recorder,
            _ => return None,
        };
        let (agent_id, request_key) = recorder.key();
        if let Some((log_key, expires_at_s)) = self
            .idempotency_index
            .get(&(agent_id.to_owned(), request_key.to_owned()))
            && *expires_at_s > now_s
        {
            let db = self.db.as_ref()?;
            let found = db
                .begin_read()
                .map_err(|e| redb_error("reading an idempotency record", e))
                .and_then(|txn| tables::read_idempotency(&txn, *log_key));
            return Some(match found {
                Ok(Some(record)) => Ok(Reply::Replayed(record)),
                Ok(None) => Err(StoreError::Corrupt(format!(
                    "idempotency log key {log_key:032x} vanished"
                ))),
                Err(error) => Err(error),
            });
        }
        None
    }

    fn read_history(
        &self,
        wallet: AccountId,
        before: Option<u128>,
        limit: usize,
    ) -> Result<Reply, StoreError> {
        let db = self
            .db
            .as_ref()
            .ok_or_else(|| StoreError::Degraded("database is closed".into()))?;
        let txn = db
            .begin_read()
            .map_err(|e| redb_error("reading wallet history", e))?;
        tables::wallet_history(&txn, wallet, before, limit).map(Reply::History)
    }

    /// When the loop must wake without work: the batched-mode fsync, or,
    /// while the store is unhealthy, the next probe commit (so the store
    /// recovers by itself once the fault clears, even with no writes queued).
    fn fsync_deadline(&self) -> Option<Instant> {
        let sync = match (self.durability, self.unsynced_since) {
            (Durability::Batched { fsync_interval_ms }, Some(since)) => {
                Some(since + Duration::from_millis(fsync_interval_ms))
            }
            _ => None,
        };
        let probe = (!self.shared.healthy.load(Ordering::Acquire))
            .then(|| Instant::now() + HEALTH_PROBE_INTERVAL);
        match (sync, probe) {
            (Some(sync), Some(probe)) => Some(sync.min(probe)),
            (sync, probe) => sync.or(probe),
        }
    }

    fn lock_ledger(&self) -> std::sync::RwLockWriteGuard<'_, Ledger> {
        self.ledger.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies a batch, commits it once and wakes its waiters.
    fn process(&mut self, batch: &mut Vec<(Command, Option<Waiter>)>) {
        if let Err(error) = self.ensure_database(false) {
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
        let rows: Vec<AccountRecord>;
        {
            let mut ledger = self.lock_ledger();
            ledger.begin_batch();
            for (command, waiter) in batch.drain(..) {
                if let Command::History {
                    wallet,
                    before,
                    limit,
                } = command
                {
                    reply(waiter, self.read_history(wallet, before, limit));
                    continue;
                }
                if let Some(stored) = self.already_charged(&command, now_ms.div_euclid(1000)) {
                    // Release what the duplicate reserved; the first charge stands.
                    if let Command::Post { hold, .. } = &command {
                        let _ = ledger.void(*hold);
                    }
                    reply(waiter, stored);
                    continue;
                }
                match apply(&mut ledger, command, now_ms, &mut effects) {
                    // Memory-only work and ledger refusals need no commit: answer now.
                    Applied::Now(result) => reply(waiter, result),
                    Applied::AfterCommit(result) => pending.push(Pending { waiter, result }),
                }
            }
            let needs_commit = !effects.is_empty()
                || pending
                    .iter()
                    .any(|p| matches!(p.result, Ok(Reply::Posted(_) | Reply::Credited(_))));
            if !needs_commit {
                ledger.commit_batch();
                drop(ledger);
                for Pending { waiter, result } in pending.drain(..) {
                    reply(waiter, result);
                }
                self.pending_buffer = pending;
                self.effects_buffer = effects;
                return;
            }
            rows = ledger
                .batch_touched()
                .iter()
                .filter_map(|id| ledger.account(*id))
                .map(AccountRecord::from)
                .collect();
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
                    self.idempotency_index
                        .retain(|_, (_, expires_at_s)| *expires_at_s > now_s);
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
                self.recover(&message);
                for Pending { waiter, .. } in pending.drain(..) {
                    reply(waiter, Err(StoreError::Degraded(message.clone())));
                }
            }
        }
        effects.clear();
        self.pending_buffer = pending;
        self.effects_buffer = effects;
    }

    /// Writes one batch in one transaction and commits it.
    fn commit(
        &mut self,
        rows: &[AccountRecord],
        pending: &[Pending],
        effects: &[Effect],
    ) -> Result<(), StoreError> {
        let db = self
            .db
            .as_ref()
            .ok_or_else(|| StoreError::Degraded("database is closed".into()))?;
        let context = "committing a batch";
        let durable = match self.durability {
            Durability::Immediate => true,
            Durability::Batched { fsync_interval_ms } => self
                .unsynced_since
                .is_some_and(|since| since.elapsed() >= Duration::from_millis(fsync_interval_ms)),
        };
        let mut txn = db.begin_write().map_err(|e| redb_error(context, e))?;
        txn.set_durability(if durable {
            redb::Durability::Immediate
        } else {
            redb::Durability::None
        })
        .map_err(|e| StoreError::Io(format!("{context}: {e}")))?;
        {
            let mut accounts = txn
                .open_table(tables::ACCOUNTS)
                .map_err(|e| redb_error(context, e))?;
            for row in rows {
                accounts
                    .insert(row.id, encode(row)?.as_slice())
                    .map_err(|e| redb_error(context, e))?;
            }
            let mut transfers = txn
                .open_table(tables::TRANSFERS)
                .map_err(|e| redb_error(context, e))?;
            let mut wallet_index = txn
                .open_table(tables::WALLET_TRANSFERS)
                .map_err(|e| redb_error(context, e))?;
            let mut write_transfer = |transfer: &Transfer| -> Result<(), StoreError> {
                let bytes = encode(&TransferRecord::from(transfer))?;
                transfers
                    .insert(transfer.id.0, bytes.as_slice())
                    .map_err(|e| redb_error(context, e))?;
                for account in [transfer.debit, transfer.credit] {
                    if account.0 >= AccountId::FIRST_WALLET {
                        wallet_index
                            .insert((account.0, transfer.id.0), ())
                            .map_err(|e| redb_error(context, e))?;
                    }
                }
                Ok(())
            };
            for entry in pending {
                match &entry.result {
                    Ok(Reply::Credited(transfer)) => write_transfer(transfer)?,
                    Ok(Reply::Posted(posted)) => {
                        for transfer in &posted.transfers {
                            write_transfer(transfer)?;
                        }
                    }
                    _ => {}
                }
            }
            let mut agents = txn
                .open_table(tables::AGENTS)
                .map_err(|e| redb_error(context, e))?;
            // Log rows of this commit are numbered in write order.
            let next_commit_seq = self.commit_seq + 1;
            let mut log_index: u32 = 0;
            let mut next_log_key = || {
                log_index += 1;
                tables::log_key(next_commit_seq, log_index)
            };
            let mut idempotency = txn
                .open_table(tables::IDEMPOTENCY)
                .map_err(|e| redb_error(context, e))?;
            let mut nonces = txn
                .open_table(tables::NONCES)
                .map_err(|e| redb_error(context, e))?;
            for effect in effects {
                match effect {
                    Effect::Agent(agent) => {
                        agents
                            .insert(agent.agent_id.as_str(), encode(agent)?.as_slice())
                            .map_err(|e| redb_error(context, e))?;
                    }
                    Effect::Idempotency(record) => {
                        let log_key = next_log_key();
                        self.index_staging.push((
                            (record.agent_id.clone(), record.request_key.clone()),
                            (log_key, record.expires_at_s),
                        ));
                        idempotency
                            .insert(log_key, encode(record)?.as_slice())
                            .map_err(|e| redb_error(context, e))?;
                    }
                    Effect::Nonce(record) => {
                        nonces
                            .insert(next_log_key(), encode(record)?.as_slice())
                            .map_err(|e| redb_error(context, e))?;
                    }
                    Effect::Sweep { now_s } => {
                        let now_s = *now_s;
                        // Unreadable rows are kept: deleting is never the way to handle them.
                        idempotency
                            .retain(|key, value| {
                                super::records::decode::<IdempotencyRecord>(
                                    "idempotency_log",
                                    &format_args!("{key:032x}"),
                                    value,
                                )
                                .map_or(true, |record| record.expires_at_s > now_s)
                            })
                            .map_err(|e| redb_error(context, e))?;
                        nonces
                            .retain(|key, value| {
                                super::records::decode::<NonceRecord>(
                                    "nonce_log",
                                    &format_args!("{key:032x}"),
                                    value,
                                )
                                .map_or(true, |record| record.expires_at_s > now_s)
                            })
                            .map_err(|e| redb_error(context, e))?;
                    }
                }
            }
            let mut meta = txn
                .open_table(tables::META)
                .map_err(|e| redb_error(context, e))?;
            meta.insert(tables::META_COMMIT_SEQ, self.commit_seq + 1)
                .map_err(|e| redb_error(context, e))?;
        }
        txn.commit().map_err(|e| redb_error(context, e))?;
        self.commit_seq += 1;
        if durable {
            self.unsynced_since = None;
        } else if self.unsynced_since.is_none() {
            self.unsynced_since = Some(Instant::now());
        }
        Ok(())
    }

    /// Batched mode: makes every earlier non-durable commit durable.
    fn sync(&mut self) {
        let result = (|| -> Result<(), StoreError> {
            let db = self
                .db
                .as_ref()
                .ok_or_else(|| StoreError::Degraded("database is closed".into()))?;
            let context = "fsync commit";
            let mut txn = db.begin_write().map_err(|e| redb_error(context, e))?;
            txn.set_durability(redb::Durability::Immediate)
                .map_err(|e| StoreError::Io(format!("{context}: {e}")))?;
            {
                // Rewriting the sequence gives the commit something to persist.
                let mut meta = txn
                    .open_table(tables::META)
                    .map_err(|e| redb_error(context, e))?;
                meta.insert(tables::META_COMMIT_SEQ, self.commit_seq)
                    .map_err(|e| redb_error(context, e))?;
            }
            txn.commit().map_err(|e| redb_error(context, e))
        })();
        match result {
            Ok(()) => {
                self.unsynced_since = None;
                self.record_success();
            }
            Err(error) => {
                self.unsynced_since = None;
                self.recover(&error.to_string());
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

    /// After a failed commit: reopen the file and make memory equal to it.
    fn recover(&mut self, message: &str) {
        tracing::error!(
            error = message,
            "store commit failed; failing the batch and reopening the database"
        );
        self.shared.failed_commits.fetch_add(1, Ordering::AcqRel);
        self.shared.healthy.store(false, Ordering::Release);
        *self
            .shared
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(message.to_owned());
        // redb refuses every operation after an I/O error until reopened.
        self.db = None;
        if self.ensure_database(true).is_err() {
            // The file cannot even be opened: keep memory at the last commit
            // this thread saw succeed; the next batch retries the reopen and
            // reconciles with what it finds.
            self.lock_ledger().rollback_batch();
        }
    }

    /// Reopens the database if it is closed, and reconciles the ledger with it:
    /// the batch in flight landed (keep), did not land (undo it), or more was
    /// lost (batched mode: reload everything from the file). `in_batch` says
    /// whether the ledger's undo journal holds the batch that just failed.
    fn ensure_database(&mut self, in_batch: bool) -> Result<(), String> {
        if self.db.is_some() {
            return Ok(());
        }
        let reopened = (|| -> Result<(Database, u64), StoreError> {
            let db = super::open_database(&self.path, self.fault.clone())?;
            let txn = db
                .begin_read()
                .map_err(|e| redb_error("reading the reopened store", e))?;
            let disk_seq = tables::read_commit_seq(&txn)?;
            drop(txn);
            Ok((db, disk_seq))
        })();
        let (db, disk_seq) = match reopened {
            Ok(opened) => opened,
            Err(error) => {
                let message = format!("cannot reopen the store: {error}");
                tracing::error!(error = %message, "store unavailable");
                *self
                    .shared
                    .last_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(message.clone());
                return Err(message);
            }
        };
        let ledger_lock = Arc::clone(&self.ledger);
        let mut ledger = ledger_lock.write().unwrap_or_else(PoisonError::into_inner);
        if in_batch && disk_seq == self.commit_seq + 1 {
            // The failed commit reached the file after all; memory already matches.
            ledger.commit_batch();
            self.commit_seq = disk_seq;
        } else if disk_seq == self.commit_seq {
            // No-op outside a batch: memory already equals the last commit.
            ledger.rollback_batch();
        } else {
            let state = db
                .begin_read()
                .map_err(|e| redb_error("reloading the store", e))
                .and_then(|txn| tables::read_state(&txn, false));
            match state {
                Ok(state) => {
                    tracing::warn!(
                        lost_commits = self.commit_seq.saturating_sub(disk_seq),
                        "reloaded the ledger from the store after losing unsynced commits"
                    );
                    *ledger = state.ledger;
                    self.commit_seq = disk_seq;
                }
                Err(error) => {
                    let message = format!("cannot reload the store: {error}");
                    ledger.rollback_batch();
                    return Err(message);
                }
            }
        }
        drop(ledger);
        // Whatever reached the file is what counts: re-read which idempotency
        // keys are stored, including those of a batch reported as failed.
        match db
            .begin_read()
            .map_err(|e| redb_error("indexing idempotency records", e))
            .and_then(|txn| tables::idempotency_index(&txn))
        {
            Ok(index) => self.idempotency_index = index,
            Err(error) => return Err(format!("cannot index the reopened store: {error}")),
        }
        self.db = Some(db);
        Ok(())
    }
}

enum Applied {
    Now(Result<Reply, StoreError>),
    AfterCommit(Result<Reply, StoreError>),
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
            Ok(posted) => {
                effects.extend(
                    idempotency.map(|recorder| Effect::Idempotency(recorder.build(&posted))),
                );
                Applied::AfterCommit(Ok(Reply::Posted(posted)))
            }
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
            Ok(posted) => {
                effects.extend(
                    idempotency.map(|recorder| Effect::Idempotency(recorder.build(&posted))),
                );
                Applied::AfterCommit(Ok(Reply::Posted(posted)))
            }
            Err(error) => refused(error),
        },
        Command::PutNonce(record) => {
            effects.push(Effect::Nonce(record));
            Applied::AfterCommit(Ok(Reply::Done))
        }
        Command::PutIdempotency(record) => {
            effects.push(Effect::Idempotency(record));
            Applied::AfterCommit(Ok(Reply::Done))
        }
        Command::Sweep { now_s } => {
            effects.push(Effect::Sweep { now_s });
            Applied::AfterCommit(Ok(Reply::Done))
        }
        // `process` serves reads before applying; one here is a wiring bug.
        Command::History { .. } => {
            debug_assert!(false, "History reached apply");
            Applied::Now(Err(StoreError::Degraded(
                "history read reached the apply step".into(),
            )))
        }
    }
}
