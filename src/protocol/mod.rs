//! Wire-level protocol types: the error catalog and envelope ([`error`]),
//! and canonical JSON hashing for idempotency fingerprints ([`canonical`]).
//! Nothing here knows about HTTP libraries, storage or money movement.

pub mod canonical;
pub mod error;

pub use error::{ErrorCode, HubLinks, JecpError, NextAction};
