//! Single-flight idempotency per `(agent_id, request key)` (DESIGN §3.6,
//! spec 01 §5–§6, ADR-0001/0004).
//!
//! The table lives in memory; durability comes from the store, which writes
//! each successful response in the same commit as its charge and hands the
//! newest records back at start-up ([`IdempotencyTable::load`]). Keys are
//! held by their 128-bit keyed name ([`crate::key_hash`]), computed once per
//! claim with the store index's hasher, so both maps share one name.
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
//!
//! # Bounded memory
//!
//! Response bodies do not all stay in memory: each shard keeps them for two
//! generations of at most `response_bytes_max / (2 × shards)` bytes each;
//! when the newer generation fills up, the older one is let go and the newer
//! one becomes the older. A key whose body left memory is still known: the
//! store's idempotency index ([`IdempotencyIndex`]), which the writer fills
//! in the commit that stores each answer, holds every live key for its whole
//! TTL, and the table asks it for any key it does not hold itself. Such a
//! replay ([`Claim::Stored`]) reads the answer back from the store and checks
//! its fingerprint there. Retries come soon after the first attempt, so they
//! almost always find their body in memory.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::watch;

use crate::key_hash::{KeyHash, KeyHashMap};
use crate::protocol::{ErrorCode, JecpError};
use crate::records::IdempotencyRecord;
use crate::store::IdempotencyIndex;

const SHARD_COUNT: usize = 64;
/// Default bound on the response bodies kept in memory (all shards).
pub const RESPONSE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// A response kept for replay. Cheap to clone: the body is shared.
#[derive(Clone, Debug)]
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

    fn memory_bytes(&self) -> usize {
        crate::records::response_memory_bytes(self.body.len(), &self.headers)
    }
}

struct InFlight {
    fingerprint: [u8; 32],
    /// Dropped with the entry when the leader ends, which wakes the twins
    /// waiting on it. Made by the first twin: most keys never have one, and
    /// a channel per call cost an allocation and its teardown.
    finished: Option<watch::Sender<()>>,
}

/// One shard: a key is in at most one of the three maps.
#[derive(Default)]
struct Shard {
    in_flight: KeyHashMap<InFlight>,
    /// Done, body kept: the generation being filled.
    newer: KeyHashMap<StoredResponse>,
    newer_bytes: usize,
    /// Done, body kept: the generation before.
    older: KeyHashMap<StoredResponse>,
    /// Where kept bodies are copied, many to a block (see [`Shard::keep_body`]).
    arena: BytesMut,
    /// Whether `arena` is a block yet (the default one has no allocation).
    arena_is_block: bool,
    /// Filled blocks, oldest first, kept to be reused once their bodies are
    /// all gone (see [`Shard::next_block`]).
    filled_blocks: VecDeque<BytesMut>,
}

/// Bodies up to this size are copied into a shard's arena...
const ARENA_BODY_BYTES_MAX: usize = 16 * 1024;
/// ...which takes blocks of this size.
const ARENA_BLOCK_BYTES: usize = 64 * 1024;

/// What a shard knows of a key.
enum Lookup {
    Absent,
    InFlight([u8; 32], watch::Receiver<()>),
    Kept(StoredResponse),
}

impl Shard {
    fn lookup(&mut self, key: KeyHash) -> Lookup {
        if let Some(flight) = self.in_flight.get_mut(&key) {
            let finished = flight
                .finished
                .get_or_insert_with(|| watch::channel(()).0)
                .subscribe();
            return Lookup::InFlight(flight.fingerprint, finished);
        }
        match self.newer.get(&key).or_else(|| self.older.get(&key)) {
            Some(stored) => Lookup::Kept(stored.clone()),
            None => Lookup::Absent,
        }
    }

    /// Removes every done trace of `key` (an expired answer).
    fn forget(&mut self, key: KeyHash) {
        if let Some(stored) = self.newer.remove(&key) {
            self.newer_bytes = self.newer_bytes.saturating_sub(stored.memory_bytes());
        }
        self.older.remove(&key);
    }

    /// Records a done key, replacing any earlier answer under it.
    fn insert_done(&mut self, key: KeyHash, stored: &StoredResponse, generation_bytes_max: usize) {
        self.forget(key);
        self.insert_new_done(key, stored, generation_bytes_max);
    }

    /// Records a done key that has no answer here (it was in flight), keeping
    /// bodies within `generation_bytes_max`. A bound of 0 keeps no body at
    /// all: every replay reads the store.
    fn insert_new_done(
        &mut self,
        key: KeyHash,
        stored: &StoredResponse,
        generation_bytes_max: usize,
    ) {
        debug_assert!(
            !self.newer.contains_key(&key) && !self.older.contains_key(&key),
            "a key lives in one map at a time"
        );
        if generation_bytes_max == 0 {
            return;
        }
        let kept = StoredResponse {
            fingerprint: stored.fingerprint,
            http_status: stored.http_status,
            body: self.keep_body(&stored.body, generation_bytes_max),
            headers: stored.headers.clone(),
            expires_at_s: stored.expires_at_s,
        };
        self.newer_bytes += kept.memory_bytes();
        self.newer.insert(key, kept);
        if self.newer_bytes > generation_bytes_max {
            // The older generation's bodies go (the store's index still knows
            // their keys); its emptied map, capacity kept, becomes the next
            // newer one (no regrowing it each time).
            self.older.clear();
            std::mem::swap(&mut self.newer, &mut self.older);
            self.newer_bytes = 0;
        }
    }

    /// A copy of `body` in this shard's arena. A response's own buffer was
    /// allocated by whichever thread rendered it and would be freed, cold,
    /// when its generation goes: three frees of memory last touched
    /// thousands of calls ago, per call. A block of many bodies is free
    /// again once every body in it is gone (a block straddling two
    /// generations lives until the later one goes: at most one block per
    /// shard beyond the bound), and is then reused. Large bodies keep their
    /// own buffer.
    fn keep_body(&mut self, body: &Bytes, generation_bytes_max: usize) -> Bytes {
        if body.len() > ARENA_BODY_BYTES_MAX {
            return body.clone();
        }
        if self.arena.capacity() - self.arena.len() < body.len() {
            let next = self.next_block();
            let filled = std::mem::replace(&mut self.arena, next);
            if std::mem::replace(&mut self.arena_is_block, true) {
                self.filled_blocks.push_back(filled);
                // Two generations span this many blocks, plus the two they
                // may straddle; an older one is only let go (its memory is
                // freed with its last body).
                let blocks_max = 2 * generation_bytes_max / ARENA_BLOCK_BYTES + 2;
                while self.filled_blocks.len() > blocks_max {
                    self.filled_blocks.pop_front();
                }
            }
        }
        self.arena.extend_from_slice(body);
        self.arena.split().freeze()
    }

    /// The oldest filled block if none of its bodies is held any more (its
    /// generation went, and no response being sent still holds one), else a
    /// new one. Blocks fill and generations go in the same order, so the
    /// oldest is the one to try. Reusing it keeps its pages: a new block is
    /// memory the allocator returned to the OS a second earlier, and faulting
    /// it back in (zeroing a transparent huge page) was the commonest page
    /// fault on the billed path.
    fn next_block(&mut self) -> BytesMut {
        if let Some(oldest) = self.filled_blocks.front_mut()
            && oldest.try_reclaim(ARENA_BLOCK_BYTES)
            && let Some(mut block) = self.filled_blocks.pop_front()
        {
            block.clear();
            return block;
        }
        BytesMut::with_capacity(ARENA_BLOCK_BYTES)
    }

    fn sweep(&mut self, now_s: i64) -> usize {
        let before = self.done_len();
        self.newer.retain(|_, stored| stored.expires_at_s > now_s);
        self.newer_bytes = self
            .newer
            .values()
            .map(|stored| stored.memory_bytes())
            .sum();
        self.older.retain(|_, stored| stored.expires_at_s > now_s);
        before - self.done_len()
    }

    fn done_len(&self) -> usize {
        self.newer.len() + self.older.len()
    }
}

/// The outcome of [`IdempotencyTable::claim`].
#[derive(Debug)]
pub enum Claim {
    /// Same key, same fingerprint, already answered: replay this.
    Replay(StoredResponse),
    /// Already answered, but the body is only in the store: read it
    /// ([`crate::store::Command::ReadIdempotency`]), replay it if its
    /// fingerprint is this request's (else 409); if the store no longer has
    /// it, claim again with `consult_store` false.
    Stored,
    /// The caller now owns the key and must execute the request.
    Leader(LeaderGuard),
}

pub struct IdempotencyTable {
    shards: Vec<Mutex<Shard>>,
    /// The store's index: names keys, and knows those without a body here.
    index: Arc<IdempotencyIndex>,
    generation_bytes_max: usize,
}

impl std::fmt::Debug for IdempotencyTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdempotencyTable")
            .field("len", &self.len())
            .finish()
    }
}

impl IdempotencyTable {
    /// A table with an index of its own (nothing in a store behind it):
    /// for tests and benchmarks of the table alone.
    pub fn new() -> Arc<IdempotencyTable> {
        Arc::new(IdempotencyTable::with_store_index(
            Arc::new(IdempotencyIndex::new()),
            RESPONSE_BYTES_MAX,
        ))
    }

    /// A table over the store's idempotency index keeping at most about
    /// `response_bytes_max` of response bodies in memory (tests use a tiny
    /// bound to reach the store path).
    pub fn with_store_index(
        index: Arc<IdempotencyIndex>,
        response_bytes_max: usize,
    ) -> IdempotencyTable {
        IdempotencyTable {
            shards: (0..SHARD_COUNT).map(|_| Mutex::default()).collect(),
            index,
            generation_bytes_max: response_bytes_max / (2 * SHARD_COUNT),
        }
    }

    /// Rebuilds the done set from persisted records, skipping expired ones.
    pub fn load(&self, records: Vec<IdempotencyRecord>, now_s: i64) {
        for record in records {
            if record.expires_at_s <= now_s {
                continue;
            }
            let key = self.index.key_of(&record.agent_id, &record.request_key);
            let stored = StoredResponse::from_record(record);
            self.shard(key)
                .insert_done(key, &stored, self.generation_bytes_max);
        }
    }

    fn shard(&self, key: KeyHash) -> MutexGuard<'_, Shard> {
        self.shards[key.shard(SHARD_COUNT)]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Claims `(agent_id, request_key)` for a request with `fingerprint`.
    /// Waits at most `wait_max` for an in-flight twin before answering 503.
    /// A key this table does not hold is looked up in the store's index
    /// unless `consult_store` is false (the store was just asked and holds no
    /// answer under it).
    pub async fn claim(
        self: &Arc<Self>,
        agent_id: &str,
        request_key: &str,
        fingerprint: [u8; 32],
        now_s: i64,
        wait_max: Duration,
        consult_store: bool,
    ) -> Result<Claim, JecpError> {
        let key = self.index.key_of(agent_id, request_key);
        let deadline = tokio::time::Instant::now() + wait_max;
        loop {
            let mut finished = {
                let mut shard = self.shard(key);
                match shard.lookup(key) {
                    Lookup::Kept(stored) if stored.expires_at_s > now_s => {
                        if stored.fingerprint != fingerprint {
                            return Err(duplicate_error(request_key));
                        }
                        return Ok(Claim::Replay(stored));
                    }
                    Lookup::InFlight(leader, finished) => {
                        if leader != fingerprint {
                            return Err(duplicate_error(request_key));
                        }
                        finished
                    }
                    lookup @ (Lookup::Absent | Lookup::Kept(_)) => {
                        if !matches!(lookup, Lookup::Absent) {
                            // Expired here.
                            shard.forget(key);
                        } else if consult_store && self.index.is_live(key, now_s) {
                            return Ok(Claim::Stored);
                        }
                        // Absent or expired: this caller leads.
                        shard.in_flight.insert(
                            key,
                            InFlight {
                                fingerprint,
                                finished: None,
                            },
                        );
                        return Ok(Claim::Leader(LeaderGuard {
                            table: self.clone(),
                            key: Some(key),
                        }));
                    }
                }
            };
            // The leader's entry (and its sender) goes when it ends, which wakes us.
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

    /// Puts a response read back from the store ([`Claim::Stored`]) in
    /// memory again, for the retries that may follow it.
    pub fn rewarm(&self, agent_id: &str, request_key: &str, stored: &StoredResponse) {
        let key = self.index.key_of(agent_id, request_key);
        let mut shard = self.shard(key);
        if !shard.in_flight.contains_key(&key) {
            shard.insert_done(key, stored, self.generation_bytes_max);
        }
    }

    /// Drops expired responses kept in memory; returns how many.
    pub fn sweep(&self, now_s: i64) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                shard
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .sweep(now_s)
            })
            .sum()
    }

    /// Keys held here: in flight, or done with their body in memory (the
    /// store's index knows the others).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
                shard.in_flight.len() + shard.done_len()
            })
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of response bodies (and headers) held in memory now.
    pub fn response_bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
                shard
                    .newer
                    .values()
                    .chain(shard.older.values())
                    .map(|stored| stored.memory_bytes())
                    .sum::<usize>()
            })
            .sum()
    }
}

/// 409 `DUPLICATE_REQUEST`: the id's stored answer belongs to another request.
pub fn duplicate_error(request_key: &str) -> JecpError {
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
    key: Option<KeyHash>,
}

impl std::fmt::Debug for LeaderGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderGuard")
            .field("key", &self.key)
            .finish()
    }
}

impl LeaderGuard {
    /// Publishes the response that is now durably stored (the table keeps
    /// its own copy of the body).
    pub fn finish(mut self, stored: &StoredResponse) {
        if let Some(key) = self.key.take() {
            let mut shard = self.table.shard(key);
            shard.in_flight.remove(&key);
            // It was in flight, so it is in no other map.
            shard.insert_new_done(key, stored, self.table.generation_bytes_max);
        }
    }
}

impl Drop for LeaderGuard {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.table.shard(key).in_flight.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Location;

    fn stored(fingerprint: [u8; 32]) -> StoredResponse {
        StoredResponse {
            fingerprint,
            http_status: 200,
            body: Bytes::from_static(b"{\"ok\":true}"),
            headers: Vec::new(),
            expires_at_s: 1_000,
        }
    }

    #[tokio::test]
    async fn leader_then_replay_then_conflict() {
        let table = IdempotencyTable::new();
        let wait = Duration::from_secs(1);
        let Claim::Leader(guard) = table
            .claim("a", "k1", [1; 32], 0, wait, true)
            .await
            .unwrap()
        else {
            panic!()
        };
        guard.finish(&stored([1; 32]));
        assert!(matches!(
            table
                .claim("a", "k1", [1; 32], 0, wait, true)
                .await
                .unwrap(),
            Claim::Replay(_)
        ));
        let error = table
            .claim("a", "k1", [2; 32], 0, wait, true)
            .await
            .unwrap_err();
        assert_eq!(error.code, ErrorCode::DuplicateRequest);
        // Keys are per agent.
        assert!(matches!(
            table
                .claim("b", "k1", [2; 32], 0, wait, true)
                .await
                .unwrap(),
            Claim::Leader(_)
        ));
        // Expired records free the key.
        assert!(matches!(
            table
                .claim("a", "k1", [2; 32], 5_000, wait, true)
                .await
                .unwrap(),
            Claim::Leader(_)
        ));
    }

    #[tokio::test]
    async fn failed_leader_frees_the_key_for_a_waiter() {
        let table = IdempotencyTable::new();
        let wait = Duration::from_secs(5);
        let Claim::Leader(guard) = table.claim("a", "k", [1; 32], 0, wait, true).await.unwrap()
        else {
            panic!()
        };
        let waiter = {
            let table = table.clone();
            tokio::spawn(async move { table.claim("a", "k", [1; 32], 0, wait, true).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(guard);
        assert!(matches!(waiter.await.unwrap().unwrap(), Claim::Leader(_)));
    }

    #[tokio::test]
    async fn concurrent_twins_all_see_the_leaders_response() {
        let table = IdempotencyTable::new();
        let wait = Duration::from_secs(5);
        let Claim::Leader(guard) = table.claim("a", "k", [7; 32], 0, wait, true).await.unwrap()
        else {
            panic!()
        };
        let waiters: Vec<_> = (0..50)
            .map(|_| {
                let table = table.clone();
                tokio::spawn(async move { table.claim("a", "k", [7; 32], 0, wait, true).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        // A different fingerprint conflicts even while in flight.
        assert!(table.claim("a", "k", [8; 32], 0, wait, true).await.is_err());
        guard.finish(&stored([7; 32]));
        for waiter in waiters {
            assert!(matches!(waiter.await.unwrap().unwrap(), Claim::Replay(_)));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_is_bounded() {
        let table = IdempotencyTable::new();
        let Claim::Leader(_guard) = table
            .claim("a", "k", [1; 32], 0, Duration::from_secs(1), true)
            .await
            .unwrap()
        else {
            panic!()
        };
        let error = table
            .claim("a", "k", [1; 32], 0, Duration::from_secs(1), true)
            .await
            .unwrap_err();
        assert_eq!(error.code, ErrorCode::ServiceDegraded);
        assert_eq!(error.retry_after_seconds, Some(1));
    }

    fn sized(fingerprint: [u8; 32], body_bytes: usize, expires_at_s: i64) -> StoredResponse {
        StoredResponse {
            fingerprint,
            http_status: 200,
            body: Bytes::from(vec![b'x'; body_bytes]),
            headers: Vec::new(),
            expires_at_s,
        }
    }

    #[tokio::test]
    async fn bodies_beyond_the_bound_leave_memory_but_every_key_stays_known() {
        let generation_bytes_max = 1_000;
        let index = Arc::new(IdempotencyIndex::new());
        let table = Arc::new(IdempotencyTable::with_store_index(
            Arc::clone(&index),
            2 * SHARD_COUNT * generation_bytes_max,
        ));
        let wait = Duration::from_secs(1);
        let keys: Vec<String> = (0..2_000).map(|i| format!("key-{i:05}")).collect();
        for (log_key, key) in keys.iter().enumerate() {
            let Claim::Leader(guard) = table.claim("a", key, [1; 32], 0, wait, true).await.unwrap()
            else {
                panic!("{key} is new")
            };
            // What the writer does in the commit that stores the answer.
            index.insert(
                index.key_of("a", key),
                Location {
                    log_key: log_key as u128,
                    expires_at_s: 1_000,
                },
            );
            guard.finish(&sized([1; 32], 500, 1_000));
        }
        // Each generation may overshoot by one response before it rotates.
        let entry_bytes = 500 + crate::records::RESPONSE_ENTRY_OVERHEAD_BYTES;
        let bound = 2 * SHARD_COUNT * (generation_bytes_max + entry_bytes);
        assert!(
            table.response_bytes() <= bound,
            "{} > {bound}",
            table.response_bytes()
        );
        assert!(table.len() < keys.len(), "memory holds only the newest");
        let (mut kept, mut stored) = (0, 0);
        for key in &keys {
            match table.claim("a", key, [1; 32], 0, wait, true).await.unwrap() {
                Claim::Replay(_) => {
                    kept += 1;
                    let error = table
                        .claim("a", key, [2; 32], 0, wait, true)
                        .await
                        .unwrap_err();
                    assert_eq!(error.code, ErrorCode::DuplicateRequest);
                }
                // The caller reads the answer and compares fingerprints there.
                Claim::Stored => stored += 1,
                Claim::Leader(_) => panic!("{key} was answered already"),
            }
        }
        assert!(
            stored > keys.len() / 2,
            "most bodies left memory: {kept} kept, {stored} in the store only"
        );
        assert!(kept > 0, "the newest bodies stay");

        // A body read back from the store is kept again.
        let cold_key = keys
            .iter()
            .find(|key| {
                let key = index.key_of("a", key);
                matches!(table.shard(key).lookup(key), Lookup::Absent)
            })
            .unwrap();
        table.rewarm("a", cold_key, &sized([1; 32], 10, 1_000));
        assert!(matches!(
            table
                .claim("a", cold_key, [1; 32], 0, wait, true)
                .await
                .unwrap(),
            Claim::Replay(_)
        ));

        // Expiry empties memory; the index is the store's to sweep.
        let in_memory = table.len();
        assert_eq!(in_memory, kept + 1, "the kept bodies and the rewarmed one");
        assert_eq!(table.sweep(1_000), in_memory);
        assert_eq!(table.response_bytes(), 0);
        assert_eq!(table.len(), 0);
    }

    #[tokio::test]
    async fn keys_only_the_store_knows_are_claimed_as_stored() {
        let table = IdempotencyTable::new();
        let at = |expires_at_s| Location {
            log_key: 1,
            expires_at_s,
        };
        table.index.insert(table.index.key_of("a", "live"), at(100));
        table.index.insert(table.index.key_of("a", "gone"), at(1));
        assert_eq!(table.len(), 0);
        let wait = Duration::from_secs(1);
        for fingerprint in [[3; 32], [4; 32]] {
            assert!(matches!(
                table
                    .claim("a", "live", fingerprint, 5, wait, true)
                    .await
                    .unwrap(),
                Claim::Stored
            ));
        }
        assert!(matches!(
            table
                .claim("a", "gone", [3; 32], 5, wait, true)
                .await
                .unwrap(),
            Claim::Leader(_)
        ));
        // After the store said it holds nothing, the caller leads.
        assert!(matches!(
            table
                .claim("a", "live", [3; 32], 5, wait, false)
                .await
                .unwrap(),
            Claim::Leader(_)
        ));
    }

    #[test]
    fn kept_bodies_share_arena_blocks_and_large_ones_keep_their_buffer() {
        let mut shard = Shard::default();
        let small: Vec<Bytes> = (0..100u8).map(|i| Bytes::from(vec![i; 1_000])).collect();
        let kept: Vec<Bytes> = small
            .iter()
            .map(|body| shard.keep_body(body, 1 << 20))
            .collect();
        for (body, copy) in small.iter().zip(&kept) {
            assert_eq!(body, copy);
            assert_ne!(body.as_ptr(), copy.as_ptr(), "copied into the arena");
        }
        // 100 KB of bodies in 64 KiB blocks: consecutive bodies sit side by side.
        let adjacent = kept
            .windows(2)
            .filter(|pair| pair[0].as_ptr().wrapping_add(1_000) == pair[1].as_ptr())
            .count();
        assert!(adjacent >= 95, "{adjacent} of 99 pairs share a block");
        let large = Bytes::from(vec![7u8; ARENA_BODY_BYTES_MAX + 1]);
        assert_eq!(shard.keep_body(&large, 1 << 20).as_ptr(), large.as_ptr());
    }

    #[test]
    fn arena_blocks_are_reused_once_their_bodies_are_gone() {
        let mut shard = Shard::default();
        let body = Bytes::from(vec![1u8; 1_000]);
        // 65 bodies of 1,000 bytes fill a 64 KiB block.
        let per_block = ARENA_BLOCK_BYTES / body.len();
        let mut fill = |count: usize| -> Vec<Bytes> {
            (0..count)
                .map(|_| shard.keep_body(&body, 1 << 20))
                .collect()
        };
        let first = fill(per_block);
        let held = fill(2 * per_block);
        let first_block = first[0].as_ptr();
        drop(first);
        let next = fill(per_block);
        assert_eq!(
            next[0].as_ptr(),
            first_block,
            "the first block, free again, takes the next bodies"
        );
        // Blocks with bodies still held are not reused under them.
        let spans: Vec<_> = held
            .chunks(per_block)
            .map(|block| block[0].as_ptr() as usize..block[per_block - 1].as_ptr() as usize + 1)
            .collect();
        assert!(next.iter().all(|b| {
            spans
                .iter()
                .all(|span| !span.contains(&(b.as_ptr() as usize)))
        }));
        assert!(next.iter().chain(&held).all(|b| b == &body));
        // The blocks kept for reuse stay within the bound.
        for _ in 0..1_000 {
            shard.keep_body(&body, 100_000);
        }
        assert!(shard.filled_blocks.len() <= 2 * 100_000 / ARENA_BLOCK_BYTES + 2);
    }

    #[test]
    fn load_and_sweep() {
        let table = IdempotencyTable::new();
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
