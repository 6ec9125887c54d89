//! Agents and authentication: who is calling, and may this call proceed.
//!
//! - [`keys`]: the server secret (`server.secret`, 0600), keyed hashes of API
//!   keys, and CSPRNG agent ids / keys.
//! - [`directory`]: every agent in memory; registration, authentication in
//!   constant time, key rotation with grace and a 3-per-24 h cap.
//! - [`credentials`]: where `agent_id` / `api_key` come from (spec 02 §3.5).
//! - [`mandate`]: the mandate object, its expiry and per-call budget checks.
//! - [`provenance`]: provenance v2 verification and its subcauses.
//! - [`replay`]: the persisted, bounded nonce replay store.
//!
//! This module decides; it never persists. Functions that change state
//! return the records (`AgentRecord`, `NonceRecord`) for the pipeline to hand
//! to the store. No key, mandate or secret is ever logged: the types that
//! hold them redact themselves in `Debug`.

// `JecpError` is the crate-wide error the invoke pipeline consumes; it is
// large, but errors are the cold path and boxing would change that API.

pub mod credentials;
pub mod directory;
pub mod keys;
pub mod mandate;
pub mod provenance;
pub mod replay;

pub use credentials::{Credentials, resolve_credentials};
pub use directory::{
    Directory, RegisterError, RegisterRequest, Registered, RotateRequest, Rotated,
};
pub use keys::{ServerSecret, generate_agent_id, generate_api_key};
pub use mandate::{Mandate, check_budget, check_expiry};
pub use provenance::{ProvenanceV2, Subcause, compute_v2, mismatch_error, verify_v2};
pub use replay::ReplayStore;
