//! An exact sliding-window rate limiter (spec 02 §6.5: the last 60 s).
//!
//! Each key (an agent id, or `register:<ip>`) keeps the hits inside the
//! window as `(millisecond, count)` pairs, oldest first. Hits in the same
//! millisecond share one pair, so a key never holds more than
//! `min(limit, window_ms)` pairs, however high an operator sets its limit.
//! A request is allowed iff fewer than `limit` hits remain in
//! `(now − window, now]`; nothing is approximated.
//!
//! Keys are spread over mutex-guarded shards (no global lock). The key map
//! is bounded: when it is full the shard is swept first, and a key that
//! still finds no room is denied (fail closed) rather than let unlimited
//! traffic through. [`RateLimiter::sweep`] drops idle keys; the Hub calls it
//! periodically. The hot path allocates only when a key is first seen.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

const SHARD_COUNT: usize = 32;
/// Default bound on tracked keys.
pub const DEFAULT_MAX_KEYS: usize = 1_000_000;
/// When the key table is full, a sweep of every shard runs at most this
/// often, so a flood of new keys cannot turn each request into a full scan.
const FULL_SWEEP_INTERVAL_MS: u64 = 1_000;
/// `Retry-After` bounds (spec 03 §3.5).
const RETRY_AFTER_MIN_S: u64 = 1;
const RETRY_AFTER_MAX_S: u64 = 600;

/// The answer for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateDecision {
    pub allowed: bool,
    pub limit: u32,
    /// Requests still allowed in the current window after this one.
    pub remaining: u32,
    /// Seconds until the next slot frees (rounded up).
    pub reset_after_s: u64,
    /// When denied, seconds to wait before a retry can succeed (1..=600); 0 when allowed.
    pub retry_after_s: u64,
}

impl RateDecision {
    /// `X-RateLimit-Limit/Remaining/Reset` (reset in seconds) for any response.
    pub fn headers(&self) -> [(&'static str, String); 3] {
        [
            ("X-RateLimit-Limit", self.limit.to_string()),
            ("X-RateLimit-Remaining", self.remaining.to_string()),
            ("X-RateLimit-Reset", self.reset_after_s.to_string()),
        ]
    }
}

#[derive(Debug, Default)]
struct Window {
    /// `(hit millisecond, hits in that millisecond)`, oldest first.
    hits: VecDeque<(u64, u32)>,
    total: u64,
}

impl Window {
    /// Drops hits that left the window: a hit at `t` counts while `now < t + window`.
    fn evict_expired(&mut self, now_ms: u64, window_ms: u64) {
        while let Some(&(at_ms, count)) = self.hits.front() {
            if at_ms.saturating_add(window_ms) > now_ms {
                break;
            }
            self.hits.pop_front();
            self.total -= u64::from(count);
        }
    }

    fn record(&mut self, now_ms: u64) {
        match self.hits.back_mut() {
            // A clock that stepped back still lands in the newest pair, which
            // keeps the queue ordered.
            Some((at_ms, count)) if *at_ms >= now_ms && *count < u32::MAX => *count += 1,
            _ => self.hits.push_back((now_ms, 1)),
        }
        self.total += 1;
    }

    /// Milliseconds from `now_ms` until at most `allowed_total − 1` hits remain.
    fn ms_until_total_below(&self, allowed_total: u64, now_ms: u64, window_ms: u64) -> u64 {
        let must_expire = (self.total + 1).saturating_sub(allowed_total);
        let mut expired = 0u64;
        for &(at_ms, count) in &self.hits {
            expired += u64::from(count);
            if expired >= must_expire {
                return at_ms.saturating_add(window_ms).saturating_sub(now_ms);
            }
        }
        window_ms
    }
}

type Shard = HashMap<Box<str>, Window>;

/// Sliding-window counters per key.
#[derive(Debug)]
pub struct RateLimiter {
    window_ms: u64,
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    keys: AtomicUsize,
    max_keys: usize,
    /// `now_ms + 1` of the last full sweep forced by a full table (0 = never).
    last_full_sweep_ms: AtomicU64,
}

impl RateLimiter {
    pub fn new(window_ms: u64) -> RateLimiter {
        RateLimiter::with_max_keys(window_ms, DEFAULT_MAX_KEYS)
    }

    pub fn with_max_keys(window_ms: u64, max_keys: usize) -> RateLimiter {
        RateLimiter {
            window_ms: window_ms.max(1),
            shards: (0..SHARD_COUNT)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
            hasher: RandomState::new(),
            keys: AtomicUsize::new(0),
            max_keys,
            last_full_sweep_ms: AtomicU64::new(0),
        }
    }

    /// Counts a hit for `key` at `now_ms` if fewer than `limit_per_window`
    /// hits fall in the window; denied hits are not counted.
    pub fn check(&self, key: &str, limit_per_window: u32, now_ms: u64) -> RateDecision {
        let window_ms = self.window_ms;
        let mut shard = self.lock_shard(key);
        // A known key (every call after an agent's first) is one lookup.
        if let Some(window) = shard.get_mut(key) {
            return decide(window, limit_per_window, now_ms, window_ms);
        }
        if limit_per_window == 0 {
            return self.denied(limit_per_window, window_ms);
        }
        if self.keys.load(Ordering::Relaxed) >= self.max_keys {
            // Sweep without holding this shard (sweep locks every shard).
            drop(shard);
            self.sweep_when_full(now_ms);
            shard = self.lock_shard(key);
        }
        // Re-checked: another thread may have added this key meanwhile.
        if !shard.contains_key(key) {
            if self.keys.load(Ordering::Relaxed) >= self.max_keys {
                tracing::warn!(
                    max_keys = self.max_keys,
                    "rate limiter key table full; denying a new key"
                );
                return self.denied(limit_per_window, window_ms);
            }
            shard.insert(key.into(), Window::default());
            self.keys.fetch_add(1, Ordering::Relaxed);
        }
        match shard.get_mut(key) {
            Some(window) => decide(window, limit_per_window, now_ms, window_ms),
            None => self.denied(limit_per_window, window_ms),
        }
    }

    /// Drops keys with no hit left in the window at `now_ms`.
    pub fn sweep(&self, now_ms: u64) -> usize {
        let mut removed_total = 0;
        for shard in self.shards.iter() {
            let mut shard = shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let removed = sweep_shard(&mut shard, now_ms, self.window_ms);
            self.keys.fetch_sub(removed, Ordering::Relaxed);
            removed_total += removed;
        }
        removed_total
    }

    fn sweep_when_full(&self, now_ms: u64) {
        let last = self.last_full_sweep_ms.load(Ordering::Relaxed);
        let due =
            last == 0 || now_ms.saturating_add(1) >= last.saturating_add(FULL_SWEEP_INTERVAL_MS);
        if due
            && self
                .last_full_sweep_ms
                .compare_exchange(
                    last,
                    now_ms.saturating_add(1),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            self.sweep(now_ms);
        }
    }

    /// Keys currently tracked.
    pub fn len(&self) -> usize {
        self.keys.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn denied(&self, limit: u32, window_ms: u64) -> RateDecision {
        let wait_s = ceil_s(window_ms).clamp(RETRY_AFTER_MIN_S, RETRY_AFTER_MAX_S);
        RateDecision {
            allowed: false,
            limit,
            remaining: 0,
            reset_after_s: wait_s,
            retry_after_s: wait_s,
        }
    }

    fn lock_shard(&self, key: &str) -> MutexGuard<'_, Shard> {
        let index = (self.hasher.hash_one(key) as usize) % self.shards.len();
        // Mutations are single map/queue operations; a poisoned shard is still consistent enough to count with.
        self.shards[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The limiter key for per-client-IP limits such as registration
/// (`scope` = `"register"`). An IPv6 client usually holds a whole /64, so
/// IPv6 addresses are keyed by their /64 prefix; IPv4-mapped IPv6 addresses
/// count as the IPv4 address they carry.
pub fn client_ip_key(scope: &str, ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{scope}:{v4}"),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("{scope}:{v4}"),
            None => {
                let segments = v6.segments();
                format!(
                    "{scope}:{:x}:{:x}:{:x}:{:x}::/64",
                    segments[0], segments[1], segments[2], segments[3]
                )
            }
        },
    }
}

/// Counts a hit in `window` at `now_ms` if fewer than `limit_per_window`
/// hits fall in the window; denied hits are not counted.
fn decide(window: &mut Window, limit_per_window: u32, now_ms: u64, window_ms: u64) -> RateDecision {
    let limit = u64::from(limit_per_window);
    window.evict_expired(now_ms, window_ms);
    if window.total < limit {
        window.record(now_ms);
        let oldest_ms = window.hits.front().map_or(now_ms, |&(at_ms, _)| at_ms);
        RateDecision {
            allowed: true,
            limit: limit_per_window,
            remaining: (limit - window.total) as u32,
            reset_after_s: ceil_s(oldest_ms.saturating_add(window_ms).saturating_sub(now_ms)),
            retry_after_s: 0,
        }
    } else {
        let wait_s = ceil_s(window.ms_until_total_below(limit, now_ms, window_ms));
        RateDecision {
            allowed: false,
            limit: limit_per_window,
            remaining: 0,
            reset_after_s: wait_s,
            retry_after_s: wait_s.clamp(RETRY_AFTER_MIN_S, RETRY_AFTER_MAX_S),
        }
    }
}

fn sweep_shard(shard: &mut Shard, now_ms: u64, window_ms: u64) -> usize {
    let before = shard.len();
    shard.retain(|_, window| {
        window
            .hits
            .back()
            .is_some_and(|&(at_ms, _)| at_ms.saturating_add(window_ms) > now_ms)
    });
    before - shard.len()
}

fn ceil_s(ms: u64) -> u64 {
    ms.div_ceil(1_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_n_allows_n_then_denies_until_the_oldest_slides_out() {
        let limiter = RateLimiter::new(60_000);
        for i in 0..10u64 {
            let decision = limiter.check("a", 10, 1_000 + i * 1_000);
            assert!(decision.allowed);
            assert_eq!(decision.remaining, 9 - i as u32);
        }
        let denied = limiter.check("a", 10, 20_500);
        assert!(!denied.allowed);
        // The first hit (t = 1 s) leaves the window at 61 s: 40.5 s from now → 41.
        assert_eq!(denied.retry_after_s, 41);
        assert!(!limiter.check("a", 10, 60_999).allowed);
        let after = limiter.check("a", 10, 61_001);
        assert!(after.allowed);
        assert_eq!(after.remaining, 0);
        // Other keys are independent.
        assert!(limiter.check("b", 10, 20_500).allowed);
    }

    #[test]
    fn same_millisecond_hits_are_coalesced_but_exact() {
        let limiter = RateLimiter::new(60_000);
        for _ in 0..500 {
            assert!(limiter.check("burst", 500, 5_000).allowed);
        }
        let denied = limiter.check("burst", 500, 5_000);
        assert!(!denied.allowed);
        assert_eq!(denied.retry_after_s, 60);
        let shard = limiter.lock_shard("burst");
        assert_eq!(shard["burst"].hits.len(), 1);
    }

    #[test]
    fn lowering_the_limit_waits_for_enough_hits_to_expire() {
        let limiter = RateLimiter::new(60_000);
        for i in 0..30u64 {
            assert!(limiter.check("agent", 30, i * 1_000).allowed);
        }
        // Now limited to 10: 21 of the 30 hits must leave; the 21st is at 20 s.
        let denied = limiter.check("agent", 10, 30_000);
        assert_eq!(denied.retry_after_s, 50);
    }

    #[test]
    fn zero_limit_and_full_key_table_deny() {
        let limiter = RateLimiter::with_max_keys(60_000, 2);
        assert!(!limiter.check("z", 0, 0).allowed);
        assert!(limiter.check("a", 5, 0).allowed);
        assert!(limiter.check("b", 5, 0).allowed);
        let full = limiter.check("c", 5, 1_000);
        assert!(!full.allowed);
        assert!((1..=600).contains(&full.retry_after_s));
        // Once the old keys are idle they are swept to make room.
        assert!(limiter.check("c", 5, 60_001).allowed);
        assert_eq!(limiter.len(), 1);
    }

    #[test]
    fn client_keys_group_ipv6_by_64() {
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        assert_eq!(
            client_ip_key("register", ip("203.0.113.7")),
            "register:203.0.113.7"
        );
        assert_eq!(
            client_ip_key("register", ip("::ffff:203.0.113.7")),
            "register:203.0.113.7"
        );
        assert_eq!(
            client_ip_key("register", ip("2001:db8:1:2:aaaa::1")),
            client_ip_key("register", ip("2001:db8:1:2:bbbb::2"))
        );
        assert_ne!(
            client_ip_key("register", ip("2001:db8:1:2::1")),
            client_ip_key("register", ip("2001:db8:1:3::1"))
        );
    }

    #[test]
    fn sweep_drops_only_idle_keys() {
        let limiter = RateLimiter::new(60_000);
        limiter.check("old", 5, 0);
        limiter.check("new", 5, 30_000);
        assert_eq!(limiter.sweep(60_000), 1);
        assert_eq!(limiter.len(), 1);
        assert_eq!(limiter.sweep(90_000), 1);
        assert!(limiter.is_empty());
    }
}
