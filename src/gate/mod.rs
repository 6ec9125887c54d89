//! The gate: trust tiers from `total_calls` ([`tier`]) and the per-agent
//! sliding-window rate limiter.

pub mod tier;

pub use tier::Tier;
