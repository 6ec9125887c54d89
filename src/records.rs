//! Records that several modules share and the store persists.
//!
//! These are plain data with rkyv derives. The `store` module wraps each
//! archive with a format-version byte and validates it on load; the other
//! modules build and read these structs without knowing how they are kept.

use rkyv::{Archive, Deserialize, Serialize};

/// Everything the Hub keeps about one agent, except its money (the ledger
/// owns the wallet account, its balances and its call counters).
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct AgentRecord {
    /// `{prefix}_ag_<24 alphanumerics>`.
    pub agent_id: String,
    /// The ledger account number of this agent's wallet.
    pub wallet_account: u64,
    pub name: String,
    pub agent_type: Option<String>,
    pub description: Option<String>,
    pub homepage: Option<String>,
    pub capabilities: Vec<String>,
    pub referred_by: Option<String>,
    /// HMAC-SHA256(server secret, api_key). The plaintext key is never stored.
    pub key_hash: [u8; 32],
    /// The key replaced by the last rotation, valid until `previous_key_valid_until_s`.
    pub previous_key_hash: Option<[u8; 32]>,
    pub previous_key_valid_until_s: Option<i64>,
    /// Unix seconds of recent key rotations (only the last 24 h matter).
    pub rotations_s: Vec<i64>,
    pub created_at_s: i64,
    /// Frozen or revoked agents cannot authenticate (spec 02 §9.1).
    pub frozen: bool,
    /// Operator-set minimum tier (`gate::Tier::as_u8`), whatever `total_calls` says.
    pub tier_floor: Option<u8>,
    /// Operator-set per-agent rate limit, requests per minute.
    pub rate_limit_rpm: Option<u32>,
}

impl AgentRecord {
    /// A new agent with no profile fields, no rotation history and no
    /// operator overrides.
    pub fn new(
        agent_id: String,
        wallet_account: u64,
        name: String,
        key_hash: [u8; 32],
        created_at_s: i64,
    ) -> AgentRecord {
        AgentRecord {
            agent_id,
            wallet_account,
            name,
            agent_type: None,
            description: None,
            homepage: None,
            capabilities: Vec::new(),
            referred_by: None,
            key_hash,
            previous_key_hash: None,
            previous_key_valid_until_s: None,
            rotations_s: Vec::new(),
            created_at_s,
            frozen: false,
            tier_floor: None,
            rate_limit_rpm: None,
        }
    }
}

/// A stored response for idempotent replay (DESIGN §3.6).
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub agent_id: String,
    /// The request `id`, or `X-Idempotency-Key` when sent.
    pub request_key: String,
    /// SHA-256 over capability | action | canonical input | provenance | payment.
    pub fingerprint: [u8; 32],
    pub http_status: u16,
    /// The exact response body bytes, replayed byte for byte.
    pub body: Vec<u8>,
    /// Extra response headers that belong to the stored answer (e.g. `Sunset`).
    pub headers: Vec<(String, String)>,
    pub created_at_s: i64,
    pub expires_at_s: i64,
}

/// The per-entry part of [`response_memory_bytes`].
pub const RESPONSE_ENTRY_OVERHEAD_BYTES: usize = 128;

/// What the Hub counts against its bound on response bodies kept in memory
/// for one stored answer: body and headers, plus the cost of the entry
/// itself (its `Arc`, the map slot), so that tiny bodies still add up. The
/// store uses the same measure to decide which bodies to load at start-up.
pub fn response_memory_bytes(body_bytes: usize, headers: &[(String, String)]) -> usize {
    let header_bytes: usize = headers
        .iter()
        .map(|(name, value)| name.len() + value.len())
        .sum();
    body_bytes + header_bytes + RESPONSE_ENTRY_OVERHEAD_BYTES
}

/// A provenance nonce seen for an agent, kept until it can no longer replay.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct NonceRecord {
    pub agent_id: String,
    /// Lowercase hex.
    pub nonce: String,
    pub expires_at_s: i64,
}
