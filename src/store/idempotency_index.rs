//! Where every live stored answer sits in the idempotency log: the one index
//! of idempotency keys, shared by the store writer and the Hub.
//!
//! The writer fills it: a charge's record enters it in the commit that books
//! the charge, so the writer can refuse a second charge under a key
//! ([`crate::store::Reply::Replayed`]) and read any answer back. The Hub's
//! single-flight table ([`crate::hub::idempotency`]) keeps only requests in
//! flight and the newest answers' bodies; for every older key it asks this
//! index, so a key is known for its whole TTL (24 h by default, millions of
//! keys under load) in one map, not two.
//!
//! Entries are (log key, expiry) by the 128-bit keyed name of `(agent,
//! request key)` ([`crate::key_hash`]), about 40 bytes a key. Readers of a
//! record compare its own key, so a collision (about 2^-128 for a pair) can
//! only hide a stored answer, never serve another key's.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::key_hash::{KeyHash, KeyHashMap, KeyHasher};

/// Shards, so Hub lookups and the writer's inserts rarely meet on a lock.
const SHARD_COUNT: usize = 64;

/// Where a stored answer is: its log key and when it expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    pub log_key: u128,
    pub expires_at_s: i64,
}

#[derive(Debug)]
pub struct IdempotencyIndex {
    shards: Vec<Mutex<KeyHashMap<Location>>>,
    hasher: KeyHasher,
    /// No entry expires before this (`i64::MAX` when there is none): a sweep
    /// before it has nothing to drop and skips the walk over every entry,
    /// which at millions of keys held the writer, and every commit behind it,
    /// for a quarter of a second each minute (BENCHMARKS.md, session 15).
    /// Lowered by each insert, raised only by the sweep's full walk; both run
    /// on the store writer, so the bound cannot be raised past an entry.
    expiry_floor_s: AtomicI64,
}

impl Default for IdempotencyIndex {
    fn default() -> Self {
        IdempotencyIndex {
            shards: (0..SHARD_COUNT).map(|_| Mutex::default()).collect(),
            hasher: KeyHasher::new(),
            expiry_floor_s: AtomicI64::new(i64::MAX),
        }
    }
}

impl IdempotencyIndex {
    pub fn new() -> IdempotencyIndex {
        IdempotencyIndex::default()
    }

    fn shard(&self, key: KeyHash) -> MutexGuard<'_, KeyHashMap<Location>> {
        self.shards[key.shard(SHARD_COUNT)]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The index key of `(agent_id, request_key)`; the Hub's table names its
    /// keys with it too, so one name serves both.
    pub fn key_of(&self, agent_id: &str, request_key: &str) -> KeyHash {
        self.hasher.key_of(agent_id, request_key)
    }

    /// Where the answer under `key` is, if any (expired or not).
    pub fn get(&self, key: KeyHash) -> Option<Location> {
        self.shard(key).get(&key).copied()
    }

    /// Whether a stored answer under `key` lives at `now_s`.
    pub fn is_live(&self, key: KeyHash, now_s: i64) -> bool {
        self.get(key)
            .is_some_and(|location| location.expires_at_s > now_s)
    }

    /// Records where the answer under `key` is (a newer one replaces it).
    pub fn insert(&self, key: KeyHash, location: Location) {
        self.expiry_floor_s
            .fetch_min(location.expires_at_s, Ordering::Relaxed);
        self.shard(key).insert(key, location);
    }

    /// Drops the entries expired at `now_s`.
    pub fn retain_live(&self, now_s: i64) {
        if now_s < self.expiry_floor_s.load(Ordering::Relaxed) {
            return;
        }
        let mut floor_s = i64::MAX;
        for shard in &self.shards {
            shard
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .retain(|_, location| {
                    let live = location.expires_at_s > now_s;
                    if live {
                        floor_s = floor_s.min(location.expires_at_s);
                    }
                    live
                });
        }
        self.expiry_floor_s.store(floor_s, Ordering::Relaxed);
    }

    /// Forgets every entry (before the writer refills the index from the file).
    pub fn clear(&self) {
        for shard in &self.shards {
            shard.lock().unwrap_or_else(PoisonError::into_inner).clear();
        }
        self.expiry_floor_s.store(i64::MAX, Ordering::Relaxed);
    }

    /// Entries held (live or not yet swept).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(log_key: u128, expires_at_s: i64) -> Location {
        Location {
            log_key,
            expires_at_s,
        }
    }

    #[test]
    fn the_index_finds_exact_keys_and_forgets_expired_ones() {
        let index = IdempotencyIndex::new();
        let get = |agent: &str, request: &str| index.get(index.key_of(agent, request));
        index.insert(index.key_of("agent-a", "req-1"), at(1, 100));
        index.insert(index.key_of("agent-a", "req-2"), at(2, 50));
        assert_eq!(get("agent-a", "req-1"), Some(at(1, 100)));
        // Keys are per agent, and the split between the two parts counts.
        assert_eq!(get("agent-b", "req-1"), None);
        assert_ne!(index.key_of("ab", "c"), index.key_of("a", "bc"));
        assert!(index.is_live(index.key_of("agent-a", "req-2"), 49));
        assert!(!index.is_live(index.key_of("agent-a", "req-2"), 50));
        index.retain_live(50);
        assert_eq!(get("agent-a", "req-2"), None);
        assert_eq!(get("agent-a", "req-1"), Some(at(1, 100)));
        assert_eq!(index.len(), 1);
        index.clear();
        assert!(index.is_empty());
    }

    #[test]
    fn a_sweep_skips_only_while_nothing_can_have_expired() {
        let index = IdempotencyIndex::new();
        let key = |request: &str| index.key_of("agent", request);
        index.insert(key("a"), at(1, 100));
        index.insert(key("b"), at(2, 200));
        index.retain_live(99);
        assert_eq!(index.len(), 2);
        index.retain_live(100);
        assert_eq!(index.len(), 1);
        // The sweep raised its floor to 200; an insert that dies sooner
        // lowers it again, so the next sweep still finds it.
        index.insert(key("c"), at(3, 150));
        index.retain_live(150);
        assert_eq!(index.get(key("c")), None);
        assert_eq!(index.get(key("b")), Some(at(2, 200)));
        index.clear();
        index.insert(key("d"), at(4, 10));
        index.retain_live(10);
        assert!(index.is_empty());
    }
}
