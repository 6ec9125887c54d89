//! The 128-bit keyed name of an idempotency key `(agent_id, request_key)`,
//! and maps keyed by it.
//!
//! The store's idempotency index ([`crate::store::IdempotencyIndex`]) holds
//! every live idempotency key for its whole TTL (24 h by default, so millions
//! of keys under load), and the Hub's single-flight table
//! ([`crate::hub::idempotency`]) the ones in flight or recently answered.
//! Keying them by two `String`s cost two heap allocations and about 100 B
//! per key, one SipHash of both strings per map touched, and a SipHash of
//! every key again each time a map grew. A [`KeyHash`] is computed once per
//! request (both maps take it from the index's hasher); the maps keyed by it
//! ([`KeyHashMap`]) use its own bits as their hash and never hash a string
//! again.
//!
//! Collisions: the two 64-bit halves are SipHash-1-3 under two independent
//! random keys drawn per process and never revealed, so a client cannot aim
//! for a collision, and two distinct pairs share a name with probability
//! about 2^-128 — across 10^10 live keys, any collision at all below 10^-18.
//! Where a record is read back through the index, its own key and
//! fingerprint are still compared; in memory, a replay also needs an equal
//! request fingerprint.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};

/// The keyed name of one `(agent_id, request_key)` pair, from [`KeyHasher`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeyHash(u128);

impl KeyHash {
    /// Spreads keys over `shard_count` shards (high bits, so the maps inside
    /// a shard, which index by the low bits, still see every bit pattern).
    pub fn shard(self, shard_count: usize) -> usize {
        debug_assert!(shard_count > 0);
        ((self.0 >> 64) as u64 % shard_count as u64) as usize
    }
}

/// Names keys; each instance draws its own random keys, so names are only
/// comparable within one hasher.
#[derive(Clone, Debug, Default)]
pub struct KeyHasher {
    high: RandomState,
    low: RandomState,
}

impl KeyHasher {
    pub fn new() -> KeyHasher {
        KeyHasher::default()
    }

    /// The name of `(agent_id, request_key)`. The tuple hash frames each
    /// string, so `("ab", "c")` and `("a", "bc")` differ.
    pub fn key_of(&self, agent_id: &str, request_key: &str) -> KeyHash {
        let key = (agent_id, request_key);
        KeyHash((u128::from(self.high.hash_one(key)) << 64) | u128::from(self.low.hash_one(key)))
    }
}

/// A map keyed by [`KeyHash`], hashing by the name's own (already keyed and
/// uniformly distributed) low bits.
pub type KeyHashMap<V> = HashMap<KeyHash, V, BuildHasherDefault<PassThroughHasher>>;

/// The `Hasher` of [`KeyHashMap`]: a [`KeyHash`] hashes as its low 64 bits.
#[derive(Debug, Default)]
pub struct PassThroughHasher(u64);

impl Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u128(&mut self, value: u128) {
        self.0 = value as u64;
    }

    /// Not reached by `KeyHash` (its derived `Hash` writes one `u128`);
    /// folds bytes in so any other use still hashes every byte.
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(byte)).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_per_hasher_and_frame_both_parts() {
        let hasher = KeyHasher::new();
        assert_eq!(
            hasher.key_of("agent-a", "req-1"),
            hasher.key_of("agent-a", "req-1")
        );
        assert_ne!(
            hasher.key_of("agent-a", "req-1"),
            hasher.key_of("agent-b", "req-1")
        );
        assert_ne!(hasher.key_of("ab", "c"), hasher.key_of("a", "bc"));
        // Another hasher draws other keys.
        assert_ne!(KeyHasher::new().key_of("a", "b"), hasher.key_of("a", "b"));
    }

    #[test]
    fn maps_keyed_by_names_hash_by_the_low_bits_and_shard_by_the_high_bits() {
        let hasher = KeyHasher::new();
        let mut map: KeyHashMap<u32> = KeyHashMap::default();
        let mut shards_seen = [false; 8];
        for index in 0..1_000u32 {
            let name = hasher.key_of("agent", &index.to_string());
            shards_seen[name.shard(8)] = true;
            map.insert(name, index);
        }
        assert!(
            shards_seen.iter().all(|seen| *seen),
            "1,000 names reach all 8 shards"
        );
        for index in 0..1_000u32 {
            assert_eq!(
                map.get(&hasher.key_of("agent", &index.to_string())),
                Some(&index)
            );
        }
        let mut state = PassThroughHasher::default();
        state.write_u128((7u128 << 64) | 42);
        assert_eq!(state.finish(), 42);
    }
}
