//! Single-flight idempotency per `(agent_id, request key)` (DESIGN §3.6,
//! spec 01 §5–§6, ADR-0001/0004).
//!
//! The table lives in memory; durability comes from the store, which writes
//! each successful response in the same commit as its charge and hands the
//! records back at start-up ([`IdempotencyTable::load`]).
//!
//! A key is in one of two states:
//! - **in flight**: a leader is executing it. Later arrivals with the same
//!   fingerprint wait (bounded) for the leader and then see its outcome;
//!   arrivals with another fingerprint get 409 at once.
//! - **done**: the stored response, replayed byte for byte while it lives.
//!
//! A leader that ends without a storable response (an error, a 402) simply
//! leaves: the key becomes free and the next waiter takes over as leader, so
//! a retry after a failure runs again — failed calls are free and retry-safe.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

use crate::protocol::{ErrorCode, JecpError};
use crate::records::IdempotencyRecord;

const SHARD_COUNT: usize = 64;

/// A response kept for replay.
#[derive(Debug)]
pub struct StoredResponse {
    pub fingerprint: [u8; 32],
    pub http_status: u16,
    pub body: Bytes,
    pub headers: Vec<(String, String)>,
    pub expires_at_s: i64,
}

impl StoredResponse {
    pub fn from_record(record: IdempotencyRecord) -> StoredResponse {
        StoredResponse {
            fingerprint: record.fingerprint,
            http_status: record.http_status,
            body: Bytes::from(record.body),
            headers: record.headers,
            expires_at_s: record.expires_at_s,
        }
    }
}

enum Slot {
    InFlight {
        fingerprint: [u8; 32],
        finished: watch::Receiver<()>,
    },
    Done(Arc<StoredResponse>),
}

type Key = (String, String);

/// The outcome of [`IdempotencyTable::claim`].
#[derive(Debug)]
pub enum Claim {
    /// Same key, same fingerprint, already answered: replay this.
    Replay(Arc<StoredResponse>),
    /// The caller now owns the key and must execute the request.
    Leader(LeaderGuard),
}

pub struct IdempotencyTable {
    shards: Vec<Mutex<HashMap<Key, Slot>>>,
    hasher: RandomState,
}

impl std::fmt::Debug for IdempotencyTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdempotencyTable")
            .field("len", &self.len())
            .finish()
    }
}

impl Default for IdempotencyTable {
    fn default() -> Self {
        IdempotencyTable {
            shards: (0..SHARD_COUNT)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
            hasher: RandomState::new(),
        }
    }
}

impl IdempotencyTable {
    pub fn new() -> Arc<IdempotencyTable> {
        Arc::new(IdempotencyTable::default())
    }

    /// Rebuilds the done set from persisted records, skipping expired ones.
    pub fn load(&self, records: Vec<IdempotencyRecord>, now_s: i64) {
        for record in records {
            if record.expires_at_s <= now_s {
                continue;
            }
            let key = (record.agent_id.clone(), record.request_key.clone());
            let stored = Arc::new(StoredResponse::from_record(record));
            self.shard(&key)
                .lock()
                .unwrap()
                .insert(key, Slot::Done(stored));
        }
    }

    fn shard(&self, key: &Key) -> &Mutex<HashMap<Key, Slot>> {
        let index = (self.hasher.hash_one(key) as usize) % SHARD_COUNT;
        &self.shards[index]
    }

    /// Claims `(agent_id, request_key)` for a request with `fingerprint`.
    /// Waits at most `wait_max` for an in-flight twin before answering 503.
    pub async fn claim(
        self: &Arc<Self>,
        agent_id: &str,
        request_key: &str,
        fingerprint: [u8; 32],
        now_s: i64,
        wait_max: Duration,
    ) -> Result<Claim, JecpError> {
        let key: Key = (agent_id.to_owned(), request_key.to_owned());
        let deadline = tokio::time::Instant::now() + wait_max;
        loop {
            let mut finished = {
                let mut shard = self.shard(&key).lock().unwrap();
                match shard.get(&key) {
                    Some(Slot::Done(stored)) if stored.expires_at_s > now_s => {
                        if stored.fingerprint != fingerprint {
                            return Err(duplicate_error(request_key));
                        }
                        return Ok(Claim::Replay(stored.clone()));
                    }
                    Some(Slot::InFlight {
                        fingerprint: leader,
                        finished,
                    }) => {
                        if *leader != fingerprint {
                            return Err(duplicate_error(request_key));
                        }
                        finished.clone()
                    }
                    // Absent or expired: this caller leads.
                    _ => {
                        let (sender, receiver) = watch::channel(());
                        shard.insert(
                            key.clone(),
                            Slot::InFlight {
                                fingerprint,
                                finished: receiver,
                            },
                        );
                        return Ok(Claim::Leader(LeaderGuard {
                            table: self.clone(),
                            key: Some(key),
                            _finished: sender,
                        }));
                    }
                }
            };
            // The leader drops its sender when it ends, which wakes us.
            match tokio::time::timeout_at(deadline, finished.changed()).await {
                Ok(_) => continue,
                Err(_) => {
                    return Err(JecpError::new(
                        ErrorCode::ServiceDegraded,
                        "an earlier request with the same id is still running; retry shortly with the same id",
                    )
                    .retry_after(1));
                }
            }
        }
    }

    /// Drops expired stored responses; returns how many.
    pub fn sweep(&self, now_s: i64) -> usize {
        let mut removed = 0;
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap();
            let before = shard.len();
            shard.retain(|_, slot| match slot {
                Slot::Done(stored) => stored.expires_at_s > now_s,
                Slot::InFlight { .. } => true,
            });
            removed += before - shard.len();
        }
        removed
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().unwrap().len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn duplicate_error(request_key: &str) -> JecpError {
    JecpError::new(
        ErrorCode::DuplicateRequest,
        "this id was already used for a different request (capability, action, input or provenance differ); use a new id",
    )
    .detail("id", request_key)
}

/// Ownership of an in-flight key. [`LeaderGuard::finish`] publishes the
/// stored response; dropping the guard without it frees the key.
pub struct LeaderGuard {
    table: Arc<IdempotencyTable>,
    key: Option<Key>,
    _finished: watch::Sender<()>,
}

impl std::fmt::Debug for LeaderGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderGuard")
            .field("key", &self.key)
            .finish()
    }
}

impl LeaderGuard {
    /// Publishes the response that is now durably stored.
    pub fn finish(mut self, stored: Arc<StoredResponse>) {
        if let Some(key) = self.key.take() {
            self.table
                .shard(&key)
                .lock()
                .unwrap()
                .insert(key, Slot::Done(stored));
        }
    }
}

impl Drop for LeaderGuard {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let mut shard = self.table.shard(&key).lock().unwrap();
            if matches!(shard.get(&key), Some(Slot::InFlight { .. })) {
                shard.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(fingerprint: [u8; 32]) -> Arc<StoredResponse> {
        Arc::new(StoredResponse {
            fingerprint,
            http_status: 200,
            body: Bytes::from_static(b"{\"ok\":true}"),
            headers: Vec::new(),
            expires_at_s: 1_000,
        })
    }

    #[tokio::test]
    async fn leader_then_replay_then_conflict() {
        let table = IdempotencyTable::new();
        let wait = Duration::from_secs(1);
        let Claim::Leader(guard) = table.claim("a", "k1", [1; 32], 0, wait).await.unwrap() else {
            panic!()
        };
        guard.finish(stored([1; 32]));
        assert!(matches!(
            table.claim("a", "k1", [1; 32], 0, wait).await.unwrap(),
            Claim::Replay(_)
        ));
        let error = table.claim("a", "k1", [2; 32], 0, wait).await.unwrap_err();
        assert_eq!(error.code, ErrorCode::DuplicateRequest);
        // Keys are per agent.
        assert!(matches!(
            table.claim("b", "k1", [2; 32], 0, wait).await.unwrap(),
            Claim::Leader(_)
        ));
        // Expired records free the key.
        assert!(matches!(
            table.claim("a", "k1", [2; 32], 5_000, wait).await.unwrap(),
            Claim::Leader(_)
        ));
    }

    #[tokio::test]
    async fn failed_leader_frees_the_key_for_a_waiter() {
        let table = IdempotencyTable::new();
        let wait = Duration::from_secs(5);
        let Claim::Leader(guard) = table.claim("a", "k", [1; 32], 0, wait).await.unwrap() else {
            panic!()
        };
        let waiter = {
            let table = table.clone();
            tokio::spawn(async move { table.claim("a", "k", [1; 32], 0, wait).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(guard);
        assert!(matches!(waiter.await.unwrap().unwrap(), Claim::Leader(_)));
    }

    #[tokio::test]
    async fn concurrent_twins_all_see_the_leaders_response() {
        let table = IdempotencyTable::new();
        let wait = Duration::from_secs(5);
        let Claim::Leader(guard) = table.claim("a", "k", [7; 32], 0, wait).await.unwrap() else {
            panic!()
        };
        let waiters: Vec<_> = (0..50)
            .map(|_| {
                let table = table.clone();
                tokio::spawn(async move { table.claim("a", "k", [7; 32], 0, wait).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        // A different fingerprint conflicts even while in flight.
        assert!(table.claim("a", "k", [8; 32], 0, wait).await.is_err());
        guard.finish(stored([7; 32]));
        for waiter in waiters {
            assert!(matches!(waiter.await.unwrap().unwrap(), Claim::Replay(_)));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_is_bounded() {
        let table = IdempotencyTable::new();
        let Claim::Leader(_guard) = table
            .claim("a", "k", [1; 32], 0, Duration::from_secs(1))
            .await
            .unwrap()
        else {
            panic!()
        };
        let error = table
            .claim("a", "k", [1; 32], 0, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert_eq!(error.code, ErrorCode::ServiceDegraded);
        assert_eq!(error.retry_after_seconds, Some(1));
    }

    #[test]
    fn load_and_sweep() {
        let table = IdempotencyTable::default();
        let record = |key: &str, expires_at_s| IdempotencyRecord {
            agent_id: "a".into(),
            request_key: key.into(),
            fingerprint: [0; 32],
            http_status: 200,
            body: b"{}".to_vec(),
            headers: vec![],
            created_at_s: 0,
            expires_at_s,
        };
        table.load(
            vec![record("old", 10), record("new", 100), record("gone", 1)],
            5,
        );
        assert_eq!(table.len(), 2);
        assert_eq!(table.sweep(50), 1);
        assert_eq!(table.len(), 1);
    }
}
