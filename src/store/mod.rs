//! The store: one redb file in the data directory, versioned rkyv records, and
//! the single writer thread that group-commits everything (DESIGN §4).
//!
//! # Writer and group commit
//!
//! [`Store::open`] replays the commit journal into the redb file (batches a
//! crash left only there), loads the file into a [`Ledger`], checks every
//! invariant, and spawns one writer thread that is the only mutator of the
//! ledger and the only writer of both files. Callers queue [`Command`]s on a
//! bounded queue ([`StoreOptions::queue_capacity`]; a full queue answers
//! [`StoreError::Busy`], which maps to 503 `SERVICE_DEGRADED` with
//! `Retry-After`, never unbounded memory). The writer drains up to
//! [`StoreOptions::batch_max`] queued commands, applies them to the ledger in
//! order (a ledger error goes back to that caller only), encodes the batch's
//! durable effects — transfers, account rows, agents, idempotency records,
//! nonces — as ONE journal record, appends it and `fdatasync`s once, then
//! wakes every waiter. Under load thousands of charges share one fsync; an
//! idle Hub commits one at a time, at close to the cost of a raw `fdatasync`.
//!
//! Journaled batches reach redb in checkpoints, one durable redb transaction
//! for many batches: on a separate checkpoint thread each time a journal file
//! has taken [`StoreOptions::checkpoint_bytes`] (appends switch to the other
//! file meanwhile, so commits never wait for redb), and on the writer after
//! half a second of quiet, before a read that needs redb (wallet history, a
//! stored idempotent answer), and at shutdown. See `src/store/journal.rs` for
//! the format and why. Both threads run under `SCHED_BATCH` on Linux, so
//! waking them never preempts a request worker (`scheduling`).
//!
//! `Hold` and `Void` are memory-only (holds do not survive a restart, which
//! equals a void) and are answered right after apply. If a batch's journal
//! write or sync fails, every durable waiter in it gets
//! [`StoreError::Degraded`], the error is logged and shown in
//! [`Store::health`], memory is put back to what it was before the batch (undo
//! journal), and the failed tail of the journal is zeroed before anything is
//! written again (the store stays degraded, and probes itself, until that
//! works). A failed checkpoint closes and reopens redb; the journal still
//! holds every acknowledged batch. A later `Post` of a hold created in a
//! failed batch gets `Ledger(UnknownHold)`: that call was not charged.
//!
//! # Durability modes
//!
//! - [`Durability::Immediate`] (default): a waiter is woken only after the
//!   `fdatasync` of the journal record holding its effects. Acknowledged
//!   means durable.
//! - [`Durability::Batched`]: journal records are written and waiters woken
//!   right after; an `fdatasync` follows at most `fsync_interval_ms` later.
//!   **Loss window:** on power loss, acknowledged writes of the last
//!   `fsync_interval_ms` milliseconds may be lost (a prefix of them survives;
//!   the files stay consistent); a `kill -9` alone loses nothing, the page
//!   cache survives it. If that `fdatasync` fails, memory is rebuilt from what
//!   the disk holds. [`StoreHealth::loss_window_ms`] reports the window for
//!   `/health`.

pub mod admin;
mod bundles;
mod database_file;
pub mod fault;
pub mod idempotency_index;
mod inbox;
mod journal;
pub mod records;
mod scheduling;
mod tables;
mod wallet_runs;
mod writer;

use std::fmt;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::Instant;

use redb::{ReadableDatabase, ReadableTable};

use crate::ledger::{AccountId, ChargeMemo, HoldId, Ledger, LedgerError, Posted, Transfer};
use crate::money::Micros;
use crate::protocol::{ErrorCode, JecpError};
use crate::records::{AgentRecord, IdempotencyRecord, NonceRecord};
use inbox::{Inbox, PushError};

pub use fault::{FaultKind, FaultSwitch};
pub use idempotency_index::{IdempotencyIndex, Location};
pub use journal::{JOURNAL_FILES, journal_exists};
pub use tables::DATABASE_FILE;

/// When a waiter is woken relative to the disk. See the module doc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    Immediate,
    Batched { fsync_interval_ms: u64 },
}

impl Durability {
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Immediate => "immediate",
            Durability::Batched { .. } => "batched",
        }
    }

    /// Acknowledged writes that a crash may lose, in milliseconds (0 = none).
    pub fn loss_window_ms(self) -> u64 {
        match self {
            Durability::Immediate => 0,
            Durability::Batched { fsync_interval_ms } => fsync_interval_ms,
        }
    }
}

#[derive(Clone, Debug)]
pub struct StoreOptions {
    pub durability: Durability,
    /// Commands that may wait for the writer; beyond it callers get `Busy`.
    pub queue_capacity: usize,
    /// Most commands applied and committed in one transaction.
    pub batch_max: usize,
    /// Journal bytes after which the active journal file is handed to the
    /// checkpoint thread and appends switch to the other file.
    pub checkpoint_bytes: usize,
    /// Injected I/O failures for tests; `None` in production.
    pub fault: Option<FaultSwitch>,
    /// Start-up keeps the bodies of only the newest stored answers within
    /// this many bytes ([`Loaded::idempotency`]); the rest are only indexed
    /// ([`Store::idempotency_index`]).
    pub idempotency_bodies_bytes_max: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            durability: Durability::Immediate,
            queue_capacity: 65_536,
            batch_max: 8_192,
            checkpoint_bytes: writer::CHECKPOINT_BYTES_DEFAULT,
            fault: None,
            idempotency_bodies_bytes_max: usize::MAX,
        }
    }
}

/// What the store loaded at start-up besides the ledger (which stays inside).
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    pub agents: Vec<AgentRecord>,
    /// The newest stored answers, bodies included (within
    /// `StoreOptions::idempotency_bodies_bytes_max`), oldest first.
    pub idempotency: Vec<IdempotencyRecord>,
    pub nonces: Vec<NonceRecord>,
    /// The next unused wallet account number (≥ `AccountId::FIRST_WALLET`).
    pub next_wallet_account: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreError {
    /// The writer queue is full.
    Busy {
        retry_after_s: u64,
    },
    /// A commit or the disk failed; the write did not happen.
    Degraded(String),
    /// The store is shutting down or shut down.
    Closed,
    Ledger(LedgerError),
    Corrupt(String),
    NewerFormat {
        found: u8,
        supported: u8,
    },
    Io(String),
    /// Another process holds the data directory.
    Locked(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Busy { retry_after_s } => {
                write!(
                    f,
                    "the store's write queue is full; retry in {retry_after_s} s"
                )
            }
            StoreError::Degraded(detail) => write!(f, "storage is degraded: {detail}"),
            StoreError::Closed => f.write_str("the store is shut down"),
            StoreError::Ledger(error) => write!(f, "ledger: {error}"),
            StoreError::Corrupt(detail) => write!(f, "the store file is corrupt: {detail}"),
            StoreError::NewerFormat { found, supported } => write!(
                f,
                "the store was written by a newer jecp-hub (format version {found}; this build reads up to {supported}); upgrade jecp-hub"
            ),
            StoreError::Io(detail) => write!(f, "storage I/O error: {detail}"),
            StoreError::Locked(detail) => f.write_str(detail),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<LedgerError> for StoreError {
    fn from(error: LedgerError) -> Self {
        StoreError::Ledger(error)
    }
}

impl StoreError {
    /// The JECP error a handler should answer with. Storage trouble is 503
    /// `SERVICE_DEGRADED` with `Retry-After`; the call was not charged.
    pub fn to_jecp(&self) -> JecpError {
        match self {
            StoreError::Busy { retry_after_s } => JecpError::new(
                ErrorCode::ServiceDegraded,
                "the hub is at capacity; retry shortly",
            )
            .retry_after(*retry_after_s),
            StoreError::Degraded(_)
            | StoreError::Io(_)
            | StoreError::Closed
            | StoreError::Locked(_) => JecpError::new(
                ErrorCode::ServiceDegraded,
                "storage is temporarily unavailable; the call was not charged",
            )
            .retry_after(5),
            StoreError::Corrupt(_) | StoreError::NewerFormat { .. } => {
                JecpError::new(ErrorCode::InternalError, "the hub's store cannot be read")
            }
            StoreError::Ledger(error) => ledger_error_to_jecp(error),
        }
    }
}

fn ledger_error_to_jecp(error: &LedgerError) -> JecpError {
    match error {
        LedgerError::InsufficientFunds {
            required,
            available,
        } => JecpError::new(
            ErrorCode::InsufficientBalance,
            "wallet balance is too low for this call",
        )
        .detail("required", required.to_json())
        .detail("available", available.to_json()),
        LedgerError::FreeCallsExhausted => JecpError::new(
            ErrorCode::PaymentRequired,
            "the free-call allowance is used up",
        ),
        // The hold vanished with a failed commit: the call was not charged.
        LedgerError::UnknownHold(_) => JecpError::new(
            ErrorCode::ServiceDegraded,
            "storage was briefly unavailable; the call was not charged",
        )
        .retry_after(1),
        LedgerError::DuplicateReference => JecpError::new(
            ErrorCode::Conflict,
            "this credit reference was already used",
        ),
        LedgerError::UnknownAccount(_)
        | LedgerError::AccountExists(_)
        | LedgerError::NotAWallet(_)
        | LedgerError::ZeroAmount
        | LedgerError::Overflow => JecpError::new(
            ErrorCode::InternalError,
            format!("ledger rejected the operation: {error}"),
        ),
    }
}

/// Builds the idempotency record of a charge from the posted result, on the
/// writer thread, so the stored response can name the transaction id and the
/// balance after it and still be written in the charge's own commit.
///
/// The key `(agent_id, request_key)` is known up front: the writer refuses to
/// charge twice under one key (see [`Reply::Replayed`]), which makes
/// idempotency a property of the store, not only of the Hub's memory.
pub struct IdempotencyRecorder {
    agent_id: String,
    request_key: String,
    build: Box<BuildRecord>,
}

/// Builds the record from the posted charge; it gets the key's two strings
/// (`agent_id`, `request_key`) back, so the record need not copy them.
type BuildRecord = dyn FnOnce(&Posted, String, String) -> IdempotencyRecord + Send;

impl IdempotencyRecorder {
    pub fn new(
        agent_id: String,
        request_key: String,
        build: impl FnOnce(&Posted, String, String) -> IdempotencyRecord + Send + 'static,
    ) -> IdempotencyRecorder {
        IdempotencyRecorder {
            agent_id,
            request_key,
            build: Box::new(build),
        }
    }

    /// A record known before the charge (tests, non-billing writes).
    pub fn fixed(record: IdempotencyRecord) -> IdempotencyRecorder {
        IdempotencyRecorder::new(
            record.agent_id.clone(),
            record.request_key.clone(),
            move |_, _, _| record,
        )
    }

    pub fn key(&self) -> (&str, &str) {
        (&self.agent_id, &self.request_key)
    }

    pub fn build(self, posted: &Posted) -> IdempotencyRecord {
        (self.build)(posted, self.agent_id, self.request_key)
    }
}

impl std::fmt::Debug for IdempotencyRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdempotencyRecorder")
            .field("agent_id", &self.agent_id)
            .field("request_key", &self.request_key)
            .finish_non_exhaustive()
    }
}

/// One write for the writer thread. See each variant for its reply.
#[derive(Debug)]
pub enum Command {
    /// Register: agent row + wallet account in one commit → `Reply::Done`.
    OpenWallet {
        account: AccountId,
        agent: AgentRecord,
    },
    /// Opens a provider payable account (catalog registration) → `Reply::Done` (durable).
    OpenProvider { account: AccountId },
    /// Rotate / freeze / floor → `Reply::Done` (durable).
    PutAgent(AgentRecord),
    /// → `Reply::Credited(Transfer)`, or `Reply::AlreadyCredited` for a used reference.
    Credit {
        wallet: AccountId,
        amount: Micros,
        reference: String,
    },
    /// → `Reply::Held(HoldId)`; memory only.
    Hold { wallet: AccountId, amount: Micros },
    /// → `Reply::Done`; memory only.
    Void { hold: HoldId },
    /// Durable → `Reply::Posted`; `idempotency` is written in the same transaction.
    Post {
        hold: HoldId,
        provider: AccountId,
        memo: ChargeMemo,
        idempotency: Option<IdempotencyRecorder>,
    },
    /// Durable → `Reply::Posted`; promotions pays.
    ChargeFree {
        wallet: AccountId,
        cost: Micros,
        provider: AccountId,
        free_allowance: u64,
        memo: ChargeMemo,
        idempotency: Option<IdempotencyRecorder>,
    },
    /// Durable → `Reply::Done`; normally via [`Store::enqueue`].
    PutNonce(NonceRecord),
    /// Durable → `Reply::Done`.
    PutIdempotency(IdempotencyRecord),
    /// Deletes idempotency and nonce rows expired at `now_s` → `Reply::Done`.
    Sweep { now_s: i64 },
    /// Reads committed transfers touching `wallet`, newest first, ids below
    /// `before` → `Reply::History`. A read, served by the writer because it
    /// owns the database; it sees every commit acknowledged before it.
    History {
        wallet: AccountId,
        before: Option<u128>,
        limit: usize,
    },
    /// Reads the live stored answer under `(agent_id, request_key)` →
    /// `Reply::Stored`. A read, served by the writer like `History`.
    ReadIdempotency {
        agent_id: String,
        request_key: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Done,
    Held(HoldId),
    Credited(Transfer),
    AlreadyCredited,
    Posted(Posted),
    History(Vec<Transfer>),
    /// A charge under this idempotency key is already stored (its commit may
    /// have reached the file although its caller was told it failed); nothing
    /// was charged now, the hold was released, and this is the stored answer.
    Replayed(IdempotencyRecord),
    /// The answer of `ReadIdempotency`: `None` when no live record exists.
    Stored(Option<IdempotencyRecord>),
}

/// Store state for `/health`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreHealth {
    /// False after a failed commit until the next successful one.
    pub ok: bool,
    pub last_error: Option<String>,
    pub queue_depth: usize,
    pub queue_capacity: usize,
    pub commits: u64,
    pub failed_commits: u64,
    pub last_commit_ms_ago: Option<u64>,
    pub durability: &'static str,
    /// Acknowledged writes a crash may lose (0 in `immediate` mode).
    pub loss_window_ms: u64,
}

/// Counters the writer publishes and handles read.
#[derive(Debug)]
struct Shared {
    queue_depth: AtomicUsize,
    commits: AtomicU64,
    failed_commits: AtomicU64,
    healthy: AtomicBool,
    last_error: Mutex<Option<String>>,
    last_commit: Mutex<Option<Instant>>,
}

type Waiter = tokio::sync::oneshot::Sender<Result<Reply, StoreError>>;

// `Run` is the hot path and `Shutdown` happens once: boxing the command to
// even the sizes out would cost an allocation per queued command.
#[allow(clippy::large_enum_variant)]
enum Job {
    Run {
        command: Command,
        waiter: Option<Waiter>,
    },
    /// Drain what is queued before it, make a durable commit, stop.
    Shutdown,
}

struct Inner {
    inbox: Arc<Inbox<Job>>,
    ledger: Arc<RwLock<Ledger>>,
    shared: Arc<Shared>,
    durability: Durability,
    queue_capacity: usize,
    idempotency_index: Arc<IdempotencyIndex>,
    closed: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    /// The last handle is gone without a [`Store::shutdown`]: the writer
    /// drains what is queued, makes its final commit and stops.
    fn drop(&mut self) {
        self.inbox.close();
    }
}

/// The handle to the writer thread. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("durability", &self.inner.durability)
            .finish_non_exhaustive()
    }
}

/// redb's page cache. The ledger, agents and idempotency index live in memory
/// and redb is read only for wallet history and rare replays, so its default
/// (1 GiB, filled by checkpoint writes) would only be resident memory.
const REDB_CACHE_BYTES: usize = 64 << 20;

/// Opens a store file for reading and writing, creating it empty if absent
/// (never truncating): the database file and the journal files.
fn open_or_create(path: &Path) -> std::io::Result<std::fs::File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

/// Opens (or creates) the database file with the fault seam in place.
fn open_database(path: &Path, fault: Option<FaultSwitch>) -> Result<redb::Database, StoreError> {
    let file = open_or_create(path)
        .map_err(|error| StoreError::Io(format!("opening {}: {error}", path.display())))?;
    let backend = database_file::DatabaseFile::new(file, fault)
        .map_err(|e| tables::redb_error(&path.display().to_string(), e))?;
    redb::Database::builder()
        .set_cache_size(REDB_CACHE_BYTES)
        .create_with_backend(backend)
        .map_err(|error| tables::redb_error(&path.display().to_string(), error))
}

/// Creates missing tables and stamps the schema version; upgrades older
/// files and refuses newer ones.
pub(super) fn initialize(db: &redb::Database) -> Result<(), StoreError> {
    let context = "initializing tables";
    let txn = db
        .begin_write()
        .map_err(|e| tables::redb_error(context, e))?;
    {
        let mut meta = txn
            .open_table(tables::META)
            .map_err(|e| tables::redb_error(context, e))?;
        let version = meta
            .get(tables::META_SCHEMA_VERSION)
            .map_err(|e| tables::redb_error(context, e))?
            .map(|v| v.value());
        match version {
            Some(found) if found > tables::SCHEMA_VERSION => {
                return Err(StoreError::NewerFormat {
                    found: u8::try_from(found).unwrap_or(u8::MAX),
                    supported: tables::SCHEMA_VERSION as u8,
                });
            }
            Some(found) if found == tables::SCHEMA_VERSION => {}
            found => {
                // `None` is a new file; anything older is upgraded in this transaction.
                if let Some(found) = found {
                    tables::upgrade_schema(&txn, found)?;
                }
                meta.insert(tables::META_SCHEMA_VERSION, tables::SCHEMA_VERSION)
                    .map_err(|e| tables::redb_error(context, e))?;
            }
        }
        txn.open_table(tables::AGENTS)
            .map_err(|e| tables::redb_error(context, e))?;
        txn.open_table(tables::ACCOUNTS)
            .map_err(|e| tables::redb_error(context, e))?;
        txn.open_table(tables::BOOKINGS)
            .map_err(|e| tables::redb_error(context, e))?;
        txn.open_table(tables::IDEMPOTENCY)
            .map_err(|e| tables::redb_error(context, e))?;
        txn.open_table(tables::NONCES)
            .map_err(|e| tables::redb_error(context, e))?;
        txn.open_table(wallet_runs::WALLET_RUNS)
            .map_err(|e| tables::redb_error(context, e))?;
    }
    txn.commit().map_err(|e| tables::redb_error(context, e))
}

/// Loads the file and refuses to start on any broken invariant; fills
/// `index` with every live stored answer and returns the newest of them
/// within `idempotency_bodies_bytes_max`.
fn load(
    db: &redb::Database,
    index: &IdempotencyIndex,
    idempotency_bodies_bytes_max: usize,
) -> Result<(tables::State, Vec<IdempotencyRecord>), StoreError> {
    let txn = db
        .begin_read()
        .map_err(|e| tables::redb_error("loading the store", e))?;
    let state = tables::read_state(&txn, true)?;
    if !state.violations.is_empty() {
        let listed: Vec<String> = state
            .violations
            .iter()
            .take(20)
            .map(ToString::to_string)
            .collect();
        return Err(StoreError::Corrupt(format!(
            "{} invariant violation(s) in the store (run `jecp-hub ledger verify`): {}",
            state.violations.len(),
            listed.join("; ")
        )));
    }
    let idempotency = tables::read_idempotency_log(&txn, index, idempotency_bodies_bytes_max)?;
    Ok((state, idempotency))
}

impl Store {
    /// Opens the store in `data_dir`, loads and verifies it, and spawns the writer thread.
    pub fn open(data_dir: &Path, options: StoreOptions) -> Result<(Store, Loaded), StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|error| {
            StoreError::Io(format!(
                "creating data directory {}: {error}",
                data_dir.display()
            ))
        })?;
        let path: PathBuf = data_dir.join(DATABASE_FILE);
        let db = open_database(&path, options.fault.clone())?;
        initialize(&db)?;
        // Batches acknowledged before a crash may be only in the journal.
        let (journals, _) =
            journal::Journal::open_and_replay(data_dir, &db, options.fault.clone())?;
        let idempotency_index = Arc::new(IdempotencyIndex::new());
        let (state, idempotency) = load(
            &db,
            &idempotency_index,
            options.idempotency_bodies_bytes_max,
        )?;
        let next_wallet_account = state
            .ledger
            .accounts()
            .map(|account| account.id.0 + 1)
            .chain(
                state
                    .agents
                    .iter()
                    .map(|agent| agent.wallet_account.saturating_add(1)),
            )
            .fold(AccountId::FIRST_WALLET, u64::max);
        tracing::info!(
            path = %path.display(),
            accounts = state.account_count,
            transfers = state.transfer_count,
            agents = state.agents.len(),
            durability = options.durability.as_str(),
            "store loaded"
        );
        let loaded = Loaded {
            agents: state.agents,
            idempotency,
            nonces: state.nonces,
            next_wallet_account,
        };

        let queue_capacity = options.queue_capacity.max(1);
        let inbox = Arc::new(Inbox::new(queue_capacity));
        let ledger = Arc::new(RwLock::new(state.ledger));
        let shared = Arc::new(Shared {
            queue_depth: AtomicUsize::new(0),
            commits: AtomicU64::new(0),
            failed_commits: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
            last_error: Mutex::new(None),
            last_commit: Mutex::new(None),
        });
        let writer = writer::Writer::new(
            db,
            journals,
            Arc::clone(&idempotency_index),
            path,
            options.fault,
            Arc::clone(&ledger),
            Arc::clone(&shared),
            options.durability,
            options.batch_max.max(1),
            options.checkpoint_bytes.max(1),
            state.commit_seq,
        )?;
        let thread = scheduling::spawn_store_thread("jecp-store-writer", {
            let inbox = Arc::clone(&inbox);
            move || writer.run(&inbox)
        })
        .map_err(|error| StoreError::Io(format!("spawning the writer thread: {error}")))?;
        let store = Store {
            inner: Arc::new(Inner {
                inbox,
                ledger,
                shared,
                durability: options.durability,
                queue_capacity,
                idempotency_index,
                closed: AtomicBool::new(false),
                thread: Mutex::new(Some(thread)),
            }),
        };
        Ok((store, loaded))
    }

    fn submit(&self, command: Command, waiter: Option<Waiter>) -> Result<(), StoreError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        // Count before sending so the writer's decrement can never underflow.
        self.inner.shared.queue_depth.fetch_add(1, Ordering::AcqRel);
        match self.inner.inbox.push(Job::Run { command, waiter }) {
            Ok(()) => Ok(()),
            Err(error) => {
                self.inner.shared.queue_depth.fetch_sub(1, Ordering::AcqRel);
                match error {
                    PushError::Full(_) => Err(StoreError::Busy { retry_after_s: 1 }),
                    PushError::Closed(_) => Err(StoreError::Closed),
                }
            }
        }
    }

    /// Where every live stored answer is, by the keyed name of its
    /// `(agent, request key)`: filled by the writer as charges commit, read
    /// by the Hub's single-flight table for keys whose bodies left memory.
    pub fn idempotency_index(&self) -> &Arc<IdempotencyIndex> {
        &self.inner.idempotency_index
    }

    /// Queues a command and waits for its reply (after the fsync in `immediate` mode).
    pub async fn execute(&self, command: Command) -> Result<Reply, StoreError> {
        let (waiter, reply) = tokio::sync::oneshot::channel();
        self.submit(command, Some(waiter))?;
        reply.await.unwrap_or(Err(StoreError::Closed))
    }

    /// Queues a durable write without waiting (nonces, sweeps). Failures are logged by the writer.
    pub fn enqueue(&self, command: Command) -> Result<(), StoreError> {
        self.submit(command, None)
    }

    /// Reserves `amount` on `wallet` directly in memory, without a trip
    /// through the writer queue. Holds are memory-only (a crash voids them),
    /// so they need no commit; taking them here means a call never waits
    /// behind another batch's fsync for its reservation. The writer takes the
    /// ledger lock one command at a time and releases it while it commits, so
    /// this never waits on disk, nor on a whole batch being applied.
    /// If the batch being committed fails, the ledger's journal drops holds
    /// created meanwhile (their posts then fail with `UnknownHold`), so a hold
    /// can never outlive a credit it relied on.
    pub fn hold(&self, wallet: AccountId, amount: Micros) -> Result<HoldId, StoreError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        let mut ledger = self
            .inner
            .ledger
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        ledger.hold(wallet, amount).map_err(StoreError::Ledger)
    }

    /// Releases a hold directly in memory (see [`Store::hold`]).
    pub fn void(&self, hold: HoldId) -> Result<(), StoreError> {
        let mut ledger = self
            .inner
            .ledger
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        ledger.void(hold).map_err(StoreError::Ledger)
    }

    /// Runs `f` under a short read lock of the in-memory ledger.
    pub fn read_ledger<R>(&self, f: impl FnOnce(&Ledger) -> R) -> R {
        let ledger = self
            .inner
            .ledger
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        f(&ledger)
    }

    pub fn durability(&self) -> Durability {
        self.inner.durability
    }

    pub fn health(&self) -> StoreHealth {
        let shared = &self.inner.shared;
        StoreHealth {
            ok: shared.healthy.load(Ordering::Acquire),
            last_error: shared
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            queue_depth: shared.queue_depth.load(Ordering::Acquire),
            queue_capacity: self.inner.queue_capacity,
            commits: shared.commits.load(Ordering::Acquire),
            failed_commits: shared.failed_commits.load(Ordering::Acquire),
            last_commit_ms_ago: shared
                .last_commit
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .map(|at| u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX)),
            durability: self.inner.durability.as_str(),
            loss_window_ms: self.inner.durability.loss_window_ms(),
        }
    }

    /// Refuses new commands, lets the writer drain the queue, make a final
    /// durable commit and close the file, and joins it.
    pub async fn shutdown(&self) {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            // Someone else is shutting down; still wait for the thread below.
        } else {
            // Past the capacity: the queue may be full, and the shutdown
            // marker must land behind everything already accepted.
            let _ = self.inner.inbox.push_past_capacity(Job::Shutdown);
        }
        let thread = self
            .inner
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}
