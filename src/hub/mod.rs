//! The hub core: the transport-agnostic composition of auth, gate, catalog,
//! idempotency, ledger and store. [`Hub::invoke`] is the pipeline
//! ([`invoke`] documents its order of checks); [`agents`] holds the agent
//! self-service operations. The `http` layer only translates to and from
//! these calls.

pub mod agents;
pub mod envelope;
pub mod funding;
pub mod idempotency;
pub mod invoke;
pub mod operator;
mod reply;

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::auth::{Directory, ReplayStore, ServerSecret};
use crate::catalog::{Catalog, CatalogOverrides};
use crate::config::{Config, DurabilityMode};
use crate::gate::{RateLimiter, Tier};
use crate::protocol::HubLinks;
use crate::store::{Command, Durability, Store, StoreOptions};

pub use idempotency::IdempotencyTable;
pub use invoke::{Endpoint, InvokeCall};
pub use reply::Reply;

/// Rate-limit window: one minute (spec 03 §3.5).
const RATE_WINDOW_MS: u64 = 60_000;
/// How often expired nonces, idempotency records and idle limiter keys go.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// Upper bound on remembered provenance nonces (10 minutes of traffic).
const REPLAY_ENTRIES_MAX: usize = 2_000_000;

/// Everything a running Hub needs, shared behind an `Arc`.
pub struct Hub {
    pub config: Arc<Config>,
    pub links: HubLinks,
    pub catalog: Arc<Catalog>,
    pub directory: Directory,
    pub replay: ReplayStore,
    pub limiter: RateLimiter,
    pub store: Store,
    pub idempotency: Arc<IdempotencyTable>,
    /// Present when Stripe top-up is configured.
    pub stripe: Option<crate::funding::StripeClient>,
    free_calls: FreeCallReservations,
    next_wallet_account: AtomicU64,
    started: Instant,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("listen", &self.config.listen)
            .finish_non_exhaustive()
    }
}

/// Substitutes tests can give [`Hub::open_with`]; both `None` in production.
#[derive(Debug, Default)]
pub struct HubSeams {
    /// Makes the store's writes or syncs fail on demand.
    pub fault: Option<crate::store::FaultSwitch>,
    /// A catalog to serve instead of the built-ins from configuration.
    pub catalog: Option<Catalog>,
    /// Bound on idempotent response bodies kept in memory, instead of
    /// [`idempotency::RESPONSE_BYTES_MAX`] (tests reach the store read path).
    pub idempotency_response_bytes_max: Option<usize>,
}

/// Why the Hub could not start.
#[derive(Debug)]
pub struct StartError {
    pub message: String,
    /// Another process holds the data directory (a Hub is running on it).
    pub locked: bool,
}

impl StartError {
    pub fn new(message: String) -> StartError {
        StartError {
            message,
            locked: false,
        }
    }
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StartError {}

impl Hub {
    /// Opens the data directory, loads every record into memory and checks
    /// the ledger's invariants. Must run inside a tokio runtime.
    pub fn open(config: Config) -> Result<Arc<Hub>, StartError> {
        Hub::open_with_fault(config, None)
    }

    /// [`Hub::open`] with the store's I/O behind an injectable fault switch
    /// (tests arm it to fail writes/syncs of a running Hub); `None` in production.
    pub fn open_with_fault(
        config: Config,
        fault: Option<crate::store::FaultSwitch>,
    ) -> Result<Arc<Hub>, StartError> {
        Hub::open_with(
            config,
            HubSeams {
                fault,
                ..HubSeams::default()
            },
        )
    }

    /// [`Hub::open`] with test seams: a fault switch under the store, and/or a
    /// catalog built by the caller instead of from `config.catalog`.
    pub fn open_with(config: Config, seams: HubSeams) -> Result<Arc<Hub>, StartError> {
        let HubSeams {
            fault,
            catalog: given_catalog,
            idempotency_response_bytes_max,
        } = seams;
        std::fs::create_dir_all(&config.data_dir).map_err(|error| {
            StartError::new(format!(
                "cannot create data directory {}: {error}",
                config.data_dir.display()
            ))
        })?;
        let secret = ServerSecret::load_or_create(&config.data_dir).map_err(|error| {
            StartError::new(format!(
                "cannot read or create the server secret in {}: {error}",
                config.data_dir.display()
            ))
        })?;
        let overrides: CatalogOverrides = config
            .catalog
            .clone()
            .try_into()
            .map_err(|error| StartError::new(format!("invalid config: catalog: {error}")))?;
        let catalog = match given_catalog {
            Some(catalog) => catalog,
            None => Catalog::builtin(&config.hub_namespace, &config.public_url, &overrides)
                .map_err(|error| StartError::new(format!("invalid config: catalog: {error}")))?,
        };
        let stripe = funding::stripe_client(&config)
            .map_err(|error| StartError::new(format!("invalid config: stripe: {error}")))?;
        let durability = match config.durability {
            DurabilityMode::Immediate => Durability::Immediate,
            DurabilityMode::Batched => Durability::Batched {
                fsync_interval_ms: config.fsync_interval_ms,
            },
        };
        let response_bytes_max =
            idempotency_response_bytes_max.unwrap_or(idempotency::RESPONSE_BYTES_MAX);
        let options = StoreOptions {
            durability,
            queue_capacity: config.writer_queue_capacity,
            fault,
            // Bodies the table would not keep are not read into memory at all.
            idempotency_bodies_bytes_max: response_bytes_max,
            ..StoreOptions::default()
        };
        let (store, loaded) =
            Store::open(&config.data_dir, options).map_err(|error| StartError {
                message: format!(
                    "cannot open the store in {}: {error}",
                    config.data_dir.display()
                ),
                locked: matches!(error, crate::store::StoreError::Locked(_)),
            })?;
        let now = now_s();
        let replay = ReplayStore::new(REPLAY_ENTRIES_MAX);
        replay.load(loaded.nonces, now);
        let idempotency = Arc::new(IdempotencyTable::with_store_index(
            Arc::clone(store.idempotency_index()),
            response_bytes_max,
        ));
        idempotency.load(loaded.idempotency, now);
        let directory = Directory::new(secret, loaded.agents);
        tracing::info!(
            agents = directory.len(),
            stored_answers = store.idempotency_index().len(),
            answers_in_memory = idempotency.len(),
            "store loaded"
        );
        let hub = Arc::new(Hub {
            links: config.hub_links(),
            config: Arc::new(config),
            catalog: Arc::new(catalog),
            directory,
            replay,
            limiter: RateLimiter::new(RATE_WINDOW_MS),
            store,
            idempotency,
            stripe,
            free_calls: FreeCallReservations::default(),
            next_wallet_account: AtomicU64::new(loaded.next_wallet_account),
            started: Instant::now(),
        });
        spawn_sweeper(Arc::downgrade(&hub));
        Ok(hub)
    }

    /// Seconds since start, for `/health`.
    pub fn uptime_s(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    fn allocate_wallet_account(&self) -> u64 {
        self.next_wallet_account.fetch_add(1, Ordering::Relaxed)
    }

    /// Requests per minute for a tier, from configuration.
    pub fn tier_rpm(&self, tier: Tier) -> u32 {
        let rpm = &self.config.tier_rpm;
        match tier {
            Tier::Bronze => rpm.bronze,
            Tier::Silver => rpm.silver,
            Tier::Gold => rpm.gold,
            Tier::Platinum => rpm.platinum,
        }
    }

    /// Drains the writer and makes the final durable commit.
    pub async fn shutdown(&self) {
        self.store.shutdown().await;
    }

    fn sweep(&self) {
        let now = now_s();
        let nonces = self.replay.sweep(now);
        let records = self.idempotency.sweep(now);
        let keys = self.limiter.sweep(now_ms());
        if let Err(error) = self.store.enqueue(Command::Sweep { now_s: now }) {
            tracing::warn!(%error, "could not queue the store sweep; will retry next interval");
        }
        tracing::debug!(nonces, records, keys, "swept expired state");
    }
}

fn spawn_sweeper(hub: std::sync::Weak<Hub>) {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(SWEEP_INTERVAL);
        interval.tick().await;
        loop {
            interval.tick().await;
            let Some(hub) = hub.upgrade() else { return };
            hub.sweep();
        }
    });
}

/// The wire form of a charge's `transaction_id`: a UUIDv7 whose timestamp is
/// the charge's millisecond and whose random bits carry its sequence number,
/// so the mapping is deterministic and ids sort by time like the ledger's.
pub fn transaction_uuid(charge: crate::ledger::ChargeId) -> uuid::Uuid {
    let millis = (charge.0 >> 64) as u64 & ((1 << 48) - 1);
    let sequence = charge.0 as u64;
    let rand_a = u128::from((sequence >> 62) & 0xFFF);
    let rand_b = u128::from(sequence & ((1 << 62) - 1));
    let bits = (u128::from(millis) << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b;
    uuid::Uuid::from_u128(bits)
}

/// Unix seconds now.
pub fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or(0)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

const FREE_SHARDS: usize = 16;

/// Free calls in flight per agent, so that concurrent calls cannot take more
/// free calls than the allowance: a call may use the free tier only while
/// `used + in_flight < allowance`.
struct FreeCallReservations {
    shards: Vec<Mutex<HashMap<String, u64>>>,
    hasher: RandomState,
}

impl Default for FreeCallReservations {
    fn default() -> Self {
        FreeCallReservations {
            shards: (0..FREE_SHARDS)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
            hasher: RandomState::new(),
        }
    }
}

impl FreeCallReservations {
    fn shard(&self, agent_id: &str) -> &Mutex<HashMap<String, u64>> {
        &self.shards[(self.hasher.hash_one(agent_id) as usize) % FREE_SHARDS]
    }

    fn try_reserve(
        &self,
        agent_id: &str,
        used: u64,
        allowance: u64,
    ) -> Option<FreeCallReservation<'_>> {
        let mut shard = self.shard(agent_id).lock().unwrap();
        let in_flight = shard.get(agent_id).copied().unwrap_or(0);
        if used.saturating_add(in_flight) >= allowance {
            return None;
        }
        *shard.entry(agent_id.to_owned()).or_insert(0) += 1;
        Some(FreeCallReservation {
            owner: self,
            agent_id: agent_id.to_owned(),
        })
    }
}

/// One reserved free call; released on drop (after the commit or failure).
pub struct FreeCallReservation<'a> {
    owner: &'a FreeCallReservations,
    agent_id: String,
}

impl std::fmt::Debug for FreeCallReservation<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FreeCallReservation")
            .field("agent_id", &self.agent_id)
            .finish()
    }
}

impl Drop for FreeCallReservation<'_> {
    fn drop(&mut self) {
        let mut shard = self.owner.shard(&self.agent_id).lock().unwrap();
        if let Some(count) = shard.get_mut(&self.agent_id) {
            *count -= 1;
            if *count == 0 {
                shard.remove(&self.agent_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_ids_are_uuid_v7_and_keep_order() {
        let first = transaction_uuid(crate::ledger::ChargeId((1_764_000_000_000u128 << 64) | 7));
        let second = transaction_uuid(crate::ledger::ChargeId((1_764_000_000_000u128 << 64) | 8));
        let later = transaction_uuid(crate::ledger::ChargeId(1_764_000_000_001u128 << 64));
        assert_eq!(first.get_version_num(), 7);
        assert_eq!(first.get_variant(), uuid::Variant::RFC4122);
        assert!(first < second && second < later);
        let (seconds, nanos) = first.get_timestamp().unwrap().to_unix();
        assert_eq!((seconds, nanos / 1_000_000), (1_764_000_000, 0));
    }

    #[test]
    fn free_call_reservations_respect_the_allowance() {
        let reservations = FreeCallReservations::default();
        let first = reservations
            .try_reserve("a", 98, 100)
            .expect("one left after 98");
        let second = reservations
            .try_reserve("a", 98, 100)
            .expect("two left after 98");
        assert!(reservations.try_reserve("a", 98, 100).is_none());
        assert!(reservations.try_reserve("b", 0, 100).is_some());
        drop(first);
        assert!(reservations.try_reserve("a", 98, 100).is_some());
        drop(second);
        assert!(reservations.try_reserve("a", 100, 100).is_none());
    }
}
