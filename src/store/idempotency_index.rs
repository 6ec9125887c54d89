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
}

impl Default for IdempotencyIndex {
    fn default() -> Self {
        IdempotencyIndex {
            shards: (0..SHARD_COUNT).map(|_| Mutex::default()).collect(),
            hasher: KeyHasher::new(),
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
        self.shard(key).insert(key, location);
    }

    /// Drops the entries expired at `now_s`.
    pub fn retain_live(&self, now_s: i64) {
        for shard in &self.shards {
            shard
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .retain(|_, location| location.expires_at_s > now_s);
        }
    }

    /// Forgets every entry (before the writer refills the index from the file).
    pub fn clear(&self) {
        for shard in &self.shards {
            shard.lock().unwrap_or_else(PoisonError::into_inner).clear();
        }
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

    #[test]
    fn the_index_finds_exact_keys_and_forgets_expired_ones() {
        let index = IdempotencyIndex::new();
        let at = |log_key, expires_at_s| Location {
            log_key,
            expires_at_s,
        };
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
}
