//! The provenance nonce replay store (spec 02 §5.2 step 5, §5.2.1).
//!
//! Each `(agent_id, lowercase nonce)` is remembered for [`ReplayStore::TTL_S`]
//! seconds. [`ReplayStore::check_and_insert`] is one atomic operation under a
//! shard lock, so two concurrent requests with the same nonce cannot both
//! pass (the TOCTOU race §5.2.1 warns about).
//!
//! The spec accepts that a restart empties the cache; this Hub does not.
//! Every accepted nonce yields a [`NonceRecord`] that the pipeline persists,
//! and [`ReplayStore::load`] rebuilds the store from those records at start.
//!
//! Memory is bounded: at `max_entries` live entries the store first sweeps
//! the shard, then refuses new nonces ([`Subcause::ReplayStoreFull`], a 503)
//! rather than grow or evict a live entry (evicting would reopen a replay).
//!
//! Expiry is inclusive: an entry written at `t` blocks its nonce through
//! `t + 600`. A nonce is accepted at most 300 s after its timestamp and is
//! inserted no earlier than 300 s before it, so it stays blocked for every
//! instant at which its timestamp still passes the clock-skew check.

use std::collections::HashMap;
use std::collections::hash_map::{Entry, RandomState};
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

use crate::auth::provenance::Subcause;
use crate::records::NonceRecord;

const SHARD_COUNT: usize = 32;
/// When the store is full, a sweep of every shard runs at most once per
/// second, so a flood of fresh nonces cannot make each request a full scan.
const FULL_SWEEP_INTERVAL_S: i64 = 1;

/// One shard: `"<agent_id>\n<nonce>"` → `expires_at_s`.
type Shard = HashMap<Box<str>, i64>;

/// Sharded, bounded, persisted-by-the-caller set of recently used nonces.
#[derive(Debug)]
pub struct ReplayStore {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    entries: AtomicUsize,
    max_entries: usize,
    /// When the last full sweep forced by a full store ran (`i64::MIN` = never).
    last_full_sweep_s: AtomicI64,
}

impl ReplayStore {
    /// How long a nonce stays blocked (the spec's minimum cache window).
    pub const TTL_S: i64 = 600;

    pub fn new(max_entries: usize) -> ReplayStore {
        ReplayStore {
            shards: (0..SHARD_COUNT)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
            hasher: RandomState::new(),
            entries: AtomicUsize::new(0),
            max_entries,
            last_full_sweep_s: AtomicI64::new(i64::MIN),
        }
    }

    /// Rebuilds state from persisted records, skipping those already expired
    /// at `now_s`. Records beyond `max_entries` are skipped (and counted in a
    /// warning) so a smaller configured bound is honoured after a restart.
    pub fn load(&self, records: Vec<NonceRecord>, now_s: i64) {
        let mut skipped_over_bound = 0usize;
        for record in records {
            if record.expires_at_s < now_s {
                continue;
            }
            let key = entry_key(&record.agent_id, &record.nonce.to_ascii_lowercase());
            let mut shard = self.lock_shard(&key);
            match shard.entry(key.into_boxed_str()) {
                Entry::Occupied(mut occupied) => {
                    let expires = occupied.get_mut();
                    *expires = (*expires).max(record.expires_at_s);
                }
                Entry::Vacant(vacant) => {
                    if self.entries.load(Ordering::Relaxed) >= self.max_entries {
                        skipped_over_bound += 1;
                        continue;
                    }
                    vacant.insert(record.expires_at_s);
                    self.entries.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if skipped_over_bound > 0 {
            tracing::warn!(
                skipped_over_bound,
                max_entries = self.max_entries,
                "replay store bound reached while loading nonces"
            );
        }
    }

    /// Atomically records `(agent_id, nonce_lower)`; `NonceReplay` when it is
    /// already present and unexpired. On success returns the record to persist.
    pub fn check_and_insert(
        &self,
        agent_id: &str,
        nonce_lower: &str,
        now_s: i64,
    ) -> Result<NonceRecord, Subcause> {
        debug_assert!(
            !nonce_lower.bytes().any(|b| b.is_ascii_uppercase()),
            "nonce must be lowercased by verify_v2"
        );
        let key = entry_key(agent_id, nonce_lower);
        let expires_at_s = now_s.saturating_add(Self::TTL_S);
        let mut shard = self.lock_shard(&key);
        if let Some(existing) = shard.get_mut(key.as_str()) {
            if *existing >= now_s {
                return Err(Subcause::NonceReplay);
            }
            // Expired but not yet swept: reuse the slot.
            *existing = expires_at_s;
            return Ok(NonceRecord {
                agent_id: agent_id.to_owned(),
                nonce: nonce_lower.to_owned(),
                expires_at_s,
            });
        }
        if self.entries.load(Ordering::Relaxed) >= self.max_entries {
            let removed = sweep_shard(&mut shard, now_s);
            self.entries.fetch_sub(removed, Ordering::Relaxed);
            if self.entries.load(Ordering::Relaxed) >= self.max_entries {
                // Sweep every shard without holding this one, then decide again
                // (the nonce may have been inserted by a racing request meanwhile).
                drop(shard);
                self.sweep_when_full(now_s);
                shard = self.lock_shard(&key);
                if shard
                    .get(key.as_str())
                    .is_some_and(|&existing| existing >= now_s)
                {
                    return Err(Subcause::NonceReplay);
                }
                if self.entries.load(Ordering::Relaxed) >= self.max_entries {
                    tracing::warn!(
                        max_entries = self.max_entries,
                        "replay store full; refusing a new nonce"
                    );
                    return Err(Subcause::ReplayStoreFull);
                }
            }
        }
        if shard.insert(key.into_boxed_str(), expires_at_s).is_none() {
            self.entries.fetch_add(1, Ordering::Relaxed);
        }
        Ok(NonceRecord {
            agent_id: agent_id.to_owned(),
            nonce: nonce_lower.to_owned(),
            expires_at_s,
        })
    }

    fn sweep_when_full(&self, now_s: i64) {
        let last = self.last_full_sweep_s.load(Ordering::Relaxed);
        let due = last == i64::MIN || now_s >= last.saturating_add(FULL_SWEEP_INTERVAL_S);
        if due
            && self
                .last_full_sweep_s
                .compare_exchange(last, now_s, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.sweep(now_s);
        }
    }

    /// Drops every entry that expired before `now_s`; returns how many.
    pub fn sweep(&self, now_s: i64) -> usize {
        let mut removed_total = 0;
        for shard in self.shards.iter() {
            let mut shard = shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let removed = sweep_shard(&mut shard, now_s);
            self.entries.fetch_sub(removed, Ordering::Relaxed);
            removed_total += removed;
        }
        removed_total
    }

    /// Live plus not-yet-swept entries.
    pub fn len(&self) -> usize {
        self.entries.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every entry still blocking a nonce at `now_s`, e.g. for a compaction
    /// of the persisted nonce table.
    pub fn export(&self, now_s: i64) -> Vec<NonceRecord> {
        let mut records = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for (key, &expires_at_s) in shard.iter() {
                if expires_at_s < now_s {
                    continue;
                }
                if let Some((agent_id, nonce)) = key.split_once('\n') {
                    records.push(NonceRecord {
                        agent_id: agent_id.to_owned(),
                        nonce: nonce.to_owned(),
                        expires_at_s,
                    });
                }
            }
        }
        records
    }

    fn lock_shard(&self, key: &str) -> std::sync::MutexGuard<'_, Shard> {
        let index = (self.hasher.hash_one(key) as usize) % self.shards.len();
        // A panic while holding a shard cannot leave a half-written entry
        // (every mutation is a single map operation), so poisoning is ignored.
        self.shards[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Agent ids never contain a newline (they are authenticated before this).
fn entry_key(agent_id: &str, nonce_lower: &str) -> String {
    let mut key = String::with_capacity(agent_id.len() + 1 + nonce_lower.len());
    key.push_str(agent_id);
    key.push('\n');
    key.push_str(nonce_lower);
    key
}

fn sweep_shard(shard: &mut Shard, now_s: i64) -> usize {
    let before = shard.len();
    shard.retain(|_, expires_at_s| *expires_at_s >= now_s);
    before - shard.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_use_is_a_replay_until_the_ttl_ends() {
        let store = ReplayStore::new(100);
        let record = store
            .check_and_insert("jh_ag_a", "00112233445566778899", 1_000)
            .unwrap();
        assert_eq!(record.expires_at_s, 1_600);
        assert_eq!(
            store.check_and_insert("jh_ag_a", "00112233445566778899", 1_000),
            Err(Subcause::NonceReplay)
        );
        assert_eq!(
            store.check_and_insert("jh_ag_a", "00112233445566778899", 1_600),
            Err(Subcause::NonceReplay)
        );
        // Another agent may use the same nonce.
        assert!(
            store
                .check_and_insert("jh_ag_b", "00112233445566778899", 1_000)
                .is_ok()
        );
        assert!(
            store
                .check_and_insert("jh_ag_a", "00112233445566778899", 1_601)
                .is_ok()
        );
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn sweep_removes_only_expired_entries() {
        let store = ReplayStore::new(100);
        store
            .check_and_insert("jh_ag_a", "aaaaaaaaaaaaaaaa", 0)
            .unwrap();
        store
            .check_and_insert("jh_ag_a", "bbbbbbbbbbbbbbbb", 500)
            .unwrap();
        assert_eq!(store.sweep(600), 0);
        assert_eq!(store.sweep(601), 1);
        assert_eq!(store.len(), 1);
        assert_eq!(
            store.check_and_insert("jh_ag_a", "bbbbbbbbbbbbbbbb", 601),
            Err(Subcause::NonceReplay)
        );
        assert_eq!(store.sweep(1_101), 1);
        assert!(store.is_empty());
    }

    #[test]
    fn bound_refuses_instead_of_growing_and_frees_after_expiry() {
        let store = ReplayStore::new(3);
        for nonce in ["aaaaaaaaaaaaaaa1", "aaaaaaaaaaaaaaa2", "aaaaaaaaaaaaaaa3"] {
            store.check_and_insert("jh_ag_a", nonce, 0).unwrap();
        }
        assert_eq!(
            store.check_and_insert("jh_ag_a", "aaaaaaaaaaaaaaa4", 10),
            Err(Subcause::ReplayStoreFull)
        );
        assert_eq!(store.len(), 3);
        // A replay of a live nonce is still reported as a replay when full.
        assert_eq!(
            store.check_and_insert("jh_ag_a", "aaaaaaaaaaaaaaa1", 10),
            Err(Subcause::NonceReplay)
        );
        store.sweep(601);
        assert!(
            store
                .check_and_insert("jh_ag_a", "aaaaaaaaaaaaaaa4", 601)
                .is_ok()
        );
    }

    #[test]
    fn export_and_load_round_trip_skipping_expired() {
        let store = ReplayStore::new(100);
        store
            .check_and_insert("jh_ag_a", "aaaaaaaaaaaaaaaa", 0)
            .unwrap();
        store
            .check_and_insert("jh_ag_a", "bbbbbbbbbbbbbbbb", 300)
            .unwrap();
        let records = store.export(0);
        assert_eq!(records.len(), 2);
        let rebuilt = ReplayStore::new(100);
        rebuilt.load(records, 700);
        assert_eq!(rebuilt.len(), 1);
        assert_eq!(
            rebuilt.check_and_insert("jh_ag_a", "bbbbbbbbbbbbbbbb", 700),
            Err(Subcause::NonceReplay)
        );
        assert!(
            rebuilt
                .check_and_insert("jh_ag_a", "aaaaaaaaaaaaaaaa", 700)
                .is_ok()
        );
    }
}
