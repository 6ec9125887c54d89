//! jecp-hub: a JECP Hub in one binary with one data directory.
//!
//! # Layout
//!
//! Data flows one way: `http` → `hub` → (`auth`, `gate`, `catalog`) → `ledger` → `store`.
//! No module reaches back up.
//!
//! - [`config`]: the one `Config` struct, read from file, `JECP_*` environment and flags, validated at start.
//! - [`money`]: `Micros`, exact integer micro-USDC with decimal parsing and rendering.
//! - [`protocol`]: the error catalog and envelope, canonical JSON and idempotency fingerprints.
//! - [`auth`]: agent keys (keyed hashes), mandates, provenance v2 and the nonce replay store.
//! - [`gate`]: trust tiers from `total_calls` and the sliding-window rate limiter.
//! - [`catalog`]: the capability registry, prices, compiled schemas and the built-in handlers.
//! - [`ledger`]: the pure double-entry state machine: accounts, holds, post/void, the 85/10/5 split.
//! - [`store`]: the redb file, versioned rkyv records, the single writer thread with group commit.
//! - [`records`]: plain persisted records shared by modules (agents, idempotency, nonces).
//! - [`key_hash`]: the 128-bit keyed name of an idempotency key, and maps keyed by it (Hub table, store index).
//! - [`funding`]: Stripe Checkout Sessions for wallet top-ups, webhook signatures and events.
//! - [`hub`]: the transport-agnostic invoke pipeline and idempotency over the modules above.
//! - [`runtime`]: binding, serving and stopping a Hub (used by `main` and the tests).
//! - [`http`]: hyper server, routing, limits, response building, graceful shutdown.
//! - `fuzzing` (hidden): property checks shared by the `fuzz/` targets and `tests/fuzz_corpus.rs`.

pub mod auth;
pub mod catalog;
pub mod config;
pub mod funding;
#[doc(hidden)]
pub mod fuzzing;
pub mod gate;
pub mod http;
pub mod hub;
pub mod key_hash;
pub mod ledger;
pub mod money;
pub mod protocol;
pub mod records;
pub mod runtime;
pub mod store;
